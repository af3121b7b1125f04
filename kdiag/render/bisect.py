"""`kdiag bisect` as text (a line per probe, as each ends, then the result) and as JSON.

The words are kdiag.views.versions'. Text from the model file (its name, a refusal) and from pip
(a release's reason) is hostile: every line goes through kdiag.sanitize.terminal, one line each.
"""

from __future__ import annotations

import json

from kdiag import sanitize
from kdiag.datamodel.report import jsonable
from kdiag.datamodel.versions import BisectProbe, BisectResult
from kdiag.views.versions import bisect_header, bisect_summary, probe_line


def header(result: BisectResult) -> str:
    return sanitize.terminal(bisect_header(result))


def probe_text(result: BisectResult, probe: BisectProbe) -> str:
    return sanitize.terminal(probe_line(result, probe))


def summary_text(result: BisectResult) -> str:
    return "\n".join(sanitize.terminal(line) for line in bisect_summary(result)) + "\n"


def render_text(result: BisectResult) -> str:
    lines = [header(result), *(probe_text(result, p) for p in result.probes), ""]
    return "\n".join(lines) + summary_text(result)


def render_json(result: BisectResult) -> str:
    return json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n"
