"""The terminal report at 80, 100 and 160 columns: no cell cut, titled sections, short by
default, the verdict last, no trailing spaces. Factory Reports here (no TensorFlow); a real
tiny run through the CLI in test_report_ux.py."""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from rich.console import Console

import factories as fx
from kdiag import format as fmt
from kdiag import views
from kdiag.analysis.diagnose import diagnose
from kdiag.render.terminal import CODE_END, print_report, render, verdict

WIDTHS = (80, 100, 160)
SHARES = {"input handling": 0.03, "tf.data pipeline": 0.45, "tracing": 0.3, "graph execution": 0.04,
          "other Python": 0.18}


def _full_report():
    """Every section: profiles of three scenarios, findings, an unmeasured strategy, a differing one,
    one stopped early, notes."""
    strategies = fx.typical_keras3(**{"predict (compiled)": (75.0, 2.0)})
    strategies = [fx.strategy("XLA (jit_compile)", 0.22, 0.01, matches=False, max_abs_diff=2e-3)
                  if s.name == "XLA (jit_compile)" else s for s in strategies]
    slow = fx.strategy("model(x) eager", 1234.5, 400.0, first_call_ms=98765.0, calls=2)
    strategies = [dataclasses.replace(slow, measurement=dataclasses.replace(slow.measurement, stopped_early=True))
                  if s.name == "model(x) eager" else s for s in strategies]
    strategies.append(fx.strategy("C++ (TF C API)", available=False, reason="not available: cmake not found"))
    profiles = [fx.profile("predict", SHARES, 60.0, traces_per_call=3, cold_traces=4,
                           top_functions=[fx.top_function("tf.data pipeline", "OwnedIterator.__init__", 120.0,
                                                          "tensorflow/python/data/ops/iterator_ops.py", 700)]),
                fx.profile("predict (compiled)", dict(SHARES, **{"tf.data pipeline": 0.55, "tracing": 0.2}), 75.0),
                fx.profile("tf.function", {"graph execution": 0.9, "other Python": 0.1}, 0.25)]
    report = fx.report(strategies, profiles=profiles, notes=["TensorFlow warned while timing: something"])
    return dataclasses.replace(report, findings=diagnose(report))


REPORTS = {
    "full": _full_report,
    "typical": lambda: (lambda r: dataclasses.replace(r, findings=diagnose(r)))(fx.report(fx.typical_keras3())),
    "nothing measured": lambda: fx.report([fx.strategy("predict", available=False, reason="failed to prepare")]),
}


def _section(text: str, title: str):
    """The lines of a section, from its titled rule to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title + " ─"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


def code_lines(text: str):
    """The lines between the comment lines that fence printed code (terminal.CODE_START / CODE_END)."""
    inside, found = False, set()
    for index, line in enumerate(text.splitlines()):
        if line.startswith("# --- code for "):
            inside = True
        elif line == CODE_END:
            inside = False
        elif inside:
            found.add(index)
    return found


def check_layout(report, text: str, width: int, saved: str = ""):
    """What every rendering must hold: the assertions of issue 11, item 4; code is never wrapped, so
    its lines (and the line saying where the run was saved) may be longer: the terminal folds them."""
    lines = text.splitlines()
    assert text.endswith("\n")
    assert all(line == line.rstrip() for line in lines), "a line ends in a space"
    code = code_lines(text)
    fitted = [line for i, line in enumerate(lines) if i not in code and not line.startswith("Saved in ")]
    assert all(len(line) <= width for line in fitted), max(fitted, key=len)
    assert lines[-1] == verdict(report, width), lines[-1]  # the verdict is the last line...
    assert len(lines[-1]) <= width  # ...and one line
    if saved:
        assert lines[-2].startswith(f"Saved in {saved}/") and not lines[-3].strip()  # where, just above it
    else:
        assert not lines[-2].strip()  # set apart
    rows = views.strategy_rows(report)
    if views.measured(report):
        table = _section(text, "Strategies")
        assert not any("…" in line for line in table), table
        for row in (r for r in rows if r.result in views.measured(report)):
            name = row.result.name
            line = next(line for line in table
                        if re.split(r"\s{2,}", line)[0] in (name, f"{name} (stopped early)", f"{name} (stopped"))
            # Every figure whole: a cut cell would lose its unit or its last digits.
            assert fmt.duration(row.result.measurement.median_s) in line, line
            assert views.versus_predict(report, row.result) in line, line
    if report.profiles:
        table = _section(text, "Where the time goes")
        assert not any("…" in line for line in table), table
        for delta in views.compile_phase_deltas(report):
            if delta.share_before >= 0.05 or delta.share_after >= 0.05:
                assert any(line.startswith(delta.phase) and line.endswith(delta.text) for line in table), \
                    (delta, table)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
@pytest.mark.parametrize("name", REPORTS)
def test_every_width_keeps_every_cell_whole_and_ends_with_the_verdict(name, verbose, width):
    report = REPORTS[name]()
    check_layout(report, render(report, width=width, verbose=verbose), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_recording_console_shows_the_same(width):
    """As rich lays it out on a real console of that width (record=True keeps what was printed)."""
    report = _full_report()
    console = Console(width=width, record=True, file=io.StringIO(), markup=False, color_system=None)
    print_report(report, console=console, saved="runs/tiny")
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
    check_layout(report, text, width, saved="runs/tiny")


def test_narrow_widths_leave_out_low_priority_columns_and_say_so_verbose_stacks_them():
    report = _full_report()
    narrow = render(report, width=80)
    header = _section(narrow, "Strategies")[0].split()
    assert header[:2] == ["strategy", "median"] and "vs" in header and "outputs" in header
    assert "p99" not in header and "first" not in header
    left = [c for c in ("p90", "p99", "n", "first call", "vs fastest") if c.split()[-1] not in header]
    assert f"also: {', '.join(left)} (--verbose)" in " ".join(narrow.split())
    wide = render(report, width=160)
    assert "p99" in _section(wide, "Strategies")[0] and "vs fastest" in _section(wide, "Strategies")[0]
    assert "(--verbose)" not in " ".join(_section(wide, "Strategies"))
    # Verbose at 80 loses nothing: the columns that do not fit come in a second table.
    verbose = render(report, width=80, verbose=True)
    tables = "\n".join(verbose.split("Where the time goes")[0].splitlines())
    for column in ("p99", "first call", "vs fastest", "IQR"):
        assert column in tables
    eager = report.strategy("model(x) eager").measurement
    assert fmt.duration(eager.first_call_s) in tables and fmt.duration(eager.p99_s) in tables


def test_sections_are_titled_and_set_apart():
    text = render(_full_report(), width=80)
    lines = text.splitlines()
    titles = [line.split(" ─")[0] for line in lines if re.match(r"^\S.* ─{3,}$", line)]
    assert titles == ["Strategies", "Where the time goes", "Findings, in the order to act on them (evidence: --verbose)",
                      "Not measured", "Notes"]  # the .prof files: --verbose, and the line saying where the run was saved
    verbose = render(_full_report(), width=80, verbose=True)
    assert "Profiles (kdiag view FILE opens one in snakeviz) ─" in verbose
    for i, line in enumerate(lines):
        if line.split(" ─")[0] in titles:
            assert not lines[i - 1].strip(), f"no blank line before {line}"


def test_default_is_short_and_verbose_has_everything():
    report = _full_report()
    short, full = render(report, width=80), render(report, width=80, verbose=True)
    assert len(short.splitlines()) < len(full.splitlines()) / 2
    typical = dataclasses.replace(report, strategies=fx.typical_keras3())
    typical = dataclasses.replace(typical, findings=diagnose(typical))
    assert len(render(typical, width=80).splitlines()) <= 64  # a small model's run fits a 50-row screen, nearly
    for only_verbose in ("Environment ─", "Model ─", "Top functions of predict", "OwnedIterator.__init__",
                         *report.findings[0].evidence[:1]):
        assert only_verbose not in short and only_verbose in " ".join(full.split()) or only_verbose in full
    # The top finding's advice, and the first snippet, are in both.
    assert " ".join(report.findings[0].advice.split()) in " ".join(short.split())
    snippet = next(f.snippet for f in report.findings if f.snippet)
    assert snippet.splitlines()[0] in short


@pytest.mark.parametrize("case, expected", [
    ("typical", "predict 60 ms · fix: concrete function 200 µs, 300x faster (outputs match) · TFLite: a further "
                "4.00x (needs conversion)"),
    ("predict fastest", "predict 60 ms · no drop-in fix is faster (tf.function 1.17x slower)"),
    ("within the noise", "predict 60 ms · no drop-in fix measurably faster (tf.function within the noise)"),
    ("no predict", "no verdict: predict was not measured with its outputs, so there is nothing to compare with"),
    ("nothing matches", "no verdict: predict's outputs were not checked"),
    ("nothing measured", "no verdict: predict was not measured with its outputs, so there is nothing to compare "
                         "with"),
    ("n=1", "predict 1.64 s (n=1) · concrete function 1.2 s (n=2): not enough calls to compare; rerun with "
            "--time-limit 90"),
])
def test_the_verdict_names_the_drop_in_fix_or_says_what_is_known(case, expected):
    strategies = fx.typical_keras3()
    changes = {}
    if case == "predict fastest":
        strategies = [fx.strategy("predict", 60.0), fx.strategy("tf.function", 70.0)]
    elif case == "within the noise":
        strategies = [fx.strategy("predict", 60.0, 5.0), fx.strategy("tf.function", 59.0, 5.0)]
    elif case == "no predict":
        strategies = [s for s in strategies if not s.name.startswith("predict")]
        strategies = [fx.strategy(s.name, s.measurement.median_s * 1e3, reference="TFLite") for s in strategies]
    elif case == "nothing matches":
        strategies = [fx.strategy("predict", 60.0, matches=None), fx.strategy("tf.function", 1.0, matches=None)]
    elif case == "nothing measured":
        strategies = [fx.strategy("predict", available=False)]
    elif case == "n=1":
        strategies = [fx.strategy("predict", 1640.0, calls=1), fx.strategy("concrete function", 1200.0, calls=2)]
        changes = dict(time_limit_s=60.0, elapsed_s=64.0)
    report = fx.report(strategies, **changes)
    assert verdict(report, 160) == expected
    incomplete = dataclasses.replace(report, incomplete=True)
    assert verdict(incomplete, 160).startswith("incomplete run · ")


def test_the_verdict_and_finding_1_name_the_same_fix():
    report = fx.report(fx.typical_keras3())
    findings = diagnose(report)
    assert findings[0].strategy == "concrete function" and "concrete function" in verdict(report, 80)
    assert "TFLite" not in findings[0].title  # a runtime change is what leaving Keras adds, not the fix


def test_the_verdict_fits_80_columns_by_saying_less():
    report = fx.report(fx.typical_keras3(**{"predict": (1234.0, 2.0), "concrete function": (0.0123, 0.0001)}))
    full = verdict(report, 200)
    assert full == "predict 1.23 s · fix: concrete function 12.3 µs, 100,325x faster (outputs match)"
    assert verdict(report, 70) == "predict 1.23 s · fix: concrete function 12.3 µs, 100,325x faster"
    assert len(verdict(report, 60)) <= 60


def test_prof_files_not_kept_are_not_named():
    report = _full_report()
    gone = dataclasses.replace(report, profiles=[dataclasses.replace(p, prof_path="", cold_prof_path="")
                                                 for p in report.profiles])
    text = render(gone, width=80, verbose=True)
    assert "Profiles (" not in text and "Where the time goes" in text


def test_long_notes_are_clipped_to_two_lines_unless_verbose():
    warning = ("TensorFlow warned while timing: 5 out of the last 13 calls to <function f at 0x7f> triggered "
               "tf.function retracing. Tracing is expensive and the excessive number of tracings could be due to "
               "(1) creating @tf.function repeatedly in a loop, (2) passing tensors with different shapes.")
    report = fx.report(fx.typical_keras3(), notes=[f"{warning} #{i}" for i in range(6)])
    short = _section(render(report, width=80), "Notes (in full: --verbose)")
    assert len(short) == 4 * 2 + 1 and short[-1] == "- 2 more notes: --verbose, or report.md."
    assert all(line.endswith(" …") for line in short[1:8:2])
    full = " ".join(" ".join(_section(render(report, width=80, verbose=True), "Notes")).split())
    assert all(f"{warning} #{i}" in full.replace("- ", "") for i in range(6))


def test_a_rerun_advice_is_never_cut_before_its_value():
    note = ("Time limit 60 s (--time-limit; 0 for none); this run took 64 s. Not started, for want of time: XLA "
            "(jit_compile), SavedModel serve, TFLite. Fewer than 5 timed calls: predict, predict (compiled), model(x) "
            "eager. Rerun with --time-limit 330 to measure it all.")
    report = fx.report(fx.typical_keras3(), notes=[note])
    text = " ".join(" ".join(_section(render(report, width=80), "Notes (in full: --verbose)")).split())
    assert "Rerun with --time-limit 330 to measure it all." in text
