"""Time to refusal and peak RSS of `python -m kdiag inspect` on the hostile files of issue 20.

The files are the tests' own (tests/test_intake_hostile.py, tests/test_declared.py), built here the
same way; each is run in a fresh process whose RSS psutil samples every 5 ms. Not a test: the figures
depend on the machine (the tests only bound them: a bomb under 2 s and 500 MB, a declared-size
refusal under 10 s and 1 GB).

    python3 bench/bench_refusals.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_intake_hostile as hostile  # noqa: E402
from test_declared import AVAILABLE_2_GIB, _dense  # noqa: E402


def cases(work: Path):
    for case, bomb, _ in hostile._bomb_cases(work):
        yield f"zip bomb ({case})", [bomb], ""
    yield "Dense(10**8) on 1,000 inputs", [hostile.write_keras(work / "dense.keras", _dense(10**8, 1000))], ""
    yield "Dense(10**8) on 4 inputs, 2 GiB free", [hostile.write_keras(work / "dense4.keras", _dense(10**8, 4))], \
        AVAILABLE_2_GIB
    wide = hostile.keras_config({"class_name": "ReLU", "config": {"name": "relu"}}, width=10**8)
    yield "Input(10**8) -> ReLU, 2 GiB free", [hostile.write_keras(work / "wide.keras", wide)], AVAILABLE_2_GIB
    lam = {"class_name": "Lambda", "config": {"name": "evil" + hostile.ESCAPES, "function": {
        "class_name": "__lambda__", "config": {"code": "", "defaults": None, "closure": None}}}}
    yield "Lambda named with escape codes", [hostile.write_keras(work / "lambda.keras", hostile.keras_config(lam))], ""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="kdiag-bench-refusals-"))
    print(f"{'case':40} {'exit':>4} {'seconds':>8} {'peak RSS':>9}")
    for name, argv, prelude in cases(work):
        result = hostile.run_kdiag("inspect", *argv, "--out", work / "run", cwd=work, prelude=prelude)
        print(f"{name:40} {result.code:>4} {result.elapsed:8.2f} {result.peak_rss / 2**20:6.0f} MiB")
    print(json.dumps({"python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
