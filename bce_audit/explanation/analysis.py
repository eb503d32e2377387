"""Judging a trace: every op against its exact result, the exact program beside the actual one,
and the chain from the first op that lost the value to the output.

Two exact values are computed for every op (``oracle.ops``):

* its *exact result*: the op's real function of its actual inputs, rounded once into its dtype.
  An op whose output is that value did its job (``exact`` or ``rounded``); one that is not is
  ``inaccurate``, by so many ULPs.
* its *ideal value*: the same function of the ideal values of its inputs, where the ideal
  program takes the input and the label as they are and rounds nothing at all.

An op is *damaged* when its output is more than the ULP threshold from its ideal value, or is
±inf, NaN or 0 where the ideal value is not. The first damaged op among those whose departure
reaches the output is where the value was lost; the chain is the ops before it that departed
from the ideal program and fed it (the rounding it amplified), itself, and the departed ops
after it that carry the damage to the output.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from bce_audit.explanation.fixes import find_fixes
from bce_audit.explanation.graph import COPY_OPS, dependencies
from bce_audit.explanation.interface import (
    ExplainPoint,
    Explanation,
    Fix,
    OpAnalysis,
    OperandKind,
    Phase,
    Trace,
    TracedOp,
    Verdict,
)
from bce_audit.oracle.ops import MODELS, exact_op, ideal_is, ideal_op, ideal_rounded, ideal_value
from bce_audit.reference import PLAIN_BCE, Reference
from bce_audit.sweep.metrics import point_status, ulp_error
from bce_audit.vocabulary import FLOAT64, Domain, DType, FloatFormat, Quantity, Status


def _ulps(output: float, exact: float, fmt: FloatFormat) -> float:
    if (math.isnan(output) and math.isnan(exact)) or output == exact:
        return 0.0
    return float(ulp_error(np.array([output]), np.array([exact]), fmt)[0])


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _departs(output: float, ideal: float, fmt: FloatFormat, threshold: float) -> bool:
    """Whether an output is damaged against its ideal value (see the module's docstring)."""
    if _same(output, ideal):
        return False
    if math.isnan(output) != math.isnan(ideal) or math.isinf(output) != math.isinf(ideal):
        return True
    if output == 0 and ideal != 0:
        return True
    if math.isinf(output):  # both infinite, opposite signs
        return True
    return _ulps(output, ideal, fmt) > threshold


def analyse_op(op: TracedOp, ideals: dict[int, Any], threshold: float) -> OpAnalysis:
    """One op judged; stores its ideal value (for the ops downstream) in ``ideals``."""
    out = op.outputs[0] if op.outputs else None
    fmt = out.format if out is not None else None
    model = MODELS.get(op.op)
    args = [o.value for o in op.inputs]
    analysable = (
        model is not None
        and out is not None
        and (fmt is not None or out.dtype == "bool")
        and all(o.kind is not OperandKind.OTHER for o in op.inputs[: model.arity])
    )
    # the ideal program: the ideal values of the op's arguments
    ideal = None
    if analysable:
        ideal_args: list[Any] = []
        for o in op.inputs:
            if o.source is not None and o.kind is OperandKind.TENSOR and o.source[1] == 0:
                ideal_args.append(ideals.get(o.source[0]))
            elif o.source is not None and o.kind is OperandKind.TENSOR:
                # an op's second output (log_sigmoid_forward's buffer) has no ideal of its own:
                # taken as computed, as an unmodelled op's output is (the models that take one
                # ignore it)
                ideal_args.append(None if o.value is None else ideal_value(o.value))
            elif o.value is None:
                ideal_args.append(None)
            else:
                ideal_args.append(ideal_value(o.value))
        needed = ideal_args[: model.arity] if model is not None else []
        if all(a is not None or o.kind is OperandKind.NONE for a, o in zip(needed, op.inputs, strict=False)):
            ideal = ideal_op(op.op, ideal_args)
    if not analysable or out is None or not isinstance(out.value, float | bool):
        # no model: its output is taken as it is (never guessed), so the ops after it are
        # still judged against an exact program from there on
        if out is not None and isinstance(out.value, float | bool):
            ideals[op.index] = ideal_value(out.value)
        return OpAnalysis(op, Verdict.NOT_ANALYSED)
    ideals[op.index] = ideal if ideal is not None else ideal_value(out.value)
    value = float(out.value)
    out_fmt = fmt or FLOAT64
    exact = exact_op(op.op, args, out_fmt)
    ideal_shown = None if ideal is None else ideal_rounded(ideal, FLOAT64)
    damaged = False
    if ideal is not None and ideal_shown is not None:
        if out.dtype == "bool":
            damaged = not _same(value, ideal_shown)
        else:
            # against the unrounded ideal (in float64): an overflow to inf of a finite ideal
            # value is a departure even where that value rounds to inf in the dtype
            damaged = _departs(value, ideal_shown, out_fmt, threshold) and _departs(
                value, ideal_rounded(ideal, out_fmt), out_fmt, threshold
            )
            if math.isinf(value) and math.isfinite(ideal_shown):
                damaged = True
    departs = ideal is not None and not ideal_is(ideal, out.value)
    if exact is None:
        return OpAnalysis(op, Verdict.NOT_ANALYSED, ideal=ideal_shown, damaged=damaged, departs=departs)
    if _same(value, exact.rounded):
        verdict = Verdict.EXACT if _same(exact.shown, exact.rounded) and exact.exact else Verdict.ROUNDED
    else:
        verdict = Verdict.INACCURATE
    return OpAnalysis(
        op,
        verdict,
        exact=exact.rounded,
        exact_shown=exact.shown,
        ulp=_ulps(value, exact.rounded, out_fmt),
        ideal=ideal_shown,
        damaged=damaged,
        departs=departs,
    )


def analyse_trace(trace: Trace, threshold: float) -> tuple[OpAnalysis, ...]:
    ideals: dict[int, Any] = {}
    return tuple(analyse_op(op, ideals, threshold) for op in trace.ops)


def _differs(a: OpAnalysis) -> bool:
    """The op's output is not its ideal value (by any amount); an op not analysed does not (its
    output is taken as it is)."""
    return a.departs


def _reaching(trace: Trace, ops: tuple[OpAnalysis, ...], output: int) -> set[int]:
    """The departed ops from which the output is reached through departed ops only."""
    by_index = {a.op.index: a for a in ops}
    departed = {i for i in dependencies(trace, output) if _differs(by_index[i])}
    reaching: set[int] = set()
    todo = [output] if output in departed else []
    while todo:
        i = todo.pop()
        if i in reaching:
            continue
        reaching.add(i)
        todo += [o.source[0] for o in trace.ops[i].inputs if o.source is not None and o.source[0] in departed]
    return reaching


def find_chain(trace: Trace, ops: tuple[OpAnalysis, ...], output: int) -> tuple[tuple[int, ...], int | None]:
    """(the chain's op indices, the first damaged op) for the output of op ``output``; an empty
    chain when no op departs from the exact program (the program itself computes the value)."""
    by_index = {a.op.index: a for a in ops}
    reaching = _reaching(trace, ops, output)
    damaged = sorted(i for i in reaching if by_index[i].damaged)
    if not damaged:
        return (), None
    # An output that is NaN, ±inf or 0 was lost where an op first gave such a value where the
    # exact program has none: the first damaged op is looked for among the ops it depends on
    # (another departure, on a branch that does not lead there, is not what failed).
    out_value = _value(trace.ops[output])
    kind = _kind(out_value)
    if kind is not None:
        turned = [
            i
            for i in sorted(reaching)
            if _kind(_value(trace.ops[i])) == kind
            and _kind(by_index[i].ideal) != kind
            and by_index[i].ideal is not None
        ]
        if turned:
            damaged = [i for i in damaged if i in dependencies(trace, turned[0])] or damaged
    first = damaged[0]
    # before it: the departed ops that feed it; after it: those it reaches that reach the output
    upstream = dependencies(trace, first) & reaching
    downstream = {i for i in reaching if first in dependencies(trace, i)}
    chain = sorted((upstream | downstream) - {i for i in reaching if trace.ops[i].op in COPY_OPS})
    return tuple(chain), first


def every_damage(trace: Trace, ops: tuple[OpAnalysis, ...], output: int) -> set[int]:
    """Every damaged op whose departure reaches the output, with the departed ops that feed it:
    where the chain shows the first, this holds the others too. A product of two factors that
    each lost the value (a focal loss's ce and its factor (1 - p_t) ** gamma, both 0) is repaired
    only by fixing both, so each one's fix is wanted."""
    by_index = {a.op.index: a for a in ops}
    reaching = _reaching(trace, ops, output)
    found: set[int] = set()
    for i in reaching:
        if by_index[i].damaged:
            found |= (dependencies(trace, i) & reaching) | {i}
    return found


def _value(op: TracedOp) -> float | None:
    value = op.outputs[0].value if op.outputs else None
    return float(value) if isinstance(value, float) else None


def _kind(value: float | None) -> str | None:
    """NaN, inf (either sign) or zero: the failures that a status names; None for the rest."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return "zero" if value == 0 else None


def exact_program_chain(trace: Trace, fixes: tuple[Fix, ...], output: int) -> tuple[int, ...]:
    """The chain when the exact program itself gives the output: the ops of the patterns found,
    the backward ops that take the same inputs as they do (where autograd decides the derivative
    at that point), and the op that gives the output."""
    path = dependencies(trace, output)
    core = {i for fix in fixes for i in fix.ops if i in path}
    keys = {(o.source, o.name) for i in core for o in trace.ops[i].inputs if o.kind is OperandKind.TENSOR}
    related = {
        op.index
        for op in trace.ops
        if op.index in path
        and op.phase is Phase.BACKWARD
        and any((o.source, o.name) in keys for o in op.inputs if o.kind is OperandKind.TENSOR)
    }
    chain = core | related | {output} if core else path
    return tuple(i for i in sorted(chain) if trace.ops[i].op not in COPY_OPS)


def truth_at(
    domain: Domain, x: float, label: float, dtype: DType, quantity: Quantity, reference: Reference = PLAIN_BCE
) -> float:
    """The exact loss or gradient of ``reference`` at (x, label), correctly rounded into the
    dtype: the row the sweep's truth table holds for that point (``oracle.table``), so that a
    point explained is judged as the sweep judged it."""
    from bce_audit.oracle.table import column, evaluate_points

    row = evaluate_points(domain, np.array([x], dtype=np.float64), label, reference=reference)[0]
    return float(row[column(quantity, dtype.format)])


def explain_trace(
    trace: Trace,
    *,
    formulation: str,
    domain: Domain,
    dtype: DType,
    quantity: Quantity,
    point: ExplainPoint,
    threshold: float,
    alone: Trace | None = None,
    reference: Reference = PLAIN_BCE,
) -> Explanation:
    """The explanation of one case at one traced point (see the module's docstring), the output
    judged against ``reference``, the loss the formulation claims to compute."""
    from bce_audit.report.explanation import cause_line

    fmt = dtype.format
    truth = truth_at(domain, trace.point, trace.label, dtype, quantity, reference)
    operand = trace.output(quantity)
    ops = analyse_trace(trace, threshold) if trace.ops else ()

    def explanation(**rest: Any) -> Explanation:
        draft = Explanation(
            formulation=formulation,
            domain=domain,
            dtype=dtype,
            label=trace.label,
            quantity=quantity,
            point=point,
            layout=trace.layout,
            truth=truth,
            cause="",
            reference=reference,
            **rest,
        )
        return dataclasses.replace(draft, cause=cause_line(draft))

    if operand is None or not isinstance(operand.value, float) or operand.source is None:
        error = trace.error or "the formulation gave no output"
        return explanation(
            output=math.nan, status=Status.ERROR, ulp=math.nan, ops=ops, chain=(), first=None, fixes=(), error=error
        )
    output = operand.value
    err = ulp_error(np.array([output]), np.array([truth]), fmt)
    status = Status(point_status(np.array([output]), np.array([truth]), err, threshold)[0])
    chain: tuple[int, ...] = ()
    first = None
    fixes: tuple[Fix, ...] = ()
    if status is not Status.OK:
        output_op = operand.source[0]
        chain, first = find_chain(trace, ops, output_op)
        if chain:
            fixes = find_fixes(trace, quantity, dtype, set(chain) | every_damage(trace, ops, output_op))
        else:
            fixes = find_fixes(trace, quantity, dtype, dependencies(trace, output_op))
            chain = exact_program_chain(trace, fixes, output_op)
    path = dependencies(trace, operand.source[0])
    unmodelled = tuple(dict.fromkeys(a.op.op for a in ops if a.op.index in path and a.verdict is Verdict.NOT_ANALYSED))
    alone_output = None
    if alone is not None:
        other = alone.output(quantity)
        if other is not None and isinstance(other.value, float) and not _same(other.value, output):
            alone_output = other.value
    return explanation(
        output=output,
        status=status,
        ulp=float(err[0]),
        ops=ops,
        chain=chain,
        first=first,
        fixes=fixes,
        alone_output=alone_output,
        not_analysed=unmodelled,
    )
