"""Read every attribute and dataset of an HDF5 file in a child process, under a time limit.

HDF5's C library can loop forever or crash on a damaged file (a flipped byte in a global heap
makes H5HG__cache_heap_deserialize spin with the GIL held), and nothing in this process can
interrupt native code. So a child process reads every attribute and dataset first, under a
time limit; its Python-level errors are ignored (the loader reports those, in this process).

Run as `python -m kdiag.engine.h5probe PATH [ZIP_MEMBER]` by `probe()`, never imported for its reading code.
"""

import io
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py

from kdiag.errors import KdiagError

H5_PROBE_TIMEOUT_S = 10.0
H5_PROBE_S_PER_GIB = 20.0


def probe(path: Path, member: str = "") -> None:
    """Refuse an HDF5 file (or a .keras archive's HDF5 member) that hangs or crashes the HDF5 library."""
    if not sys.executable:
        return  # an embedded interpreter: no child to run the probe in
    what = f"{path.name} ({member})" if member else path.name
    limit = H5_PROBE_TIMEOUT_S + H5_PROBE_S_PER_GIB * path.stat().st_size / (1 << 30)
    fix = "save the model again, or download it again"
    try:
        result = subprocess.run([sys.executable, "-m", "kdiag.engine.h5probe", str(path), member], input=b"",
                                capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        raise KdiagError(f"{what} is damaged: the HDF5 library did not finish reading it in {limit:.0f} s", fix)
    except OSError:
        return  # no child process here: load as before
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        raise KdiagError(f"{what} is damaged: reading it crashed the HDF5 library ({name})", fix)


# --- the child's side ------------------------------------------------------------


STEP = 64 << 20


def attrs(obj):
    try:
        for key in list(obj.attrs):
            try:
                obj.attrs[key]
            except Exception:
                pass
    except Exception:
        pass


def read(dataset):
    try:
        if not dataset.shape:
            dataset[()]
            return
        rows = dataset.shape[0]
        row_bytes = max(1, dataset.size // max(rows, 1) * dataset.dtype.itemsize)
        step = max(1, STEP // row_bytes)
        for start in range(0, rows, step):
            dataset[start:start + step]
    except Exception:
        pass


def walk(group, seen):

    attrs(group)
    try:
        keys = list(group.keys())
    except Exception:
        return
    for key in keys:
        try:
            if not isinstance(group.get(key, getlink=True), h5py.HardLink):
                continue  # soft and external links: the loader does not follow them
            obj = group[key]
            if obj.id in seen:
                continue  # hard links can make cycles
            seen.add(obj.id)
        except Exception:
            continue
        if isinstance(obj, h5py.Group):
            walk(obj, seen)
        elif isinstance(obj, h5py.Dataset):
            attrs(obj)
            read(obj)


def main(path: str, member: str) -> None:
    try:
        source = io.BytesIO(zipfile.ZipFile(path).read(member)) if member else path
        handle = h5py.File(source, "r")
    except Exception:
        return
    walk(handle, {handle.id})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
