"""The best path's graph with 1 intra-op thread and with one per core, timed in two child processes.

TensorFlow sizes its intra-op thread pool once, when it initialises, so each setting needs a
process of its own (`threads_child.py`, run as `python -I` from a private empty folder). Both
children load the model's SavedModel export (the same graph the Python paths run) and wait;
the parent then has them take turns, a few calls each, so that machine drift hits both
settings alike, until each has at least `MIN_CALLS` timed calls and the budget is spent.
Loading counts against the budget: on a slow start the effect is "not measured", with the reason.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np

from kdiag.datamodel.beyond import ThreadsEffect
from kdiag.datamodel.measurement import Measurement
from kdiag.engine.intake.limits import available_memory_bytes, needs_line
from kdiag.tempdirs import temporary_directory

CHILD = Path(__file__).with_name("threads_child.py")
#: Timed calls a side at least: the noise rule judges nothing on fewer (kdiag.views.MIN_CALLS_FOR_VERDICT).
MIN_CALLS = 5
#: Each turn aims at this share of the budget left after loading, so there are several turns a side.
TURN_SHARE = 0.1
#: Loading may take this share of the budget at most.
LOAD_SHARE = 0.75
STOP_GRACE_S = 2.0
#: Below this budget the children cannot even start (each imports TensorFlow): not measured, no time spent.
MIN_BUDGET_S = 6.0


def threads_effect(strategy: str, saved_model_dir: Path, arrays: Mapping[str, np.ndarray], budget_s: float,
                   cores: Optional[int] = None, clock: Callable[[], float] = time.monotonic) -> ThreadsEffect:
    """1 intra-op thread against `cores` (default: this machine's), on the SavedModel at `saved_model_dir`."""
    cores = cores or os.cpu_count() or 1
    if budget_s < MIN_BUDGET_S:
        return ThreadsEffect(strategy, cores, budget_s=budget_s,
                             reason=f"not measured: two TensorFlow processes need ~{MIN_BUDGET_S:g} s to start, and "
                                    f"this step's budget is {budget_s:.2g} s (a larger --budget gives it more)")
    if cores < 2:
        return ThreadsEffect(strategy, cores, budget_s=budget_s,
                             reason="not measured: one CPU core, so one thread is the core count")
    if not sys.executable:
        return ThreadsEffect(strategy, cores, budget_s=budget_s,
                             reason="not measured: no Python executable to start child processes with")
    # Each child holds TensorFlow, the model and the inputs: as much as this process at most.
    import psutil

    need = 2 * psutil.Process().memory_info().rss
    available = available_memory_bytes()
    if need > available:
        return ThreadsEffect(strategy, cores, budget_s=budget_s,
                             reason=f"not measured: two child processes would not fit ({needs_line(need, available)})")
    start = clock()
    with temporary_directory(prefix="kdiag-threads-") as private:
        inputs = Path(private) / "inputs.npz"
        np.savez(inputs, **arrays)
        children = {n: _Child(saved_model_dir, inputs, n, private) for n in (1, cores)}
        try:
            return _measure(strategy, children, cores, budget_s, start, clock)
        finally:
            for child in children.values():
                child.stop()


def _measure(strategy, children: Dict[int, "_Child"], cores: int, budget_s: float, start: float,
             clock) -> ThreadsEffect:
    def not_measured(why: str) -> ThreadsEffect:
        return ThreadsEffect(strategy, cores, budget_s=budget_s, reason=f"not measured: {why}")

    first: Dict[int, float] = {}
    for n, child in children.items():
        reply = child.reply(start + LOAD_SHARE * budget_s - clock())
        if reply is None:
            return not_measured(f"the child processes did not load the model within {LOAD_SHARE * budget_s:.3g} s "
                                f"of this step's {budget_s:.3g} s budget")
        if "error" in reply:
            return not_measured(f"the child process with {n} thread{'s' if n > 1 else ''} failed: {reply['error']}")
        first[n] = float(reply["first_call_s"])
    load_s = clock() - start
    samples: Dict[int, List[float]] = {n: [] for n in children}
    turn_s = TURN_SHARE * max(0.0, budget_s - (clock() - start))
    per_call = {n: 0.0 for n in children}
    while True:
        enough = all(len(s) >= MIN_CALLS for s in samples.values())
        if enough and clock() - start >= budget_s:
            break
        for n, child in children.items():
            # The first turn is one call: it gives this setting's pace for the next turns.
            calls = 1 if not samples[n] else max(1, min(1000, int(turn_s / max(per_call[n], 1e-6))))
            child.send(f"run {calls}")
            reply = child.reply(max(STOP_GRACE_S, 10 * calls * max(per_call[n], first[n])))
            if reply is None or "samples_s" not in reply:
                return not_measured(f"the child process with {n} thread{'s' if n > 1 else ''} stopped answering")
            samples[n] += [float(s) for s in reply["samples_s"]]
            per_call[n] = sorted(samples[n])[len(samples[n]) // 2]
        if clock() - start >= 3 * budget_s:  # a wild overrun: stop with what there is
            break
    one = Measurement.from_samples(f"{strategy}, 1 intra-op thread", first[1], samples[1],
                                   max_samples=KEPT_SAMPLES)
    many = Measurement.from_samples(f"{strategy}, {cores} intra-op threads", first[cores], samples[cores],
                                    max_samples=KEPT_SAMPLES)
    return ThreadsEffect(strategy, cores, one, many, budget_s, load_s)


#: Samples kept per setting in the report (a uniform, rounded subset; the statistics are of every call):
#: a fast graph makes thousands of calls a turn, which kept whole were 69 kB of the mnist-cnn example's
#: report.json for one verdict.
KEPT_SAMPLES = 200


class _Child:
    """One child process, its stdout read line by line on a thread so that waits can time out."""

    def __init__(self, saved_model_dir: Path, inputs: Path, threads: int, cwd: str):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(CHILD), str(saved_model_dir), str(inputs), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd, env=env,
            text=True, start_new_session=True)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: the next reply says so

    def reply(self, timeout_s: float) -> Optional[dict]:
        try:
            line = self.lines.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None
        if line is None:
            return None
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.send("quit")
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
