"""Exhaustive float32: every float32 input (of the range asked), streamed in chunks.

All 2^32 bit patterns hold about 4.3e9 finite values (2.1e9 with a logit in [-20, 20]; 1.07e9
probabilities in [0, 1]), far too many to hold: the inputs are enumerated in increasing order in
chunks of ``CHUNK`` ordinals (-0 just before +0), and per chunk each formulation is evaluated by
its engine, the truth comes from ``oracle.vectorized`` (the exact path for the few points its
bound cannot settle), and ``sweep.streaming.CaseStream`` folds the points into the case's
figures and, when asked, its status runs. Nothing grows with the number of points but the p99
histogram (bounded) and the status runs (one per change of status).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from bce_audit.engines.interface import GridEvaluation
from bce_audit.errors import UsageError
from bce_audit.floats import from_ordinal, ordinal, round_float
from bce_audit.formulations.interface import Formulation
from bce_audit.oracle.table import column, evaluate_points
from bce_audit.oracle.vectorized import truth as vectorized_truth
from bce_audit.settings import Settings
from bce_audit.sweep.failure_map import enumerated_map, stable_range
from bce_audit.sweep.grid import _inward, probability_bounds
from bce_audit.sweep.metrics import point_status, ulp_error
from bce_audit.sweep.result import CaseResult, FailureInterval, NonFinitePoint, PointDetails
from bce_audit.sweep.streaming import CaseStream
from bce_audit.vocabulary import FLOAT64, Domain, DType, Quantity, Status

FLOAT32 = DType.FLOAT32.format
# Ordinals per chunk: 2^22 inputs, about 200 MB of float64 arrays at a time in all.
CHUNK = 1 << 22
# The most rows of per-point data (--details, --repro, --plot; details=True) an exhaustive float32
# sweep keeps: every row is held in memory (about 60 bytes, several times that once rendered as CSV),
# and the whole range is 4.3e9 inputs per case, which no memory holds. A narrow range fits.
MAX_DETAIL_ROWS = 1 << 22

# evaluate(formulation, domain, dtype, finite, nonfinite, label): an engine's or the sandbox's
Evaluate = Callable[[Formulation, Domain, DType, np.ndarray, np.ndarray, float], GridEvaluation]


def ordinal_bounds(domain: Domain, logit_range: tuple[float, float] | None) -> tuple[int, int] | None:
    """The first and last ordinal of the float32 inputs of a domain within a logit range (None
    when there is none)."""
    if domain is Domain.LOGITS:
        lo, hi = logit_range or (-math.inf, math.inf)
        lo, hi = _inward(max(lo, -FLOAT32.largest_finite), min(hi, FLOAT32.largest_finite), FLOAT32)
    else:
        lo, hi = _inward(*probability_bounds(logit_range), FLOAT32)
        lo = max(lo, 0.0)
    if lo > hi:
        return None
    a, b = ordinal(np.array([lo, hi]), FLOAT32).tolist()
    return int(a), int(b)


def count_inputs(domain: Domain, logit_range: tuple[float, float] | None) -> int:
    """How many inputs an exhaustive float32 sweep of the domain evaluates (on logits, -0 and +0
    both). On probabilities with a range it may be fewer (see ``chunks``)."""
    bounds = ordinal_bounds(domain, logit_range)
    if bounds is None:
        return 0
    negative_zero = domain is Domain.LOGITS and bounds[0] <= 0 <= bounds[1]
    return bounds[1] - bounds[0] + 1 + int(negative_zero)


def chunk_count(domain: Domain, logit_range: tuple[float, float] | None, size: int = CHUNK) -> int:
    """How many chunks ``chunks`` yields."""
    bounds = ordinal_bounds(domain, logit_range)
    return 0 if bounds is None else len(range(bounds[0], bounds[1] + 1, size))


def chunks(domain: Domain, logit_range: tuple[float, float] | None, size: int = CHUNK) -> Iterator[np.ndarray]:
    """Every float32 input in increasing order (on logits -0 before +0), ``size`` ordinals at a time. On
    probabilities with a range, only those whose logit is in it (as ``sweep.grid`` keeps them):
    a chunk may then be empty."""
    bounds = ordinal_bounds(domain, logit_range)
    if bounds is None:
        return
    for start in range(bounds[0], bounds[1] + 1, size):
        o = np.arange(start, min(start + size, bounds[1] + 1), dtype=np.int64)
        values = from_ordinal(o, FLOAT32)
        if domain is Domain.LOGITS and o[0] <= 0 <= o[-1]:  # -0 is a logit, not a probability
            at = int(np.searchsorted(o, 0))
            values = np.insert(values, at, -0.0)
        if domain is Domain.PROBABILITIES and logit_range is not None:
            with np.errstate(divide="ignore"):
                z = np.log(values) - np.log1p(-values)
            values = values[(z >= logit_range[0]) & (z <= logit_range[1])]
        yield values


@dataclasses.dataclass
class _Case:
    """The running state of one (formulation, label) on one domain: a stream per quantity."""

    formulation: Formulation
    label: float
    y: float
    streams: dict[Quantity, CaseStream]
    error: str | None = None
    lost: str | None = None
    nonfinite: dict[Quantity, tuple[NonFinitePoint, ...]] = dataclasses.field(default_factory=dict)
    # with keep_details: each chunk's outputs per quantity, and the ±inf and NaN inputs' rows
    # (outputs, truth in float32, ULP errors, statuses) per quantity
    outputs: dict[Quantity, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    nonfinite_rows: dict[Quantity, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(
        default_factory=dict
    )


NONFINITE = np.array([-math.inf, math.inf, math.nan])


def _nonfinite_points(case: _Case, domain: Domain, evaluation: GridEvaluation, threshold: float) -> None:
    inputs = NONFINITE if domain is Domain.LOGITS else NONFINITE[2:]
    rows = evaluate_points(domain, inputs, case.y)
    singles = evaluation.nonfinite
    for quantity in Quantity:
        t = rows[:, column(quantity, FLOAT32)]
        t64 = rows[:, column(quantity, FLOAT64)]
        out = np.array([(e.loss if quantity is Quantity.LOSS else e.grad)[0] for e in singles])
        err = ulp_error(out, t, FLOAT32)
        status = point_status(out, t, err, threshold)
        status[[e.error is not None for e in singles]] = Status.ERROR.value
        case.nonfinite_rows[quantity] = (out, t, err, status)
        case.nonfinite[quantity] = tuple(
            NonFinitePoint(float(x), float(o), float(tt), Status(s), e.error)
            for x, o, tt, s, e in zip(inputs, out, t64, status, singles, strict=True)
        )


def _streams(domain: Domain, threshold: float, keep_runs: bool) -> dict[Quantity, CaseStream]:
    return {q: CaseStream(FLOAT32, domain, threshold, keep_runs) for q in Quantity}


def exhaustive_cases(
    domain: Domain,
    labels: Sequence[float],
    formulations: Sequence[Formulation],
    evaluate: Evaluate,
    logit_range: tuple[float, float] | None,
    threshold: float,
    progress: Callable[[int], None] | None = None,
    keep_runs: bool = False,
    chunk: int = CHUNK,
    keep_details: bool = False,
) -> tuple[list[CaseResult], dict[tuple[str, float, Quantity], list[tuple[float, float, Status]]]]:
    """The float32 cases of every (formulation, label, quantity) on one domain, over every input.

    Returns the cases and, with ``keep_runs``, each case's status runs [lo, hi, status] keyed by
    (formulation name, label as given, quantity); with ``keep_runs`` each case carries its failure
    map too, every interval enumerated, and the stable range read from it. progress(n) counts evaluations as they are
    done: one per (chunk, label, formulation), ``chunk_count`` chunks. keep_details: each case
    carries every point (``PointDetails``, as a sampled case does); only for a range whose rows
    fit (``check_streamed``).
    """
    states = [
        _Case(
            f,
            float(label),
            round_float(float(label), FLOAT32),
            {q: CaseStream(FLOAT32, domain, threshold, keep_runs) for q in Quantity},
        )
        for label in labels
        for f in formulations
    ]
    nonfinite = NONFINITE if domain is Domain.LOGITS else NONFINITE[2:]
    first = True
    kept: list[np.ndarray] = []  # every chunk's inputs, with keep_details
    for xs in chunks(domain, logit_range, chunk):
        if keep_details:
            kept.append(xs)
        truths: dict[float, tuple[Any, ...]] = {}
        for case in states:
            if progress is not None:
                progress(1)
            if case.error is not None or not len(xs):
                continue
            if case.y not in truths:
                truths[case.y] = vectorized_truth(domain, xs, case.y, FLOAT32)
            loss, grad, loss64, grad64, _ = truths[case.y]
            evaluation = evaluate(
                case.formulation, domain, DType.FLOAT32, xs, nonfinite if first else nonfinite[:0], case.y
            )
            if evaluation.finite.error is not None:
                case.error, case.lost = evaluation.finite.error, evaluation.lost
                continue
            if first:
                _nonfinite_points(case, domain, evaluation, threshold)
            case.streams[Quantity.LOSS].add(xs, evaluation.finite.loss, loss, loss64)
            case.streams[Quantity.GRAD].add(xs, evaluation.finite.grad, grad, grad64)
            if keep_details:
                case.outputs.setdefault(Quantity.LOSS, []).append(np.asarray(evaluation.finite.loss, np.float64))
                case.outputs.setdefault(Quantity.GRAD, []).append(np.asarray(evaluation.finite.grad, np.float64))
        first = first and not len(xs)
    if first:  # not one input (probabilities whose logits all fall outside the range)
        raise UsageError(_empty_message(domain))
    cases: list[CaseResult] = []
    runs: dict[tuple[str, float, Quantity], list[tuple[float, float, Status]]] = {}
    details = _Details(domain, kept, nonfinite, threshold) if keep_details else None
    for case in states:
        for quantity, stream in case.streams.items():
            name = case.formulation.name
            common = dict(formulation=name, domain=domain, dtype=DType.FLOAT32, label=case.label, quantity=quantity)
            if case.error is not None:
                lost_details = None if details is None else details.of_error(case.y, quantity)
                cases.append(
                    CaseResult(**common, figures=None, error=case.error, lost=case.lost, details=lost_details)  # type: ignore[arg-type]
                )
                continue
            points = case.nonfinite.get(quantity, ())
            figures = stream.figures(nonfinite=sum(p.status is not Status.OK for p in points))
            point_details = None if details is None else details.of_case(case, quantity)
            result = CaseResult(**common, figures=figures, nonfinite=points, details=point_details)  # type: ignore[arg-type]
            if keep_runs and stream.runs is not None:
                runs[(name, case.label, quantity)] = stream.runs.finish()
                result = _with_map(result, enumerated_map(stream.runs.runs, stream.runs.worst, FLOAT32))
            cases.append(result)
    return cases, runs


class _Details:
    """Every point of the cases of one domain, as a sampled case keeps them (``PointDetails``):
    the finite inputs, then ±inf and NaN. The truth comes from the exact path
    (``oracle.table.evaluate_points``), as a sampled grid's does: the vectorized oracle's float64
    values are estimates, and the details' truth column is the exact value rounded to float64
    once. The range is small (``MAX_DETAIL_ROWS``), and its float32 truth is the streamed one,
    bit for bit."""

    def __init__(self, domain: Domain, kept: list[np.ndarray], nonfinite: np.ndarray, threshold: float):
        self.domain = domain
        self.finite = np.concatenate(kept) if kept else np.empty(0)
        self.inputs = np.concatenate([self.finite, nonfinite])
        self.threshold = threshold
        self._rows: dict[float, np.ndarray] = {}

    def _truth(self, y: float, quantity: Quantity) -> tuple[np.ndarray, np.ndarray]:
        """The truth of every input, in float32 (held in float64) and rounded to float64."""
        if y not in self._rows:
            self._rows[y] = evaluate_points(self.domain, self.inputs, y)
        rows = self._rows[y]
        return rows[:, column(quantity, FLOAT32)], rows[:, column(quantity, FLOAT64)]

    def of_case(self, case: _Case, quantity: Quantity) -> PointDetails:
        t, t64 = self._truth(case.y, quantity)
        n = len(self.finite)
        finite_out = np.concatenate(case.outputs.get(quantity, [])) if n else np.empty(0)
        errs = ulp_error(finite_out, t[:n], FLOAT32)
        status = point_status(finite_out, t[:n], errs, self.threshold)
        nf_out, _, nf_err, nf_status = case.nonfinite_rows[quantity]
        return PointDetails(
            inputs=self.inputs,
            outputs=np.concatenate([finite_out, nf_out]),
            truth_f64=t64,
            ulp_errors=np.concatenate([errs, nf_err]),
            statuses=np.concatenate([status, nf_status]),
            truth=t,
        )

    def of_error(self, y: float, quantity: Quantity) -> PointDetails:
        """A case that raised: every point with the `error` status and no output (as sampled)."""
        _, t64 = self._truth(y, quantity)
        n = len(self.inputs)
        return PointDetails(
            inputs=self.inputs,
            outputs=np.full(n, np.nan),
            truth_f64=t64,
            ulp_errors=np.full(n, np.nan),
            statuses=np.full(n, Status.ERROR.value, dtype=object),
        )


def _with_map(case: CaseResult, intervals: tuple[FailureInterval, ...]) -> CaseResult:
    """A case with its enumerated failure map, and the stable range from the map (exact: every
    input evaluated)."""
    r = stable_range(intervals, case.domain)
    figures = case.figures
    if figures is not None:
        figures = dataclasses.replace(figures, stable_lo=r.lo, stable_hi=r.hi)
    return dataclasses.replace(case, figures=figures, failure_map=intervals, stable_but_centre=r.but_centre)


def status_runs(
    domain: Domain,
    label: float,
    formulation: Formulation,
    evaluate: Evaluate,
    quantity: Quantity,
    logit_range: tuple[float, float] | None = None,
    threshold: float = 4.0,
) -> list[tuple[float, float, Status]]:
    """The exact status runs [lo, hi, status] of one float32 case over every input of the range:
    maximal intervals of consecutive float32 inputs with one status, in increasing order."""
    _, runs = exhaustive_cases(domain, [label], [formulation], evaluate, logit_range, threshold, keep_runs=True)
    return runs.get((formulation.name, float(label), quantity), [])


def detail_rows(settings: Settings) -> tuple[int, bool]:
    """(rows, exact): how many rows of per-point data an exhaustive float32 sweep of the settings
    has: every input of each domain (finite ones, then ±inf and NaN on logits, NaN on
    probabilities) for each label, formulation and quantity. On probabilities with a range,
    ``count_inputs`` may count a few inputs at the ends that the sweep leaves out (see ``chunks``):
    those are enumerated when that is cheap (a range near the limit), else the count is an upper
    bound, far above the limit, and ``exact`` is False."""
    inputs, exact = 0, True
    for domain in settings.domains:
        n = count_inputs(domain, settings.logit_range)
        if domain is Domain.PROBABILITIES and settings.logit_range is not None:
            if n <= 2 * MAX_DETAIL_ROWS:
                n = sum(len(values) for values in chunks(domain, settings.logit_range))
            else:
                exact = False
        inputs += n + (3 if domain is Domain.LOGITS else 1)
    return inputs * len(settings.labels) * len(settings.formulations) * len(Quantity), exact


def check_streamed(settings: Settings, keep_details: bool) -> None:
    """A user mistake in an exhaustive float32 sweep, as a UsageError, before anything runs."""
    counts = {domain: count_inputs(domain, settings.logit_range) for domain in settings.domains}
    rows, exact = detail_rows(settings) if keep_details else (0, True)
    if rows > MAX_DETAIL_ROWS:
        raise UsageError(
            f"an exhaustive float32 sweep of this range has {'' if exact else 'about '}{rows:,} rows of per-point "
            "data, more than the "
            f"{MAX_DETAIL_ROWS:,} that --details, --repro and --plot (details=True in the API) can hold; "
            "narrow --range, or sample float32 (--sampling bits)"
        )
    for domain, n in counts.items():
        if not n:
            raise UsageError(_empty_message(domain))


def check_streamed_formulations(runs: Sequence[tuple[Formulation, str]]) -> None:
    """Exhaustive float32 takes its truth from the vectorized oracle, which knows plain BCE only,
    and keys its cases without a parameter variant: anything else is refused before any work
    rather than measured against the wrong function."""
    others = list(dict.fromkeys(f.name for f, _ in runs if not f.reference.is_plain))
    if others:
        verb = "implements" if len(others) == 1 else "implement"
        raise UsageError(
            f"exhaustive float32 measures against plain BCE only, and {', '.join(others)} {verb} another "
            "member of the family; sample float32 for them (--sampling bits)"
        )
    if any(variant for _, variant in runs):
        raise UsageError("exhaustive float32 does not sweep parameters (--param); sample float32 (--sampling bits)")


def _empty_message(domain: Domain) -> str:
    return (
        f"the range holds no float32 input on {domain}, so those cases would test nothing; "
        "widen the range, or drop that dtype or domain"
    )
