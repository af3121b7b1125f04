"""The output formats: a registry of renderers, each `render(report, **options) -> str`.

`FORMATS` is the one list: `--format` offers those printed on stdout, and a run folder holds
the file of each one that has a file name (`kdiag.runfolder.save_run` iterates it). A new
format is a renderer module and one line here.

Each renderer is imported when it renders: only `terminal` imports rich, and `html` imports
matplotlib (when installed) only while it draws, so `kdiag --help` stays instant.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional


@dataclasses.dataclass(frozen=True)
class Format:
    """One output format: its name, its file in a run folder, and its renderer."""

    name: str  # what --format takes
    file_name: Optional[str]  # in the run folder; None: printed only
    render: Callable[..., str]  # (report, **options) -> the text
    stdout: bool = True  # offered by --format; repro.py is a file only


def _terminal(report, **options) -> str:
    from kdiag.render.terminal import render

    return render(report, **options)


def _json(report, **options) -> str:
    from kdiag.render.json import render

    return render(report, **options)


def _markdown(report, **options) -> str:
    from kdiag.render.markdown import render

    return render(report, **options)


def _html(report, **options) -> str:
    from kdiag.render.html import render

    return render(report, **options)


def _repro(report, **options) -> str:
    from kdiag.render.repro import render

    return render(report, **options)


FORMATS: Dict[str, Format] = {f.name: f for f in (
    Format("terminal", None, _terminal),
    Format("markdown", "report.md", _markdown),
    Format("json", "report.json", _json),
    Format("html", "report.html", _html),
    # Standalone: TensorFlow alone runs it.
    Format("repro", "repro.py", _repro, stdout=False),
)}
#: What --format offers on stdout.
STDOUT_FORMATS = tuple(name for name, f in FORMATS.items() if f.stdout)


def render(report, fmt: str, **options) -> str:
    """The report in `fmt`; options go to that renderer (markdown: redact; terminal: width, verbose)."""
    return FORMATS[fmt].render(report, **options)
