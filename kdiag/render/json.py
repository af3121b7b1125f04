"""The Report as JSON: every figure, and the kept samples of each strategy; first, the verdict.

`verdict` (top level, derived: kdiag.views.verdict, never read back) says what the report answers:
the classification, predict and the best drop-in fix, whether the fix is recommended and its
speed-up (judged by the one noise rule), and what leaving Keras would add.

Indented for people, except two things no one reads line by line: lists of numbers (the
samples) stay on one line, and each profile's call tree (hundreds of nested nodes for
report.html) is written compactly. Indenting them would make report.json several times larger
(on the tiny example, 615 kB against under 300 kB) and no easier to read.
"""

import json
import re

# A JSON array of numbers only, as json.dumps(indent=2) lays it out over several lines. JSON
# strings cannot hold a raw newline, so this never matches inside a string.
_NUMBER_LIST = re.compile(r"\[\n\s*(-?[\d.eE+-]+(?:,\n\s*-?[\d.eE+-]+)*)\n\s*\]")
_COMPACT_KEYS = ("call_tree",)


def render(report) -> str:
    from kdiag.views import wording
    from kdiag.views.verdict import as_dict

    verdict = dict(as_dict(report), line=wording.verdict_line(report, width=10_000),
                   classification_text=wording.classification(report))
    data = {"verdict": verdict, **report.to_dict()}
    compact = {}
    _set_aside(data, compact)
    text = json.dumps(data, indent=2, allow_nan=False)
    text = _NUMBER_LIST.sub(lambda m: "[" + ",".join(n.strip() for n in m.group(1).split(",")) + "]", text)
    for token, value in compact.items():
        text = text.replace(json.dumps(token), value, 1)
    return text + "\n"


def _set_aside(value, compact: dict) -> None:
    """Replace every compact-key value by a unique token, keeping its compact JSON in `compact`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _COMPACT_KEYS and item is not None:
                # A token no report string can hold: \u0000 is never in a name kdiag writes.
                token = f"\u0000compact-{len(compact)}\u0000"
                compact[token] = json.dumps(item, separators=(",", ":"), allow_nan=False)
                value[key] = token
            else:
                _set_aside(item, compact)
    elif isinstance(value, list):
        for item in value:
            _set_aside(item, compact)
