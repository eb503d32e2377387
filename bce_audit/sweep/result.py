"""The result of an audit: every case with its figures, and where they were computed.

What every report renders, what the gate judges, and what ``bce_audit.audit()`` returns.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from bce_audit.figures import FIGURES, CaseFigures, Kind
from bce_audit.report.numbers import label as label_text
from bce_audit.vocabulary import Domain, DType, Quantity, Status

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from bce_audit.settings import Settings


# The dimensions of a case beyond the five that every case has, each with the value that means
# "not in play": the parameter values a sweep was asked for (text such as ``alpha=0.25,gamma=2``),
# the way the engine ran the formulation, and the device. Declared once, here: a key field, a
# CSV column, a JSON field, a baseline field and a scoreboard column each exists only in a run
# where some case differs from the default, so a run that uses none reads byte for byte as before.
VARIANT_DEFAULTS: dict[str, str] = {"parameters": "", "mode": "eager", "device": "cpu"}


@dataclasses.dataclass(frozen=True)
class CaseKey:
    """What names a case: (formulation, domain, dtype, label, quantity), as plain strings and a
    float, and the variant dimensions of ``VARIANT_DEFAULTS`` (parameters, mode, device)."""

    formulation: str
    domain: str
    dtype: str
    label: float
    quantity: str
    parameters: str = VARIANT_DEFAULTS["parameters"]
    mode: str = VARIANT_DEFAULTS["mode"]
    device: str = VARIANT_DEFAULTS["device"]

    @property
    def variant(self) -> dict[str, str]:
        """The variant dimensions that differ from their default, in declaration order."""
        return {k: v for k in VARIANT_DEFAULTS if (v := getattr(self, k)) != VARIANT_DEFAULTS[k]}

    @property
    def subject(self) -> str:
        """What ran: the formulation and any variant, e.g. ``torchvision-focal gamma=2 compile``."""
        return " ".join([self.formulation, *self.variant.values()])

    def __str__(self) -> str:
        return f"{self.subject} {self.domain} {self.dtype} y={label_text(self.label)} {self.quantity}"

    def fields(self, variants: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The key as named fields, in report order: formulation, the variant dimensions
        (``variants``: those to show; default the ones that differ from their default), domain,
        dtype, label, quantity."""
        shown = tuple(self.variant) if variants is None else variants
        return {
            "formulation": self.formulation,
            **{k: getattr(self, k) for k in shown},
            "domain": self.domain,
            "dtype": self.dtype,
            "label": self.label,
            "quantity": self.quantity,
        }


def variants_in(keys: Iterable[CaseKey]) -> tuple[str, ...]:
    """The variant dimensions some key differs from the default in, in declaration order: the
    ones a report of these cases shows."""
    found: set[str] = set()
    for key in keys:
        found.update(key.variant)
    return tuple(k for k in VARIANT_DEFAULTS if k in found)


def key_fields(keys: Iterable[CaseKey]) -> tuple[str, ...]:
    """The names of the key fields a report of these cases shows, in order."""
    return ("formulation", *variants_in(keys), "domain", "dtype", "label", "quantity")


@dataclasses.dataclass(frozen=True)
class FailureInterval:
    """A maximal interval of inputs with one status (as far as the evaluated inputs show).

    status: the status of every evaluated input in [lo, hi].
    lo, hi: the first and last evaluated input of the run (exact values of the dtype).
    lo_exact, hi_exact: whether that end is an exact edge (see ``sweep.failure_map``).
    floats: the representable values in [lo, hi], by bit-pattern arithmetic (-0 and +0 apart).
    evaluated: how many of them were evaluated; ``floats`` when the interval is enumerated.
    worst_input, worst_ulp: the evaluated input with the largest ULP error and that error (NaN
        when no input of the interval has one: NaN or infinite outputs).
    alone: the refined edge inputs of this interval whose status, evaluated alone (a tensor of one
        element: torch's scalar path), differs from their status inside a batch (its vectorized
        body, where the sweep evaluates), each with its status alone.
    cause: why it fails, traced to the operation (empty: not traced).
    """

    status: Status
    lo: float
    hi: float
    lo_exact: bool
    hi_exact: bool
    floats: int
    evaluated: int
    worst_input: float
    worst_ulp: float
    alone: tuple[tuple[float, Status], ...] = ()
    cause: str = ""

    @property
    def edges(self) -> str:
        """How the interval is known, in one word: ``enumerated`` (both ends exact and every float
        inside evaluated), ``exact`` (both ends exact, the interior sampled), ``lo-exact`` or
        ``hi-exact`` (one end exact), ``sampled`` (neither end exact)."""
        if self.lo_exact and self.hi_exact:
            return "enumerated" if self.enumerated else "exact"
        if self.lo_exact:
            return "lo-exact"
        return "hi-exact" if self.hi_exact else "sampled"

    @property
    def enumerated(self) -> bool:
        """Every representable value in [lo, hi] was evaluated."""
        return self.evaluated == self.floats

    @property
    def failing(self) -> bool:
        return self.status is not Status.OK

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi


# The columns of a failure map's record after the key (see ``CaseResult.failure_records``).
FAILURE_COLUMNS = ("status", "lo", "hi", "edges", "floats", "worst_input", "worst_ulp", "cause")


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
    """Per-point data of one case, kept only when asked for (``--details``, ``details=True``).

    inputs: every input (finite ones, then ±inf and NaN). outputs: what the formulation returned
    (NaN when it raised). truth_f64: the exact value rounded to float64. ulp_errors: NaN where
    not defined. statuses: Status values as strings.
    truth: the exact value correctly rounded into the case's dtype (held in float64), what the
    ULP errors are measured against; None where it was not kept (a case that raised).
    """

    inputs: np.ndarray
    outputs: np.ndarray
    truth_f64: np.ndarray
    ulp_errors: np.ndarray
    statuses: np.ndarray
    truth: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """One (formulation, domain, dtype, label, quantity): one row of the summary.

    figures: None exactly when there is no output: the formulation raised (``error`` holds the
        message), or it could not be evaluated at all (``lost`` says why: the process running a
        user's function died, hung past the time limit or ran out of memory; ``error`` holds the
        same text).
    nonfinite: the ±inf and NaN inputs, each with its result.
    details: every point, when kept.
    failure_map: the case's failure map (``sweep.failure_map``): the maximal intervals of each
        status in input order, ok ones included, each with how exactly its ends are known; one
        `error` interval when the formulation raised.
    stable_but_centre: the stable range [stable_lo, stable_hi] holds one failing input, the
        centre's own value (z = ±0 on logits, p = 0.5 on probabilities): "fails only at 0", not
        "fails everywhere" (see ``sweep.failure_map.stable_range``).
    output_dtype: the dtype the loss came back in when it is not the case's (autocast may compute
        in another; a user's loss given float64 may return float32), else None. Its values are
        still compared with the truth rounded into the case's dtype: what the caller asked for.
    """

    formulation: str
    domain: Domain
    dtype: DType
    label: float
    quantity: Quantity
    figures: CaseFigures | None
    nonfinite: tuple[NonFinitePoint, ...] = ()
    error: str | None = None
    details: PointDetails | None = None
    lost: str | None = None
    parameters: str = VARIANT_DEFAULTS["parameters"]
    mode: str = VARIANT_DEFAULTS["mode"]
    device: str = VARIANT_DEFAULTS["device"]
    failure_map: tuple[FailureInterval, ...] = ()
    stable_but_centre: bool = False
    output_dtype: str | None = None

    @property
    def failures(self) -> tuple[FailureInterval, ...]:
        """The failing intervals of the failure map (every status but ok)."""
        return tuple(iv for iv in self.failure_map if iv.failing)

    @property
    def key(self) -> CaseKey:
        return CaseKey(
            self.formulation,
            str(self.domain),
            str(self.dtype),
            float(self.label),
            str(self.quantity),
            self.parameters,
            self.mode,
            self.device,
        )

    @property
    def worst_status(self) -> Status:
        if self.figures is None:
            return Status.ERROR
        return self.figures.worst_status

    def record(self, variants: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The case as one flat record: its key (``variants``: the variant dimensions to include,
        see ``CaseKey.fields``), every figure by name (None when undefined), the worst status, and
        the error or why it was not evaluated."""
        row: dict[str, Any] = self.key.fields(variants)
        figures = self.figures
        for figure in FIGURES:
            names = ("stable_lo", "stable_hi") if figure.kind is Kind.RANGE else (figure.name,)
            for name in names:
                value = None if figures is None else getattr(figures, name)
                row[name] = None if isinstance(value, float) and math.isnan(value) else value
        row["worst_status"] = str(self.worst_status)
        row["error"] = self.error
        row["lost"] = self.lost
        return row

    def failure_records(self, variants: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One record per failing interval of the failure map: key (see ``record``), then the
        columns of ``FAILURE_COLUMNS`` (``edges``: see ``FailureInterval.edges``; None for
        an undefined worst input or error)."""
        key = self.key.fields(variants)
        return [
            {
                **key,
                "status": str(iv.status),
                "lo": iv.lo,
                "hi": iv.hi,
                "edges": iv.edges,
                "floats": iv.floats,
                "worst_input": None if math.isnan(iv.worst_input) else iv.worst_input,
                "worst_ulp": None if math.isnan(iv.worst_ulp) else iv.worst_ulp,
                "cause": iv.cause,
            }
            for iv in self.failures
        ]

    def point_records(self, variants: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One record per point (when details were kept): key (see ``record``), input, output,
        truth (rounded to float64), ulp_error (None when not defined) and status."""
        d = self.details
        if d is None:
            return []
        key = self.key.fields(variants)
        return [
            {**key, "input": x, "output": o, "truth": t, "ulp_error": None if math.isnan(e) else e, "status": s}
            for x, o, t, e, s in zip(
                d.inputs.tolist(),
                d.outputs.tolist(),
                d.truth_f64.tolist(),
                d.ulp_errors.tolist(),
                d.statuses.tolist(),
                strict=True,
            )
        ]


@dataclasses.dataclass(frozen=True)
class KnownProvenance:
    """A ``provenance_source`` that gives a provenance already made: what a pickled result carries,
    so that it names the machine that computed its figures, not the one that unpickles it."""

    values: tuple[tuple[str, str], ...]

    def __call__(self) -> dict[str, str]:
        return dict(self.values)


def _rebuilt(fields: dict[str, Any]) -> AuditResult:
    return AuditResult(**fields)


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """Every case of an audit, the settings that produced them, and where they were computed.

    cases: in report order (formulation, parameters, mode, device, domain, dtype, label, quantity).
    provenance_source: makes ``provenance`` when it is first asked for (see there).
    elapsed_s: wall time of the audit.
    truth_points: distinct (domain, label, input) points the exact truth was needed at.
    truth_computed: how many of them the oracle evaluated (the rest came from the cache).
    references: (formulation and its swept parameters, reference key) for each one measured against a member of
        the BCE family other than plain BCE (``bce_audit.reference``); empty when all are plain.
    """

    settings: Settings
    cases: tuple[CaseResult, ...]
    provenance_source: Callable[[], dict[str, str]] = dataclasses.field(repr=False, compare=False)
    elapsed_s: float = 0.0
    truth_points: int = 0
    truth_computed: int = 0
    references: tuple[tuple[str, str], ...] = ()

    @functools.cached_property
    def provenance(self) -> dict[str, str]:
        """Versions and machine (bce-audit, torch, numpy, mpmath, CPU capability, ...), made when
        first asked for: it imports mpmath and reads the platform (tens of milliseconds), which a
        run that reports no provenance (the scoreboard alone) then never pays for."""
        return self.provenance_source()

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], AuditResult], tuple[dict[str, Any]]]:
        """Pickled with its provenance made now (the source may be a closure over the run)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["provenance_source"] = KnownProvenance(tuple(self.provenance.items()))
        return _rebuilt, (fields,)

    @property
    def variants(self) -> tuple[str, ...]:
        """The variant dimensions (parameters, mode, device) some case of this run is in."""
        return variants_in(c.key for c in self.cases)

    def to_records(self) -> list[dict[str, Any]]:
        """One flat record per case (see ``CaseResult.record``), all with the same fields: ready
        for csv, json or pandas."""
        return [case.record(self.variants) for case in self.cases]

    def failure_records(self) -> list[dict[str, Any]]:
        """One record per failing interval of every case's failure map (see
        ``CaseResult.failure_records``), in case order and input order."""
        variants = self.variants
        return [row for case in self.cases for row in case.failure_records(variants)]

    def point_records(self) -> list[dict[str, Any]]:
        """One record per point of every case (audit with ``details=True`` to keep them)."""
        variants = self.variants
        return [row for case in self.cases for row in case.point_records(variants)]

    def to_pandas(self, points: bool = False) -> Any:
        """The records as a pandas DataFrame (per point with ``points=True``); needs pandas."""
        try:
            import pandas
        except ImportError:
            from bce_audit.errors import UsageError

            raise UsageError("to_pandas() needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.point_records() if points else self.to_records())

    @property
    def lost(self) -> tuple[CaseResult, ...]:
        """The cases that could not be evaluated at all."""
        return tuple(c for c in self.cases if c.lost is not None)
