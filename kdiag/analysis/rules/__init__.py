"""The rules, one module per family; importing this package registers them all (kdiag.analysis.registry).

A new rule is one function in one of these modules (or a new module listed below), registered with
`@rule` beside its thresholds and wording.
"""

from kdiag.analysis.rules import (beyond, compile, correctness, keras_versions, noise, outputs, predict,  # noqa: F401
                                  runtimes, tf_versions)
