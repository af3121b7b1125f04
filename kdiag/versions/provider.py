"""From a `--tf` entry to the interpreter that runs it.

`CachedReleases` is the real one: the package index resolves the entry (kdiag.versions.index),
the cache builds or reuses its environment (kdiag.versions.environments) and kdiag is copied in.
`installed` is the running Python, with this process's import path, as `--keras both` runs its
child. Tests give the orchestration and the bisect another provider with the same two methods
(the running interpreter under made-up release names), so they need no download.
"""

from __future__ import annotations

import sys
from typing import Callable, List, Optional, Protocol, Sequence

from kdiag.engine import keras_child
from kdiag.versions import index as index_
from kdiag.versions.children import Interpreter
from kdiag.versions.environments import EnvironmentCache, env_python, install_kdiag
from kdiag.versions.index import PackageIndex, Target

Say = Callable[[str], None]


class Provider(Protocol):
    def resolve(self, requested: Sequence[str]) -> List[Target]:
        """Every entry resolved, before anything is built; KdiagError (one line) for one the index lacks."""

    def releases_between(self, good: str, bad: str) -> List[Target]:
        """The releases from good to bad inclusive, oldest first (for bisect)."""

    def prepare(self, target: Target, say: Say) -> Interpreter:
        """The interpreter for `target`, its environment built if the cache has none."""


class CachedReleases:
    """Releases from the package index, each in a cached environment."""

    def __init__(self, index: Optional[PackageIndex] = None, cache: Optional[EnvironmentCache] = None,
                 gpu: Optional[bool] = None):
        self.index = index or PackageIndex()
        self.cache = cache or EnvironmentCache()
        self.gpu = gpu

    def resolve(self, requested: Sequence[str]) -> List[Target]:
        return [index_.resolve(entry, self.index, self.gpu) for entry in requested]

    def releases_between(self, good: str, bad: str) -> List[Target]:
        return index_.releases_between(good, bad, self.index, self.gpu)

    def prepare(self, target: Target, say: Say) -> Interpreter:
        if target.installed:
            return running_interpreter(target)
        environment = self.cache.ensure(target, say)
        folder = self.cache.root / environment.name
        kdiag_copy = install_kdiag(folder)
        # Each release runs the Keras it brings: a TF_USE_LEGACY_KERAS=1 of the user's is for this
        # environment's tf-keras, which the release's environment does not have.
        return Interpreter(target, str(env_python(folder)), [str(kdiag_copy)], {"TF_USE_LEGACY_KERAS": "0"},
                           environment)


def running_interpreter(target: Target) -> Interpreter:
    """This Python with this process's import path (kdiag's own folder first)."""
    return Interpreter(target, sys.executable, keras_child.import_path())
