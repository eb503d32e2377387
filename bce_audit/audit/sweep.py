"""The pipeline: grid -> (formulations in torch || truth from mpmath) -> metrics -> result."""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from bce_audit import __version__
from bce_audit.audit.grid import build_grid
from bce_audit.audit.metrics import point_status, summarize, ulp_error
from bce_audit.audit.result import CaseResult, NonFinitePoint, PointDetails, SweepResult
from bce_audit.engines.torch_engine import evaluate_grid
from bce_audit.errors import UsageError
from bce_audit.floats import round_float
from bce_audit.formulations.builtins import resolve
from bce_audit.oracle.table import build_truth_table, column
from bce_audit.report import numbers
from bce_audit.settings import Settings
from bce_audit.vocabulary import FLOAT64, Domain, DType, Quantity, Sampling, Status

# progress(points just evaluated, points in all): called as the oracle works through the points
# the cache did not have
Progress = Callable[[int, int], None]


def effective_sampling(settings: Settings, dtype: DType) -> Sampling:
    """Exhaustive sampling applies to 16-bit dtypes; wider ones fall back to bit patterns."""
    if settings.sampling is Sampling.EXHAUSTIVE and not dtype.format.is_16bit:
        return Sampling.BITS
    return settings.sampling


def grids(settings: Settings):
    for dtype in settings.dtypes:
        for domain in settings.domains:
            yield build_grid(
                dtype,
                domain,
                settings.points,
                effective_sampling(settings, dtype),
                settings.seed,
                settings.logit_range,
            )


def empty_grid_message(settings: Settings, grid) -> str:
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
    else:
        span = f"{grid.dtype}'s largest finite value is {numbers.compact(fmt.largest_finite, 5)}"
    return (
        f"{where} holds no {grid.dtype} input on {grid.domain}, so those cases would test nothing ({span}); "
        "widen the range, or drop that dtype or domain"
    )


def provenance() -> dict:
    import mpmath
    import torch

    return {
        "bce_audit": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "mpmath": mpmath.__version__,
        "mpmath_backend": mpmath.libmp.BACKEND,
        "python": sys.version.split()[0],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
        "device": "cpu",
    }


def run_sweep(
    settings: Settings,
    keep_details: bool = False,
    progress: Progress | None = None,
    jobs: int = 1,
    cache=None,
    case_progress: Progress | None = None,
    sandbox=None,
) -> SweepResult:
    """Run the audit. jobs: processes for the oracle; cache: a truth_cache.TruthCache or None.

    Neither changes a single result: the truth of a point depends on the point alone.
    progress(n, total) counts truth points computed; case_progress(n, total) counts the
    (grid, label, formulation) evaluations in torch that follow. sandbox: the
    ``sandbox.Sandbox`` that runs the user's functions (one is made for the sweep when None).
    """
    if sandbox is None and any(not spec.is_builtin for spec in settings.user_formulations):
        from bce_audit.engines.sandbox import Sandbox

        with Sandbox() as box:
            return run_sweep(settings, keep_details, progress, jobs, cache, case_progress, box)
    start = time.perf_counter()
    all_grids = list(grids(settings))
    for grid in all_grids:
        if len(grid.finite) == 0:
            raise UsageError(empty_grid_message(settings, grid))
    formulations = resolve(settings)
    cases: list[CaseResult] = []
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
    # Every (domain, label, input) the truth is needed at, evaluated once for all dtypes.
    requests = [(grid.domain, y, inputs) for grid, inputs, labels in plan for _, y in labels]
    table, work = build_truth_table(requests, jobs=jobs, cache=cache, progress=progress)
    evaluations = len(requests) * len(formulations)
    for grid, inputs, labels in plan:
        fmt = grid.dtype.format
        n = len(grid.finite)
        for label, y in labels:
            rows = table.rows(grid.domain, y, inputs)
            truth = {q: (rows[:, column(q, fmt)], rows[:, column(q, FLOAT64)]) for q in Quantity}
            for formulation in formulations:
                args = (grid.domain, grid.dtype, grid.finite, grid.nonfinite, y)
                if formulation.spec is not None:  # a user's function: only ever in the sandbox
                    evaluation = sandbox.evaluate(formulation.spec, *args)
                else:
                    evaluation = evaluate_grid(formulation, *args)
                ev, singles = evaluation.finite, evaluation.nonfinite
                nf_loss = np.array([e.loss[0] for e in singles])
                nf_grad = np.array([e.grad[0] for e in singles])
                nf_errors = [e.error for e in singles]
                if case_progress is not None:
                    case_progress(1, evaluations)
                for quantity in Quantity:
                    out = np.concatenate([ev.loss, nf_loss] if quantity is Quantity.LOSS else [ev.grad, nf_grad])
                    t, t64 = truth[quantity]
                    common = dict(
                        formulation=formulation.name,
                        domain=grid.domain,
                        dtype=grid.dtype,
                        label=float(label),
                        quantity=quantity,
                    )
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
                        cases.append(
                            CaseResult(**common, stats=None, error=ev.error, details=details, lost=evaluation.lost)
                        )
                        continue
                    stats, errs, status = summarize(
                        grid.finite,
                        out[:n],
                        t[:n],
                        t64[:n],
                        fmt,
                        grid.domain,
                        settings.ulp_threshold,
                    )
                    nf_err = ulp_error(out[n:], t[n:], fmt)
                    nf_status = point_status(out[n:], t[n:], nf_err, settings.ulp_threshold)
                    nf_status[[e is not None for e in nf_errors]] = Status.ERROR.value
                    nonfinite = tuple(
                        NonFinitePoint(float(x), float(o), float(tt), Status(s), err)
                        for x, o, tt, s, err in zip(grid.nonfinite, out[n:], t64[n:], nf_status, nf_errors, strict=True)
                    )
                    details = None
                    if keep_details:
                        details = PointDetails(
                            inputs=inputs,
                            outputs=out,
                            truth_f64=t64,
                            ulp_errors=np.concatenate([errs, nf_err]),
                            statuses=np.concatenate([status, nf_status]),
                        )
                    cases.append(CaseResult(**common, stats=stats, nonfinite=nonfinite, details=details))
    cases.sort(key=lambda c: _order(settings, c))
    return SweepResult(
        settings=settings,
        cases=tuple(cases),
        provenance=provenance(),
        truth_points=work.points,
        truth_computed=work.computed,
        elapsed_s=time.perf_counter() - start,
    )


def _order(settings: Settings, case: CaseResult):
    return (
        settings.formulations.index(case.formulation),
        settings.domains.index(case.domain),
        settings.dtypes.index(case.dtype),
        settings.labels.index(case.label),
        list(Quantity).index(case.quantity),
    )
