"""Read every attribute and dataset of an HDF5 file in a child process, with every read bounded.

HDF5's C library can loop forever or crash on a damaged file (a flipped byte in a global heap
makes H5HG__cache_heap_deserialize spin with the GIL held), and nothing in this process can
interrupt native code. So a child process opens the file first, walks its metadata, reports what
the file claims (datasets, their bytes) on one line, then reads every dataset. The parent
(`probe`) bounds all of it:

- time: the metadata walk gets `H5_PROBE_TIMEOUT_S`; the data reads get time in proportion to the
  bytes the datasets claim (never the file's size, which padding can inflate), within
  `H5_PROBE_MAX_S` for the whole probe;
- size: a file far larger than the data it claims is padding, not a model, and is refused; claimed
  weights that would not fit in memory are refused before Keras allocates them;
- processes: the child runs in its own process group, which is killed (SIGTERM, then SIGKILL after
  a grace period) on a timeout or when the parent stops; the child also dies with its parent
  (PR_SET_PDEATHSIG) and ends itself with an alarm, so it cannot outlive a killed kdiag;
- imports: the child runs as `python -I THIS_FILE` from a private empty folder, so no `h5py.py`,
  `numpy.py` or `zipfile.py` lying next to the model (or in the working directory) is imported.

The child's Python-level errors are ignored: the loader reports those, in this process.
This file is the child's script, so its top level imports the standard library only.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Optional, Tuple

H5_PROBE_TIMEOUT_S = 10.0  # opening the file and walking its metadata
H5_PROBE_S_PER_GIB = 20.0  # reading the data, per GiB the datasets claim
H5_PROBE_MAX_S = 300.0  # the whole probe, whatever the file claims
H5_PROBE_GRACE_S = 2.0  # between SIGTERM and SIGKILL for the child's process group
# A file may exceed its datasets by its metadata (model_config can take megabytes) and by free
# space HDF5 does not reclaim; beyond twice the data plus this, the rest is padding.
H5_PADDING_ALLOWANCE = 64 << 20
SUMMARY_LIMIT = 1 << 16  # the child's one line of JSON; more is not a summary

FIX = "save the model again, or download it again"


@dataclasses.dataclass(frozen=True)
class H5Summary:
    """What an HDF5 file claims to hold, as the child read it from the metadata."""

    datasets: int
    claimed_bytes: int  # shape x dtype size of every dataset: the memory Keras will allocate
    stored_bytes: int  # the bytes the file has allocated for them
    file_bytes: int  # the file's size (or the archive member's uncompressed size)
    external_links: Tuple[str, ...] = ()  # "/path -> file:/path", the first few
    external_link_count: int = 0
    broken_links: Tuple[str, ...] = ()  # soft links that point at nothing or in a circle, the first few
    broken_link_count: int = 0


def probe(path: Path, member: str = "") -> Optional[H5Summary]:
    """Refuse an HDF5 file (or a .keras archive's HDF5 member) that hangs or crashes the HDF5
    library, is padded far beyond its data, or claims weights that will not fit in memory.

    Returns what the file claims, or None when no child process could run the probe.
    """
    from kdiag.errors import KdiagError
    from kdiag.tempdirs import temporary_directory  # not at the top: this file is also the child's script

    if not sys.executable:
        return None  # an embedded interpreter: no child to run the probe in
    path = Path(path)
    what = f"{path.name} ({member})" if member else path.name
    member_bytes = _member_size(path, member) if member else 0
    # Reading a member into memory takes time in proportion to its size, before any metadata.
    first_limit = min(H5_PROBE_MAX_S, H5_PROBE_TIMEOUT_S + H5_PROBE_S_PER_GIB * member_bytes / (1 << 30))
    start = time.monotonic()
    with temporary_directory(prefix="kdiag-h5probe-") as private:
        try:
            child = subprocess.Popen(
                child_command(path, member), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, cwd=private, start_new_session=True)
        except OSError:
            return None  # no child process here: load as before
        try:
            line = _read_line(child, start + first_limit)
            if line is None:
                _stop(child)
                raise KdiagError(
                    f"{what} is damaged: the HDF5 library did not finish reading it in {first_limit:g} s", FIX)
            summary = _parse_summary(line)
            if summary is not None:
                _check_claims(what, summary)
                limit = min(H5_PROBE_MAX_S, max(first_limit, H5_PROBE_TIMEOUT_S + H5_PROBE_S_PER_GIB
                                                * summary.stored_bytes / (1 << 30)))
                try:
                    child.wait(timeout=max(0.0, start + limit - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _stop(child)
                    raise KdiagError(
                        f"{what} is damaged: the HDF5 library did not finish reading it in {limit:g} s "
                        f"({_size_text(summary.stored_bytes)} of data)", FIX)
            else:
                child.wait(timeout=max(0.0, start + first_limit - time.monotonic()) + H5_PROBE_GRACE_S)
        except subprocess.TimeoutExpired:
            _stop(child)
            return None  # it reported it could not open the file, then did not exit: the loader decides
        finally:
            if child.poll() is None:  # a refusal above, or Ctrl-C / SIGTERM in this process
                _stop(child)
            child.stdout.close()
    if child.returncode < 0:
        try:
            name = signal.Signals(-child.returncode).name
        except ValueError:
            name = f"signal {-child.returncode}"
        raise KdiagError(f"{what} is damaged: reading it crashed the HDF5 library ({name})", FIX)
    return summary


def child_command(path: Path, member: str = "") -> list:
    """`python -I` runs this file with neither the working directory, the script's folder, the user's
    site-packages nor PYTHON* variables on the path. The folders this process found h5py and NumPy
    in go last, so the child reads with the same HDF5 as Keras even from a user install."""
    return [sys.executable, "-I", str(Path(__file__).resolve()), str(Path(path).resolve()), member,
            str(os.getpid()), str(H5_PROBE_MAX_S + H5_PROBE_GRACE_S), *_library_folders()]


def _library_folders() -> list:
    import importlib.util

    folders = []
    for name in ("h5py", "numpy"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin:
            folder = str(Path(spec.origin).resolve().parent.parent)
            if folder not in folders:
                folders.append(folder)
    return folders


def _member_size(path: Path, member: str) -> int:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.getinfo(member).file_size
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return 0


def _read_line(child: subprocess.Popen, deadline: float) -> Optional[bytes]:
    """The child's first line (b"" when it exited without one), or None at the deadline."""
    fd = child.stdout.fileno()
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in received and len(received) < SUMMARY_LIMIT:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            received += chunk
    return received.split(b"\n", 1)[0]


def _parse_summary(line: bytes) -> Optional[H5Summary]:
    try:
        data = json.loads(line)
        return H5Summary(int(data["datasets"]), int(data["claimed_bytes"]), int(data["stored_bytes"]),
                         int(data["file_bytes"]), tuple(map(str, data.get("external_links", ()))),
                         int(data.get("external_link_count", 0)), tuple(map(str, data.get("broken_links", ()))),
                         int(data.get("broken_link_count", 0)))
    except (ValueError, KeyError, TypeError):
        return None  # the child could not open the file (or did not start): the loader reports that


def _size_text(n: int) -> str:
    from kdiag.engine.intake.limits import size_text

    return size_text(n)


def _check_claims(what: str, summary: H5Summary) -> None:
    from kdiag.engine.intake import limits
    from kdiag.errors import KdiagError
    from kdiag.sanitize import joined

    if summary.external_link_count:
        named = joined(summary.external_links, limit=LINKS_NAMED, each=200, total=summary.external_link_count)
        raise KdiagError(
            f"{what} holds {_links(summary.external_link_count, 'an external link', 'external links')} to other "
            f"files ({named}): reading the model would make the HDF5 library open them",
            "save the model again with model.save(), which writes one self-contained file")
    if summary.broken_link_count:
        named = joined(summary.broken_links, limit=LINKS_NAMED, each=200, total=summary.broken_link_count)
        raise KdiagError(f"{what} holds {_links(summary.broken_link_count, 'a soft link', 'soft links')} that "
                         f"cannot be followed ({named})", FIX)
    if summary.file_bytes > 2 * summary.stored_bytes + H5_PADDING_ALLOWANCE:
        raise KdiagError(
            f"{what} is {limits.size_text(summary.file_bytes)} but the data it holds is only "
            f"{limits.size_text(summary.stored_bytes)} ({summary.datasets} datasets): the rest is padding "
            "or damage, not model data", FIX)
    limits.check_load_memory(what, summary.claimed_bytes)


def _links(count: int, one: str, many: str) -> str:
    return one if count == 1 else f"{count:,} {many}"


def _stop(child: subprocess.Popen) -> None:
    """End the child's whole process group: SIGTERM, then SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, H5_PROBE_GRACE_S), (signal.SIGKILL, H5_PROBE_GRACE_S)):
        try:
            os.killpg(child.pid, sig)  # start_new_session: the group's id is the child's pid
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


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


MAX_LINK_HOPS = 16  # HDF5's own limit on nested soft links (H5L_NUM_LINKS)
LINKS_NAMED = 3  # links named in the summary line, the rest counted


def walk(group, seen, datasets, links):
    """Every attribute read; every dataset reached by hard links and by soft links that resolve
    inside the file collected (nothing of them read yet).

    h5py follows soft and external links when a loader looks a name up (`group[name]`), so Keras'
    loaders would too: an external link makes the HDF5 library open another file on disk (any file,
    a FIFO, a device), and a soft link may point nowhere or in a circle. Each link is resolved here
    by hand instead, and those kdiag refuses are collected in `links` ("external", "broken").
    """
    import h5py

    attrs(group)
    try:
        keys = list(group.keys())
    except Exception:
        return
    for key in keys:
        try:
            link = group.get(key, getlink=True)
            where = f"{group.name.rstrip('/')}/{key}"
            if isinstance(link, h5py.ExternalLink):
                links["external"].append(f"{where} -> {link.filename}:{link.path}")
                continue
            if isinstance(link, h5py.SoftLink):
                target, problem = soft_link_target(group, key)
                if problem:
                    links["broken"].append(f"{where} -> {link.path} ({problem})")
                    continue
                obj = group.file[target]
            elif isinstance(link, h5py.HardLink):
                obj = group[key]
            else:
                continue  # a user-defined link class: h5py cannot follow it, nor can the loader
            if obj.id in seen:
                continue  # hard and soft links can make cycles
            seen.add(obj.id)
        except Exception:
            continue
        if isinstance(obj, h5py.Group):
            walk(obj, seen, datasets, links)
        elif isinstance(obj, h5py.Dataset):
            attrs(obj)
            datasets.append(obj)


def soft_link_target(group, key):
    """(the absolute path a soft link resolves to, None), or (None, why it does not resolve)."""
    import posixpath

    import h5py

    handle = group.file
    parent, name = group.name, key
    visited = set()
    for _ in range(MAX_LINK_HOPS + 1):
        current = posixpath.normpath(posixpath.join(parent, name))
        if current in visited:
            return None, "a loop of soft links"
        visited.add(current)
        try:
            link = handle.get(current, getlink=True)
        except Exception:  # a component on the way is missing or loops itself
            return None, "points at nothing in the file"
        if link is None:
            return None, "points at nothing in the file"
        if isinstance(link, h5py.ExternalLink):
            return None, f"leads to an external link to {link.filename}"
        if not isinstance(link, h5py.SoftLink):
            return current, None
        parent, name = posixpath.dirname(current), link.path
    return None, f"more than {MAX_LINK_HOPS} soft links in a row"


def claims(datasets):
    claimed = stored = 0
    for dataset in datasets:
        try:
            claimed += int(dataset.size or 0) * dataset.dtype.itemsize
            stored += int(dataset.id.get_storage_size())
        except Exception:
            continue
    return claimed, stored


def die_with_parent(parent_pid: int, lifetime_s: float) -> None:
    """Never outlive kdiag: SIGKILL when the parent dies (Linux), and an alarm whose default action
    ends this process even while native code holds the GIL."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:
        pass  # not Linux: the alarm alone bounds its life
    if hasattr(signal, "alarm"):
        signal.alarm(max(1, int(lifetime_s + 1)))
    if os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the death signal was armed


def main(path: str, member: str, parent_pid: int, lifetime_s: float, library_folders) -> None:
    die_with_parent(parent_pid, lifetime_s)
    sys.path.extend(folder for folder in library_folders if folder not in sys.path)
    import h5py

    try:
        if member:
            with zipfile.ZipFile(path) as archive:
                file_bytes = archive.getinfo(member).file_size
                source = io.BytesIO(archive.read(member))
        else:
            file_bytes = os.path.getsize(path)
            source = path
        handle = h5py.File(source, "r")
    except Exception:
        print(json.dumps({"error": "could not open"}), flush=True)
        return
    datasets, links = [], {"external": [], "broken": []}
    walk(handle, {handle.id}, datasets, links)
    claimed, stored = claims(datasets)
    print(json.dumps({"datasets": len(datasets), "claimed_bytes": claimed, "stored_bytes": stored,
                      "file_bytes": file_bytes,
                      **{f"{kind}_links": [text[:200] for text in found[:LINKS_NAMED]] for kind, found in links.items()},
                      **{f"{kind}_link_count": len(found) for kind, found in links.items()}}), flush=True)
    for dataset in datasets:
        read(dataset)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:])
