"""The Markdown report: a golden file, GitHub's own renderer (cmarkgfm), and the 65,536 limit.

The golden file tests/golden/report.md is the rendering of `golden_report()` below. After an
intended change to the renderer, regenerate it and review the diff:

    KDIAG_UPDATE_GOLDEN=1 python3 -m pytest tests/test_markdown.py
"""

from __future__ import annotations

import dataclasses
import html.parser
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import factories as fx  # noqa: E402
from kdiag.datamodel.profile import PHASES  # noqa: E402
from kdiag import views  # noqa: E402
from kdiag.render import markdown as md  # noqa: E402
from kdiag.datamodel.report import Finding  # noqa: E402

GOLDEN = HERE / "golden" / "report.md"

cmarkgfm = pytest.importorskip("cmarkgfm")


def to_html(text: str) -> str:
    """As GitHub renders it: GFM with tables; raw HTML kept (GitHub allows <details>)."""
    from cmarkgfm.cmark import Options

    return cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE)


class _Tables(html.parser.HTMLParser):
    """Every <table> as a list of rows, each a list of cell texts; and the <details> seen."""

    def __init__(self):
        super().__init__()
        self.tables = []
        self.details = 0
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "details":
            self.details += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> _Tables:
    parser = _Tables()
    parser.feed(to_html(text))
    return parser


def golden_report():
    """A fixed report: every section has something to show, and some text needs escaping."""
    strategies = fx.typical_keras3(**{"predict": (61.2, 3.1), "predict (compiled)": (63.5, 4.0)})
    strategies = [
        fx.strategy("TFLite", 0.05, 0.002, notes=["warning: tf.lite.Interpreter is deprecated | use LiteRT"])
        if s.name == "TFLite" else
        fx.strategy("XLA (jit_compile)", 0.22, 0.01, matches=False, max_abs_diff=2e-3,
                    detail="output 0 | shape (8, 1)")
        if s.name == "XLA (jit_compile)" else s
        for s in strategies
    ]
    strategies.append(fx.strategy("C++ (TF C API)", available=False, reason="not available: cmake not found"))
    tops = [
        fx.top_function("tf.data pipeline", "OwnedIterator.__init__", 120.0,
                        "tensorflow/python/data/ops/iterator_ops.py", 700),
        fx.top_function("tf.data pipeline", "DatasetV2.map", 80.0, "tensorflow/python/data/ops/dataset_ops.py", 2200),
        fx.top_function("tracing", "func_graph_from_py_func", 150.0, "tensorflow/python/framework/func_graph.py", 900),
        fx.top_function("other Python", "<lambda>", 30.0, "keras/src/utils/traceback_utils.py", 110),
    ]
    shares = {"input handling": 0.02, "tf.data pipeline": 0.41, "tracing": 0.30, "graph execution": 0.06,
              "output conversion": 0.03, "other Python": 0.18}
    compiled_shares = dict(shares, **{"tf.data pipeline": 0.40, "tracing": 0.31})
    profiles = [
        fx.profile("predict", shares, 61.2, inflation=1.7, traces_per_call=3.0, cold_traces=5, top_functions=tops),
        fx.profile("predict (compiled)", compiled_shares, 63.5, inflation=1.65, traces_per_call=3.0, cold_traces=5,
                   top_functions=tops[:2]),
        fx.profile("tf.function", {"graph execution": 0.85, "other Python": 0.15}, 0.25, inflation=1.2, cold_traces=1,
                   retracing_warnings=["5 out of the last 5 calls to <function f> triggered tf.function retracing."]),
    ]
    findings = [
        Finding("predict-overhead", "high", "model.predict takes 306x the time of concrete function per call",
                ["predict: median 61.2 ms per call.", "concrete function: median 200 µs per call."],
                "Call the concrete function instead of model.predict.",
                "fn = serve.get_concrete_function()\nfn(tf.constant(x))", "concrete function", 306.0, True),
        Finding("compile-no-effect", "info", "compile() did not slow predict down measurably",
                ["Not reproduced: compile() changed predict by +3.8% (within the noise of ±11.6%)."],
                "Nothing to change.", ""),
    ]
    # Run in a folder under the home folder, with a warning that names a file in site-packages:
    # report.md shows both redacted.
    run_folder = f"{fx.HOME}/runs/tiny"
    profiles = [dataclasses.replace(p, prof_path=p.prof_path.replace("/runs/tiny", run_folder),
                                    cold_prof_path=p.cold_prof_path.replace("/runs/tiny", run_folder))
                for p in profiles]
    model = fx.model_info(training_dependent_layers=["dropout (Dropout)"], training_true_max_abs_diff=0.042)
    return fx.report(strategies, profiles=profiles, findings=findings, model=model,
                     notes=["C++ (TF C API): not requested <use --cpp>",
                            f"warning: {fx.HOME}/.venv/lib/python3.11/site-packages/keras/src/ops.py:12: "
                            "UserWarning: a warning from a package"],
                     command=f"kdiag inspect --example tiny --out {run_folder}")


def test_golden_file():
    text = md.render(golden_report())
    if os.environ.get("KDIAG_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "re-run with KDIAG_UPDATE_GOLDEN=1 and review the diff"


def test_github_renders_the_tables_and_the_details_blocks():
    report = golden_report()
    text = md.render(report)
    parsed = parse(text)
    narrow = next(t for t in parsed.tables if tuple(t[0]) == md.NARROW_HEADER)
    assert len(narrow) == 1 + len(views.measured(report))  # header + one row per measured strategy
    assert {row[0]: row[-1] for row in narrow[1:]}["XLA (jit_compile)"] == "differ"
    # The full table folded in two, each as narrow as an issue column: the statistics, then the comparisons.
    statistics = next(t for t in parsed.tables if tuple(t[0]) == ("strategy",) + md.STATISTICS)
    full = next(t for t in parsed.tables if tuple(t[0]) == ("strategy", "vs predict", "vs fastest", "outputs"))
    assert len(full) == len(statistics) == len(narrow)
    xla = next(row for row in full if row[0] == "XLA (jit_compile)")
    assert xla[-1] == "differ (max |diff| 2.0e-03): output 0 | shape (8, 1)"  # the escaped | stays in its cell
    phases = next(t for t in parsed.tables if t[0][0] == "phase" and "compile() Δ ms/call" in t[0])
    assert len(phases) == 1 + 8 + 1  # header, every phase, total
    # 63.5 - 61.2 ms is inside the noise of the two timing passes (IQRs 3.1 + 4.0 ms): no change claimed.
    assert phases[-1] == ["total", "61.2", "100%", "63.5", "100%", "~0 (±7.10 ms noise)"]
    environment = next(t for t in parsed.tables if t[0] == ["field", "value"] and t[1][0] == "TensorFlow version")
    assert [row[0] for row in environment[1:]] == list(md.ENVIRONMENT_FIELDS)
    # Folded: each finding's evidence, the full strategies table, not measured, notes, the phases, the
    # tracing, the environment and model, how to run it again, the profiles.
    assert parsed.details == 2 + 8
    assert not [t for t in parsed.tables if t[0] == ["phase", "function", "file:line", "own ms per call"]]
    assert "The top functions per phase are in report.html and report.json" in text


#: Widths of text in GitHub's issue column, over-estimated: 9 px a character (GitHub's 14 px
#: system font averages about 7), 26 px of padding and border per cell.
CHAR_PX, CELL_PX, ISSUE_COLUMN_PX = 9, 26, 780


def test_the_narrow_strategy_table_fits_an_issue_column_without_wrapping():
    # The longest strategy name, a noisy median in seconds and a five-digit speed-up: the widest cells.
    strategies = [fx.strategy("predict", 1234.0, 400.0), fx.strategy("predict (compiled)", 0.0123, 0.004),
                  fx.strategy("XLA (jit_compile)", 1.0, matches=False, max_abs_diff=0.5),
                  fx.strategy("TFLite", 2.0, matches=None)]
    for report in (golden_report(), fx.report(strategies)):
        narrow = next(t for t in parse(md.render(report)).tables if tuple(t[0]) == md.NARROW_HEADER)
        widths = [max(len(row[i]) for row in narrow) for i in range(len(narrow[0]))]
        assert sum(w * CHAR_PX + CELL_PX for w in widths) <= ISSUE_COLUMN_PX, (widths, narrow)


def test_the_environment_has_every_field_of_tensorflows_bug_template():
    env = fx.environment(gpu_models=["NVIDIA H100 80GB HBM3, 81559 MiB"], cuda_build="CUDA 12.5.1, cuDNN 9",
                         gpus=["/physical_device:GPU:0"])
    user_model = fx.model_info(name="net", source="/data/models/net.keras", format="keras",
                               directory="/data/models")
    for model, custom in ((fx.model_info(), "No: kdiag's built-in example tiny"),
                          (user_model, "Yes: the user's own model")):
        table = next(t for t in parse(md.render(fx.report(fx.typical_keras3(), model=model, env=env))).tables
                     if t[0] == ["field", "value"] and t[1][0] == "TensorFlow version")
        rows = dict(table[1:])
        assert rows["TensorFlow installed from"] == "binary (pip, tensorflow)"
        assert rows["Custom code"] == custom
        assert rows["OS platform and distribution"].startswith("Debian GNU/Linux 12 (bookworm); Linux-")
        assert rows["NumPy version"] == "2.4.6"
        assert rows["CUDA/cuDNN version"].startswith("CUDA 12.5.1, cuDNN 9")
        assert rows["GPU model and memory"] == "NVIDIA H100 80GB HBM3, 81559 MiB"


def test_a_report_saved_before_the_template_fields_says_not_recorded():
    old = fx.environment(os_distribution="", tensorflow_install="", numpy="", home="", python_paths=[])
    table = next(t for t in parse(md.render(fx.report(fx.typical_keras3(), env=old))).tables
                 if t[0] == ["field", "value"] and t[1][0] == "TensorFlow version")
    rows = dict(table[1:])
    assert rows["TensorFlow installed from"] == rows["NumPy version"] == "not recorded"
    assert rows["OS platform and distribution"] == old.os


def _report_from_home(redact=True):
    """A user model in /home/alice/Projects/alice-secret/, run into a folder under home, with paths
    of site-packages in a warning, a failure reason and a top function's file."""
    home = fx.HOME
    folder = f"{home}/Projects/alice-secret"
    site = f"{home}/.venv/lib/python3.11/site-packages"
    model = fx.model_info(name="net", source=f"{folder}/net.keras", format="keras", directory=folder)
    strategies = fx.typical_keras3()
    strategies[-1] = fx.strategy("TFLite", available=False,
                                 reason=f"failed to prepare: OSError: {site}/tensorflow/lite/x.so: cannot open")
    run = f"{home}/runs/net-1"
    profiles = [dataclasses.replace(fx.profile("predict", {"other Python": 1.0}, 60.0),
                                    prof_path=f"{run}/predict.prof", cold_prof_path=f"{run}/predict.cold.prof")]
    report = fx.report(strategies, profiles=profiles, model=model,
                       notes=[f"warning: {site}/keras/src/saving/x.py:3: UserWarning: old file"],
                       command=f"kdiag inspect {folder}/net.keras --out {run}")
    return dataclasses.replace(report, settings=dataclasses.replace(report.settings, redact_paths=redact))


def test_report_md_shows_no_local_path_and_names_the_redacted_prof_copies():
    text = md.render(_report_from_home())
    assert "alice" not in text and "site-packages" not in text and "/home/" not in text
    assert "\nkdiag inspect <model-dir>/net.keras --out ~/runs/net-1\n```" in text
    assert "`<model-dir>/net.keras` (keras)" in text
    assert "&lt;python&gt;/keras/src/saving/x\\.py:3" in text or "&lt;python&gt;/keras/src/saving/x.py:3" in text
    assert "kdiag view ~/runs/net-1/redacted/predict.prof" in text  # ~ outside quotes: the shell expands it
    assert "These are the copies in `redacted/`" in text


def test_no_redact_keeps_the_paths_and_names_the_original_prof_files():
    report = _report_from_home(redact=False)
    text = md.render(report)
    assert f"{fx.HOME}/Projects/alice-secret/net.keras" in text and "site-packages" in text
    assert f"kdiag view {fx.HOME}/runs/net-1/predict.prof" in text and "redacted/" not in text
    # Redacting a --no-redact run afterwards hides the paths, but it wrote no redacted copies to name.
    again = md.render(report, redact=True)
    assert "alice" not in again and "redacted/" not in again and "kdiag view ~/runs/net-1/predict.prof" in again


@pytest.mark.parametrize("text, expected", [
    ("/home/alice/x /home/alicex/y /a/home/alice/z", "~/x /home/alicex/y /a/home/alice/z"),
    ("'/home/alice' (/home/alice/Projects/alice-secret/m.keras)", "'~' (<model-dir>/m.keras)"),
    ("file:///home/alice/.venv/lib/python3.11/site-packages/tf", "file://<python>/tf"),
    ("/usr/lib/python3.11/json/x.py /usr/lib/x86_64/libc.so", "<python>/json/x.py /usr/lib/x86_64/libc.so"),
])
def test_paths_are_replaced_only_whole_and_the_most_specific_first(text, expected):
    from kdiag.datamodel.redaction import Redactor

    assert Redactor.for_report(_report_from_home()).redact(text) == expected


def test_text_that_looks_like_html_is_shown_not_swallowed():
    rendered = to_html(md.render(golden_report()))
    assert "&lt;function f&gt; triggered tf.function retracing" in rendered
    assert "not requested &lt;use --cpp&gt;" in rendered


def test_sections_the_issue_needs_are_there():
    text = md.render(golden_report())
    for needle in ("\nkdiag inspect --example tiny --out ~/runs/tiny\n```",
                   "ms per call are the profiled shares × the unprofiled median",
                   "predict: cProfile made the calls 1.70x slower; predict (compiled): cProfile made the calls 1.65x slower",
                   "```python\nfn = serve.get_concrete_function()\nfn(tf.constant(x))\n```",
                   'pip install "tensorflow==2.21.0" "keras==3.15.0"',
                   "kdiag view ~/runs/tiny/redacted/predict.prof", "kdiag view ~/runs/tiny/redacted/predict.cold.prof",
                   "| C++ (TF C API) | not available: cmake not found |"):
        assert needle in text
    assert "Shortened" not in text


def _huge_report(strategies=400, top_functions=300):
    names = [f"strategy {i:03d} | variant" for i in range(strategies)]
    results = [fx.strategy("predict", 60.0, 1.0)] + [
        fx.strategy(n, 1.0 + i / 100, 0.01, notes=[f"warning: something long {'x' * 80}"]) for i, n in enumerate(names)
    ]
    tops = [fx.top_function(PHASES[i % len(PHASES)], f"module.function_{i}_{'y' * 40}", 1.0 + i,
                            f"keras/src/deep/path/{'z' * 30}/file_{i}.py", i) for i in range(top_functions)]
    profiles = [fx.profile(scenario, {"tf.data pipeline": 0.5, "other Python": 0.5}, 60.0, top_functions=tops)
                for scenario in ("predict", "predict (compiled)", "tf.function")]
    findings = [Finding("noisy", "low", "Noisy", [f"evidence line {i} {'e' * 60}" for i in range(300)], "Re-run.", "")]
    return fx.report(results, profiles=profiles, findings=findings)


def test_a_huge_report_stays_under_githubs_limit_and_says_what_it_left_out():
    report = _huge_report()
    text = md.render(report)
    assert len(text) <= md.GITHUB_LIMIT
    assert "Shortened" in text and "left out" in text
    parsed = parse(text)  # still well-formed: tables parse, no <details> left open
    assert any(t[0][:2] == ["strategy", "median"] for t in parsed.tables)
    assert text.count("<details>") == text.count("</details>")


def test_thousands_of_top_functions_leave_report_md_short():
    report = fx.report(fx.typical_keras3(), profiles=[
        fx.profile("predict", {"other Python": 1.0}, 60.0,
                   top_functions=[fx.top_function("other Python", f"f{i}_{'q' * 60}", 1.0, f"a/{'p' * 60}.py", i)
                                  for i in range(2000)]),
    ])
    text = md.render(report)
    assert len(text) <= 20_000 and "Shortened" not in text
    strategies = next(t for t in parse(text).tables if t[0][:2] == ["strategy", "median"])
    assert len(strategies) == 1 + len(views.measured(report))  # every strategy still listed


def test_a_small_limit_shortens_tables_and_lists_and_says_so():
    text = md.render(_huge_report(strategies=60, top_functions=0), limit=20_000)
    assert len(text) <= 20_000
    assert "left out" in text and "measured strategies" in text and "more (report.json has them all)" in text


def test_the_last_resort_cut_closes_fences_and_details():
    text = "# t\n\n<details><summary>s</summary>\n\n```sh\n" + "echo x\n" * 5000 + "```\n\n</details>\n"
    cut = md.hard_cut(text, 4000)
    assert len(cut) <= 4000
    assert cut.count("```") % 2 == 0 and cut.count("<details>") == cut.count("</details>")
    assert "Cut here" in cut
    huge_command = fx.report(fx.typical_keras3(), command="kdiag inspect " + "a" * 70_000)
    assert len(md.render(huge_command)) <= md.GITHUB_LIMIT


def test_empty_report_renders():
    text = md.render(fx.report([]))
    assert "No strategy was measured." in text and "kdiag found nothing to report" in text


def test_renderer_and_diagnosis_modules_import_neither_tensorflow_nor_rich():
    code = ("import sys; import kdiag.render.markdown, kdiag.analysis.diagnose, kdiag.analysis.compare; "
            "bad = [m for m in ('tensorflow', 'keras', 'rich') if m in sys.modules]; "
            "sys.exit(', '.join(bad) or None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_reference_and_unchecked_outputs_cells():
    strategies = [fx.strategy("predict", 60.0), fx.strategy("tf.function", 1.0, matches=None)]
    rows = next(t for t in parse(md.render(fx.report(strategies))).tables if t[0][0] == "strategy")
    assert {row[0]: row[-1] for row in rows[1:]} == {"predict": "reference", "tf.function": "not checked"}


def test_legacy_keras_reproduction_sets_the_environment_variable():
    report = fx.report(fx.typical_keras3(), env=fx.environment(legacy_keras=True, keras="2.21.0"))
    text = md.render(report)
    assert '"tf-keras==2.21.0"' in text and "TF_USE_LEGACY_KERAS=1 kdiag inspect --example tiny" in text


def test_golden_report_findings_are_shown_in_order():
    report = golden_report()
    text = md.render(report)
    assert text.index("### 1. model.predict takes 306x") < text.index("### 2. compile() did not slow")
    assert "**high** · `predict-overhead` · measured speed-up 306x with concrete function (outputs match)" in text


#: GitHub's issue column, in px, and what fits in it: code at 12 px monospace is about 7.2 px a character
#: (88 characters fit, at 13.6 px about 8.2); a table as wide as its widest unbreakable words, at the
#: over-estimate above (9 px a character, 26 px a cell).
ISSUE_COLUMN = 746
CODE_LINE = 88
EXAMPLES = HERE.parent / "reports" / "examples"


def _widest_blocks(text: str):
    """(the longest line of a fenced block, the widest table in px) of a Markdown text."""
    longest, fence = 0, None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = None if fence else line
            continue
        if fence:
            longest = max(longest, len(line))
    widest = 0
    for table in parse(text).tables:
        columns = len(table[0])
        words = [max((len(word) for row in table for word in (row[i] if i < len(row) else "").split()), default=0)
                 for i in range(columns)]
        widest = max(widest, sum(w * CHAR_PX + CELL_PX for w in words))
    return longest, widest


def _md_cases():
    cases = {"golden": md.render(golden_report())}
    for name in ("tiny", "mnist-softmax", "mnist-cnn", "lstm"):
        path = EXAMPLES / name / "report.md"
        if path.is_file():
            cases[f"example {name}"] = path.read_text(encoding="utf-8")
    return cases


@pytest.mark.parametrize("case", list(_md_cases()))
def test_no_block_is_wider_than_an_issue_column(case):
    """The TFLite snippet and the op table scrolled sideways in a 746 px issue column: code lines are now
    at most 88 characters by construction, and every table is as narrow as its words allow."""
    longest, widest = _widest_blocks(_md_cases()[case])
    assert longest <= CODE_LINE
    assert widest <= ISSUE_COLUMN


@pytest.mark.parametrize("case", [c for c in _md_cases() if c.startswith("example")])
def test_an_example_report_md_is_under_20k_characters_and_opens_with_its_summary(case):
    text = _md_cases()[case]
    assert len(text) < 20_000
    summary = text[:text.index("## Findings")]
    for part in ("**Environment:**", "**Current behaviour:**", "**Expected behaviour:**", "**Reproduce**"):
        assert part in summary
    assert summary.count("\n") < 80  # a screen or two, the repro included


@pytest.mark.parametrize("command", [
    "kdiag inspect --example mnist-softmax --cpp --out reports/examples/mnist-softmax --format markdown",
    "kdiag inspect '/home/a b/a model with spaces in its name, long enough to pass the width of a line.keras' "
    "--out 'x y' --budget 2",
    "kdiag inspect \"it's here\" --strategies predict,concrete,tflite,xla,savedmodel,tf-function,eager --time-limit 0",
])
def test_a_long_command_is_broken_at_spaces_outside_quotes_and_runs_as_one(command):
    import shlex

    from kdiag.views.sections import shell_lines

    lines = shell_lines(command)
    long = [line for line in lines.splitlines() if len(line) > 88]
    assert all(len(shlex.split(line.rstrip(" \\"))) == 1 for line in long), long  # only a word longer than a line
    assert shlex.split(lines.replace("\\\n", " ")) == shlex.split(command)


def test_a_long_graph_node_name_is_shown_by_its_last_segments():
    from kdiag.views.sections import Cell

    long = Cell("lstm_1/lstm_1_2/while/body/_44/lstm_1/lstm_1_2/while/lstm_cell_1/Sigmoid_2", code=True)
    assert md._node_name(long).text == "…/while/lstm_cell_1/Sigmoid_2"
    assert md._node_name(Cell("lstm/while/MatMul", code=True)).text == "lstm/while/MatMul"
