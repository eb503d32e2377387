"""Failing points, ready to be reproduced outside bce-audit (``--repro``, ``report.repro``).

Which inputs of a failing case: its worst input (the most bits of error) when that input fails,
and the first input of each failing status (the smallest finite one, else the first non-finite
one), so that every kind of failure a case shows gets a test, and the worst gets one too.

Where each is evaluated: the audit evaluates a case's finite inputs in one batch, and torch's
vectorized loop body and its scalar tail can round differently, so a point may fail in the batch
and not alone (or the other way round). Each point is evaluated alone here, in the same engine
(or sandbox) and the same pinned state as the audit; if it fails alone too, the reproduction is
that one point; else, if a batch of 64 copies of it fails (the vectorized body), those copies;
else the whole batch the audit evaluated, with the point's index.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from bce_audit.floats import round_float
from bce_audit.formulations.interface import Formulation
from bce_audit.formulations.selection import resolve
from bce_audit.sweep.metrics import point_status, ulp_error
from bce_audit.sweep.result import AuditResult, CaseResult
from bce_audit.vocabulary import Device, FloatFormat, Mode, Quantity, Status

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.engines.sandbox import Sandbox


# A batch of this many copies of one input is a whole number of torch's CPU loop steps (its widest:
# two AVX-512 vectors of 32 16-bit values), so it runs through the vectorized body, with no scalar tail.
VECTOR_COPIES = 64


@dataclasses.dataclass(frozen=True)
class FailingPoint:
    """One failing point of a case and how to make it fail again.

    reasons: why it was chosen, e.g. ``("worst input", "first nan")``.
    input: the input, a value of the case's dtype (held in float64).
    label: the label rounded into the dtype: the y the engine was given.
    expected: the exact value correctly rounded into the dtype (NaN outside the domain, ±inf at
        a pole).
    output: what the audit got at this input.
    status: the audit's status of the point.
    ulp_error: the audit's ULP error there (NaN where undefined).
    batch: the inputs to evaluate in one call for the point to fail: just ``(input,)`` when it
        fails alone (or it was evaluated alone: ±inf, NaN); else ``VECTOR_COPIES`` copies of it
        when that fails (torch's vectorized loop body); else every finite input of the case.
    index: the point's place in ``batch``.
    alone_output: what the point gives evaluated alone; equal to ``output`` unless the batch
        changes the result.
    error: the exception the formulation raised at this input (status ``error``), else None.
    """

    reasons: tuple[str, ...]
    input: float
    label: float
    expected: float
    output: float
    status: Status
    ulp_error: float
    batch: tuple[float, ...]
    index: int
    alone_output: float
    error: str | None = None

    @property
    def in_batch(self) -> bool:
        """Whether it fails only inside the audit's batch (not alone)."""
        return len(self.batch) > 1


@dataclasses.dataclass(frozen=True)
class FailingCase:
    """A failing case, its formulation (its code, its parameters) and the points to reproduce."""

    case: CaseResult
    formulation: Formulation
    points: tuple[FailingPoint, ...]
    ulp_threshold: float


def chosen_indices(case: CaseResult) -> dict[int, list[str]]:
    """The points of a case to reproduce, by index into its details, each with why: the worst
    input when it is not ok, and the first point of each status that is not ok (in order of
    severity; a ±inf or NaN input comes after the finite ones). Empty for a case whose worst
    status is ok (the scoreboard's verdict: a case that misses only the limits at ±inf or NaN
    inputs is not one), that has no figures (it raised) or kept no details."""
    d, figures = case.details, case.figures
    if d is None or figures is None or case.worst_status is Status.OK:
        return {}
    statuses = d.statuses
    chosen: dict[int, list[str]] = {}
    if not math.isnan(figures.worst_input):
        # the worst input is one of the finite inputs (the first of them with its bit pattern)
        n = figures.points
        same = np.nonzero(d.inputs[:n].view(np.int64) == np.float64(figures.worst_input).view(np.int64))[0]
        if len(same) and statuses[same[0]] != Status.OK.value:
            chosen[int(same[0])] = ["worst input"]
    for status in sorted(Status, key=lambda s: -s.severity):
        if status is Status.OK:
            continue
        where = np.nonzero(statuses == status.value)[0]
        if len(where):
            chosen.setdefault(int(where[0]), []).append(f"first {status}")
    return dict(sorted(chosen.items()))


def failing_cases(result: AuditResult, sandbox: Sandbox | None = None) -> list[FailingCase]:
    """Every case whose worst status is not ok (see ``chosen_indices``), with its points to
    reproduce, each checked alone in its engine (user code in ``sandbox``; one is opened when a
    user's target needs it and none is given). Needs the details of the run (``keep_details``);
    cases that raised or were lost have no point to reproduce."""
    if sandbox is None and any(not s.is_builtin for s in result.settings.user_formulations):
        from bce_audit.engines.sandbox import Sandbox

        with Sandbox() as box:
            return failing_cases(result, box)
    wanted = [(case, chosen_indices(case)) for case in result.cases]
    wanted = [(case, chosen) for case, chosen in wanted if chosen]
    if not wanted:
        return []
    formulations = {f.name: f for f in resolve(result.settings.selection, result.settings.functions)}
    threshold = result.settings.ulp_threshold
    found = []
    for case, chosen in wanted:
        formulation = formulations[case.formulation]
        points = tuple(
            failing_point(case, formulation, index, reasons, threshold, sandbox) for index, reasons in chosen.items()
        )
        found.append(FailingCase(case, formulation, points, threshold))
    return found


def failing_point(
    case: CaseResult,
    formulation: Formulation,
    index: int,
    reasons: list[str],
    threshold: float,
    sandbox: Sandbox | None,
) -> FailingPoint:
    from bce_audit.sweep.run import _evaluate

    d, figures = case.details, case.figures
    assert d is not None and d.truth is not None and figures is not None
    fmt = case.dtype.format
    x, expected = float(d.inputs[index]), float(d.truth[index])
    label = round_float(float(case.label), fmt)
    finite = index < figures.points
    empty = np.empty(0)
    single = np.array([x])
    grid = (single, empty) if finite else (empty, single)
    evaluation = _evaluate(
        formulation, sandbox, case.domain, case.dtype, grid[0], grid[1], label, Mode(case.mode), Device(case.device)
    )
    ev = evaluation.finite if finite else evaluation.nonfinite[0]
    alone = float((ev.loss if case.quantity is Quantity.LOSS else ev.grad)[0])
    alone_status = Status.ERROR.value if ev.error is not None else str(_status(alone, expected, fmt, threshold))
    fails_alone = not finite or alone_status != Status.OK.value
    batch, at = (x,), 0
    if not fails_alone:
        # The smallest batch that takes torch's vectorized loop body: the point repeated (each lane
        # is computed on its own); else the audit's whole batch, which is what it saw.
        copies = np.full(VECTOR_COPIES, x)
        ev = _evaluate(formulation, sandbox, case.domain, case.dtype, copies, empty, label).finite
        value = float((ev.loss if case.quantity is Quantity.LOSS else ev.grad)[0])
        if ev.error is None and _status(value, expected, fmt, threshold) != Status.OK.value:
            batch = tuple(copies.tolist())
        else:
            batch, at = tuple(d.inputs[: figures.points].tolist()), index
    return FailingPoint(
        reasons=tuple(reasons),
        input=x,
        label=label,
        expected=expected,
        output=float(d.outputs[index]),
        status=Status(str(d.statuses[index])),
        ulp_error=float(d.ulp_errors[index]),
        batch=batch,
        index=at,
        alone_output=alone,
        error=ev.error,
    )


def _status(output: float, expected: float, fmt: FloatFormat, threshold: float) -> str:
    out, truth = np.array([output]), np.array([expected])
    return str(point_status(out, truth, ulp_error(out, truth, fmt), threshold)[0])
