"""1 intra-op thread against the core count: the turn-taking with fake children, then real ones.

The real test starts two `python -I` children that import TensorFlow and time the tiny SavedModel.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdiag import views
from kdiag.engine.beyond import threads


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_children(clock, per_call, fail=None, load_s=1.0):
    """A stand-in for _Child: answers at once, advancing the clock by its per-call time."""
    log = []

    class Child:
        def __init__(self, saved_model_dir, inputs, count, cwd):
            self.count = count
            self.pending = None
            self.started = False

        def send(self, line):
            self.pending = int(line.split()[1])
            log.append((self.count, self.pending))

        def reply(self, timeout_s):
            if not self.started:
                self.started = True
                clock.now += load_s / 2
                if fail == self.count:
                    return {"error": "OSError: no such SavedModel"}
                return {"ready": True, "first_call_s": 5 * per_call[self.count]}
            calls, self.pending = self.pending, None
            clock.now += calls * per_call[self.count]
            return {"samples_s": [per_call[self.count]] * calls}

        def stop(self):
            pass

    return Child, log


def test_the_children_take_turns_until_each_has_enough_calls_and_the_budget_is_spent(monkeypatch, tmp_path):
    clock = FakeClock()
    child, log = fake_children(clock, {1: 0.02, 2: 0.01})
    monkeypatch.setattr(threads, "_Child", child)
    effect = threads.threads_effect("SavedModel serve", tmp_path, {"x": np.zeros((2, 4), "float32")}, budget_s=8.0,
                                    cores=2, clock=clock)
    assert effect.reason == ""
    assert effect.one.count >= threads.MIN_CALLS and effect.many.count >= threads.MIN_CALLS
    assert effect.ratio == pytest.approx(2.0)
    assert effect.load_s == pytest.approx(1.0)
    assert [n for n, _ in log[:4]] == [1, 2, 1, 2]  # turns alternate
    assert log[0][1] == 1  # the first turn is one call: it sets the pace
    assert clock.now >= 8.0


def test_a_fast_graph_keeps_a_few_hundred_samples_and_the_statistics_of_every_call(monkeypatch, tmp_path):
    clock = FakeClock()
    child, _ = fake_children(clock, {1: 2e-5, 2: 1e-5})  # 20 and 10 µs: thousands of calls a turn
    monkeypatch.setattr(threads, "_Child", child)
    effect = threads.threads_effect("SavedModel serve", tmp_path, {"x": np.zeros((2, 4), "float32")}, budget_s=8.0,
                                    cores=2, clock=clock)
    for measurement in (effect.one, effect.many):
        assert measurement.count > 5 * threads.KEPT_SAMPLES >= len(measurement.samples_s)
    assert effect.ratio == pytest.approx(2.0)


def test_one_thread_faster_beyond_the_noise_reads_as_faster():
    from kdiag.datamodel.beyond import ThreadsEffect
    from kdiag.datamodel.measurement import Measurement

    effect = ThreadsEffect("SavedModel serve", 2, Measurement("one", 0.1, (0.010, 0.0101, 0.0099, 0.010, 0.0102)),
                           Measurement("many", 0.1, (0.020, 0.0201, 0.0199, 0.020, 0.0202)))
    text = views.threads_text(effect)
    assert "1 thread is 2.00x faster" in text and "noise band ±" in text
    within = ThreadsEffect("x", 2, Measurement("one", 0.1, (0.010, 0.013, 0.008, 0.012, 0.009)),
                           Measurement("many", 0.1, (0.011, 0.009, 0.012, 0.008, 0.013)))
    assert views.threads_text(within).endswith("within the noise")


def test_a_child_that_fails_to_load_leaves_the_effect_not_measured_with_its_reason(monkeypatch, tmp_path):
    clock = FakeClock()
    child, _ = fake_children(clock, {1: 0.02, 2: 0.01}, fail=2)
    monkeypatch.setattr(threads, "_Child", child)
    effect = threads.threads_effect("SavedModel serve", tmp_path, {"x": np.zeros((2, 4))}, 8.0, cores=2, clock=clock)
    assert effect.reason == ("not measured: the child process with 2 threads failed: OSError: no such SavedModel")
    assert effect.one is None and effect.ratio is None


def test_a_budget_too_small_for_two_tensorflow_starts_spends_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "_Child", None)  # starting one would fail the test
    effect = threads.threads_effect("SavedModel serve", tmp_path, {"x": np.zeros((2, 4))}, 2.4, cores=2)
    assert effect.reason.startswith("not measured: two TensorFlow processes need ~6 s to start, and this step's "
                                    "budget is 2.4 s")


def test_a_slow_start_uses_up_the_budget_and_says_so(monkeypatch, tmp_path):
    clock = FakeClock()
    child, _ = fake_children(clock, {1: 0.02, 2: 0.01}, load_s=100.0)

    class Silent(child):
        def reply(self, timeout_s):
            clock.now += timeout_s
            return None

    monkeypatch.setattr(threads, "_Child", Silent)
    effect = threads.threads_effect("SavedModel serve", tmp_path, {"x": np.zeros((2, 4))}, 8.0, cores=2, clock=clock)
    assert effect.reason == ("not measured: the child processes did not load the model within 6 s of this step's "
                             "8 s budget")


def test_one_core_has_nothing_to_compare(tmp_path):
    effect = threads.threads_effect("SavedModel serve", tmp_path, {"x": np.zeros((2, 4))}, 8.0, cores=1)
    assert effect.reason == "not measured: one CPU core, so one thread is the core count"


@pytest.mark.slow
def test_real_children_time_the_tiny_savedmodel_with_one_and_two_threads(model_files):
    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    effect = threads.threads_effect("SavedModel serve", model_files / "tiny_savedmodel", {"x": x}, budget_s=12.0,
                                    cores=2)
    assert effect.reason == "", effect.reason
    assert effect.one.count >= 5 and effect.many.count >= 5
    assert 0 < effect.one.median_s < 0.1 and 0 < effect.many.median_s < 0.1
    assert "noise band ±" in views.threads_text(effect)
