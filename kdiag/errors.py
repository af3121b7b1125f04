"""The one error type users see: a message naming the problem and the fix."""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # an unexpected failure (a bug in kdiag): shown with a traceback
    BAD_INPUT = 2  # the user's input or options are wrong: one line, no traceback
    REGRESSION = 3  # `kdiag compare --fail-above` found a regression
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM (docker stop, CI cancellation, timeout): 128 + 15, as a shell reports it


class KdiagError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem}. {self.fix}" if self.fix else self.problem


class NotApplicable(Exception):
    """A strategy cannot run on this model; the message says why."""


def first_line(exc: BaseException, limit: int = 240) -> str:
    """The first non-empty line of an exception's message (TensorFlow's run to pages), or its type."""
    text = str(exc).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), type(exc).__name__)
    return line[:limit]
