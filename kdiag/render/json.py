"""The Report as JSON: everything measured, raw samples included."""

import json


def render(report) -> str:
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
