"""`python -m kdiag`.

`python -m` puts the working directory first on sys.path, so a `numpy.py`, `h5py.py` or
`zipfile.py` lying there (a downloads folder next to the model) would be imported in place of
the real module. It is dropped before anything else is imported; kdiag itself is already
imported by then, and finds its own modules through its package path.
"""

import os
import sys


def _drop_working_directory(entries):
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was removed: only the relative spellings can name it
        cwd = None
    return [entry for entry in entries
            if entry not in ("", ".") and (cwd is None or os.path.realpath(entry) != cwd)]


sys.path[:] = _drop_working_directory(sys.path)

from kdiag.cli import entry  # noqa: E402  (after the sys.path clean-up, on purpose)

entry()
