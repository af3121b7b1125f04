"""Every output states the shared facts of one Report the same way.

The terminal, the Markdown report and the findings read "fastest matching", the compile()
verdict and the per-phase deltas from `kdiag.views`; these tests render one factory Report
three ways and compare what each says.
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


def _fastest_in_markdown(text: str):
    match = re.search(r"\*\*Fastest with matching outputs:\*\* (.+?), ", text)
    return match.group(1) if match else None


def _fastest_in_terminal(text: str):
    match = re.search(r"best: (.+?) [\d.]+ (?:µs|ms|s)\b", text.splitlines()[-1])  # the verdict, last
    return match.group(1) if match else None


@pytest.mark.parametrize("case", ["all checked", "no reference ran", "fastest differs"])
def test_fastest_matching_is_the_same_in_every_output(case):
    strategies = fx.typical_keras3()
    if case == "no reference ran":
        # predict failed, so nothing was compared: no strategy can be called matching.
        strategies = [fx.strategy(s.name, s.measurement.median_s * 1e3, matches=None) for s in strategies]
    elif case == "fastest differs":
        strategies = [fx.strategy(s.name, s.measurement.median_s * 1e3, matches=s.name != "TFLite",
                                  max_abs_diff=0.5 if s.name == "TFLite" else 0.0) for s in strategies]
    report = _with_findings(fx.report(strategies))
    expected = views.fastest_matching(report)
    terminal = _terminal(_without_findings(report))  # the verdict names it, findings or not
    md = markdown.render(report)
    if expected is None:
        assert case == "no reference ran"
        assert _fastest_in_markdown(md) is None
        assert _fastest_in_terminal(terminal) is None
        assert not any(f.strategy for f in report.findings)  # nothing unchecked is ever recommended
    else:
        assert _fastest_in_markdown(md) == expected.name
        assert _fastest_in_terminal(terminal) == expected.name
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
        row = next(line for line in md.splitlines() if line.startswith(f"| {delta.phase} |"))
        assert row.rstrip(" |").endswith(delta.text), row
    for delta in sorted(deltas, key=lambda d: -abs(d.delta_ms))[:3]:
        assert f"{delta.phase} {delta.text}" in evidence
    if slowdown:
        assert compile_finding.title.startswith("compile() makes predict")
    else:
        assert "within the noise" in evidence and "outside" not in evidence
