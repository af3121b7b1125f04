"""The Report as JSON: every figure, and the kept samples of each strategy.

Indented for people, except lists of numbers (the samples), which stay on one line: one
number per line would make report.json several times larger and no easier to read.
"""

import json
import re

# A JSON array of numbers only, as json.dumps(indent=2) lays it out over several lines. JSON
# strings cannot hold a raw newline, so this never matches inside a string.
_NUMBER_LIST = re.compile(r"\[\n\s*(-?[\d.eE+-]+(?:,\n\s*-?[\d.eE+-]+)*)\n\s*\]")


def render(report) -> str:
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False)
    return _NUMBER_LIST.sub(lambda m: "[" + ",".join(n.strip() for n in m.group(1).split(",")) + "]", text) + "\n"
