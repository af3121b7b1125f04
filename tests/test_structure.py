"""The structure holds: no function too branchy to follow, the API and the HTML renderer short, and the
package data (templates) where a wheel ships it.

Branch count of a function, by `ast`: each if/elif, for, while and with statement, each conditional
expression (a if c else b), each except handler, each `case` of a match, each `for` and each `if` of a
comprehension, and each operand beyond the first of an `and`/`or`. Nested functions, lambdas and classes
are counted as functions of their own, not in the function that holds them.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kdiag"

MAX_BRANCHES = 20
MAX_LINES = {"kdiag/api.py": 250, "kdiag/render/html.py": 450}


def branch_count(function: ast.AST) -> int:
    count = 0
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # counted on its own
        if isinstance(node, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.IfExp,
                             ast.ExceptHandler, ast.match_case)):
            count += 1
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            count += 1 + len(node.ifs)
        stack.extend(ast.iter_child_nodes(node))
    return count


def branch_counts(root: Path = PACKAGE) -> List[Tuple[int, str]]:
    """(branch count, "path:line name") of every function under `root`, largest first."""
    counts = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                counts.append((branch_count(node), f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(counts, reverse=True)


def test_no_function_has_more_than_twenty_branches():
    over = [f"{count} {where}" for count, where in branch_counts() if count > MAX_BRANCHES]
    assert not over, "split these functions:\n" + "\n".join(over)


def test_the_counter_counts_what_its_docstring_says():
    source = '''
def f(a, b):
    if a and b or a:  # if: 1, and/or: 2
        pass
    elif b:  # 1
        pass
    for x in a:  # 1
        while b:  # 1
            pass
    with open(a) as h:  # 1
        pass
    try:
        pass
    except ValueError:  # 1
        pass
    except OSError:  # 1
        pass
    y = [i for i in a if i if b]  # 1 for, 2 ifs
    z = 1 if a else 2  # 1
    def inner():  # not counted here
        if a:
            pass
    match a:
        case 1:  # 1
            pass
        case _:  # 1
            pass
'''
    function = ast.parse(source).body[0]
    assert branch_count(function) == 3 + 1 + 1 + 1 + 1 + 2 + 3 + 1 + 2


def test_the_api_and_the_html_renderer_stay_short():
    for name, limit in MAX_LINES.items():
        lines = len((ROOT / name).read_text(encoding="utf-8").splitlines())
        assert lines < limit, f"{name}: {lines} lines"


def test_the_templates_are_package_data():
    """report.html's page, CSS and script, and repro.py's body, are files a wheel must ship."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]["kdiag"]
    templates = sorted(p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "render" / "templates").iterdir())
    assert templates == ["render/templates/report.css", "render/templates/report.html", "render/templates/report.js",
                         "render/templates/repro-cannot.py.tmpl", "render/templates/repro.py.tmpl"]
    assert all(any(Path(t).match(p) for p in patterns) for t in templates)
