"""One renderer per output format, each `render(report) -> str`.

Only `terminal` imports rich; the others are plain text, safe to paste or parse.
"""

FORMATS = ("terminal", "json", "markdown")


def render(report, fmt: str, **options) -> str:
    if fmt == "json":
        from kdiag.render.json import render as render_json

        return render_json(report)
    if fmt == "markdown":
        from kdiag.render.markdown import render as render_markdown

        return render_markdown(report)
    from kdiag.render.terminal import render as render_terminal

    return render_terminal(report, **options)
