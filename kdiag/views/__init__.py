"""What every consumer of a Report shares, one definition each.

- `facts` (re-exported here, so `views.median(...)` reads as before): derived facts such as
  "measured", "outputs match", "fastest matching" and "beyond the noise".
- `wording`: every sentence that two outputs show.
- `sections`: every section of the report built once as rows and captions; the terminal, Markdown
  and HTML renderers lay them out and add no facts.
"""

from kdiag.views.facts import (SAME, TOO_FEW, Judgement, KerasPair, KerasSides, LabelledRun, MIN_CALLS_FOR_VERDICT, PhaseDelta, StrategyRow, beyond_noise, compile_phase_deltas, compile_total_delta, crossover_text, fastest_matching, fastest_usable, floor_gaps, growth_text, inflation_text, iqr, judge, keras_cell, keras_label, keras_pairs, keras_phase_deltas, keras_sides, measured, median, memory_verdict, op_type_text, outputs_differ, outputs_match, outputs_text, outputs_vary, own_findings, phase_deltas, reference_check, release_label, release_short, side_by_side, size_text, strategy_rows, threads_judgement, threads_text, timed, times_text, usable, versus_predict, versus_text)  # noqa: F401
