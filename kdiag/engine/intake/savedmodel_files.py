"""The files of a SavedModel folder: regular files inside the folder, checked before anything reads them.

TensorFlow opens saved_model.pb, fingerprint.pb, every file under variables/ and the assets a graph
names (a lookup table's vocabulary) as ordinary paths. A SavedModel whose asset was a symbolic link
to /etc/passwd filled its table from that file and ran with exit 0; one with a FIFO in variables/
hung at loading until killed; a link to /dev/zero would fill memory (issue 20). So before kdiag or
TensorFlow opens any of them, each entry of those parts of the folder is looked at with lstat:

- FIFOs, sockets and devices are refused, linked to or not: reading them blocks or never ends;
- a symbolic link is followed to its real path, which must lie inside the SavedModel folder (a
  dangling link is refused too). Layouts built of links into a cache (a Hugging Face snapshot,
  say) are legitimate: `--unsafe` accepts links that leave the folder, never FIFOs or devices.

Only what TensorFlow reads is looked at (`READ_FILES`, `READ_FOLDERS`); other files in the folder
are left alone. Standard library only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kdiag.errors import KdiagError

#: The files and folders of a SavedModel that TensorFlow (or TF Serving, for assets.extra) reads.
READ_FILES = ("saved_model.pb", "saved_model.pbtxt", "fingerprint.pb", "keras_metadata.pb")
READ_FOLDERS = ("variables", "assets", "assets.extra")
#: More entries than this is no SavedModel: the walk stops and refuses rather than run for ever.
MAX_ENTRIES = 100_000
FIX = "export the model again, or copy the SavedModel folder with its files' contents (cp -rL)"


def check_saved_model_files(folder: Path, *, unsafe: bool = False) -> None:
    """Refuse, with one line naming the file, a SavedModel whose files are not regular files inside it."""
    folder = Path(folder)
    root = Path(os.path.realpath(folder))
    pending = [folder / name for name in READ_FILES + READ_FOLDERS if os.path.lexists(folder / name)]
    visited = set()  # real paths of the folders walked: links can make loops
    seen = 0
    while pending:
        path = pending.pop()
        seen += 1
        if seen > MAX_ENTRIES:
            raise KdiagError(f"{folder.name} holds more than {MAX_ENTRIES:,} files in its variables and assets; "
                             "no SavedModel does", FIX)
        if _check_entry(folder, root, path, unsafe):  # a folder (or a link to one) that may be read: walk it
            real = os.path.realpath(path)
            if real in visited:
                continue
            visited.add(real)
            try:
                names = sorted(os.listdir(path), reverse=True)
            except OSError as exc:
                raise KdiagError(f"{folder.name}'s {path.relative_to(folder).as_posix()} cannot be read "
                                 f"({exc.strerror})", FIX) from None
            pending.extend(path / name for name in names)


def _check_entry(folder: Path, root: Path, path: Path, unsafe: bool) -> bool:
    """Refuse what is no regular file or folder inside the SavedModel; True for a folder."""
    shown = path.relative_to(folder).as_posix()
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise KdiagError(f"{folder.name}'s {shown} cannot be read ({exc.strerror})", FIX) from None
    if stat.S_ISLNK(mode):
        target = Path(os.path.realpath(path))
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise KdiagError(f"{folder.name}'s {shown} is a symbolic link to nothing ({os.readlink(path)})",
                             FIX) from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise KdiagError(f"{folder.name}'s {shown} is a symbolic link to {target}, {_kind(mode)}, not a file: "
                             "reading it as part of the model would block or never end", FIX)
        if not _is_inside(target, root) and not unsafe:
            raise KdiagError(
                f"{folder.name}'s {shown} is a symbolic link to {target}, outside the SavedModel folder: TensorFlow "
                "would read that file as part of the model", FIX + "; if you trust this layout, re-run with --unsafe")
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return stat.S_ISDIR(mode)
    raise KdiagError(f"{folder.name}'s {shown} is {_kind(mode)}, not a file: reading it as part of the model "
                     "would block or never end", FIX)


def _is_inside(target: Path, root: Path) -> bool:
    return target == root or root in target.parents


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
