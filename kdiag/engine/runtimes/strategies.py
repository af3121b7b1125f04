"""The strategies kdiag times: one module each in this package, registered here in the order the
data model lists them (what --strategies chooses from).

A new strategy is its identity in kdiag.datamodel.strategies (key, name, snippet: what reports,
findings and the CLI read), its module here (prepare, memory cost, chunked twin), and its line below.
"""

from __future__ import annotations

from typing import Dict, List

from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes import (concrete, eager, predict, predict_compiled, predict_on_batch, savedmodel,
                                   tf_function, tflite, xla)
from kdiag.engine.runtimes.base import Strategy

STRATEGIES: List[Strategy] = [
    predict.STRATEGY,
    predict_compiled.STRATEGY,
    predict_on_batch.STRATEGY,
    eager.STRATEGY,
    tf_function.STRATEGY,
    concrete.STRATEGY,
    xla.STRATEGY,
    savedmodel.STRATEGY,
    tflite.STRATEGY,
]

BY_KEY = {s.identity.key: s for s in STRATEGIES}
BY_NAME = {s.name: s for s in STRATEGIES}


def memory_costs(strategies: List[Strategy], keras: bool) -> Dict[str, StrategyCost]:
    """Each strategy's memory cost by key, in order; those that do not run on this kind of model left out."""
    costs = {s.identity.key: s.memory_cost(keras) for s in strategies}
    return {key: cost for key, cost in costs.items() if cost is not None}
