"""`kdiag inspect --tf` and `kdiag bisect`: orchestration, rounds, merging, findings, rendering, the search.

No download: the releases are the running interpreter under made-up names (versions_fakes.FakeReleases)
and, but for one slow end-to-end test, the child runs are FakeRuns returning factory Reports.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import zipfile
from pathlib import Path

import pytest

import factories as fx
from checks import assert_refused
from kdiag.cli import Env, main
from kdiag import views
from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.measurement import Measurement
from kdiag.datamodel.report import Report, read_report
from kdiag.datamodel.versions import BisectProbe, BisectRequest, parse_tf_versions
from kdiag.errors import KdiagError
from kdiag.render import render
from kdiag.steps import bisect as bisect_
from kdiag.steps import rounds as rounds_
from kdiag.steps import tf_versions as tf_versions_
from kdiag.steps.budget import Budget
from kdiag.steps.rounds import Column, plan_more
from kdiag.steps.state import RunInterrupted
from kdiag.versions.pooling import pool_measurements, pool_reports, pool_strategy
from kdiag.views import sections
from kdiag.views import versions as vv
from versions_fakes import FakeReleases, FakeRuns, arg

NAMES = {"2.15": "2.15.1", "2.16": "2.16.2", "installed": "2.21.0", "nightly": "2.23.0.dev20261026"}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run_cli(*argv):
    env = Env(stdout=io.StringIO(), stderr=io.StringIO())
    code = main([str(a) for a in argv], env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


def compare(tf, runs: FakeRuns, provider=None, out_dir=None, time_limit_s=60.0, model=None, **config):
    config = RunConfig(example=None if model else "tiny", model=model, tf_versions=tuple(tf),
                       time_limit_s=time_limit_s, command="kdiag inspect --tf " + ",".join(tf), **config)
    return tf_versions_.run(config, provider=provider or FakeReleases(NAMES), run_child=runs, out_dir=out_dir)


def version_rows(report):
    """The version table (the side-by-side section's first table) as {strategy: [cell texts]}, and its headers."""
    table = sections.side_by_side(report).subsections[0].tables[0]
    return {row[0].text: [c.text for c in row[1:]] for row in table.rows}, [c.header for c in table.columns]


def moves(report):
    runs = [run for run in views.side_by_side(report) if run.report is not None]
    return [vv.phase_move(runs[0], run).text for run in runs[1:]]


# --- the --tf option ------------------------------------------------------------------------------


def test_tf_entries_are_checked_in_one_line():
    assert parse_tf_versions(" 2.15, installed ,NIGHTLY,2.16.2") == ("2.15", "installed", "nightly", "2.16.2")
    for bad, words in [("2.x", "not a TensorFlow release"), ("2.15,2.15", "twice"), ("", "1 to 8"),
                       (",".join(f"2.{n}" for n in range(9)), "1 to 8")]:
        with pytest.raises(KdiagError, match=words):
            parse_tf_versions(bad)


@pytest.mark.parametrize("extra, words", [
    (["--tf", "2.15", "--keras", "both"], "--tf and --keras"),
    (["--tf", "2.15", "--cpp"], "--tf and --cpp"),
    (["--tf", "2.15;rm"], "not a TensorFlow release"),
    (["--save-inputs", "batch.txt"], ".npz"),
])
def test_bad_tf_options_are_refused_before_anything_runs(extra, words):
    assert_refused(run_cli("inspect", "--example", "tiny", *extra), words)


def test_an_in_memory_model_cannot_run_under_other_releases():
    with pytest.raises(KdiagError, match="needs a model file"):
        RunConfig(model=object(), tf_versions=("2.15",))


# --- rounds and merging ---------------------------------------------------------------------------


def test_releases_take_turns_and_every_run_gets_the_same_batch_and_options(tmp_path):
    runs = FakeRuns({"2.15.1": 38.0, "2.16.2": 68.0})
    report = compare(["2.15", "2.16"], runs, out_dir=tmp_path / "run", budget_s=0.5, min_calls=7, time_limit_s=45.0)
    assert runs.order[:4] == ["2.15.1", "2.16.2", "2.15.1", "2.16.2"]  # A, B, A, B
    assert len(runs.order) % 2 == 0 and 4 <= len(runs.order) <= 2 * rounds_.MAX_ROUNDS
    first, *later = [argv for _, argv in runs.runs]
    saved = arg(first, "--save-inputs")
    assert saved == str(tmp_path / "run" / "inputs.npz") and arg(first, "--inputs") is None
    assert all(arg(argv, "--inputs") == saved for argv in later)  # one batch for every run
    assert all(arg(argv, "--budget") == "0.5" and arg(argv, "--min-calls") == "7" for argv in runs.runs[0][1:])
    assert all(arg(argv, "--time-limit") == "45.0" for _, argv in runs.runs)  # the same limit per release
    full = [argv for _, argv in runs.runs[:2]]
    timing = [argv for _, argv in runs.runs[2:]]
    assert all("--no-profile" not in argv and arg(argv, "--out").endswith(("tf-2.15.1", "tf-2.16.2")) for argv in full)
    assert all({"--no-profile", "--no-sweeps", "--no-memory-loop", "--no-ops"} <= set(argv) for argv in timing)
    assert all("--tf" not in argv and "--keras" not in argv for _, argv in runs.runs)
    comparison = report.tf_versions
    assert [r.tensorflow for r in comparison.runs] == ["2.15.1", "2.16.2"]
    assert [r.rounds for r in comparison.runs] == [comparison.rounds] * 2 == [len(runs.order) // 2] * 2
    assert comparison.runs[0].reference and comparison.runs[0].report is None  # the enclosing report is 2.15.1's
    assert report.environment.tensorflow == "2.15.1"
    nested = comparison.runs[1].report
    predict = nested.strategy("predict").measurement
    assert predict.count == 5 * comparison.rounds  # every run's calls pooled
    assert predict.median_s == pytest.approx(0.068)
    assert report.settings.command == "kdiag inspect --tf 2.15,2.16"
    assert all(r.notes[0].startswith("Timed calls pooled over") for r in (report, nested))


def test_a_slower_release_is_a_finding_naming_the_phase_the_time_moved_into():
    runs = FakeRuns({"2.15.1": 38.0, "2.16.2": 68.0}, tfdata={"2.15.1": 0.3, "2.16.2": 0.6})
    report = compare(["2.15", "2.16"], runs)
    finding = next(f for f in report.findings if f.id == "tf-versions")
    # tf.data: 0.3 x 38 ms = 11.4 ms under 2.15.1, 0.6 x 68 ms = 40.8 ms under 2.16.2.
    assert finding.title == ("predict is 1.79x slower under 2.16.2 than 2.15.1 beyond the noise; the time moved "
                             "into tf.data pipeline (+29.4 ms per call)")
    assert finding.severity == "low"
    assert finding.strategy == "concrete function" and finding.outputs_match is True  # the drop-in fix, measured
    assert "pip install tensorflow-cpu==2.15.1" in finding.advice
    assert "kdiag bisect --example tiny --good 2.15.1 --bad 2.16.2" in finding.advice
    assert moves(report) == ["tf.data pipeline +29.4 ms per call from TF 2.15.1 to TF 2.16.2"]
    assert "tf.data pipeline +29.4 ms per call from TF 2.15.1 to TF 2.16.2" in " ".join(
        finding.evidence)
    assert [f.id for f in report.findings].index("tf-versions") <= 2  # the user's own path comes early


def test_releases_within_the_noise_or_with_too_few_calls_get_no_ratio():
    same = compare(["2.15", "2.16"], FakeRuns({"2.15.1": 40.0, "2.16.2": 40.2}, iqr_ms=2.0))
    finding = next(f for f in same.findings if f.id == "tf-versions")
    assert "differ by less than the noise" in finding.title and finding.severity == "info"
    rows, headers = version_rows(same)
    assert headers[-1] == "TF 2.16.2 vs TF 2.15.1"
    assert rows["predict"][0] == "40 ms" and rows["predict"][2] == "40.2 ms"
    assert rows["predict"][4].startswith("within the noise (±")
    few = compare(["2.15", "2.16"], FakeRuns({"2.15.1": 40.0, "2.16.2": 80.0}, calls=1), time_limit_s=0)
    # Three rounds of one call each: 3 calls a side, below the 5 a verdict needs.
    finding = next(f for f in few.findings if f.id == "tf-versions")
    assert finding.title.startswith("Not enough calls") and "slower" not in finding.title
    rows, _ = version_rows(few)
    assert rows["predict"][2:] == ["80 ms", "3", "no verdict (n=3 and n=3; at least 5 each)"]


def test_a_release_that_cannot_read_the_file_gets_a_column_saying_why_and_the_others_run(tmp_path, monkeypatch):
    model = tmp_path / "k3.keras"  # what Keras 3 writes: metadata.json says 3.x
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
    runs = FakeRuns({"2.16.2": 60.0, "2.21.0": 65.0})
    config = RunConfig(model=str(model), tf_versions=("2.15", "2.16", "installed"), command="kdiag inspect")
    monkeypatch.setattr(tf_versions_, "check_model", lambda config: None)  # a stub file: safety has its own tests
    report = tf_versions_.run(config, provider=FakeReleases(NAMES), run_child=runs)
    assert "2.15.1" not in runs.order  # known not to load: no child started for it
    refused = report.tf_versions.runs[0]
    assert refused.report is None and not refused.reference
    assert "Keras 2, which cannot read a .keras file saved by Keras 3.15.1" in refused.reason
    assert "model.export('saved_model_dir')" in refused.reason  # names the format that would work
    assert report.tf_versions.runs[1].reference and report.environment.tensorflow == "2.16.2"
    rows, headers = version_rows(report)
    assert headers[1] == "TensorFlow 2.15.1 (Keras 2)" and all(cells[0] == "not measured" for name, cells in
                                                                 rows.items() if name != "compile() on predict")
    assert any("TensorFlow 2.15.1: tensorflow-cpu" in line and "cannot read" in line for line in vv.release_lines(report))


def test_a_child_refusal_is_that_release_s_column_and_all_refused_is_one_line():
    runs = FakeRuns({"2.16.2": 60.0}, refuse={"2.15.1": "k.h5 could not be loaded by Keras 2.15.0 (TypeError: x)"})
    report = compare(["2.15", "2.16"], runs)
    assert report.tf_versions.runs[0].reason == "k.h5 could not be loaded by Keras 2.15.0 (TypeError: x)"
    assert runs.order.count("2.15.1") == 1  # refused once, then left out of the rounds
    nobody = FakeRuns({}, refuse={"2.15.1": "nope", "2.16.2": "nope either"})
    with pytest.raises(KdiagError, match="no TensorFlow release could measure the model .*2.15.1: nope"):
        compare(["2.15", "2.16"], nobody)


def test_a_hostile_refusal_is_one_inert_line_in_every_output():
    """A child's refusal quotes the model file: no control character reaches the terminal, and Markdown shows it
    in a code span, where it forms no image, link or mention."""
    hostile = "layer \x1b]0;owned\x07 ![x](https://tracker.example/p.png) @maintainer\nsecond line"
    report = compare(["2.15", "2.16"], FakeRuns({"2.16.2": 60.0}, refuse={"2.15.1": hostile}))
    reason = report.tf_versions.runs[0].reason
    assert "\x1b" not in reason and "\n" not in reason and "\\x1b" in reason  # shown as escapes, one line
    terminal = render(report, "terminal", width=200, verbose=True)
    assert "\x1b" not in terminal and "\x07" not in terminal
    line = next(line for line in render(report, "markdown").splitlines() if "tracker.example" in line)
    cmarkgfm = pytest.importorskip("cmarkgfm")
    html = cmarkgfm.github_flavored_markdown_to_html(line)
    assert "not measured: layer \\x1b]0;owned\\x07" in html  # the escapes read as text, on one line
    assert "<img" not in html and "<a " not in html and "@maintainer" not in html  # no image, link or mention


def test_ctrl_c_keeps_the_runs_that_finished(tmp_path):
    runs = FakeRuns({"2.15.1": 38.0, "2.16.2": 68.0}, interrupt_at=3)
    with pytest.raises(RunInterrupted) as stopped:
        compare(["2.15", "2.16"], runs, out_dir=tmp_path / "run")
    report = stopped.value.report
    assert report.incomplete and report.tf_versions.runs[1].report.strategy("predict").measurement.count == 5
    assert "Interrupted" in report.tf_versions.notes[0]
    with pytest.raises(KeyboardInterrupt) as nothing:
        compare(["2.15", "2.16"], FakeRuns({}, interrupt_at=1))
    assert not isinstance(nothing.value, RunInterrupted)  # nothing was measured: nothing to keep


def test_an_environment_that_cannot_be_built_refuses_before_any_run():
    runs = FakeRuns({})
    with pytest.raises(KdiagError, match="2.16.2: its environment could not be built .*No space left"):
        compare(["2.15", "2.16"], runs, provider=FakeReleases(NAMES, unbuildable=["2.16.2"]))
    assert runs.runs == []


def budget_at(limit_s, spent_s):
    """A Budget of `limit_s` seconds of which `spent_s` have passed, on a fake clock."""
    now = [0.0]
    budget = Budget(limit_s, clock=lambda: now[0], reserve_s=0.0)
    now[0] = spent_s
    return budget


def test_rounds_continue_while_the_budget_allows_and_always_alternate_twice():
    columns = [Column(None, "a", seconds=[10.0, 4.0]), Column(None, "b", seconds=[12.0, 5.0])]
    assert plan_more(1, columns, budget_at(1.0, 500.0))  # the second round always runs
    assert plan_more(2, columns, budget_at(40.0, 30.0))  # 30 + 9 <= 40
    assert not plan_more(2, columns, budget_at(40.0, 32.0))
    assert not plan_more(rounds_.MAX_ROUNDS, columns, budget_at(1e9, 0.0))
    assert plan_more(2, columns, budget_at(0, 1e9)) and not plan_more(3, columns, budget_at(0, 0.0))


# --- pooling ------------------------------------------------------------------------------------------


def test_pooled_statistics_are_those_of_every_call():
    a = Measurement.from_samples("predict", 0.5, [0.010, 0.011, 0.012])
    b = Measurement.from_samples("predict", 0.4, [0.020, 0.021])
    pooled = pool_measurements([a, b])
    exact = Measurement.from_samples("predict", 0.5, [0.010, 0.011, 0.012, 0.020, 0.021])
    assert (pooled.count, pooled.median_s, pooled.iqr_s, pooled.first_call_s) == \
           (5, exact.median_s, exact.iqr_s, 0.5)


def test_thinned_runs_pool_with_exact_counts_extremes_and_mean_and_weighted_percentiles():
    # 10,000 calls at 1 ms kept as 2,000 samples, and 1,000 calls at 3 ms kept whole: of all 11,000 calls,
    # 9.1% took 3 ms, so p90 is 1 ms and p95 3 ms.
    many = Measurement.from_samples("f", 0.1, [0.001] * 10_000)
    few = Measurement.from_samples("f", 0.1, [0.003] * 1_000)
    assert many.thinned and not few.thinned
    pooled = pool_measurements([many, few])
    assert pooled.count == 11_000 and pooled.median_s == pytest.approx(0.001)
    assert pooled.max_s == 0.003 and pooled.mean_s == pytest.approx((10 + 3) / 11_000)
    assert pooled.p90_s == pytest.approx(0.001)
    assert pooled.p99_s == pytest.approx(0.003)
    naive = Measurement.from_samples("f", 0.1, list(many.samples_s) + list(few.samples_s))
    assert naive.p90_s == pytest.approx(0.003)  # unweighted, the kept samples would make a third of calls slow


def test_outputs_match_only_when_every_run_matched():
    ok = fx.strategy("tf.function", 1.0, matches=True, max_abs_diff=1e-7)
    bad = fx.strategy("tf.function", 1.0, matches=False, max_abs_diff=0.5)
    pooled = pool_strategy([ok, bad, ok])
    assert pooled.outputs.matches is False and pooled.outputs.max_abs_diff == 0.5
    assert pooled.measurement.count == 15


def test_phases_are_rescaled_to_the_pooled_median():
    one = fx.report([fx.strategy("predict", 40.0)], [fx.profile("predict", {"tf.data pipeline": 0.5}, 40.0)])
    two = fx.report([fx.strategy("predict", 60.0)])
    pooled = pool_reports([one, two])
    median = pooled.strategy("predict").median_s
    assert 0.040 < median < 0.060
    assert pooled.profile("predict").phase("tf.data pipeline").per_call_s == pytest.approx(0.5 * median)
    assert "pooled over 2 runs" in pooled.notes[0]


# --- the Report, its JSON and its renderings --------------------------------------------------------


def both_releases(nightly: bool = False) -> Report:
    tf = ["2.15", "2.16"] + (["nightly"] if nightly else [])
    return compare(tf, FakeRuns({"2.15.1": 38.0, "2.16.2": 68.0, "2.23.0.dev20261026": 70.0},
                                tfdata={"2.15.1": 0.3, "2.16.2": 0.6}))


def three_releases() -> Report:
    """--tf 2.15,2.16,nightly where 2.15.1 refused the file: a column saying why, two measured and judged."""
    runs = FakeRuns({"2.16.2": 68.0, "2.23.0.dev20261026": 41.0}, tfdata={"2.16.2": 0.6, "2.23.0.dev20261026": 0.3},
                    refuse={"2.15.1": "k.h5 could not be loaded by Keras 2.15.0 (TypeError: batch_shape)"})
    with tempfile.TemporaryDirectory() as folder:  # a run folder: the .prof files are named, as the CLI keeps them
        return compare(["2.15", "2.16", "nightly"], runs, out_dir=Path(folder) / "run")


def test_a_tf_report_survives_the_json_round_trip_and_old_reports_still_load():
    report = both_releases()
    data = json.loads(render(report, "json"))
    assert data["tf_versions"]["runs"][1]["report"]["environment"]["tensorflow"] == "2.16.2"
    assert data["tf_versions"]["runs"][0]["report"] is None and data["tf_versions"]["runs"][0]["reference"]
    assert data["tf_versions"]["runs"][1]["environment"]["size_bytes"] == 1_300_000_000
    assert Report.from_dict(data) == report
    data.pop("tf_versions")  # a report.json written before the field existed
    assert Report.from_dict(data).tf_versions is None


def test_the_version_table_is_the_side_by_side_section_every_renderer_lays_out():
    report = both_releases()
    rows, headers = version_rows(report)
    assert headers == ["strategy", "TensorFlow 2.15.1 (Keras 2.15.0)", "n", "TensorFlow 2.16.2 (Keras 3.15.1)", "n",
                       "TF 2.16.2 vs TF 2.15.1"]
    calls = str(5 * report.tf_versions.rounds)
    assert rows["predict"] == ["38 ms", calls, "68 ms", calls, "TF 2.16.2 1.79x slower"]
    assert rows["compile() on predict"][0].startswith("within the noise (±")
    phases = sections.side_by_side(report).subsections[1]
    assert phases.title == "predict's phases under each release"
    tfdata = next(row for row in phases.tables[0].rows if row[0].text == "tf.data pipeline")
    assert [c.text for c in tfdata[1:]] == ["11.4", "30%", "40.8", "60%", "+29.4 ms"]
    terminal = render(report, "terminal", width=120)
    markdown = render(report, "markdown")
    html = render(report, "html")
    for text in (terminal, markdown, html):
        assert "TensorFlow releases side by side" in text
        assert "1.79x slower" in text and "tf.data pipeline +29.4 ms per call from TF 2.15.1 to TF 2.16.2" in text
        assert "built fresh in 27 s" in text and "reused from the cache" in text
    assert f"| predict | 38 ms | {calls} | 68 ms | {calls} | TF 2.16.2 1.79x slower |" in markdown
    assert "| Reproduced with TensorFlow Nightly | No: not run here" in markdown


def test_markdown_fills_the_nightly_field_when_nightly_ran():
    markdown = render(both_releases(nightly=True), "markdown")
    assert "| Reproduced with TensorFlow Nightly | Yes: tf-nightly 2.23.0.dev20261026, measured side by side" \
           in markdown
    assert "TensorFlow 2.23.0.dev20261026 (nightly, Keras 3.15.1)" in markdown
    assert "Nightly" not in render(fx.report(fx.typical_keras3()), "markdown")  # single runs are unchanged


# --- bisect: the search --------------------------------------------------------------------------------


def fake_probe(releases, first_slow=None, unjudged=()):
    def probe(index):
        release = releases[index]
        if release in unjudged:
            return BisectProbe(release, None, None, None, "no verdict")
        slow = first_slow is not None and index >= releases.index(first_slow)
        return BisectProbe(release, None, None, slow, "slow" if slow else "not slow")
    return probe


@pytest.mark.parametrize("n", [2, 3, 5, 10, 17])
def test_bisect_finds_any_first_slow_release_within_the_promised_environments(n):
    releases = [f"2.{i}.0" for i in range(n)]
    for slow_index in range(1, n):
        probes, first_slow, last_good, finished = bisect_.search(releases, fake_probe(releases, releases[slow_index]))
        assert finished and first_slow == releases[slow_index] and last_good == releases[slow_index - 1]
        assert 1 + len(probes) <= math.ceil(math.log2(n)) + 2  # the good release's environment + one per probe


def test_a_flat_series_reports_none_after_one_probe():
    releases = [f"2.{i}.0" for i in range(12, 22)]
    probes, first_slow, last_good, finished = bisect_.search(releases, fake_probe(releases))
    assert (first_slow, last_good, finished) == (None, None, True)
    assert [p.tensorflow for p in probes] == ["2.21.0"]


def test_a_probe_that_cannot_tell_stops_the_search_with_the_range_so_far():
    releases = [f"2.{i}.0" for i in range(12, 22)]
    probes, first_slow, last_good, finished = bisect_.search(
        releases, fake_probe(releases, "2.19.0", unjudged=["2.18.0"]))
    # 2.21.0 slow, 2.16.0 not, then 2.18.0 cannot tell: the first slow one is known to lie in (2.16.0, 2.21.0].
    assert [p.tensorflow for p in probes] == ["2.21.0", "2.16.0", "2.18.0"]
    assert not finished and (first_slow, last_good) == ("2.21.0", "2.16.0")


SERVED = ["2.12.1", "2.13.1", "2.14.1", "2.15.1", "2.16.2", "2.17.1", "2.18.1", "2.19.1", "2.20.0", "2.21.0"]


def bisect_runs(first_slow: str) -> FakeRuns:
    return FakeRuns({v: (48.0 if SERVED.index(v) >= SERVED.index(first_slow) else 31.7) for v in SERVED})


def test_bisect_measures_each_probe_against_the_good_release_in_turns():
    runs = bisect_runs("2.16.2")
    seen = []
    result = bisect_.run(RunConfig(example="tiny", command="kdiag bisect"), BisectRequest("2.12", "2.21"),
                         provider=FakeReleases(served=SERVED), run_child=runs,
                         on_probe=lambda so_far, probe: seen.append(probe.tensorflow))
    assert (result.first_slow, result.last_good, result.good, result.bad) == ("2.16.2", "2.15.1", "2.12.1", "2.21.0")
    assert result.ratio == pytest.approx(48.0 / 31.7)
    assert seen == [p.tensorflow for p in result.probes] and seen[0] == "2.21.0"
    assert 1 + len(result.probes) <= result.max_environments == 6
    assert runs.order[:4] == ["2.12.1", "2.21.0", "2.12.1", "2.21.0"]  # good and probe take turns
    assert all(arg(argv, "--strategies") == "predict" and "--no-profile" in argv for _, argv in runs.runs)
    summary = vv.bisect_summary(result)
    assert summary[0].startswith("First slow release: 2.16.2 (predict 1.51x slower than 2.12.1")
    assert "last good release: 2.15.1" in summary[0]
    from kdiag.render.bisect import render_json

    data = json.loads(render_json(result))
    assert data["first_slow"] == "2.16.2" and data["probes"][0]["probed"]["count"] == 5 * data["probes"][0]["rounds"]


def test_bisect_on_a_flat_series_builds_two_environments_and_says_none():
    provider = FakeReleases(served=SERVED)
    result = bisect_.run(RunConfig(example="tiny"), BisectRequest("2.12", "2.21"), provider=provider,
                         run_child=FakeRuns({v: 31.7 for v in SERVED}))
    assert result.first_slow is None and not result.incomplete and provider.prepared == ["2.12.1", "2.21.0"]
    assert vv.bisect_summary(result)[0].startswith("No slow release: predict under 2.21.0 is not 1.2x slower")


def test_kdiag_bisect_prints_each_probe_and_ends_with_the_result(monkeypatch):
    monkeypatch.setattr("kdiag.versions.provider.CachedReleases", lambda: FakeReleases(served=SERVED))
    monkeypatch.setattr("kdiag.versions.children.run_kdiag", bisect_runs("2.18.1"))
    code, out, err = run_cli("bisect", "--example", "tiny", "--good", "2.12", "--bad", "2.21")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("kdiag bisect · tiny · predict · 10 releases of tensorflow-cpu from 2.12.1 (good)")
    assert lines[1].startswith("2.21.0: predict 48 ms (n=") and " vs 31.7 ms (n=" in lines[1]
    assert lines[1].endswith("rounds: 1.51x slower, beyond the noise (±1 ms): slow")
    assert "First slow release: 2.18.1" in out and "last good release: 2.17.1" in out


@pytest.mark.parametrize("extra, words", [
    (["--good", "2.x", "--bad", "2.21"], "--good must be a TensorFlow release"),
    (["--good", "2.12", "--bad", "2.21", "--threshold", "0.9"], "--threshold must be a ratio above 1"),
    (["--good", "2.12", "--bad", "2.21", "--threshold", "nan"], "--threshold"),
    (["--good", "2.12", "--bad", "2.21", "--strategy", "fast"], "unknown strategy 'fast'"),
])
def test_bad_bisect_options_are_refused_in_one_line(extra, words):
    assert_refused(run_cli("bisect", "--example", "tiny", *extra), words)


def test_bisect_with_good_not_older_than_bad_is_refused(monkeypatch):
    from kdiag.versions.index import PackageIndex, releases_between

    index = PackageIndex(run=lambda command: _listing("2.21.0, 2.16.2, 2.12.1"))
    with pytest.raises(KdiagError, match="--good 2.21 .* is not older than --bad 2.12"):
        releases_between("2.21", "2.12", index, gpu=False)


def _listing(versions: str):
    import subprocess

    return subprocess.CompletedProcess([], 0, f"tensorflow-cpu ({versions.split(',')[0]})\n"
                                              f"Available versions: {versions}\n", "")


# --- one real run: the running interpreter under two release names -------------------------------------


@pytest.mark.slow
def test_kdiag_inspect_tf_runs_real_children_in_turns_and_saves_one_report(tmp_path, monkeypatch):
    monkeypatch.setattr("kdiag.versions.provider.CachedReleases",
                        lambda: FakeReleases({"2.98": "2.98.0", "installed": "2.21.0"}))
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("inspect", "--example", "tiny", "--tf", "2.98,installed", "--strategies",
                                   "predict,predict-compiled,concrete", "--budget", "0.05", "--min-calls", "5",
                                   "--profile-calls", "2", "--no-sweeps", "--no-memory-loop", "--no-ops",
                                   "--time-limit", "0", "--out", out)  # no limit: a loaded machine still profiles
    assert code == 0, stderr
    report = read_report(out / "report.json")
    runs = report.tf_versions.runs
    assert [r.label for r in runs] == ["2.98.0", "2.21.0 (installed)"]
    assert [r.rounds for r in runs] == [rounds_.UNLIMITED_ROUNDS] * 2  # without a limit, a fixed number of rounds
    assert report.tf_versions.inputs.startswith("one batch, drawn by the first run")
    assert (out / "inputs.npz").is_file() and (out / "tf-2.98.0" / "report.json").is_file()
    assert (out / "tf-2.21.0-installed" / "report.json").is_file()
    other = runs[1].report
    assert other.model.inputs[0].value_range == "user data from inputs.npz"  # the batch the first run saved
    first_run = read_report(out / "tf-2.21.0-installed" / "report.json").strategy("predict").measurement
    assert other.strategy("predict").measurement.count > first_run.count  # later rounds' calls pooled in
    assert other.profile("predict") is not None and report.profile("predict") is not None
    assert "TensorFlow releases side by side" in stdout and "2.21.0 (installed" in stdout
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## TensorFlow releases side by side" in markdown and "### predict's phases under each release" in markdown


# --- safety: before any child starts ------------------------------------------------------------------


def test_a_lambda_file_is_refused_once_before_any_environment_or_child(tmp_path, monkeypatch):
    import h5py

    model = tmp_path / "lambda.h5"
    with h5py.File(model, "w") as handle:  # what Keras 2 writes for a Lambda layer, code and all
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {"name": "m", "layers": [
            {"class_name": "Lambda", "config": {"name": "touch", "function": ["4wEAAAA=", None, None]}}]}})
    provider = FakeReleases(NAMES)
    monkeypatch.setattr("kdiag.versions.provider.CachedReleases", lambda: provider)

    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started for a refused file")

    monkeypatch.setattr("kdiag.versions.children.run_kdiag", no_child)
    out = tmp_path / "run"
    line = assert_refused(run_cli("inspect", model, "--tf", "2.15,installed", "--out", out), "Lambda layer 'touch'",
                          "--unsafe")
    assert line.count("Lambda") == 1 and provider.prepared == [] and not out.exists()


# --- the Python API and Ctrl-C through the CLI -----------------------------------------------------------


def test_kdiag_inspect_with_tf_returns_the_merged_report(monkeypatch):
    import kdiag

    monkeypatch.setattr("kdiag.versions.provider.CachedReleases", lambda: FakeReleases(NAMES))
    monkeypatch.setattr("kdiag.versions.children.run_kdiag", FakeRuns({"2.15.1": 38.0, "2.21.0": 30.0}))
    report = kdiag.inspect(example="tiny", tf=["2.15", "installed"])
    assert [r.label for r in report.tf_versions.runs] == ["2.15.1", "2.21.0 (installed)"]
    finding = next(f for f in report.findings if f.id == "tf-versions")
    assert finding.title.startswith("predict is 1.27x faster under 2.21.0 (installed) than 2.15.1")
    with pytest.raises(KdiagError, match="--tf takes 1 to 8"):
        kdiag.inspect(example="tiny", tf=[])


def test_ctrl_c_through_the_cli_saves_what_finished_and_exits_130(tmp_path, monkeypatch):
    monkeypatch.setattr("kdiag.versions.provider.CachedReleases", lambda: FakeReleases(NAMES))
    monkeypatch.setattr("kdiag.versions.children.run_kdiag",
                        FakeRuns({"2.15.1": 38.0, "2.16.2": 68.0}, interrupt_at=3))
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("inspect", "--example", "tiny", "--tf", "2.15,2.16", "--out", out)
    assert code == 130, stderr
    saved = read_report(out / "report.json")
    assert saved.incomplete and [r.rounds for r in saved.tf_versions.runs] == [1, 1]


def test_a_child_run_gets_the_steps_beyond_one_batch_as_asked():
    from kdiag.engine import keras_child

    config = RunConfig(example="tiny", keras="2", sweeps=False, memory_loops=False, ops=False)
    argv = keras_child.child_arguments(config, "2", Path("out"), Path("private"))
    assert {"--no-sweeps", "--no-memory-loop", "--no-ops"} <= set(argv)  # --keras children used to drop them
    sampled = keras_child.child_arguments(RunConfig(example="tiny", samples=(32, 256)), "2", Path("o"), Path("p"))
    assert arg(sampled, "--samples") == "32,256" and "--no-sweeps" not in sampled


def test_a_probe_is_slow_not_slow_or_undecided_by_the_noise_rule_and_the_threshold():
    good = fx.strategy("predict", 30.0, 1.0)
    cases = [(fx.strategy("predict", 45.0, 1.0), True, "1.50x slower, beyond the noise (±2 ms): slow"),
             (fx.strategy("predict", 33.0, 0.5), False, "1.10x slower, beyond the noise but below the 1.2x threshold"),
             (fx.strategy("predict", 31.0, 2.0), False, "within the noise (±3 ms): not slow"),
             (fx.strategy("predict", 20.0, 1.0), False, "1.50x faster, beyond the noise (±2 ms): not slow"),
             # 1.9x slower, but the spread is wider than the gap: calling it not slow would mislead the search.
             (fx.strategy("predict", 57.0, 30.0), None, "1.90x slower but within the noise (±31 ms): cannot tell"),
             (fx.strategy("predict", 60.0, 1.0, calls=3), None, "not enough calls to judge")]
    for probed, slow, words in cases:
        verdict = bisect_.judge_probe(good, probed, 1.2)
        assert verdict[0] is slow and verdict[1].startswith(words), verdict
