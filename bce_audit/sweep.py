"""The pipeline: grid -> (formulations in torch || truth from mpmath) -> metrics -> result."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from bce_audit import __version__
from bce_audit._rounding import round_float
from bce_audit._types import FLOAT64, DType, Quantity, Sampling, Status
from bce_audit.evaluate import evaluate
from bce_audit.formulations import resolve
from bce_audit.grid import build_grid
from bce_audit.metrics import point_status, summarize, ulp_error
from bce_audit.result import CaseResult, NonFinitePoint, PointDetails, SweepResult
from bce_audit.settings import Settings
from bce_audit.truth_table import build_truth_table, column

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
) -> SweepResult:
    """Run the audit. jobs: processes for the oracle; cache: a truth_cache.TruthCache or None.

    Neither changes a single result: the truth of a point depends on the point alone.
    progress(n, total) counts truth points computed; case_progress(n, total) counts the
    (grid, label, formulation) evaluations in torch that follow.
    """
    start = time.perf_counter()
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
        for grid in grids(settings)
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
                ev = evaluate(formulation, grid.domain, grid.dtype, grid.finite, y)
                # Non-finite inputs one at a time: a formulation that rejects NaN (torch's BCE
                # raises) must not take the finite points down with it.
                singles = [evaluate(formulation, grid.domain, grid.dtype, np.array([x]), y) for x in grid.nonfinite]
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
                        cases.append(CaseResult(**common, stats=None, error=ev.error, details=details))
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
