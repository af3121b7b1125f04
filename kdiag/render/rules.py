"""`kdiag rules`: the phase landmarks and the diagnosis thresholds, as plain text."""

from __future__ import annotations

from kdiag.phases import PHASE_DESCRIPTIONS, PHASES, RULESETS, rules_table


def render_rules() -> str:
    lines = ["Phases: each profiled second goes to the innermost landmark above it, its time spread over its",
             "callers in proportion to the edge times (as gprof does); the rest is 'other Python'. Two exceptions:",
             "an absorbing phase keeps everything below it (all Python run while tracing is tracing cost), and a",
             "weak phase only takes over from 'other Python' (an eager op run by tf.data code stays tf.data).", ""]
    for phase in PHASES:
        lines.append(f"  {phase:26} {PHASE_DESCRIPTIONS[phase]}")
    for rules in RULESETS.values():
        lines += ["", f"Rule set {rules.name} ({rules.framework}): {rules.description}",
                  f"  absorbing: {', '.join(rules.absorbing_phases) or 'none'}; weak: {', '.join(rules.weak_phases) or 'none'}"]
        lines += [f"  {phase:26} {path}  {function}" for phase, path, function in rules_table(rules)]
    lines += ["", "Diagnosis thresholds:"]
    from kdiag.diagnose import thresholds_table

    for finding, name, value, meaning in thresholds_table():
        lines.append(f"  {finding:28} {name:28} {value:>10}  {meaning}")
    return "\n".join(lines) + "\n"

