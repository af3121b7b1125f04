"""Qualified names (``Class.method``) from source, for the line a pstats key names."""

from __future__ import annotations

import ast
import importlib.util
import marshal
import os
import sys
import tokenize
from typing import Dict, List, Optional, Tuple

_SOURCE_INDEX: Dict[str, Optional[Dict[int, List[Tuple[str, str]]]]] = {}

_COMPREHENSIONS = {
    ast.ListComp: "<listcomp>",
    ast.SetComp: "<setcomp>",
    ast.DictComp: "<dictcomp>",
    ast.GeneratorExp: "<genexpr>",
}


def _load_code(filename: str):
    """The module code object: from its up-to-date ``__pycache__`` file when there is
    one (what actually ran), else compiled from the source."""
    try:
        pyc = importlib.util.cache_from_source(filename)
        with open(pyc, "rb") as fh:
            data = fh.read()
        if data[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(data[4:8], "little") == 0:
            st = os.stat(filename)
            mtime = int.from_bytes(data[8:12], "little")
            size = int.from_bytes(data[12:16], "little")
            if mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF:
                return marshal.loads(data[16:])
    except (OSError, ValueError, EOFError, TypeError, NotImplementedError):
        pass
    with tokenize.open(filename) as fh:
        return compile(fh.read(), filename, "exec", dont_inherit=True)


def _index_from_code(code) -> Dict[int, List[Tuple[str, str]]]:
    index: Dict[int, List[Tuple[str, str]]] = {}
    stack = [code]
    while stack:
        for const in stack.pop().co_consts:
            if hasattr(const, "co_qualname"):
                index.setdefault(const.co_firstlineno, []).append((const.co_name, const.co_qualname))
                stack.append(const)
    return index


def _index_from_ast(tree: ast.AST) -> Dict[int, List[Tuple[str, str]]]:
    index: Dict[int, List[Tuple[str, str]]] = {}

    def add(line: int, bare: str, qualname: str):
        entries = index.setdefault(line, [])
        if (bare, qualname) not in entries:
            entries.append((bare, qualname))

    stack: List[Tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                add(first, child.name, qualname)
                stack.append((child, qualname + ".<locals>."))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, prefix + child.name + "."))
            elif isinstance(child, ast.Lambda):
                qualname = prefix + "<lambda>"
                add(child.lineno, "<lambda>", qualname)
                stack.append((child, qualname + ".<locals>."))
            elif type(child) in _COMPREHENSIONS:
                bare = _COMPREHENSIONS[type(child)]
                add(child.lineno, bare, prefix + bare)
                stack.append((child, prefix + bare + ".<locals>."))
            else:
                stack.append((child, prefix))
    return index


def index_source(filename: str) -> Optional[Dict[int, List[Tuple[str, str]]]]:
    """line -> [(bare name, qualified name)] for every function, lambda and comprehension
    of `filename`, keyed by the line CPython records as the code's first line (for a
    decorated function, its first decorator's), hence the line in a pstats key. None
    when the source cannot be read. Cached per file."""
    if filename in _SOURCE_INDEX:
        return _SOURCE_INDEX[filename]
    index: Optional[Dict[int, List[Tuple[str, str]]]] = None
    try:
        if sys.version_info >= (3, 11):  # code objects carry co_qualname
            index = _index_from_code(_load_code(filename))
        else:
            with tokenize.open(filename) as fh:
                index = _index_from_ast(ast.parse(fh.read(), filename))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError, RecursionError):
        index = None
    _SOURCE_INDEX[filename] = index
    return index


def qualname_at(filename: str, line: int, bare: str) -> Optional[str]:
    """The qualified name (``Class.method``, ``outer.<locals>.inner``) of the function
    named `bare` whose code starts at `line` of `filename`; None without source."""
    if bare == "<module>":
        return bare
    index = index_source(filename)
    if index is None:
        return None
    for name, qualname in index.get(line, ()):
        if name == bare:
            return qualname
    return None


def display_name(key: Tuple[str, int, str]) -> str:
    """A readable name for a pstats key: the qualified name where the source has it."""
    filename, line, bare = key
    if filename == "~":
        return bare
    return qualname_at(filename, line, bare) or bare
