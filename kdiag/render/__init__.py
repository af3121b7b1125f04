"""One renderer per output format, each `render(report) -> str`.

Only `terminal` imports rich; the others are plain text, safe to paste or parse. `html`
imports matplotlib, when installed, only when it renders.
"""

FORMATS = ("terminal", "json", "markdown", "html")


def render(report, fmt: str, **options) -> str:
    """The report in `fmt`; options go to that renderer (markdown: redact; terminal: width, verbose)."""
    if fmt == "json":
        from kdiag.render.json import render as render_json

        return render_json(report)
    if fmt == "markdown":
        from kdiag.render.markdown import render as render_markdown

        return render_markdown(report, **options)
    if fmt == "html":
        from kdiag.render.html import render as render_html

        return render_html(report)
    from kdiag.render.terminal import render as render_terminal

    return render_terminal(report, **options)


def print_terminal(report, verbose: bool = False, file=None) -> None:
    """The terminal report printed on `file` (stdout by default): coloured and as wide as a terminal."""
    from kdiag.render.terminal import print_report

    print_report(report, verbose=verbose, file=file)
