"""The result object of a sweep: what every output format renders."""

from __future__ import annotations

import dataclasses

import numpy as np

from bce_audit.audit.metrics import CaseStats
from bce_audit.settings import Settings
from bce_audit.vocabulary import Domain, DType, Quantity, Status


@dataclasses.dataclass(frozen=True)
class NonFinitePoint:
    """A ±inf or NaN input, evaluated and reported apart from the statistics."""

    input: float
    output: float
    truth: float
    status: Status
    error: str | None = None  # the exception the formulation raised at this input


@dataclasses.dataclass(frozen=True)
class PointDetails:
    """Per-point data of one case, kept only when ``--details`` asks for it."""

    inputs: np.ndarray
    outputs: np.ndarray
    truth_f64: np.ndarray
    ulp_errors: np.ndarray
    statuses: np.ndarray


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """One (formulation, domain, dtype, label, quantity): one row of the summary.

    stats is None exactly when the formulation raised (``error`` holds the message), or when it
    could not be evaluated at all (``lost`` says why: the process running a user's function died,
    hung past the time limit or ran out of memory; ``error`` holds the same text).
    """

    formulation: str
    domain: Domain
    dtype: DType
    label: float
    quantity: Quantity
    stats: CaseStats | None
    nonfinite: tuple[NonFinitePoint, ...] = ()
    error: str | None = None
    details: PointDetails | None = None
    lost: str | None = None

    @property
    def worst_status(self) -> Status:
        if self.error is not None:
            return Status.ERROR
        return self.stats.worst_status


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Every case of a sweep, the settings that produced them, and where they were computed."""

    settings: Settings
    cases: tuple[CaseResult, ...]
    provenance: dict
    elapsed_s: float
    truth_points: int  # distinct (domain, label, input) points the truth was needed at
    truth_computed: int  # of those, the points the oracle evaluated (the rest: the cache)
