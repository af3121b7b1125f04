"""Matching a pstats key (file, line, bare name) against the landmarks of a rule set."""

from __future__ import annotations

import fnmatch
import os
import sys
from typing import Dict, List, Optional, Tuple

from kdiag.engine.phases.qualnames import qualname_at
from kdiag.engine.phases.rules import Landmark, RuleSet

_GLOB_CHARS = frozenset("*?[")


def is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def relative_path(filename: str) -> str:
    """`filename` relative to its package root: after the last ``site-packages/`` (or
    ``dist-packages/``), else after the longest `sys.path` entry containing it, else the
    path itself (with ``/`` separators)."""
    path = filename.replace(os.sep, "/") if os.sep != "/" else filename
    for marker in ("/site-packages/", "/dist-packages/"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + len(marker):]
    best = ""
    for entry in sys.path:
        root = os.path.abspath(entry or os.curdir).replace(os.sep, "/").rstrip("/") + "/"
        if len(root) > len(best) and path.startswith(root):
            best = root
    return path[len(best):] if best else path


def _path_matcher(pattern: str):
    """A predicate on relative paths for a landmark path (file, directory or glob)."""
    if is_glob(pattern):
        anywhere = "*/" + pattern
        return lambda rel: fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel, anywhere)
    if pattern.endswith("/"):
        inner = "/" + pattern
        return lambda rel: rel.startswith(pattern) or inner in rel
    tail = "/" + pattern
    return lambda rel: rel == pattern or rel.endswith(tail)


def segments(qualname: str) -> List[str]:
    return [s for s in qualname.split(".") if s and s != "<locals>"]


class Matcher:
    """Landmark lookup for pstats keys, with the specificity order of `Landmark`."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self.by_bare: Dict[str, list] = {}
        self.generic: list = []  # "*" and globbed last segments
        for i, lm in enumerate(ruleset.landmarks):
            rank = _function_rank(lm.function)
            entry = (lm, _path_matcher(lm.path), (rank, _path_rank(lm.path), -i))
            last = lm.function.rsplit(".", 1)[-1]
            if lm.function == "*" or is_glob(last):
                self.generic.append(entry)
            else:
                self.by_bare.setdefault(last, []).append(entry)
        self._rel: Dict[str, str] = {}

    def rel(self, filename: str) -> str:
        r = self._rel.get(filename)
        if r is None:
            r = self._rel[filename] = relative_path(filename)
        return r

    def match(self, key: Tuple[str, int, str]) -> Optional[Landmark]:
        filename, line, bare = key
        if filename == "~" or not filename:  # built-ins are never landmarks
            return None
        candidates = self.by_bare.get(bare, []) + self.generic
        if not candidates:
            return None
        rel = self.rel(filename)
        best = None
        for lm, path_matches, score in candidates:
            if best is not None and score < best[0]:
                continue
            if not path_matches(rel):
                continue
            if score[0] > 0 and not self._function_matches(lm.function, filename, line, bare):
                continue
            best = (score, lm)
        return best[1] if best else None

    @staticmethod
    def _function_matches(function: str, filename: str, line: int, bare: str) -> bool:
        if "." not in function and not is_glob(function):
            return function == bare
        qualname = qualname_at(filename, line, bare)
        if qualname is None:  # no source: fall back on the bare name
            last = function.rsplit(".", 1)[-1]
            return is_glob(last) and fnmatch.fnmatchcase(bare, last) or last == bare
        have = segments(qualname)
        if is_glob(function):
            pattern = ".".join(segments(function))
            joined = ".".join(have)
            return fnmatch.fnmatchcase(joined, pattern) or fnmatch.fnmatchcase(
                joined, "*." + pattern)
        want = segments(function)
        return have[-len(want):] == want


def _function_rank(function: str) -> int:
    if function == "*":
        return 0
    if is_glob(function):
        return 1
    return 3 if "." in function else 2


def _path_rank(path: str) -> int:
    if is_glob(path):
        return 1
    return 0 if path.endswith("/") else 2
