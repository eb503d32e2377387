"""The cause of each failing interval of a failure map: the interval explained at one input.

Each failing interval (``sweep.result.FailureInterval``) is explained at its worst input, or, when
it has none (its outputs are NaN or infinite, so no ULP error), at its low edge, and the
explanation's one-line cause (``report.explanation.cause_line``) becomes the interval's
``cause``, followed by the id of the first fix the catalogue found (``; fix: log-of-sigmoid``).

Cost: the work is grouped so that each (formulation and its parameters, domain, dtype, label)
is traced once, with all its points in one traced batch (``explanation.run.trace``), and each
(that group, quantity, input) is judged once however many intervals share it. The loss and the
gradient come from the same trace. Only torch's aten ops are traced: a formulation in another
engine gets a cause that says so, a case that raised or was lost gets its reason, and a user's
target whose process dies while traced gets the reason it died, never an internal error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from bce_audit.explanation.analysis import explain_trace
from bce_audit.explanation.interface import ExplainPoint, Explanation, Layout
from bce_audit.explanation.run import trace
from bce_audit.floats import round_float
from bce_audit.vocabulary import EngineName, Status

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.formulations.interface import Formulation
    from bce_audit.sweep.result import AuditResult, CaseResult, FailureInterval
    from bce_audit.sweep.run import Progress

# The cause of a failing interval of a formulation that another framework evaluates.
NOT_TORCH = "not traced: explain traces torch's aten ops, and {name} runs in {engine}"

# Why an input was chosen, as `bce-audit explain` prints it.
WORST = "the interval's worst input"
EDGE = "the interval's low edge (no input of it has a ULP error)"


def interval_point(iv: FailureInterval) -> ExplainPoint:
    """The input a failing interval is explained at: its worst input when it has one, else its
    low edge (its high edge if the low one is not finite)."""
    if math.isfinite(iv.worst_input):
        return ExplainPoint(iv.worst_input, WORST)
    return ExplainPoint(iv.lo if math.isfinite(iv.lo) else iv.hi, EDGE)


def cause_text(e: Explanation, status: Status) -> str:
    """The ``cause`` of an interval of ``status`` explained by ``e``: its one-line cause and the
    first fix's id. When the trace finds the input ok (the sweep saw it fail, in its own batch),
    it says so rather than explain a failure it did not see."""
    text = e.cause
    if e.error is None and e.status is Status.OK and status is not Status.OK:
        text = f"not reproduced: traced in a batch of its own copies, the input is {text}"
    if e.fixes:
        text += f"; fix: {e.fixes[0].pattern}"
    return " ".join(text.split())  # one line, whatever a reason held


@dataclasses.dataclass(frozen=True)
class _Group:
    """What one traced run covers: a formulation variant at one (domain, dtype, label)."""

    formulation: str
    parameters: str
    domain: str
    dtype: str
    label: float


def _group(case: CaseResult) -> _Group:
    return _Group(case.formulation, case.parameters, str(case.domain), str(case.dtype), float(case.label))


def _untraced(case: CaseResult, formulation: Formulation | None) -> str | None:
    """The cause of every failing interval of a case that is not traced, or None to trace it."""
    if case.lost is not None:
        return f"not traced: {case.lost}"
    if case.figures is None:
        return f"not traced: it raised {case.error}" if case.error else "not traced: it gave no output"
    if formulation is None:
        return "not traced: its formulation is not in this run's selection"
    if formulation.engine != EngineName.TORCH.value:
        return NOT_TORCH.format(name=formulation.name, engine=formulation.engine)
    return None


def explain_failures(
    result: AuditResult, sandbox: Sandbox | None = None, progress: Progress | None = None
) -> AuditResult:
    """``result`` with the ``cause`` of every failing interval of every case filled in (see the
    module's docstring); user targets are traced in ``sandbox`` (one is opened when needed).
    ``progress(n, total)`` is told, after each traced run, how many intervals it explained."""
    if sandbox is None and any(not s.is_builtin for s in result.settings.user_formulations):
        from bce_audit.engines.sandbox import Sandbox

        with Sandbox() as box:
            return explain_failures(result, box, progress)
    from bce_audit.formulations.selection import parameter_variants, resolve

    settings = result.settings
    variants = parameter_variants(resolve(settings.selection, settings.functions), settings.parameter_sweep)
    formulations = {(f.name, parameters): f for f, parameters in variants}
    causes: dict[tuple[int, int], str] = {}  # (case, interval) -> cause
    # group -> its intervals to explain, as (case, interval), in report order
    wanted: dict[_Group, list[tuple[int, int]]] = {}
    for c, case in enumerate(result.cases):
        if not case.failures:
            continue
        untraced = _untraced(case, formulations.get((case.formulation, case.parameters)))
        for i, iv in enumerate(case.failure_map):
            if iv.failing and untraced is not None:
                causes[(c, i)] = untraced
            elif iv.failing:
                wanted.setdefault(_group(case), []).append((c, i))
    total = sum(len(intervals) for intervals in wanted.values())
    # a user's target whose traced run gave nothing (its process died or hung): its other groups
    # get the same reason rather than wait for the time limit again, each
    gave_nothing: dict[tuple[str, str], str] = {}
    for intervals in wanted.values():
        first = result.cases[intervals[0][0]]
        variant = (first.formulation, first.parameters)
        formulation = formulations[variant]
        if variant in gave_nothing:
            causes.update({(c, i): f"not traced: {gave_nothing[variant]}" for c, i in intervals})
            if progress is not None:
                progress(len(intervals), total)
            continue
        # every input of the group in one traced batch (loss and gradient alike), each once
        values = list(dict.fromkeys(interval_point(result.cases[c].failure_map[i]).value for c, i in intervals))
        label = round_float(first.label, first.dtype.format)
        found = trace(formulation, first.domain, first.dtype, values, label, Layout.BATCH, sandbox)
        traces = dict(zip(values, found, strict=True))
        if formulation.spec is not None and all(t.error is not None and not t.ops for t in found):
            gave_nothing[variant] = str(found[0].error)
        judged: dict[tuple[str, float], Explanation] = {}  # (quantity, input) -> its explanation
        for c, i in intervals:
            case, iv = result.cases[c], result.cases[c].failure_map[i]
            point = interval_point(iv)
            key = (str(case.quantity), point.value)
            if key not in judged:
                judged[key] = explain_trace(
                    traces[point.value],
                    formulation=case.formulation,
                    domain=case.domain,
                    dtype=case.dtype,
                    quantity=case.quantity,
                    point=point,
                    threshold=settings.ulp_threshold,
                    reference=formulation.reference,  # what the sweep measured it against
                )
            causes[(c, i)] = cause_text(judged[key], iv.status)
        if progress is not None:
            progress(len(intervals), total)
    cases = tuple(
        dataclasses.replace(
            case,
            failure_map=tuple(
                dataclasses.replace(iv, cause=causes[(c, i)]) if (c, i) in causes else iv
                for i, iv in enumerate(case.failure_map)
            ),
        )
        if case.failures
        else case
        for c, case in enumerate(result.cases)
    )
    return dataclasses.replace(result, cases=cases)
