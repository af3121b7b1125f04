"""Every output states the shared facts of one Report, the same way.

The terminal, report.md, report.html and report.json read "fastest matching", the compile()
verdict and the per-phase deltas from `kdiag.views`, and lay out the same sections
(kdiag.views.sections): these tests render factory Reports (plain, with the steps beyond one
batch, under --keras both, under --tf with a release that refused the file, with a failed strategy) every way and compare what each says.
"""

from __future__ import annotations

import re

import pytest

import factories as fx
from kdiag import views
from kdiag.analysis.diagnose import diagnose
from kdiag.render import markdown
from kdiag.render.terminal import render as render_terminal

PHASE_SHARES = {"input handling": 0.05, "tf.data pipeline": 0.45, "tracing": 0.3, "graph execution": 0.05,
                "other Python": 0.15}


def _with_findings(report):
    import dataclasses

    return dataclasses.replace(report, findings=diagnose(report))


def _terminal(report) -> str:
    return render_terminal(report, width=200, verbose=True)  # verbose: every phase, as the Markdown table


def _fix_in_markdown(text: str):
    match = re.search(r"\*\*Call (.+?) instead of predict:\*\*", text)
    return _unescaped(match.group(1)) if match else None


def _fix_in_terminal(text: str):
    match = re.search(r"fix: (.+?) [\d.]+ (?:µs|ms|s)\b", text.splitlines()[-1])  # the verdict, last
    return match.group(1) if match else None


def _fix_in_html(page: str):
    match = re.search(r'<p class="verdict"><strong>Call (.+?) instead of predict:</strong>', page)
    return match.group(1) if match else None


def _unescaped(text: str) -> str:
    """Markdown's backslash escapes and word joiners dropped (kdiag.sanitize.markdown)."""
    import html

    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text).replace("\u2060", ""))


def _unfenced(text: str) -> str:
    """kdiag.sanitize.literal's fences dropped: what the renderers show of a literal is its text."""
    return re.sub("[\ue000-\ue003]", "", text)


@pytest.mark.parametrize("case", ["all checked", "no reference ran", "fix differs", "runtime faster"])
def test_the_drop_in_fix_is_the_same_in_every_output_and_finding_1(case):
    """The verdict line, report.md's and report.html's verdict, report.json's `verdict` and finding 1
    name one path: the best drop-in fix, never a runtime change such as TFLite."""
    import json

    from kdiag.render import html
    from kdiag.render.json import render as render_json

    strategies = fx.typical_keras3()
    if case == "no reference ran":
        # predict failed, so nothing was compared: no strategy can be called matching.
        strategies = [fx.strategy(s.name, s.measurement.median_s * 1e3, matches=None) for s in strategies]
    elif case == "fix differs":
        strategies = [fx.strategy(s.name, s.measurement.median_s * 1e3, matches=s.name != "concrete function",
                                  max_abs_diff=0.5 if s.name == "concrete function" else 0.0) for s in strategies]
    elif case == "runtime faster":
        strategies = fx.typical_keras3(TFLite=(0.001, 0.0001))
    report = _with_findings(fx.report(strategies))
    verdict = views.verdict.verdict(report)
    terminal = _terminal(_without_findings(report))  # the verdict names it, findings or not
    md = markdown.render(report)
    page = html.render(report)
    data = json.loads(render_json(report))["verdict"]
    if case == "no reference ran":
        assert not verdict.recommends and data["fix"] is None and data["classification"] == "inconclusive"
        assert _fix_in_markdown(md) is None and _fix_in_terminal(terminal) is None and _fix_in_html(page) is None
        assert not any(f.strategy for f in report.findings)  # nothing unchecked is ever recommended
        return
    expected = "XLA (jit_compile)" if case == "fix differs" else "concrete function"
    assert verdict.fix.name == expected and data["fix"]["strategy"] == expected and data["fix_recommended"]
    assert _fix_in_markdown(md) == _fix_in_terminal(terminal) == _fix_in_html(page) == expected
    # Finding 1, or the first after the correctness finding that a differing drop-in call gets.
    first = report.findings[1] if case == "fix differs" else report.findings[0]
    assert first.id == "predict-overhead" and first.strategy == expected
    assert case != "fix differs" or report.findings[0].id == "outputs-differ"
    recommended = {f.strategy for f in report.findings if f.strategy}
    assert recommended <= {r.name for r in views.measured(report) if views.outputs_match(r)}


def _without_findings(report):
    import dataclasses

    return dataclasses.replace(report, findings=[])


@pytest.mark.parametrize("compiled_ms, compiled_iqr, slowdown", [(61.0, 2.0, False), (90.0, 2.0, True)])
def test_compile_verdict_and_phase_deltas_agree(compiled_ms, compiled_iqr, slowdown):
    strategies = fx.typical_keras3(**{"predict (compiled)": (compiled_ms, compiled_iqr)})
    compiled_shares = dict(PHASE_SHARES, **{"tf.data pipeline": 0.55, "tracing": 0.2}) if slowdown else PHASE_SHARES
    profiles = [fx.profile("predict", PHASE_SHARES, 60.0), fx.profile("predict (compiled)", compiled_shares,
                                                                         compiled_ms)]
    report = _with_findings(fx.report(strategies, profiles))
    deltas = views.compile_phase_deltas(report)
    assert len(deltas) == 8  # every phase
    assert any(d.beyond_noise for d in deltas) == slowdown
    terminal = _terminal(report)
    md = markdown.render(report)
    ids = [f.id for f in report.findings]
    assert ("compile-slowdown" in ids) == slowdown
    assert ("compile-no-effect" in ids) == (not slowdown)
    compile_finding = next(f for f in report.findings if f.id.startswith("compile-"))
    evidence = " ".join(compile_finding.evidence)
    for delta in deltas:
        # The same text for the same phase in the terminal table, the Markdown table and the finding.
        assert re.search(re.escape(delta.phase) + r" .*" + re.escape(delta.text), terminal), delta
        row = next(_unescaped(line) for line in md.splitlines() if _unescaped(line).startswith(f"| {delta.phase} |"))
        assert row.rstrip(" |").endswith(delta.text), row
    for delta in sorted(deltas, key=lambda d: -abs(d.delta_ms))[:3]:
        assert f"{delta.phase} {delta.text}" in evidence
    if slowdown:
        assert compile_finding.title.startswith("compile() makes predict")
    else:
        assert "within the noise" in evidence and "outside" not in evidence


# --- every output shows every fact the others show ----------------------------------------------------
#
# The facts are the rows and captions of kdiag.views.sections (the one place each is built), the
# findings, and the verdict's headline. report.md, report.html and the verbose terminal (at a width
# where nothing is left out) must each show all of them; report.json must carry enough to render
# the same report again.


def _failed_strategy():
    strategies = [fx.strategy("predict_on_batch", available=False, reason="failed when called: RuntimeError: boom")
                  if s.name == "predict_on_batch" else
                  fx.strategy("XLA (jit_compile)", available=False,
                              reason="failed to prepare: NotApplicable: XLA could not compile the model")
                  if s.name == "XLA (jit_compile)" else s for s in fx.typical_keras3()]
    return _with_findings(fx.report(strategies, notes=["TensorFlow warned while timing: retracing <f>"]))


def _cases():
    from test_beyond_findings import full_report
    from test_keras_both import both
    from test_terminal import _full_report
    from test_versions import three_releases

    return {"profiles and notes": _full_report, "beyond one batch": lambda: _with_findings(full_report()),
            "--keras both": lambda: both(66.0, 4.7), "a failed strategy": _failed_strategy, "--tf": three_releases}


CASES = ("profiles and notes", "beyond one batch", "--keras both", "a failed strategy", "--tf")


def _facts(report, top_functions: bool = True):
    """Every text the sections and the findings hold, as it reads with its marks dropped. report.md, for
    an issue, leaves the top functions to report.html, report.json and the .prof files (it says so)."""
    from kdiag.views import sections, wording

    built = [sections.environment(report), sections.model(report), sections.strategies(report),
             sections.phases(report), sections.tracing(report), sections.beyond_one_batch(report),
             sections.side_by_side(report), sections.profile_files(report)]
    if top_functions:
        built.append(sections.top_functions(report, per_phase=2, min_share=0.05))  # what the terminal shows
    texts = []
    stack = [s for s in built if s is not None]
    while stack:
        section = stack.pop()
        texts += [section.title, *section.paragraphs, *section.after, *section.bullets]  # headers are labels
        texts += [cell.text for table in section.tables for row in table.rows for cell in row]
        stack += section.subsections
    for finding in report.findings:
        texts += [finding.title, *finding.evidence, finding.advice, wording.finding_meta(finding)]
    texts.append(wording.classification(report))  # every output opens with it
    return {_plain(t) for t in texts if t and t.strip() and t != "—"}


def _plain(text: str) -> str:
    """Words and figures only: markup marks, escapes, line breaks and case dropped."""
    text = _unescaped(_unfenced(text)).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&quot;", '"')
    return " ".join(re.sub(r"[*`]", "", text).split()).casefold()


class _Text(__import__("html.parser").parser.HTMLParser):
    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.feed(page)

    def handle_data(self, data):
        self.parts.append(data)


def _outputs(report):
    from kdiag.render import html

    return {
        "report.md": _plain(markdown.render(report, redact=False)),
        "report.html": _plain("".join(_Text(html.render(report)).parts)),
        # Wide enough that no column is dropped and no cell wrapped; --verbose shows every section.
        "terminal --verbose": _plain(render_terminal(report, width=2000, verbose=True)),
    }


@pytest.mark.parametrize("case", CASES)
def test_every_fact_is_in_every_output(case):
    report = _cases()[case]()
    facts = _facts(report)
    assert len(facts) > 40, facts  # the case has content enough to compare
    for name, text in _outputs(report).items():
        expected = _facts(report, top_functions=False) if name == "report.md" else facts
        missing = sorted(fact for fact in expected if fact not in text)
        assert not missing, f"{name} leaves out: {missing[:10]}"


@pytest.mark.parametrize("case", CASES)
def test_report_json_carries_every_fact_the_other_outputs_show(case):
    """The JSON holds the data every renderer reads: read back, it renders the same report."""
    import json

    from kdiag.datamodel.report import Report
    from kdiag.render import html
    from kdiag.render.json import render as render_json

    report = _cases()[case]()
    again = Report.from_dict(json.loads(render_json(report)))
    assert markdown.render(again) == markdown.render(report)
    assert render_terminal(again, width=120, verbose=True) == render_terminal(report, width=120, verbose=True)
    assert html.render(again) == html.render(report)
