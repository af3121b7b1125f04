"""TensorFlow releases side by side (`kdiag inspect --tf`) and the bisect to a slow release (`kdiag bisect`).

What the user asked for (the `--tf` entries: "2.15", "2.16.2", "installed", "nightly"), how each
release's environment was obtained (`EnvironmentInfo`), and what a bisect probed (`BisectProbe`,
`BisectResult`). The per-version Reports of `--tf` hang off the Report itself
(`kdiag.datamodel.report.VersionRun`), as `other_keras` does for `--keras both`.

Standard library only, like the rest of the data model.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import List, Optional, Tuple

from kdiag.datamodel.measurement import Measurement
from kdiag.datamodel.strategies import BY_KEY
from kdiag.errors import KdiagError

#: `--tf installed`: the TensorFlow this kdiag runs under, measured in a child process like the others.
INSTALLED = "installed"
#: `--tf nightly`: tf-nightly, the newest development build the package index serves.
NIGHTLY = "nightly"
#: More entries than this is a typo, or hours of downloads.
MAX_TF_VERSIONS = 8
#: A release as pip writes one: 2.15, 2.15.1, 2.15.0.post1, 2.16.0rc0.
RELEASE = re.compile(r"^\d+\.\d+(\.\d+)?((a|b|rc)\d+)?(\.post\d+)?$")
#: The --threshold of `kdiag bisect`: a probed release slower than the good one by at least this ratio
#: (and beyond the noise) is slow.
DEFAULT_BISECT_THRESHOLD = 1.2
MAX_BISECT_THRESHOLD = 100.0

_TF_FIX = "use e.g. --tf 2.15,installed (releases as 2.15 or 2.15.1, 'installed', 'nightly')"


def parse_tf_versions(text: str) -> Tuple[str, ...]:
    """`--tf 2.15,installed` → ("2.15", "installed"), checked."""
    return check_tf_versions([part.strip() for part in str(text).split(",") if part.strip()])


def check_tf_versions(entries) -> Tuple[str, ...]:
    """The `--tf` entries as a tuple, or one line saying which entry is wrong."""
    if isinstance(entries, (str, bytes)) or not hasattr(entries, "__iter__"):
        raise KdiagError(f"--tf must be a list of TensorFlow versions, not {entries!r}", _TF_FIX)
    cleaned = tuple(str(entry).strip().lower() for entry in entries)
    if not cleaned or len(cleaned) > MAX_TF_VERSIONS:
        raise KdiagError(f"--tf takes 1 to {MAX_TF_VERSIONS} versions, not {len(cleaned)}", _TF_FIX)
    for entry in cleaned:
        if entry not in (INSTALLED, NIGHTLY) and not RELEASE.match(entry):
            raise KdiagError(f"--tf entry {entry!r} is not a TensorFlow release, 'installed' or 'nightly'", _TF_FIX)
    repeated = sorted({entry for entry in cleaned if cleaned.count(entry) > 1})
    if repeated:
        raise KdiagError(f"--tf names {', '.join(repeated)} twice", "name each version once")
    return cleaned


def check_release(option: str, value) -> str:
    """A release for `kdiag bisect --good/--bad` ("2.12", "2.15.1"), or one line."""
    text = str(value).strip()
    if not RELEASE.match(text):
        raise KdiagError(f"{option} must be a TensorFlow release such as 2.12 or 2.15.1, not {value!r}",
                         "use e.g. --good 2.12 --bad 2.21")
    return text


def check_threshold(value) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 1.0 < value <= MAX_BISECT_THRESHOLD:
        raise KdiagError(f"--threshold must be a ratio above 1 and at most {MAX_BISECT_THRESHOLD:g}, not {value!r}",
                         "use e.g. --threshold 1.2 (20% slower)")
    return float(value)


@dataclasses.dataclass(frozen=True)
class BisectRequest:
    """What `kdiag bisect` and `kdiag.bisect()` ask beside the run's options: checked once, for both."""

    good: str  # a release where it was fast: "2.12", "2.12.1"
    bad: str
    strategy: str = "predict"  # a strategy key
    threshold: float = DEFAULT_BISECT_THRESHOLD

    def __post_init__(self):
        object.__setattr__(self, "good", check_release("--good", self.good))
        object.__setattr__(self, "bad", check_release("--bad", self.bad))
        object.__setattr__(self, "threshold", check_threshold(self.threshold))
        if self.strategy not in BY_KEY:
            raise KdiagError(f"unknown strategy {self.strategy!r}", f"choose from: {', '.join(BY_KEY)}")


def keras_major(tensorflow: str) -> Optional[int]:
    """The Keras a TensorFlow release brings: 2 (tf.keras) up to 2.15, 3 from 2.16; None when unknown."""
    match = re.match(r"^(\d+)\.(\d+)", tensorflow or "")
    if not match:
        return None
    major, minor = int(match.group(1)), int(match.group(2))
    if major != 2:
        return None
    return 3 if minor >= 16 else 2


@dataclasses.dataclass(frozen=True)
class EnvironmentInfo:
    """A cached environment holding one TensorFlow release, and how this run got it."""

    name: str  # its folder in the cache: "tensorflow-cpu-2.15.1-py3.11"
    package: str  # "tensorflow-cpu", "tensorflow", "tf-nightly"
    tensorflow: str  # "2.15.1"
    python: str  # "3.11"
    installer: str  # "pip" or "uv"
    fresh: bool  # built by this run (else reused from the cache)
    build_s: Optional[float] = None  # how long building took, when this run built it
    downloaded_bytes: Optional[int] = None  # fetched from the index while building (None: not reported)
    cached_bytes: Optional[int] = None  # taken from the installer's own download cache instead
    size_bytes: Optional[int] = None  # on disk, as du counts it

    @property
    def how(self) -> str:
        """"built fresh in 27 s" / "reused from the cache"."""
        if not self.fresh:
            return "reused from the cache"
        return f"built fresh in {self.build_s:.0f} s" if self.build_s is not None else "built fresh"


@dataclasses.dataclass(frozen=True)
class BisectProbe:
    """One probed release against the good one, measured in alternating rounds in one go."""

    tensorflow: str  # the release probed
    good: Optional[Measurement]  # the good release's strategy, pooled over this probe's rounds
    probed: Optional[Measurement]  # the probed release's, pooled the same way
    slow: Optional[bool]  # slower beyond the noise by at least the threshold; None: could not tell
    verdict: str  # in words: "1.34x slower, beyond the noise (±1.2 ms)", or why there is none
    rounds: int = 0
    environment: Optional[EnvironmentInfo] = None
    reason: str = ""  # why it was not measured (an environment that could not be built, a refused file)

    @property
    def ratio(self) -> Optional[float]:
        """The probed release's median / the good one's."""
        if self.good is None or self.probed is None or not self.good.count or not self.probed.count:
            return None
        return self.probed.median_s / self.good.median_s


@dataclasses.dataclass(frozen=True)
class BisectResult:
    """`kdiag bisect`: the releases between good and bad, the ones probed, and the first slow one."""

    model: str
    strategy: str  # the strategy's display name ("predict")
    threshold: float
    good: str  # the good release as resolved ("2.12.1")
    bad: str
    releases: List[str]  # every release the index offers from good to bad, oldest first
    probes: List[BisectProbe]  # in the order they ran
    first_slow: Optional[str] = None  # None: flat (bad is not slow), or the search stopped early
    last_good: Optional[str] = None
    command: str = ""
    package: str = ""  # "tensorflow-cpu"
    incomplete: bool = False  # interrupted, or a probe could not be measured
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def max_environments(self) -> int:
        """The promise: at most ceil(log2(n)) + 2 environments for n releases."""
        return math.ceil(math.log2(max(1, len(self.releases)))) + 2

    def probe(self, release: str) -> Optional[BisectProbe]:
        return next((p for p in self.probes if p.tensorflow == release), None)

    @property
    def ratio(self) -> Optional[float]:
        """The first slow release's median / the good one's, as its probe measured them."""
        probe = self.probe(self.first_slow) if self.first_slow else None
        return probe.ratio if probe is not None else None

