"""`kdiag rules`: the phase landmarks and the diagnosis thresholds, as plain text."""

from __future__ import annotations

from typing import Sequence, Tuple

from kdiag.datamodel.profile import PHASE_DESCRIPTIONS, PHASES, RuleSetListing


def render(rulesets: Sequence[RuleSetListing], thresholds: Sequence[Tuple[str, str, str, str]]) -> str:
    """The phase rules and the diagnosis thresholds (finding, name, value, meaning) as plain text."""
    lines = ["Phases: each profiled second goes to the innermost landmark above it, its time spread over its",
             "callers in proportion to the edge times (as gprof does); the rest is 'other Python'. Two exceptions:",
             "an absorbing phase keeps everything below it (all Python run while tracing is tracing cost), and a",
             "weak phase only takes over from 'other Python' (an eager op run by tf.data code stays tf.data).", ""]
    for phase in PHASES:
        lines.append(f"  {phase:26} {PHASE_DESCRIPTIONS[phase]}")
    for rules in rulesets:
        lines += ["", f"Rule set {rules.name} ({rules.framework}): {rules.description}",
                  f"  absorbing: {', '.join(rules.absorbing_phases) or 'none'}; weak: {', '.join(rules.weak_phases) or 'none'}"]
        lines += [f"  {phase:26} {path}  {function}" for phase, path, function in rules.rows]
    lines += ["", "Diagnosis thresholds:"]
    for finding, name, value, meaning in thresholds:
        lines.append(f"  {finding:28} {name:28} {value:>10}  {meaning}")
    return "\n".join(lines) + "\n"

