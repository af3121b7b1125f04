"""Local paths out of what a user pastes into a public issue.

report.md and the `redacted/` copies of the .prof files show the home folder as `~`, the
Python install and its site-packages as `<python>`, and the model's folder as `<model-dir>`.
What to replace is recorded in the Report itself (Environment.home, Environment.python_paths,
ModelInfo.directory), so redacting is a pure function of the Report: the same report.json
renders the same report.md on any machine.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePath
from typing import Iterable, Tuple

HOME = "~"
PYTHON = "<python>"
MODEL_DIR = "<model-dir>"

#: Folder of the redacted .prof copies, inside the folder of the originals.
REDACTED_FOLDER = "redacted"

# A path is replaced only where it starts and ends a path: not inside /a/home/alice, nor as the
# front of /home/alicex. Characters that continue a file or folder name:
_NAME = r"[\w.-]"


@dataclasses.dataclass(frozen=True)
class Redactor:
    """Replaces absolute paths (longest, most specific first) by short placeholders."""

    replacements: Tuple[Tuple[str, str], ...] = ()  # (absolute path, placeholder)

    @classmethod
    def of(cls, pairs: Iterable[Tuple[str, str]]) -> "Redactor":
        kept = {}
        for path, placeholder in pairs:
            path = (path or "").rstrip("/")
            # "/" or a relative path would mangle every path in the text, or none correctly.
            if path.startswith("/") and path.count("/") >= 1 and len(path) > 1:
                kept.setdefault(path, placeholder)
        return cls(tuple(sorted(kept.items(), key=lambda item: -len(item[0]))))

    @classmethod
    def for_report(cls, report) -> "Redactor":
        """The model's folder, the Python paths and the home folder recorded in `report`."""
        env = report.environment
        return cls.of([(report.model.directory, MODEL_DIR)] + [(p, PYTHON) for p in env.python_paths]
                      + [(env.home, HOME)])

    @property
    def _pattern(self):
        if not self.replacements:
            return None
        alternatives = "|".join(re.escape(path) for path, _ in self.replacements)
        return re.compile(rf"(?<!{_NAME})({alternatives})(?!{_NAME})")

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        lookup = dict(self.replacements)
        return pattern.sub(lambda m: lookup[m.group(1)], text)

    def report(self, report):
        """`report` with every string in it redacted (the paths to redact from included)."""
        return _redacted(report, self.redact)


def redacted_prof_path(path: str) -> str:
    """Where the redacted copy of a .prof file goes: `redacted/` beside the original."""
    original = PurePath(path)
    return str(original.parent / REDACTED_FOLDER / original.name)


def _redacted(value, redact):
    if isinstance(value, str):
        return redact(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _redacted(getattr(value, f.name), redact)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, (list, tuple)):
        return type(value)(_redacted(v, redact) for v in value)
    return value
