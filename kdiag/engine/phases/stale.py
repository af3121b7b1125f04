"""Checking a rule set against the installed packages: paths that moved, functions renamed."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
from typing import Dict, List, Optional

from kdiag.engine.phases.matching import is_glob, segments
from kdiag.engine.phases.qualnames import index_source
from kdiag.engine.phases.rules import RuleSet


def _package_root(top: str) -> Optional[str]:
    """The directory holding package `top` (site-packages), found without importing it."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return os.path.dirname(os.path.abspath(locations[0]))
    if spec.origin:
        return os.path.dirname(os.path.abspath(spec.origin))
    return None


def _files_for(path: str, root: str) -> List[str]:
    full = os.path.join(root, *path.rstrip("/").split("/"))
    if is_glob(path):
        import glob

        return sorted(f for f in glob.glob(os.path.join(root, path)) if f.endswith(".py"))
    if path.endswith("/"):
        found = []
        for dirpath, _, names in os.walk(full):
            found.extend(os.path.join(dirpath, n) for n in sorted(names) if n.endswith(".py"))
        return found
    return [full] if os.path.isfile(full) else []


def _defines(filename: str, function: str) -> bool:
    index = index_source(filename)
    if index is None:
        return False
    names = {qualname for entries in index.values() for _, qualname in entries}
    want = segments(function)
    for qualname in names:
        have = segments(qualname)
        if is_glob(function):
            joined = ".".join(have)
            pattern = ".".join(want)
            if fnmatch.fnmatchcase(joined, pattern) or fnmatch.fnmatchcase(joined, "*." + pattern):
                return True
        elif have[-len(want):] == want:
            return True
    return False


def stale_landmarks(ruleset: RuleSet) -> List[str]:
    """Problems with `ruleset` against the installed packages: a path that does not
    exist, or a function that no file of the path defines. Packages that are not
    installed are reported once each."""
    problems: List[str] = []
    roots: Dict[str, Optional[str]] = {}
    for lm in ruleset.landmarks:
        top = lm.path.split("/", 1)[0]
        if top not in roots:
            roots[top] = _package_root(top)
            if roots[top] is None:
                problems.append(f"package {top!r} is not installed")
        root = roots[top]
        if root is None:
            continue
        files = _files_for(lm.path, root)
        if not files:
            problems.append(f"{lm.phase}: {lm.path} does not exist under {root}")
            continue
        if lm.function == "*":
            continue
        if not any(_defines(f, lm.function) for f in files):
            problems.append(f"{lm.phase}: {lm.path} defines no {lm.function}")
    return problems
