"""A text lint over every output: the terminal, report.md, report.html's text and report.json's strings of
the four examples' run folders (reports/examples/, regenerated with bench/make_example_reports.sh) and of
factory Reports made to provoke the slips issue 19 found:

- a ratio below 1 called "faster", "slower than" or a "floor" ("0.23x faster", "takes 0.04x the C++ floor");
- "floor" for a path that is not the fastest measured;
- a float printed with more than 4 significant digits ("5.41205 s") outside raw data;
- "1 samples", "1 calls" and other plural slips;
- a title whose claim its evidence does not support ("Compute-bound: X is the fastest path measured"
  above a faster XLA; "no measurable effect" beside a change outside the noise; a ratio on too few calls);
- oneDNN's `_Mkl` and the rewrites' `_Fused` kernel names without the plain op beside them.

And every claim waits for its data (issue 18, item 3): no output compares two strategies that
`views.judge` cannot tell apart, nor states a verdict on fewer than 5 calls a side.
"""

from __future__ import annotations

import dataclasses
import html.parser
import json
import re
from pathlib import Path
from typing import Iterable, List

import pytest

import factories as fx
from kdiag import views
from kdiag.analysis.diagnose import diagnose
from kdiag.datamodel.report import Report, read_report
from kdiag.datamodel.strategies import BY_NAME
from kdiag.render import markdown
from kdiag.render.json import render as render_json
from kdiag.render.terminal import render as render_terminal

EXAMPLES = Path(__file__).resolve().parent.parent / "reports" / "examples"
RUN_FOLDERS = sorted(p for p in EXAMPLES.iterdir() if (p / "report.json").is_file()) if EXAMPLES.is_dir() else []

RATIO_BELOW_ONE = re.compile(r"\b0\.\d+x\b[^.;\n]{0,60}?\b(faster|slower than|floor)\b|\btakes 0\.\d+x\b")
FLOAT = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.]*\d*\.\d)")
PLURAL = re.compile(r"\b1 (?:\w+ )?(samples|calls|strategies|layers|ways|cores|runs|ops|threads|seconds|phases|lines|"
                    r"rows)\b"
                    r"|\b(?:[02-9]|\d{2,}|\d{1,3}(?:,\d{3})+) (sample|call|strategy|way|layer|core|phase)\b")
KERNEL = re.compile(r"_(?:Mkl|Fused)\w+")


class _Text(html.parser.HTMLParser):
    """Every text of a page, tooltips included, each element's on its own line."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.parts: List[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag in ("p", "li", "tr", "h1", "h2", "h3", "h4", "title", "summary", "div", "text"):
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_data(self, data):
        self.parts.append(data)


def page_text(page: str) -> str:
    return "".join(_Text(page).parts)


def json_strings(value) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def significant_digits(number: str) -> int:
    digits = number.replace(".", "").lstrip("0")
    return len(digits)


def sentences(text: str) -> List[str]:
    """Sentences, across the lines a terminal or a paragraph wraps them onto."""
    return [s for s in re.split(r"(?<=[.;:])\s+|\n\s*\n", text) if s.strip()]


def lint(text: str, report: Report, raw_data: bool = False) -> List[str]:
    """What is wrong in one output's text: every problem as a short line quoting it."""
    problems = []
    for match in RATIO_BELOW_ONE.finditer(text):
        problems.append(f"a ratio below 1 read as a gain: {match.group(0)!r}")
    fastest = views.fastest_matching(report)
    for sentence in sentences(text):
        sentence = " ".join(sentence.split())
        if re.search(r"\bfloor\b", sentence, re.I) and not re.search(r"not (a|used as the) floor", sentence):
            if fastest is None or fastest.name not in sentence:
                problems.append(f"'floor' for a path that is not the fastest measured: {sentence[:160]!r}")
    if not raw_data:
        for line in text.splitlines():
            if re.search(r"\d+\.\d+\.\d+|samples_s|\bsha\b|0x[0-9a-f]", line):
                continue  # versions, raw samples, addresses
            for match in FLOAT.finditer(line):
                if significant_digits(match.group(1)) > 4:
                    problems.append(f"a float with more than 4 significant digits: {line.strip()[:160]!r}")
    for match in PLURAL.finditer(text):
        problems.append(f"a plural slip: {match.group(0)!r}")
    for match in KERNEL.finditer(text):
        opened = text.rfind("(", 0, match.start())  # "(kernel _MklMatMul, _MklNativeFusedMatMul)"
        if not text[opened + 1:match.start()].lstrip("`").startswith("kernel") or ")" in text[opened:match.start()]:
            problems.append(f"a kernel name without its plain op: {text[max(0, match.start() - 30):match.end()]!r}")
    return problems


def title_problems(report: Report) -> List[str]:
    """Findings whose title claims what their evidence or the report does not support."""
    problems = []
    verdict = views.verdict.verdict(report)
    for finding in report.findings:
        title, evidence = finding.title, " ".join(finding.evidence)
        if title.startswith("Compute-bound") and verdict.classification != "compute-bound":
            problems.append(f"{title!r}: the classification is {verdict.classification}")
        if "fastest path measured" in title:
            named = title.split(":", 1)[1].split(" is the fastest")[0].strip()
            if views.fastest_matching(report) is None or views.fastest_matching(report).name != named:
                problems.append(f"{title!r}: not the fastest measured")
        if "no measurable effect" in title and "outside the noise" in evidence:
            problems.append(f"{title!r} beside a change outside the noise")
        if re.search(r"\d(\.\d+)?x (faster|slower)", title):
            counts = [int(n.replace(",", "")) for n in re.findall(r"\bn=([\d,]+)", evidence)]
            if counts and min(counts) < views.MIN_CALLS_FOR_VERDICT:
                problems.append(f"{title!r}: a ratio on fewer than {views.MIN_CALLS_FOR_VERDICT} calls")
    return problems


def outputs(report: Report) -> dict:
    from kdiag.render import html

    data = json.loads(render_json(report))
    texts = {
        "terminal": render_terminal(report, width=80),
        "terminal --verbose": render_terminal(report, width=80, verbose=True),
        "report.md": markdown.render(report),
        "report.html": page_text(html.render(report)),
        # The strings of report.json that are sentences: findings, notes, reasons, the verdict.
        "report.json": "\n".join(s for s in json_strings({k: data[k] for k in ("verdict", "findings", "notes")})),
    }
    return texts


# --- factory Reports that provoke the slips -------------------------------------------------------


def _with_findings(report: Report) -> Report:
    return dataclasses.replace(report, findings=diagnose(report))


def _real(strategies):
    return [dataclasses.replace(s, snippet=BY_NAME[s.name].snippet) if s.name in BY_NAME else s for s in strategies]


def factory(case: str) -> Report:
    if case == "n=1":
        strategies = [fx.strategy("predict", 1640.0, calls=1), fx.strategy("predict (compiled)", 1700.0, calls=1),
                      fx.strategy("concrete function", 1200.0, calls=2), fx.strategy("TFLite", 22000.0, calls=1)]
        return _with_findings(fx.report(_real(strategies), time_limit_s=60.0, elapsed_s=64.0))
    if case == "equal medians":
        strategies = [fx.strategy(n, 60.0, 1.0) for n in ("predict", "predict (compiled)", "predict_on_batch",
                                                          "tf.function", "TFLite", "C++ (TF C API)")]
        return _with_findings(fx.report(_real(strategies)))
    if case == "slower TFLite":
        # The heavy LSTM: TFLite far slower than every Keras path, C++ too.
        strategies = [fx.strategy("predict", 7600.0, 50.0), fx.strategy("predict (compiled)", 7000.0, 60.0),
                      fx.strategy("model(x) eager", 31000.0, 100.0), fx.strategy("concrete function", 6600.0, 40.0),
                      fx.strategy("TFLite", 36700.0, 100.0), fx.strategy("C++ (TF C API)", 8000.0, 60.0)]
        return _with_findings(fx.report(_real(strategies)))
    if case == "faster XLA":
        # ResNet50-like: compute-bound, XLA faster than the concrete function, eager slower than predict.
        strategies = [fx.strategy("predict", 180.0, 4.0), fx.strategy("predict (compiled)", 182.0, 4.0),
                      fx.strategy("predict_on_batch", 150.0, 3.0), fx.strategy("model(x) eager", 430.0, 9.0),
                      fx.strategy("tf.function", 142.0, 2.0), fx.strategy("concrete function", 140.0, 2.0),
                      fx.strategy("XLA (jit_compile)", 95.0, 2.0), fx.strategy("TFLite", 150.0, 3.0)]
        return _with_findings(fx.report(_real(strategies)))
    assert case == "batch 1"
    model = fx.model_info(batch_size=1, inputs=[fx.InputInfo("x", [1, 224, 224, 3], "float32", "uniform")],
                          training_dependent_layers=["bn (BatchNormalization)", "dropout (Dropout)"],
                          training_true_max_abs_diff=0.7)
    strategies = fx.typical_keras3(**{"model(x) eager": (96.0, 2.0), "predict": (40.0, 1.0),
                                      "XLA (jit_compile)": (40.0, 1.0), "concrete function": (9.7, 0.2)})
    return _with_findings(fx.report(_real(strategies), model=model, batch_size=1))


FACTORIES = ("n=1", "equal medians", "slower TFLite", "faster XLA", "batch 1")


@pytest.mark.parametrize("case", FACTORIES)
def test_no_output_of_a_factory_report_has_a_slip(case):
    pytest.importorskip("matplotlib")
    report = factory(case)
    problems = [f"{name}: {p}" for name, text in outputs(report).items() for p in lint(text, report)]
    problems += title_problems(report)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.skipif(not RUN_FOLDERS, reason="reports/examples/ not generated")
@pytest.mark.parametrize("folder", RUN_FOLDERS, ids=lambda p: p.name)
def test_no_output_of_an_example_run_folder_has_a_slip(folder):
    """The files as shipped (report.md, report.html, report.json) and the terminal rendered from report.json."""
    report = read_report(folder / "report.json")
    data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    texts = {
        "terminal": render_terminal(report, width=80),
        "terminal --verbose": render_terminal(report, width=80, verbose=True),
        "report.md": (folder / "report.md").read_text(encoding="utf-8"),
        "report.html": page_text((folder / "report.html").read_text(encoding="utf-8")),
        "report.json": "\n".join(json_strings({k: data.get(k) for k in ("verdict", "findings", "notes")})),
    }
    problems = [f"{name}: {p}" for name, text in texts.items() for p in lint(text, report)]
    problems += title_problems(report)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("text, slip", [
    ("model(x) eager: median 383 ms, 0.23x faster than predict", "ratio"),
    ("The best Python path, TFLite, takes 0.04x the C++ floor", "ratio"),
    ("this sweep's 5.41205 s budget", "float"),
    ("up to 1 samples", "plural"),
    ("By op type: _MklMatMul 92%", "kernel"),
])
def test_the_lint_catches_what_issue_19_found(text, slip):
    report = fx.report(fx.typical_keras3())
    problems = lint(text, report)
    assert problems and slip in " ".join(problems).replace("a ratio below 1", "ratio").replace(
        "a float", "float").replace("a plural slip", "plural").replace("a kernel name", "kernel")


def test_the_lint_catches_a_floor_that_is_not_the_fastest_and_a_title_it_does_not_support():
    report = fx.report(fx.typical_keras3() + [fx.strategy("C++ (TF C API)", 1.0, 0.01)])
    assert lint("C++ (TF C API) is the floor: 1 ms.", report)
    assert not lint("C++ (TF C API) took 1 ms, 20.0x slower than TFLite (50 µs): not a floor here.", report)
    from kdiag.datamodel.report import Finding

    bogus = dataclasses.replace(report, findings=[Finding(
        "compute-bound", "info", "Compute-bound: concrete function is the fastest path measured", [], "", "")])
    assert len(title_problems(bogus)) == 2


# --- every claim waits for its data ------------------------------------------------------------------

CLAIM = re.compile(r"\d[\d,.]*x (?:faster|slower)|a further \d|fix: ")


def _claims_about(text: str, name: str) -> List[str]:
    """Lines of `text` that state a comparison and name `name`."""
    return [line for line in text.splitlines() if name in line and CLAIM.search(line)]


@pytest.mark.parametrize("case", ["too few calls", "within the noise"])
def test_no_output_states_a_comparison_that_judge_does_not_support(case):
    """predict and concrete function are judged (10 calls each, far apart); TFLite and XLA are not: two
    calls each, or medians within the noise of predict's and the fix's. No output may compare them."""
    pytest.importorskip("matplotlib")
    judged = [fx.strategy("predict", 60.0, 1.0, calls=10), fx.strategy("concrete function", 0.2, 0.01, calls=10)]
    if case == "too few calls":
        unjudged = [fx.strategy("TFLite", 0.05, 0.001, calls=2), fx.strategy("XLA (jit_compile)", 0.1, 0.01, calls=2)]
    else:
        unjudged = [fx.strategy("TFLite", 0.19, 0.05, calls=10), fx.strategy("XLA (jit_compile)", 0.21, 0.05, calls=10)]
    report = _with_findings(fx.report(_real(judged + unjudged)))
    texts = outputs(report)
    fix = report.strategy("concrete function")
    for name in ("TFLite", "XLA (jit_compile)"):
        result = report.strategy(name)
        assert not views.judge(*sorted((result, fix), key=lambda r: -r.median_s)).beyond_noise
        for output, text in texts.items():
            if case == "too few calls":  # against anything: no claim at all
                claims = _claims_about(text, name)
            else:  # judged against predict (far slower), within the noise of the fix: no claim against the fix
                claims = [line for line in text.splitlines() if name in line
                          and re.search(r"a further|(faster|slower) than concrete|over concrete", line)]
            assert not claims, f"{output} compares {name}: {claims[:3]}"
    data = json.loads(render_json(report))["verdict"]
    assert data["fix"]["strategy"] == "concrete function" and data["runtime_gain"] is None


def test_a_verdict_on_one_call_is_no_verdict_in_any_output():
    pytest.importorskip("matplotlib")
    report = factory("n=1")
    for name, text in outputs(report).items():
        assert not CLAIM.search(text), f"{name}: {CLAIM.search(text).group(0)}"
    line = render_terminal(report, width=120).splitlines()[-1]
    assert line == ("predict 1.64 s (n=1) · concrete function 1.2 s (n=2): not enough calls to compare; rerun with "
                    "--time-limit 90")
    assert json.loads(render_json(report))["verdict"]["classification"] == "inconclusive"
