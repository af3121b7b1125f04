"""Run folders: `reports/<model>-<timestamp>/` with report.md, report.json and the .prof files.

An existing run is never overwritten, and files are written atomically (a temporary
file in the same folder, then a rename), so a reader never sees half a report.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from kdiag.errors import KdiagError

DEFAULT_ROOT = Path("reports")


def new_run_folder(model_name: str, out: Optional[Path] = None, root: Path = DEFAULT_ROOT) -> Path:
    """Create the folder for this run: `out` if given (must be new or empty), else a fresh one under root."""
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise KdiagError(
                f"--out {out} already exists and is not an empty folder; kdiag never overwrites a run",
                "choose a new folder name, or remove the old run first",
            )
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{_safe(model_name)}-{stamp}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # backslashreplace: a file name with a non-UTF-8 byte (a Latin-1 download) must
        # not make the report unwritable.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def discard(folder: Path, keep_folder: bool = False) -> None:
    """Remove what this run wrote after a failure; the folder too unless the user made it."""
    if not keep_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in Path(folder).iterdir():  # the folder was empty when the run began
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"
