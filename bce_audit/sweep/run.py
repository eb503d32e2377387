"""The pipeline: grid -> (formulations in an engine || truth from the oracle) -> metrics -> result."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from bce_audit.engines import check_device, evaluate_labelled, evaluate_variant, get_engine, pinned_run, require
from bce_audit.engines.interface import GridEvaluation
from bce_audit.errors import UsageError
from bce_audit.floats import round_float
from bce_audit.formulations.interface import Formulation
from bce_audit.formulations.selection import parameter_variants, resolve
from bce_audit.oracle import build_truth_table, column, oracle_provenance
from bce_audit.report import numbers
from bce_audit.settings import Settings
from bce_audit.sweep.exhaustive import check_streamed, check_streamed_formulations, chunk_count, exhaustive_cases
from bce_audit.sweep.failure_map import build_map, ends_near, error_map, stable_range
from bce_audit.sweep.grid import Grid, _inward, build_grid, probability_bounds
from bce_audit.sweep.metrics import point_status, summarize, ulp_error
from bce_audit.sweep.refine import Bracket, Edge, Evaluate, EvaluateLabels, Probe, refine, transitions
from bce_audit.sweep.result import AuditResult, CaseResult, NonFinitePoint, PointDetails
from bce_audit.version import __version__
from bce_audit.vocabulary import FLOAT64, Device, Domain, DType, Mode, Quantity, Sampling, Status

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.oracle.cache import TruthCache

# progress(points just done, points in all): the oracle's points the cache did not have, then the
# (grid, label, formulation) evaluations in the engines
Progress = Callable[[int, int], None]


class _CaseName(TypedDict):
    """The fields of a CaseResult that name the case."""

    formulation: str
    domain: Domain
    dtype: DType
    label: float
    quantity: Quantity
    parameters: str
    mode: str
    device: str


def effective_sampling(settings: Settings, dtype: DType) -> Sampling:
    """Exhaustive sampling applies to 16-bit dtypes and float32 (streamed, ``sweep.exhaustive``);
    float64 falls back to bit patterns."""
    if settings.sampling is Sampling.EXHAUSTIVE and dtype is DType.FLOAT64:
        return Sampling.BITS
    return settings.sampling


def streamed(settings: Settings, dtype: DType) -> bool:
    """Whether a dtype's inputs are streamed in chunks rather than held in a grid."""
    return dtype is DType.FLOAT32 and effective_sampling(settings, dtype) is Sampling.EXHAUSTIVE


def grids(settings: Settings, cache: TruthCache | None = None) -> Iterator[Grid]:
    for dtype in settings.dtypes:
        if streamed(settings, dtype):
            continue
        for domain in settings.domains:
            yield build_grid(
                dtype,
                domain,
                settings.points,
                effective_sampling(settings, dtype),
                settings.seed,
                settings.logit_range,
                labels=[round_float(float(y), dtype.format) for y in settings.labels],
                cache=cache,
            )


def empty_grid_message(settings: Settings, grid: Grid) -> str:
    """Why a (dtype, domain) has no input at all: a case with no point could never fail."""
    fmt = grid.dtype.format
    lo, hi = settings.logit_range or (-math.inf, math.inf)
    where = f"range {numbers.compact(lo)}:{numbers.compact(hi)}"
    if grid.domain is Domain.PROBABILITIES:
        # the logits of the dtype's probabilities nearest 0 and nearest 1
        p_lo, p_hi = fmt.smallest_subnormal, 1.0 - 2.0**-fmt.precision
        z_lo, z_hi = (math.log(p) - math.log1p(-p) for p in (p_lo, p_hi))
        logits = f"{numbers.short(z_lo)} to {numbers.short(z_hi)}"
        span = f"{grid.dtype} probabilities other than 0 and 1 have logits from {logits}"
    elif lo > fmt.largest_finite or hi < -fmt.largest_finite:
        span = f"{grid.dtype}'s largest finite value is {numbers.compact(fmt.largest_finite, 5)}"
    else:  # a range narrower than the dtype's spacing there
        span = f"no {grid.dtype} value lies between its ends"
    return (
        f"{where} holds no {grid.dtype} input on {grid.domain}, so those cases would test nothing ({span}); "
        "widen the range, or drop that dtype or domain"
    )


def provenance(engines: list[str]) -> dict[str, str]:
    """Where the figures were computed: bce-audit, the engines' versions and switches, numpy,
    the oracle's mpmath and its backend, Python, the machine."""
    found: dict[str, str] = {}
    for name in engines:
        found.update(get_engine(name).provenance())
    oracle = oracle_provenance()
    ordered = {
        "bce_audit": __version__,
        "torch": found.pop("torch", None),
        "numpy": np.__version__,
        **oracle,
        "python": sys.version.split()[0],
        "cpu_capability": found.pop("cpu_capability", None),
        "platform": found.pop("platform", None),
        "device": found.pop("device", None),
        **found,
    }
    return {k: v for k, v in ordered.items() if v is not None}


def grid_bounds(settings: Settings, grid: Grid) -> tuple[float, float] | None:
    """The first and last representable input of a grid's range (where a failure map's interval
    ends exactly, with nothing beyond it), or None where the grid does not say (probabilities
    under a logit range, which are filtered by their logit)."""
    fmt = grid.dtype.format
    if grid.domain is Domain.LOGITS:
        lo, hi = settings.logit_range or (-math.inf, math.inf)
        return _inward(max(lo, -fmt.largest_finite), min(hi, fmt.largest_finite), fmt)
    if settings.logit_range is not None:
        return None
    return _inward(*probability_bounds(None), fmt)


@dataclasses.dataclass(frozen=True)
class _Sampled:
    """What the sweep measured for one case, to build its failure map from."""

    case: int  # index into the cases
    probe: int | None  # index into the probes (None: the formulation raised)
    grid: Grid
    bounds: tuple[float, float] | None
    statuses: np.ndarray
    ulp_errors: np.ndarray


def _evaluator(
    formulation: Formulation, sandbox: Sandbox | None, mode: Mode, device: Device, grid: Grid, label: float
) -> Evaluate:
    """evaluate(inputs) -> (loss, grad) of a formulation at more inputs of a grid, in one batch,
    in the mode and on the device of its case."""

    def evaluate(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        ev = _evaluate(formulation, sandbox, grid.domain, grid.dtype, xs, np.empty(0), label, mode, device).finite
        return None if ev.error is not None else (ev.loss, ev.grad)

    return evaluate


def _labelled_evaluator(formulation: Formulation, mode: Mode, device: Device, grid: Grid) -> EvaluateLabels:
    """evaluate_labels(inputs, labels) -> (loss, grad) of a built-in torch formulation at more
    inputs of a grid, one label per input, in one batch."""

    def evaluate_labels(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        ev = evaluate_labelled(formulation, mode, device, grid.domain, grid.dtype, xs, ys)
        return None if ev.error is not None else (ev.loss, ev.grad)

    return evaluate_labels


def _stable_range_ends(s: _Sampled, domain: Domain) -> set[float]:
    """The sampled inputs that end the intervals a stable range is read from (the one holding the
    centre and its neighbours, for "all but 0"): the only transitions a run must refine when it
    shows stable ranges but not the map."""
    return ends_near(s.grid.finite, s.statuses, s.grid.dtype.format, domain.centre)


def _mapped(
    settings: Settings,
    cases: list[CaseResult],
    sampled: list[_Sampled],
    probes: list[Probe],
    cache: Any,
    full_map: bool = True,
) -> list[CaseResult]:
    """The cases with their failure maps and the stable range read from the map: every sampled
    status transition refined to an exact edge (``sweep.refine``), or, without ``full_map``, the
    two that end the stable range (the scoreboard's and the summary's figure, exact either way;
    the map's other edges then stay sampled, as its ``edges`` say)."""
    brackets: list[Bracket] = []
    for s in sampled:
        if s.probe is None:
            continue
        quantity = cases[s.case].quantity
        xs = s.grid.finite
        ends = None if full_map else _stable_range_ends(s, cases[s.case].domain)
        for i in transitions(xs, s.statuses, s.grid.dtype):
            if ends is not None and float(xs[i]) not in ends and float(xs[i + 1]) not in ends:
                continue
            brackets.append(
                Bracket(
                    s.probe,
                    quantity,
                    float(xs[i]),
                    float(xs[i + 1]),
                    str(s.statuses[i]),
                    str(s.statuses[i + 1]),
                    float(s.ulp_errors[i]),
                    float(s.ulp_errors[i + 1]),
                )
            )
    edges: dict[tuple[int, Quantity], list[Edge]] = {}
    for edge in refine(probes, brackets, settings.ulp_threshold, cache=cache, alone=full_map):
        edges.setdefault((edge.probe, edge.quantity), []).append(edge)
    mapped = list(cases)
    for s in sampled:
        case = cases[s.case]
        fmt = s.grid.dtype.format
        if s.probe is None:
            mapped[s.case] = dataclasses.replace(case, failure_map=error_map(s.grid.finite, fmt, s.bounds))
            continue
        found = edges.get((s.probe, case.quantity), [])
        sides = [side for e in found for side in (e.below, e.above)]
        inputs = np.concatenate([s.grid.finite, [p.input for p in sides]])
        statuses = np.concatenate([s.statuses, np.array([p.status for p in sides], dtype=object)])
        errors = np.concatenate([s.ulp_errors, [p.ulp_error for p in sides]])
        keep = np.unique(inputs.view(np.int64), return_index=True)[1]  # an edge may be a sample
        alone = {p.input: Status(p.alone) for p in sides if p.alone != p.status}
        intervals = build_map(inputs[keep], statuses[keep], errors[keep], fmt, s.bounds, alone)
        r = stable_range(intervals, case.domain)
        figures = case.figures
        if figures is not None:
            figures = dataclasses.replace(figures, stable_lo=r.lo, stable_hi=r.hi)
        mapped[s.case] = dataclasses.replace(
            case, figures=figures, failure_map=intervals, stable_but_centre=r.but_centre
        )
    return mapped


def _evaluate(
    formulation: Formulation,
    sandbox: Sandbox | None,
    domain: Domain,
    dtype: DType,
    finite: np.ndarray,
    nonfinite: np.ndarray,
    label: float,
    mode: Mode = Mode.EAGER,
    device: Device = Device.CPU,
) -> GridEvaluation:
    args = (domain, dtype, finite, nonfinite, label)
    if formulation.spec is not None:  # a user's target: only ever run in the sandbox
        assert sandbox is not None
        torch_modes = formulation.engine == "torch" or mode is Mode.EAGER
        if mode is Mode.COMPILE or device is not Device.CPU or not torch_modes:
            why = f"mode {mode} on {device} is not supported for user code (run in the sandbox) yet"
            if mode is not Mode.COMPILE and device is Device.CPU:
                why = f"mode {mode} is for the torch engine only ({formulation.name} runs in {formulation.engine})"
            return GridEvaluation.refused(why, len(finite), len(nonfinite))
        return sandbox.evaluate(formulation.spec, *args, mode=mode)
    return evaluate_variant(formulation, mode, device, *args)


def _refuse_reducing(runs: list[tuple[Formulation, str]], sandbox: Sandbox | None) -> None:
    """A UsageError, before any sweep work, when a loss reduces (``errors.ReducedLoss``): the
    first-call check ``complete`` runs on a target's declared parameters, run again on each swept
    variant of a user's target (``--param reduction=none,mean``), and on a Python callable given
    to the API (which no sandbox loaded), here in this process."""
    from bce_audit.engines.sandbox import refuse_a_reduction_here

    for formulation, parameters in runs:
        try:
            if formulation.function is not None:
                with pinned_run({formulation.engine}):  # as its evaluations will run
                    refuse_a_reduction_here(formulation, formulation.name)
            elif parameters and formulation.spec is not None and not formulation.spec.is_builtin:
                assert sandbox is not None  # run_sweep makes one for the user's targets
                sandbox.refuse_a_reduction(formulation.spec)
        except UsageError as exc:
            if not parameters:
                raise
            raise UsageError(f"--param for {formulation.name} ({parameters}): {exc}") from None


def run_sweep(
    settings: Settings,
    keep_details: bool = False,
    progress: Progress | None = None,
    jobs: int = 1,
    cache: TruthCache | None = None,
    case_progress: Progress | None = None,
    sandbox: Sandbox | None = None,
    full_map: bool = True,
) -> AuditResult:
    """Run the audit. jobs: processes for the oracle; cache: a ``TruthCache`` or None.

    Neither changes a single result: the truth of a point depends on the point alone.
    progress(n, total) counts truth points computed; case_progress(n, total) counts the
    (grid, label, formulation) evaluations that follow. sandbox: the ``engines.sandbox.Sandbox``
    that runs the user's targets (one is made for the sweep when None and one is needed).
    full_map: refine every status change of every case's failure map; False refines only the ends
    of each stable range (the same stable ranges and figures, in a fraction of the time), for a
    run that reports no map.
    """
    if sandbox is None and any(not spec.is_builtin for spec in settings.user_formulations):
        from bce_audit.engines.sandbox import Sandbox

        with Sandbox() as box:
            return run_sweep(settings, keep_details, progress, jobs, cache, case_progress, box, full_map)
    start = time.perf_counter()
    stream_float32 = streamed(settings, DType.FLOAT32) and DType.FLOAT32 in settings.dtypes
    check_device(settings.device)  # no such device here: one line, exit 2, before any work
    if stream_float32:
        check_streamed(settings, keep_details)
        if settings.modes != (Mode.EAGER,) or settings.device is not Device.CPU:
            raise UsageError(
                "--mode and --device are not supported with exhaustive float32 (streamed) yet; "
                "leave float32 out (-d) or use --sampling bits"
            )
    # each formulation, once per value of a swept parameter it takes (--param)
    runs = parameter_variants(resolve(settings.selection, settings.functions), settings.parameter_sweep)
    formulations = [f for f, _ in runs]
    for formulation in dict.fromkeys(formulations):  # a missing framework (an extra) is a usage error, before any work
        require(formulation.engine, f"formulation {formulation.name!r}")
    _refuse_reducing(runs, sandbox)
    if stream_float32:
        check_streamed_formulations(runs)
    # the grids find their threshold crossings with the oracle (and keep them in the cache): after
    # every check that can refuse the run
    all_grids = list(grids(settings, cache))
    for grid in all_grids:
        if len(grid.finite) == 0:
            raise UsageError(empty_grid_message(settings, grid))
    cases: list[CaseResult] = []
    sampled: list[_Sampled] = []
    probes: list[Probe] = []
    # Each grid's inputs (finite, then non-finite) and labels rounded into its dtype: the truth
    # uses the label users actually get.
    plan = [
        (
            grid,
            np.concatenate([grid.finite, grid.nonfinite]),
            [(label, round_float(float(label), grid.dtype.format)) for label in settings.labels],
        )
        for grid in all_grids
    ]
    # Every (domain, label, input) the truth is needed at, evaluated once for all dtypes, for
    # each reference a formulation implements (plain BCE unless it declares another).
    references = list(dict.fromkeys(f.reference for f in formulations))
    requests = [(grid.domain, y, inputs, ref) for grid, inputs, labels in plan for _, y in labels for ref in references]
    table, work = build_truth_table(requests, jobs=jobs, cache=cache, progress=progress)
    variants = [(formulation, parameters, mode) for formulation, parameters in runs for mode in settings.modes]
    evaluations = len(plan) * len(settings.labels) * len(variants)
    if stream_float32:
        chunked = sum(chunk_count(domain, settings.logit_range) for domain in settings.domains)
        evaluations += chunked * len(settings.labels) * len(formulations)
    # one pinned state around every evaluation in this process (built-ins then skip their own pin)
    with pinned_run({f.engine for f in formulations if not f.sandboxed}):
        for grid, inputs, labels in plan:
            fmt = grid.dtype.format
            n = len(grid.finite)
            bounds = grid_bounds(settings, grid)
            for label, y in labels:
                truths = {}
                for ref in references:
                    rows = table.rows(grid.domain, y, inputs, ref)
                    truths[ref] = {q: (rows[:, column(q, fmt)], rows[:, column(q, FLOAT64)]) for q in Quantity}
                for formulation, parameters, mode in variants:
                    truth = truths[formulation.reference]
                    evaluation = _evaluate(
                        formulation,
                        sandbox,
                        grid.domain,
                        grid.dtype,
                        grid.finite,
                        grid.nonfinite,
                        y,
                        mode,
                        settings.device,
                    )
                    ev, singles = evaluation.finite, evaluation.nonfinite
                    nf_errors = [e.error for e in singles]
                    if case_progress is not None:
                        case_progress(1, evaluations)
                    probe: int | None = None
                    if ev.error is None:
                        probe = len(probes)
                        # a built-in in torch is our own elementwise code: its probes at every label of
                        # a grid share the refinement's batches (sweep.refine); a user's (a target in
                        # the sandbox, a function given to the API) may look at its whole batch: never
                        together = None
                        if (
                            formulation.implementation is not None
                            and formulation.engine == "torch"
                            and mode is Mode.EAGER
                        ):
                            together = (formulation, parameters, grid.domain, grid.dtype)
                        probes.append(
                            Probe(
                                grid.domain,
                                grid.dtype,
                                y,
                                _evaluator(formulation, sandbox, mode, settings.device, grid, y),
                                formulation.reference,
                                together,
                                None
                                if together is None
                                else _labelled_evaluator(formulation, mode, settings.device, grid),
                            )
                        )
                    for quantity in Quantity:
                        key = _CaseName(
                            formulation=formulation.name,
                            domain=grid.domain,
                            dtype=grid.dtype,
                            label=float(label),
                            quantity=quantity,
                            parameters=parameters,
                            mode=str(mode),
                            device=str(settings.device),
                        )
                        t, t64 = truth[quantity]
                        if ev.error is not None:
                            details = None
                            if keep_details:  # every point of the case, each with the `error` status
                                details = PointDetails(
                                    inputs=inputs,
                                    outputs=np.full(len(inputs), np.nan),  # there is no output
                                    truth_f64=t64,
                                    ulp_errors=np.full(len(inputs), np.nan),
                                    statuses=np.full(len(inputs), Status.ERROR.value, dtype=object),
                                )
                            sampled.append(_Sampled(len(cases), None, grid, bounds, np.empty(0), np.empty(0)))
                            cases.append(
                                CaseResult(**key, figures=None, error=ev.error, details=details, lost=evaluation.lost)
                            )
                            continue
                        loss = quantity is Quantity.LOSS
                        nf_out = np.array([(e.loss if loss else e.grad)[0] for e in singles])
                        out = np.concatenate([ev.loss if loss else ev.grad, nf_out])
                        nf_err = ulp_error(out[n:], t[n:], fmt)
                        nf_status = point_status(out[n:], t[n:], nf_err, settings.ulp_threshold)
                        nf_status[[e is not None for e in nf_errors]] = Status.ERROR.value
                        nonfinite = tuple(
                            NonFinitePoint(float(x), float(o), float(tt), Status(s), err)
                            for x, o, tt, s, err in zip(
                                grid.nonfinite, out[n:], t64[n:], nf_status, nf_errors, strict=True
                            )
                        )
                        figures, errs, status = summarize(
                            grid.finite,
                            out[:n],
                            t[:n],
                            t64[:n],
                            fmt,
                            grid.domain,
                            settings.ulp_threshold,
                            nonfinite=sum(p.status is not Status.OK for p in nonfinite),
                        )
                        details = None
                        if keep_details:
                            details = PointDetails(
                                inputs=inputs,
                                outputs=out,
                                truth_f64=t64,
                                ulp_errors=np.concatenate([errs, nf_err]),
                                statuses=np.concatenate([status, nf_status]),
                                truth=t,
                            )
                        sampled.append(_Sampled(len(cases), probe, grid, bounds, status, errs))
                        cases.append(
                            CaseResult(
                                **key,
                                figures=figures,
                                nonfinite=nonfinite,
                                details=details,
                                output_dtype=ev.output_dtype,
                            )
                        )
        cases = _mapped(settings, cases, sampled, probes, cache, full_map)
    if stream_float32:
        for domain in settings.domains:
            streamed_cases, _ = exhaustive_cases(
                domain,
                settings.labels,
                formulations,
                lambda f, *args: _evaluate(f, sandbox, *args),
                settings.logit_range,
                settings.ulp_threshold,
                None if case_progress is None else (lambda n: case_progress(n, evaluations)),
                keep_runs=True,  # the failure maps: every interval enumerated
                keep_details=keep_details,  # a range small enough for it (check_streamed)
            )
            cases.extend(streamed_cases)
    seen = _first_seen_variants(cases)
    cases.sort(key=lambda c: _order(settings, seen, c))
    return AuditResult(
        settings=settings,
        cases=tuple(cases),
        provenance_source=lambda: {
            **provenance(list(dict.fromkeys(f.engine for f in formulations))),
            # where the torch engine ran: the CPU the engines report, unless --device says otherwise
            **({"device": str(settings.device)} if settings.device is not Device.CPU else {}),
        },
        truth_points=work.points,
        truth_computed=work.computed,
        elapsed_s=time.perf_counter() - start,
        references=tuple(
            (f"{f.name} {parameters}".strip(), f.reference.key) for f, parameters in runs if not f.reference.is_plain
        ),
    )


def _first_seen_variants(cases: list[CaseResult]) -> dict[tuple[str, ...], int]:
    """Each formulation's variants (parameters, mode, device) numbered in the order they ran."""
    found: dict[tuple[str, ...], int] = {}
    for case in cases:
        found.setdefault((case.formulation, case.parameters, case.mode, case.device), len(found))
    return found


def _order(settings: Settings, variants: dict[tuple[str, ...], int], case: CaseResult) -> tuple[int, ...]:
    """Report order: formulation, its variants, domain, dtype, label, quantity."""
    return (
        settings.formulations.index(case.formulation),
        variants[(case.formulation, case.parameters, case.mode, case.device)],
        settings.domains.index(case.domain),
        settings.dtypes.index(case.dtype),
        settings.labels.index(case.label),
        list(Quantity).index(case.quantity),
    )
