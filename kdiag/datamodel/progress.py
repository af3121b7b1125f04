"""What a running `kdiag inspect` tells the person waiting for it."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class ProgressUpdate:
    step: int  # 1-based
    total_steps: int
    stage: str  # "load", "prepare", "measure", "cpp", "profile", "training check", "report"
    detail: str  # the strategy, or what the stage is doing ("TFLite: converting")
    elapsed_s: float  # since the run started
    left_s: Optional[float] = None  # at most this much more: the time limit's remainder; None without one
    notice: str = ""  # a line to show once, apart from the step (what a full answer would cost)

    @property
    def line(self) -> str:
        """'[3/14] prepare: TFLite' — what every progress display shows."""
        return f"[{self.step}/{self.total_steps}] {self.stage}: {self.detail}"
