"""`kdiag bisect` as text (a line per probe, as each ends, then the result) and as JSON.

The words are kdiag.views_versions'; text from the model file (its name, a refusal) is shown
with control characters escaped, as the terminal report does.
"""

from __future__ import annotations

import json

from kdiag.datamodel.report import jsonable
from kdiag.datamodel.versions import BisectProbe, BisectResult
from kdiag.render.terminal import visible
from kdiag.views_versions import bisect_summary, probe_line


def header(result: BisectResult) -> str:
    return visible(f"kdiag bisect · {result.model} · {result.strategy} · {len(result.releases)} releases of "
                   f"{result.package or 'tensorflow'} from {result.good} (good) to {result.bad} (bad): "
                   f"{', '.join(result.releases)}")


def probe_text(result: BisectResult, probe: BisectProbe) -> str:
    return visible(probe_line(result, probe))


def summary_text(result: BisectResult) -> str:
    return "\n".join(visible(line) for line in bisect_summary(result)) + "\n"


def render_text(result: BisectResult) -> str:
    lines = [header(result), *(probe_text(result, p) for p in result.probes), ""]
    return "\n".join(lines) + summary_text(result)


def render_json(result: BisectResult) -> str:
    return json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n"
