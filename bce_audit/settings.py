"""The resolved settings of a sweep, validated: one frozen object the pipeline reads."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from bce_audit.errors import UsageError
from bce_audit.vocabulary import Domain, DType, Sampling

if TYPE_CHECKING:
    from bce_audit.formulations.user import UserFormulationSpec

DEFAULT_POINTS = 1000
DEFAULT_LABELS = (0.0, 1.0)
DEFAULT_ULP_THRESHOLD = 4.0
DEFAULT_SEED = 0
# Bounds on the size of a sweep, so that a typo is a one-line error, not a MemoryError minutes
# later: each (input, label) of a grid holds a truth row of 72 bytes, and every array of a case
# is as long as its grid.
MAX_POINTS = 10_000_000
MAX_LABELS = 1_000


def _all_formulations() -> tuple[str, ...]:
    from bce_audit.formulations.builtins import BUILTINS

    return tuple(BUILTINS)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to sweep.

    formulations: names, in report order: built-ins, and the names of the user formulations.
    dtypes / domains: what to evaluate them in and on.
    labels: targets y in [0, 1] as the user gave them (each is rounded to the dtype under test).
    logit_range: (lo, hi) on the logit axis, or None for every finite value; the probability
        domain uses [sigmoid(lo), sigmoid(hi)].
    points: sampled inputs per (dtype, domain) grid, besides the special inputs.
    sampling: bits (uniform over bit patterns, plus a dense band) or exhaustive (16-bit dtypes).
    seed: the random seed; results are deterministic for a given seed.
    ulp_threshold: above this ULP error a point is `inaccurate`.
    user_formulations: what every name that is not a built-in stands for (an --impl target, a config
        table, an installed entry point), with its domain and parameters, completed by
        ``user_formulations.select_formulations``; ``formulations.resolve`` loads them for the sweep.
    """

    formulations: tuple[str, ...] = dataclasses.field(default_factory=_all_formulations)
    dtypes: tuple[DType, ...] = tuple(DType)
    domains: tuple[Domain, ...] = tuple(Domain)
    labels: tuple[float, ...] = DEFAULT_LABELS
    logit_range: tuple[float, float] | None = None
    points: int = DEFAULT_POINTS
    sampling: Sampling = Sampling.BITS
    seed: int = DEFAULT_SEED
    ulp_threshold: float = DEFAULT_ULP_THRESHOLD
    user_formulations: tuple[UserFormulationSpec, ...] = ()

    def __post_init__(self):
        from bce_audit.formulations.builtins import BUILTINS, get_formulation

        user = {spec.name: spec for spec in self.user_formulations}
        for name in self.formulations:
            if name not in user:
                get_formulation(name)
        for spec in self.user_formulations:
            if spec.name is None or spec.domain is None or spec.name not in self.formulations:
                raise UsageError(f"{spec.where or spec.target}: user formulation without a name, domain or place")
            if spec.name in BUILTINS:
                raise UsageError(f"{spec.where or spec.target}: the name {spec.name!r} is a built-in's")
        if len(user) != len(self.user_formulations):
            raise UsageError("two user formulations have the same name")
        if not self.formulations or not self.dtypes or not self.domains or not self.labels:
            raise UsageError("nothing to sweep: a formulation, dtype, domain and label are needed")
        for y in self.labels:
            if not (isinstance(y, (int, float)) and 0.0 <= y <= 1.0):
                raise UsageError(f"label {y!r} is outside [0, 1]")
        if self.logit_range is not None:
            lo, hi = self.logit_range
            if math.isnan(lo) or math.isnan(hi) or lo >= hi:
                raise UsageError(f"range {lo:g}:{hi:g} is empty or inverted (LO must be < HI)")
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points <= 0:
            raise UsageError(f"points must be a positive integer, got {self.points!r}")
        if self.points > MAX_POINTS:
            raise UsageError(
                f"points {self.points} is more than bce-audit samples per grid (at most {MAX_POINTS:,}, which "
                "already holds hundreds of megabytes of exact values); use --sampling exhaustive for every "
                "value of a 16-bit dtype"
            )
        if len(self.labels) > MAX_LABELS:
            raise UsageError(f"{len(self.labels)} labels is more than a sweep takes (at most {MAX_LABELS:,})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (self.ulp_threshold >= 0):
            raise UsageError(f"ulp threshold must be >= 0, got {self.ulp_threshold!r}")

    def to_dict(self) -> dict:
        return {
            "formulations": list(self.formulations),
            "user_formulations": [spec.to_dict() for spec in self.user_formulations],
            "dtypes": [str(d) for d in self.dtypes],
            "domains": [str(d) for d in self.domains],
            "labels": list(self.labels),
            "range": None if self.logit_range is None else list(self.logit_range),
            "points": self.points,
            "sampling": str(self.sampling),
            "seed": self.seed,
            "ulp_threshold": self.ulp_threshold,
        }


def parse_range(text: str) -> tuple[float, float]:
    """'LO:HI' -> (lo, hi); either side may be 'inf' / '-inf'."""
    parts = text.split(":")
    if len(parts) != 2:
        raise UsageError(f"range {text!r} is not of the form LO:HI (for example -20:20)")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(f"range {text!r} is not of the form LO:HI (for example -20:20)") from None
    if math.isnan(lo) or math.isnan(hi) or lo >= hi:
        raise UsageError(f"range {text!r} is empty or inverted (LO must be < HI)")
    return lo, hi
