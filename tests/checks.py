"""Assertions shared by the CLI tests."""

from __future__ import annotations

#: No refusal may take longer than this: it comes before any measuring ("within seconds", with room
#: for a loaded 2-core machine; TensorFlow is imported by the test fixtures first).
REFUSAL_SECONDS = 30.0


def assert_refused(result, *words: str) -> str:
    """A clean refusal: exit 2, one `kdiag: error:` line holding `words`, no traceback, nothing on stdout.

    `result` is (code, stdout, stderr), or a result that also has `elapsed` (seconds, checked
    against REFUSAL_SECONDS) and `out` (a --out folder, which must not be left behind).
    Returns the error line.
    """
    code, stdout, stderr = result[:3]
    assert code == 2, f"exit {code}, stderr:\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("kdiag: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert stdout == "", stdout
    out = getattr(result, "out", None)
    if out is not None:
        assert not out.exists(), f"run folder {out} left behind: {sorted(p.name for p in out.iterdir())}"
    elapsed = getattr(result, "elapsed", None)
    if elapsed is not None:
        assert elapsed < REFUSAL_SECONDS, f"took {elapsed:.1f} s"
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]
