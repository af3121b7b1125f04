"""report.json, schema 2: seconds everywhere, exact statistics of thinned samples, the kdiag
version, a small file; and schema 1 files (written before this change) still read. No TensorFlow."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

import kdiag

import factories as fx
from kdiag.cli import Env, main
from kdiag.datamodel.measurement import MAX_SAMPLES, Measurement, round_significant
from kdiag.datamodel.report import SCHEMA_VERSION, Report, read_report
from kdiag.errors import KdiagError
from kdiag.render.json import render as to_json
from kdiag.version import __version__

ROOT = Path(__file__).resolve().parent.parent
#: A real run (tiny example, 4 strategies, profiles) saved by kdiag at commit 7301684, schema 1.
SCHEMA_1 = Path(__file__).resolve().parent / "golden" / "report-schema1.json"


def _skewed_samples(n, seed=0):
    rng = random.Random(seed)
    return [1e-4 * (1 + rng.expovariate(3.0)) + 1e-9 * rng.random() for _ in range(n)]


def test_statistics_are_computed_from_every_sample_before_thinning():
    samples = _skewed_samples(50_000)
    m = Measurement.from_samples("s", 0.5, samples)
    assert m.count == 50_000 and len(m.samples_s) == MAX_SAMPLES and m.thinned
    for field, q in (("median_s", 50), ("p90_s", 90), ("p99_s", 99)):
        assert getattr(m, field) == pytest.approx(np.percentile(samples, q), rel=1e-12)  # all samples, exact
    assert m.iqr_s == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25), rel=1e-12)
    assert (m.min_s, m.max_s) == (min(samples), max(samples))
    assert m.mean_s == pytest.approx(np.mean(samples), rel=1e-12)
    # The kept samples: a uniform subset in call order, each rounded to 4 significant digits.
    step = 50_000 // MAX_SAMPLES
    assert list(m.samples_s) == [round_significant(samples[i * step]) for i in range(MAX_SAMPLES)]
    assert all(float(f"{s:.4g}") == s for s in m.samples_s)


def test_few_samples_are_all_kept_rounded_and_the_statistics_stay_exact():
    samples = [0.000123456789, 0.000234567891, 0.000345678912]
    m = Measurement.from_samples("s", 0.5, samples)
    assert m.samples_s == (0.0001235, 0.0002346, 0.0003457) and not m.thinned
    assert m.median_s == 0.000234567891  # from the unrounded samples


def test_a_measurement_given_only_samples_computes_its_statistics():
    m = Measurement("s", 1.0, (1.0, 2.0, 3.0, 4.0, 100.0))
    assert (m.count, m.median_s, m.iqr_s, m.min_s, m.max_s) == (5, 3.0, 2.0, 1.0, 100.0)


def _worst_case_report():
    """Every strategy timed 100,000 times (a fast model and a long budget), every profile."""
    strategies = [dataclasses.replace(s, measurement=Measurement.from_samples(s.name, 0.01, _skewed_samples(100_000, i)))
                  for i, s in enumerate(fx.typical_keras3() + [fx.strategy("C++ (TF C API)", 0.01)])]
    tops = [fx.top_function(phase, f"module.function_{i}", 1.0 + i, f"keras/src/file_{i}.py", i)
            for i, phase in enumerate(fx.PHASES * 5)]
    profiles = [fx.profile(s, {"tf.data pipeline": 0.5, "other Python": 0.5}, 60.0, top_functions=tops)
                for s in ("predict", "predict (compiled)")]
    return fx.report(strategies, profiles=profiles)


def test_report_json_stays_small_however_many_calls_were_timed():
    report = _worst_case_report()
    text = to_json(report)
    assert len(text.encode()) < 300_000, len(text.encode())
    data = json.loads(text)
    assert all(len(s["measurement"]["samples_s"]) == MAX_SAMPLES for s in data["strategies"])
    assert all(s["measurement"]["count"] == 100_000 for s in data["strategies"])
    # A list of samples is one line; everything else stays indented for people.
    line = next(line for line in text.splitlines() if '"samples_s"' in line)
    assert line.count(",") == MAX_SAMPLES - 1


def test_schema_2_fields_units_and_version():
    report = _worst_case_report()
    data = json.loads(to_json(report))
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert data["kdiag_version"] == __version__
    row = data["profiles"][0]["phases"][1]
    assert set(row) == {"name", "share", "per_call_s", "profiled_per_call_s"}
    assert row["per_call_s"] == pytest.approx(0.5 * 0.060)  # seconds, not milliseconds
    assert "profiled_per_call_s" in data["profiles"][0] and "profiled_s_per_call" not in data["profiles"][0]

    def keys(value):
        if isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from keys(v)
        elif isinstance(value, list):
            for v in value:
                yield from keys(v)

    assert not [k for k in keys(data) if "ms" in k.split("_")], "a field in milliseconds"
    measurement = data["strategies"][0]["measurement"]
    assert list(measurement)[-1] == "samples_s"  # the figures first, the long list last
    for field in ("count", "median_s", "iqr_s", "p90_s", "p99_s", "min_s", "max_s", "mean_s"):
        assert field in measurement


def test_round_trip_keeps_the_exact_statistics_of_thinned_samples(tmp_path):
    report = _worst_case_report()
    path = tmp_path / "report.json"
    path.write_text(to_json(report), encoding="utf-8")
    again = read_report(path)
    assert again == report
    predict = again.strategy("predict").measurement
    assert predict.count == 100_000 and predict.median_s == report.strategy("predict").measurement.median_s


def test_a_count_below_the_samples_held_is_refused_in_one_line(tmp_path):
    data = json.loads(to_json(_worst_case_report()))
    data["strategies"][0]["measurement"]["count"] = 3
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(KdiagError) as info:
        read_report(path)
    assert f"count 3 but holds {MAX_SAMPLES} samples" in info.value.message and "\n" not in info.value.message


def test_a_schema_1_report_reads_as_schema_2():
    old = json.loads(SCHEMA_1.read_text(encoding="utf-8"))
    assert old["schema_version"] == 1
    report = read_report(SCHEMA_1)
    assert report.schema_version == 2 and report.kdiag_version == "unknown (a schema 1 report)"
    for before, after in zip(old["strategies"], report.strategies):
        m = after.measurement
        # Schema 1 kept every sample: the statistics computed again from them are the ones it wrote.
        assert m.count == before["measurement"]["count"] == len(m.samples_s)
        assert m.median_s == pytest.approx(before["measurement"]["median_s"], rel=1e-12)
        assert m.p99_s == pytest.approx(before["measurement"]["p99_s"], rel=1e-12)
    for before, after in zip(old["profiles"], report.profiles):
        assert after.profiled_per_call_s == before["profiled_s_per_call"]
        for row_before, row_after in zip(before["phases"], after.phases):
            assert row_after.per_call_s == pytest.approx(row_before["ms_per_call"] / 1e3)
            assert row_after.ms_per_call == pytest.approx(row_before["ms_per_call"])
    # What schema 1 did not record reads as not recorded, not as a guess.
    assert report.environment.os_distribution == "" and report.environment.home == ""
    assert report.settings.redact_paths is True
    assert Report.from_dict(json.loads(to_json(report))) == report


def test_kdiag_compare_reads_a_schema_1_report_against_a_schema_2_one(tmp_path):
    old = read_report(SCHEMA_1)
    newer = dataclasses.replace(old, schema_version=2, kdiag_version=__version__)
    (tmp_path / "new.json").write_text(to_json(newer), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    status = main(["compare", str(SCHEMA_1), str(tmp_path / "new.json"), "--fail-above", "10"], Env(out, err))
    assert status == 0, err.getvalue()
    assert "No regression" in out.getvalue()
    assert "predict" in out.getvalue()


@pytest.mark.parametrize("path", sorted((ROOT / "reports" / "examples").glob("*/report.json")),
                         ids=lambda p: p.parent.name)
def test_the_example_reports_in_the_repository_read(path):
    report = read_report(path)
    assert report.strategies and all(not math.isnan(s.median_s) for s in report.strategies if s.measurement)
    assert kdiag.render_report(report, "markdown").startswith("# kdiag report")
