"""Fakes for the --tf and bisect tests: no download, no package index.

`FakeReleases` is an environment provider that returns the running interpreter under made-up release
names; `FakeRuns` stands in for the kdiag child runs and returns factory Reports whose predict median
depends on the release, recording every run (release, argv) in order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import factories as fx
from kdiag.datamodel.profile import GRAPH, OTHER, TFDATA, TRACING
from kdiag.datamodel.versions import EnvironmentInfo
from kdiag.errors import KdiagError
from kdiag.versions.index import Target
from kdiag.versions.provider import running_interpreter


class FakeReleases:
    """`names`: --tf entry -> the release it resolves to; `served`: the releases bisect walks, oldest first."""

    def __init__(self, names: Optional[Dict[str, str]] = None, served: Sequence[str] = (),
                 unbuildable: Sequence[str] = ()):
        self.names = dict(names or {})
        self.served = list(served)
        self.unbuildable = set(unbuildable)
        self.prepared: List[str] = []

    def resolve(self, requested: Sequence[str]) -> List[Target]:
        targets = []
        for entry in requested:
            if entry not in self.names:
                raise KdiagError(f"TensorFlow {entry} is not served for Python 3.11 by the package index (fake)")
            package = "tf-nightly" if entry == "nightly" else "tensorflow" if entry == "installed" else "tensorflow-cpu"
            targets.append(Target(entry, package, self.names[entry]))
        return targets

    def releases_between(self, good: str, bad: str) -> List[Target]:
        first = next(v for v in self.served if v == good or v.startswith(good + "."))
        last = [v for v in self.served if v == bad or v.startswith(bad + ".")][-1]
        span = self.served[self.served.index(first):self.served.index(last) + 1]
        return [Target(v, "tensorflow-cpu", v) for v in span]

    def prepare(self, target: Target, say) -> object:
        if target.version in self.unbuildable:
            raise KdiagError(f"TensorFlow {target.version}: its environment could not be built (pip: No space left "
                             "on device); the partial environment was removed")
        self.prepared.append(target.version)
        say("reused from the cache")
        interpreter = running_interpreter(target)
        if target.requested == "installed":
            return interpreter
        environment = EnvironmentInfo(f"{target.package}-{target.version}-py3.11", target.package, target.version,
                                      "3.11", "pip", fresh=len(self.prepared) == 1, build_s=27.0,
                                      downloaded_bytes=420_000_000, cached_bytes=0, size_bytes=1_300_000_000)
        return dataclasses.replace(interpreter, environment=environment)


class FakeRuns:
    """The kdiag child runs: predict at `predict_ms[release]` (a default for the others), its tf.data share at
    `tfdata[release]`; `refuse[release]` is a one-line refusal; `interrupt_at` raises Ctrl-C on that run (1-based)."""

    def __init__(self, predict_ms: Dict[str, float], tfdata: Optional[Dict[str, float]] = None,
                 refuse: Optional[Dict[str, str]] = None, interrupt_at: Optional[int] = None, calls: int = 5,
                 iqr_ms: float = 0.5, default_ms: float = 40.0):
        self.predict_ms, self.tfdata = predict_ms, tfdata or {}
        self.refuse, self.interrupt_at = refuse or {}, interrupt_at
        self.count, self.iqr_ms, self.default_ms = calls, iqr_ms, default_ms
        self.runs: List[Tuple[str, List[str]]] = []

    @property
    def order(self) -> List[str]:
        return [release for release, _ in self.runs]

    def __call__(self, interpreter, argv, out_dir: Path, say, cwd: Path):
        release = interpreter.tensorflow
        self.runs.append((release, list(argv)))
        if self.interrupt_at is not None and len(self.runs) == self.interrupt_at:
            raise KeyboardInterrupt()
        say("measure", "predict")
        if release in self.refuse:
            raise KdiagError(f"under {interpreter.label}: {self.refuse[release]}")
        if "--save-inputs" in argv:  # the child saves its batch: later runs must be given it
            Path(argv[argv.index("--save-inputs") + 1]).write_bytes(b"npz")
        median = self.predict_ms.get(release, self.default_ms)
        strategies = [fx.strategy("predict", median, self.iqr_ms, calls=self.count),
                      fx.strategy("predict (compiled)", median * 1.01, self.iqr_ms, calls=self.count),
                      fx.strategy("concrete function", 2.1, 0.02, calls=self.count)]
        profiles = []
        if "--no-profile" not in argv:
            share = self.tfdata.get(release, 0.3)
            profiles = [fx.profile("predict", {TFDATA: share, TRACING: 0.2, GRAPH: 0.1, OTHER: 0.4 - share + 0.3},
                                   median)]
        keras = "2.15.0" if release.startswith("2.15") else "3.15.1"
        env = fx.environment(tensorflow=release, keras=keras)
        return fx.report(strategies, profiles, env=env, command="kdiag inspect child")


def arg(argv: List[str], flag: str) -> Optional[str]:
    return argv[argv.index(flag) + 1] if flag in argv else None
