"""Step: the C++ floor (`--cpp`), the exported SavedModel called through the TF C API.

It runs in its own process after the Python strategies, so it is not interleaved with them; the
report says so.
"""

from __future__ import annotations

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import CPP
from kdiag.engine import check
from kdiag.engine.measure import MeasureSettings
from kdiag.errors import KdiagError
from kdiag.steps.state import RunState

#: Its own process loads TensorFlow and the SavedModel (about 5-10 s here) before it times anything.
START_S = 10.0


def planned_steps(config: RunConfig) -> int:
    return int(config.cpp)


def run(state: RunState, settings: MeasureSettings) -> None:
    if state.config.cpp:
        state.steps.next("cpp", "the C++ floor")
        state.results.append(state.worker.call(lambda: cpp_floor(state, settings)))


def cpp_floor(state: RunState, settings: MeasureSettings) -> StrategyResult:
    """The SavedModel run from C++, checked against the same reference as the Python strategies."""
    from kdiag.engine.runtimes import cpp
    from kdiag.engine.runtimes.base import export_saved_model, to_host

    note = ["measured in its own process after the Python strategies (not interleaved with them)"]
    reason = cpp.unavailable_reason()
    if reason is not None:
        return StrategyResult(CPP.name, CPP.snippet, False, f"not available: {reason}")
    budget = state.budget
    needs = START_S + settings.budget_s + budget.reserve_s
    if not budget.fits(needs):
        budget.cut(needs_s=needs)
        return StrategyResult(CPP.name, CPP.snippet, False, budget.not_started(needs))
    try:
        state.steps.update("building cpp_baseline/ (cached per TensorFlow version)")
        binary = cpp.build()
        directory = export_saved_model(state.context)
        state.steps.update(f"running {binary.name}")
        run_ = cpp.run_baseline(directory, state.context.inputs.arrays, settings,
                                work_dir=state.context.work_dir / "cpp", binary=binary)
    except KdiagError as exc:
        return StrategyResult(CPP.name, CPP.snippet, False, f"not available: {exc.message}", notes=note)
    outputs = None
    if state.reference_outputs is not None:
        outputs = check.compare(state.reference_name, state.reference_outputs, to_host(run_.outputs))
    return StrategyResult(CPP.name, CPP.snippet, True, measurement=run_.measurement, outputs=outputs, notes=note)
