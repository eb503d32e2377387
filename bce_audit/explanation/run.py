"""Explaining cases: which inputs to explain, tracing the formulation there (in this process,
or in the sandbox for a user's target), and judging each trace.

The explain logic takes a list of ``ExplainPoint``: today the sweep's worst input and the first
failing inputs beyond each end of the stable range (``sweep_points``); a failure map's exact
interval edges can be passed in the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bce_audit.errors import EvaluationLost, UsageError
from bce_audit.explanation.analysis import explain_trace
from bce_audit.explanation.interface import ExplainPoint, Explanation, Layout, Trace
from bce_audit.floats import round_float
from bce_audit.report import numbers
from bce_audit.vocabulary import FLOAT64, Domain, DType, EngineName, Quantity, Status

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.formulations.interface import Formulation
    from bce_audit.settings import RunOptions, Settings
    from bce_audit.sweep.result import CaseResult


@dataclasses.dataclass(frozen=True)
class Case:
    """One case to explain: (formulation, domain, dtype, label, quantity)."""

    formulation: Formulation
    domain: Domain
    dtype: DType
    label: float
    quantity: Quantity


def require_torch(formulation: Formulation) -> None:
    """A UsageError (one line, exit 2) for a formulation that does not run in torch: the trace is
    a torch dispatch trace of aten ops, which a JAX or TensorFlow function never calls. Checked
    before any work (no sweep, no import of the other framework)."""
    if formulation.engine != EngineName.TORCH:
        raise UsageError(
            f"explain traces torch's aten ops; {formulation.name} runs in {formulation.engine} "
            f"(bce-audit sweep audits it without the trace)"
        )


def at_point(value: float, domain: Domain, dtype: DType) -> ExplainPoint:
    """``--at X`` as an input of the dtype (rounded once); a UsageError outside the domain."""
    if math.isnan(value):
        raise UsageError("--at NaN is not an input to explain: give a number")
    if domain is Domain.PROBABILITIES and not 0 <= value <= 1:
        raise UsageError(f"--at {numbers.in_format(value, FLOAT64)} is outside the probabilities domain [0, 1]")
    rounded = round_float(value, dtype.format)  # -0 stays -0: the sweep tells the two zeros apart
    why = "--at" if rounded == value else f"--at {numbers.in_format(value, FLOAT64)}, rounded to {dtype}"
    return ExplainPoint(rounded, why)


def sweep_points(case: CaseResult) -> list[ExplainPoint]:
    """The inputs of a swept case worth explaining: its worst input, and the failing inputs
    nearest each end of its stable range (the centre, when the centre itself fails)."""
    if case.figures is None or case.details is None:
        return []
    figures = case.figures
    n = figures.points
    inputs, statuses = case.details.inputs[:n], case.details.statuses[:n]
    failing = statuses != Status.OK.value
    found: list[ExplainPoint] = []
    if not failing.any():
        return found
    if not math.isnan(figures.worst_input) and failing[inputs == figures.worst_input].any():
        found.append(ExplainPoint(figures.worst_input, "the worst input"))
    lo, hi = figures.stable_lo, figures.stable_hi
    if math.isnan(lo):
        centre = case.domain.centre
        nearest = inputs[failing][np.argmin(np.abs(inputs[failing] - centre))]
        found.append(ExplainPoint(float(nearest), "the failing input nearest the centre"))
    else:
        above = inputs[failing & (inputs > hi)]
        below = inputs[failing & (inputs < lo)]
        if len(above):
            found.append(ExplainPoint(float(above.min()), "the first failure above the stable range"))
        if len(below):
            found.append(ExplainPoint(float(below.max()), "the first failure below the stable range"))
    unique: dict[float, ExplainPoint] = {}
    for p in found:
        unique.setdefault(p.value, p)
    return list(unique.values())


def trace(
    formulation: Formulation,
    domain: Domain,
    dtype: DType,
    points: Sequence[float],
    label: float,
    layout: Layout,
    sandbox: Sandbox | None,
) -> list[Trace]:
    """The traces at the points: a built-in or a callable here, a user's target in the sandbox
    (whose death or hang is a trace with its reason, never the end of the tool)."""
    if formulation.spec is not None:
        if sandbox is None:
            raise ValueError("a user's target is traced in the sandbox")
        try:
            wires = sandbox.trace(formulation.spec, domain, dtype, list(points), label, str(layout))
        except EvaluationLost as exc:
            return [Trace.failed(p, label, layout, str(exc)) for p in points]
    else:
        from bce_audit.engines.torch_trace import trace_points

        wires = trace_points(formulation, domain, dtype, list(points), label, layout)
    return [Trace.from_wire(w) for w in wires]


def explain_points(
    case: Case,
    points: Sequence[ExplainPoint],
    threshold: float,
    sandbox: Sandbox | None = None,
    layout: Layout = Layout.BATCH,
) -> tuple[Explanation, ...]:
    """The explanation of the case at each point (the ``alone`` layout is traced as well, to say
    when a point alone gives something else)."""
    if not points:
        return ()
    label = round_float(case.label, case.dtype.format)
    values = [p.value for p in points]
    traces = trace(case.formulation, case.domain, case.dtype, values, label, layout, sandbox)
    others: list[Trace | None] = [None] * len(points)
    if layout is Layout.BATCH:
        others = list(trace(case.formulation, case.domain, case.dtype, values, label, Layout.ALONE, sandbox))
    return tuple(
        explain_trace(
            t,
            formulation=case.formulation.name,
            domain=case.domain,
            dtype=case.dtype,
            quantity=case.quantity,
            point=p,
            threshold=threshold,
            alone=other,
            reference=case.formulation.reference,
        )
        for t, p, other in zip(traces, points, others, strict=True)
    )


def explain_settings(
    settings: Settings,
    options: RunOptions,
    sandbox: Sandbox,
    quantities: Sequence[Quantity],
    at: float | None = None,
    layout: Layout = Layout.BATCH,
) -> tuple[Explanation, ...]:
    """Every case of the settings (one formulation) at ``at``, or, without it, every failing
    case at the inputs ``sweep_points`` picks from a sweep of it."""
    from bce_audit.formulations.selection import resolve

    (formulation,) = resolve(settings.selection, settings.functions)
    require_torch(formulation)
    found: list[Explanation] = []
    result = None
    if at is None:
        from bce_audit.oracle.cache import TruthCache
        from bce_audit.sweep.run import run_sweep

        cache = None if options.cache_dir is None else TruthCache(options.cache_dir)
        result = run_sweep(settings, keep_details=True, jobs=options.jobs, cache=cache, sandbox=sandbox)
    for domain in settings.domains:
        for dtype in settings.dtypes:
            for label in settings.labels:
                for quantity in quantities:
                    case = Case(formulation, domain, dtype, label, quantity)
                    if at is not None:
                        points = [at_point(at, domain, dtype)]
                    else:
                        assert result is not None
                        swept = next(
                            c
                            for c in result.cases
                            if c.domain is domain and c.dtype is dtype and c.label == label and c.quantity is quantity
                        )
                        points = sweep_points(swept)
                    found += explain_points(case, points, settings.ulp_threshold, sandbox, layout)
    return tuple(found)
