"""What the CLI tests share: running `kdiag` in-process, and what a clean refusal is. Defined once."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import NamedTuple, Optional

from kdiag.cli import Env, main

#: No refusal may take longer than this: it comes before any measuring ("within seconds", with room
#: for a loaded 2-core machine; TensorFlow is imported by the test fixtures first).
REFUSAL_SECONDS = 30.0


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str
    elapsed: float
    out: Optional[Path]  # the --out folder asked for


def run(*argv) -> Result:
    """main() in-process, as `kdiag ARGV`; anything escaping it is what a user would see as a traceback."""
    argv = [str(a) for a in argv]
    env = Env(stdout=io.StringIO(), stderr=io.StringIO())
    start = time.perf_counter()
    try:
        code = main(argv, env)
    except (Exception, SystemExit) as exc:
        raise AssertionError(f"main() raised {type(exc).__name__}: {str(exc)[:300]} (a traceback for the user)") from exc
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    return Result(code, env.stdout.getvalue(), env.stderr.getvalue(), time.perf_counter() - start, out)


def assert_refused(result, *words: str, marker: Optional[Path] = None, within_s: float = REFUSAL_SECONDS) -> str:
    """A clean refusal: exit 2, one `kdiag: error:` line holding `words` and last on stderr, no traceback,
    nothing on stdout. Returns the error line.

    `result` is (code, stdout, stderr), or a Result, whose `elapsed` (seconds) must be under `within_s`
    and whose `out` (a --out folder) must not be left behind. `marker`: a file that code from the model
    file would have written.
    """
    code, stdout, stderr = result[:3]
    assert code == 2, f"exit {code}, stderr:\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("kdiag: error:")]
    assert len(errors) == 1, stderr
    assert stderr.strip().splitlines()[-1] == errors[0], stderr  # the last line, whole: only progress before it
    assert "Traceback" not in stderr, stderr
    assert stdout == "", stdout
    out = getattr(result, "out", None)
    if out is not None:
        assert not out.exists(), f"run folder {out} left behind: {sorted(p.name for p in out.iterdir())}"
    elapsed = getattr(result, "elapsed", None)
    if elapsed is not None:
        assert elapsed < within_s, f"took {elapsed:.1f} s"
    if marker is not None:
        assert not marker.exists(), f"{marker} was written: code from the model file ran"
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]
