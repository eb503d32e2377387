"""The fix catalogue: known patterns that lose a BCE loss's value, each found in a trace (never
from a formulation's name), with the rewrite that removes it.

Adding a pattern is one entry in ``CATALOGUE``: an id, and a function that looks at the trace
(its ops and their values at the point) and returns each match as a ``Fix``. ``find_fixes``
keeps the matches whose culprit is in the chain being explained; a pattern listed in another's
``supersedes`` gives way to it in the same explanation (the more specific diagnosis wins).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from bce_audit.explanation.graph import forward_ops, producer, scalar, tensor_inputs
from bce_audit.explanation.interface import Fix, Operand, OperandKind, Phase, Trace, TracedOp
from bce_audit.floats import round_float
from bce_audit.report.numbers import in_format
from bce_audit.vocabulary import DType, Quantity


@dataclasses.dataclass(frozen=True)
class Pattern:
    """One entry of the catalogue.

    id: how reports and tests name it.
    find: the matches in a trace at the quantity explained, each a Fix.
    supersedes: ids of more general patterns that give way to this one on the same ops.
    """

    id: str
    find: Callable[[Trace, Quantity, DType], list[Fix]]
    supersedes: tuple[str, ...] = ()


def _is(op: TracedOp | None, *names: str) -> bool:
    return op is not None and op.op in names


def _one_minus(trace: Trace, op: TracedOp | None) -> TracedOp | None:
    """The op whose output ``1 - x`` is (``rsub(x, 1)`` or ``sub(1, x)``), else None."""
    if op is None:
        return None
    if op.op == "rsub" and len(op.inputs) >= 2 and scalar(op.inputs[1]) == 1.0:
        return producer(trace, op.inputs[0]) or op
    if op.op == "sub" and op.inputs and op.inputs[0].kind is not OperandKind.TENSOR and scalar(op.inputs[0]) == 1.0:
        return producer(trace, op.inputs[1]) or op
    return None


def _log_of_sigmoid(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        if op.op != "log" or not op.inputs:
            continue
        arg = producer(trace, op.inputs[0])
        if _is(arg, "clamp") and arg is not None:  # a clip between them changes nothing of the fix
            arg = producer(trace, arg.inputs[0]) or arg
        if _is(arg, "sigmoid") and arg is not None:
            found.append(
                Fix(
                    "log-of-sigmoid",
                    "log(sigmoid(z)) loses everything once sigmoid(z) underflows or rounds",
                    "F.logsigmoid(z) instead of torch.log(torch.sigmoid(z)), on logits",
                    (arg.index, op.index),
                    op.index,
                )
            )
            continue
        inner = _one_minus(trace, arg)
        if inner is not None and arg is not None:
            sig = inner if _is(inner, "sigmoid") else None
            if sig is None and _is(inner, "clamp"):
                deeper = producer(trace, inner.inputs[0])
                sig = deeper if _is(deeper, "sigmoid") else None
            if sig is not None:
                found.append(
                    Fix(
                        "log-of-sigmoid",
                        "log(1 - sigmoid(z)) is log(0) once sigmoid(z) rounds to 1",
                        "F.logsigmoid(-z) instead of torch.log(1 - torch.sigmoid(z)), on logits",
                        (sig.index, arg.index, op.index),
                        op.index,
                    )
                )
    return found


def _rounded_away(op: TracedOp) -> bool:
    """Whether ``1 + x`` or ``1 - x`` (an add, sub or rsub with unit alpha) lost digits of x."""
    from fractions import Fraction

    values = [o.value for o in op.inputs[:2]]
    out = op.outputs[0].value if op.outputs else None
    if len(values) != 2 or not all(isinstance(v, float) and math.isfinite(v) for v in [*values, out]):
        return False
    a, b = (Fraction(v) for v in values)  # type: ignore[arg-type]  # floats, checked above
    exact = {"add": a + b, "sub": a - b, "rsub": b - a}.get(op.op)
    return exact is not None and exact != Fraction(out)  # type: ignore[arg-type]


def _log_of_one_plus(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        if op.op != "log" or not op.inputs:
            continue
        arg = producer(trace, op.inputs[0])
        if arg is None or not _rounded_away(arg):
            continue
        if arg.op == "add" and any(scalar(o) == 1.0 for o in arg.inputs[:2]):
            found.append(
                Fix(
                    "log1p",
                    "log(1 + x) rounds 1 + x before the log",
                    "torch.log1p(x)",
                    (arg.index, op.index),
                    op.index,
                )
            )
        elif _one_minus(trace, arg) is not None:
            found.append(
                Fix(
                    "log1p",
                    "log(1 - x) rounds 1 - x before the log (it is 0 once x rounds to 1)",
                    "torch.log1p(-x) for log(1 - x)",
                    (arg.index, op.index),
                    op.index,
                )
            )
    return found


def _where_discards_overflow(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        if op.op != "where" or len(op.inputs) < 3 or not isinstance(op.inputs[0].value, bool):
            continue
        untaken = op.inputs[2] if op.inputs[0].value else op.inputs[1]
        value = untaken.value
        if not isinstance(value, float) or math.isfinite(value):
            continue
        branch = producer(trace, untaken)
        # the op that first went non-finite in the discarded branch
        first = branch
        while first is not None:
            inputs = [producer(trace, o) for o in tensor_inputs(first)]
            upstream = [p for p in inputs if p is not None and any(not _finite(v.value) for v in p.outputs[:1])]
            if not upstream:
                break
            first = upstream[0]
        ops = tuple(sorted({op.index} | ({first.index} if first is not None else set())))
        what = f"{first.op}() " if first is not None else ""
        found.append(
            Fix(
                "where-discards-overflow",
                f"where() discards a branch in which {what}gives {_text(value)}; autograd still "
                "differentiates that branch (0 · inf = NaN)",
                "clamp inside the branch: torch.where(z > t, z, torch.log1p(torch.exp(torch.clamp_max(z, t)))), or "
                "the double-where idiom: torch.where(c, a, f(torch.where(c, safe, x)))",
                ops,
                first.index if first is not None else op.index,
            )
        )
    return found


def _finite(value: float | bool | None) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _text(value: float) -> str:
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


# Where each op's derivative has a kink: autograd takes one side (or 0) exactly there.
_KINKS = {"abs": 0, "sgn": 0, "sign": 0, "relu": 0}
_CLAMPS = {"clamp_min": (1,), "clamp_max": (1,), "clamp": (1, 2)}


def _subgradient(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    if quantity is not Quantity.GRAD:
        return []
    found = []
    for op in forward_ops(trace):
        if not op.inputs or not isinstance(op.inputs[0].value, float):
            continue
        x = op.inputs[0].value
        at_kink = (op.op in _KINKS and x == 0) or any(
            len(op.inputs) > k and scalar(op.inputs[k]) == x for k in _CLAMPS.get(op.op, ())
        )
        if op.op in ("maximum", "minimum") and len(op.inputs) >= 2:
            at_kink = op.inputs[1].value == x
        if at_kink:
            found.append(
                Fix(
                    "subgradient-at-kink",
                    f"{op.op}() at its kink ({_short(x)}): autograd takes one side's derivative there, "
                    "not the derivative of the smooth loss",
                    "a formula smooth at that point: -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)), or "
                    "F.binary_cross_entropy_with_logits(z, y)",
                    (op.index,),
                    op.index,
                )
            )
    return found


def _short(x: float) -> str:
    from bce_audit.report.numbers import compact

    return compact(x, 6)


def _pow_zero_negative(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in trace.ops:
        if op.op != "pow" or len(op.inputs) < 2:
            continue
        base, exponent = op.inputs[0].value, op.inputs[1].value
        if isinstance(base, float) and isinstance(exponent, float) and base == 0 and exponent < 0:
            where = "its backward" if op.phase is Phase.BACKWARD else "the forward pass"
            found.append(
                Fix(
                    "pow-zero-negative",
                    f"pow(0, {_short(exponent)}) = inf in {where} (a focal-style (1 - p)^gamma at p = 1: its "
                    "derivative is gamma * (1 - p)^(gamma - 1))",
                    "clamp the base away from 0: (1 - p).clamp_min(torch.finfo(p.dtype).tiny) ** gamma, or on "
                    "logits the factor torch.exp(gamma * F.logsigmoid(-z))",
                    (op.index,),
                    op.index,
                )
            )
    return found


def _overflow_origin(trace: Trace, operand: Operand) -> TracedOp | None:
    """The backward op where an infinite operand first overflowed: followed back through the ops
    that passed an inf on, to the product, sum or quotient whose inputs were all finite; None when
    the inf came from elsewhere (the forward pass, the input itself, a pole such as pow(0, -0.5))."""
    op = producer(trace, operand)
    while op is not None and op.phase is Phase.BACKWARD and op.outputs:
        out = op.outputs[0].value
        if not isinstance(out, float) or not math.isinf(out):
            return None
        values = [o.value for o in op.inputs if o.is_float and isinstance(o.value, float)]
        if all(math.isfinite(v) for v in values):
            # arithmetic on finite values gives inf only by overflowing (x / 0 and pow(0, -1)
            # are poles: other patterns)
            overflow = op.op in ("mul", "add", "sub") or (op.op == "div" and len(values) >= 2 and values[1] != 0)
            return op if overflow else None
        infinite = next((o for o in op.inputs if isinstance(o.value, float) and math.isinf(o.value)), None)
        if infinite is None:  # a NaN input: not an overflow
            return None
        op = producer(trace, infinite)
    return None


def _how_nan(op: TracedOp) -> str:
    values = [o.value for o in op.inputs[:2] if o.is_float]
    if op.op == "mul" and 0.0 in values:
        return "inf * 0 = NaN"
    if op.op == "div" and len(values) == 2 and all(isinstance(v, float) and math.isinf(v) for v in values):
        return "inf / inf = NaN"
    return f"{op.op}() of inf gives NaN"


def _backward_overflow(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    if quantity is not Quantity.GRAD:
        return []
    found = []
    origins: set[int] = set()
    for op in trace.ops:
        out = op.outputs[0].value if op.outputs else None
        if op.phase is not Phase.BACKWARD or not isinstance(out, float) or not math.isnan(out):
            continue
        for operand in op.inputs:
            value = operand.value
            if operand.kind is not OperandKind.TENSOR or not isinstance(value, float) or not math.isinf(value):
                continue
            origin = _overflow_origin(trace, operand)
            if origin is None or origin.index in origins:
                continue
            origins.add(origin.index)
            args = [_short(o.value) for o in origin.inputs[:2] if isinstance(o.value, float)]
            shown = f"product {' * '.join(args)}" if origin.op == "mul" else f"{origin.op}({', '.join(args)})"
            found.append(
                Fix(
                    "backward-overflow",
                    f"the backward's {shown} overflows to inf, then {_how_nan(op)}: an intermediate "
                    "gradient beyond the dtype's max (a large loss, ce ~ |z|, times gamma and the derivative of a "
                    "saturated focal factor) although dL/dz is finite",
                    "take the saturating factor from a clamped logit and ce from z itself: p = torch.sigmoid("
                    "z.clamp(-t, t)) in (1 - p_t) ** gamma, t = 1 - math.log(torch.finfo(z.dtype).smallest_normal "
                    "* torch.finfo(z.dtype).eps) (104.3 in float32): beyond t the factor keeps its value in the "
                    "dtype and clamp's backward gives that branch 0; the log-space factor (logspace-focal) "
                    "overflows the same way (dL/dlog(1 - p_t) = alpha_t * ce * gamma * (1 - p_t)**gamma)",
                    (origin.index, op.index),
                    origin.index,
                )
            )
            break
    return found


def _subnormal_result_lost(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    from bce_audit.oracle.ops import exact_op

    found = []
    for op in trace.ops:
        out = op.outputs[0] if op.outputs else None
        fmt = out.format if out is not None else None
        if out is None or fmt is None or out.value != 0 or not any(o.is_float and o.value for o in op.inputs):
            continue
        exact = exact_op(op.op, [o.value for o in op.inputs], fmt)
        if exact is None or exact.rounded == 0 or abs(exact.rounded) >= fmt.smallest_normal:
            continue
        found.append(
            Fix(
                "subnormal-result-lost",
                f"torch's {op.op}() gives 0 where its exact result on its own inputs is {_short(exact.rounded)}, "
                f"a subnormal of {dtype}: the kernel is not correctly rounded there, whatever the formula around it",
                "compute the loss in float64 and round once: loss(z.double(), y.double()).to(z.dtype) (the "
                "subnormal results are then correctly rounded; the value is the only thing that changes)",
                (op.index,),
                op.index,
            )
        )
    return found


# ops whose output is a logarithm: exp() of a multiple of one undoes it
_LOGS = ("log", "log1p", "log_sigmoid_forward", "logaddexp", "logsumexp", "log_softmax")


def _exp_of_log(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        if op.op != "exp" or not op.inputs or not isinstance(op.inputs[0].value, float):
            continue
        u = op.inputs[0].value
        arg = producer(trace, op.inputs[0])
        if _is(arg, "mul") and arg is not None:  # gamma * log(x)
            logs = [producer(trace, o) for o in tensor_inputs(arg)]
            arg = next((a for a in logs if _is(a, *_LOGS)), None)
        if arg is None or not _is(arg, *_LOGS) or not math.isfinite(u) or abs(u) < 2:
            continue
        found.append(
            Fix(
                "exp-of-log",
                f"exp(u) of u = {_short(u)} computed in log space: exp turns u's absolute rounding error into "
                f"the same relative error of its result, about |u| = {_short(abs(u))} times the ULPs u lost "
                "(a log-space focal factor exp(gamma * log(1 - p_t)))",
                "the factor itself where it is representable: (1 - p_t) ** gamma with 1 - p_t = torch.sigmoid(-z) "
                "(y = 1) or torch.sigmoid(z) (y = 0), as torchvision does; or the log-space value in float64, "
                "rounded once: torch.exp(gamma * log_one_minus_p_t) computed from z.double(), then .to(z.dtype)",
                (arg.index, op.index),
                op.index,
            )
        )
    return found


def _clip_epsilon_rounds(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    fmt = dtype.format
    for op in forward_ops(trace):
        if op.op not in ("clamp", "clamp_max", "clamp_min"):
            continue
        before = op.inputs[0].value if op.inputs else None
        if not isinstance(before, float):
            continue
        bounds = [scalar(o) for o in op.inputs[1:3]]
        for bound in bounds:
            if bound is None:
                continue
            rounded = round_float(bound, fmt)
            # a bound that rounds to 1 (or 0) where the input lies beyond it: the clip did nothing
            if (0 < bound < 1 and rounded >= 1 and before > bound) or (
                0 < bound < 1 and rounded <= 0 and before < bound
            ):
                found.append(
                    Fix(
                        "clip-epsilon-rounds",
                        f"the clip bound {bound!r} rounds to {_short(rounded)} in {dtype}: the clip does nothing",
                        "eps = torch.finfo(p.dtype).eps; torch.clamp(p, eps, 1 - eps), or compute from logits",
                        (op.index,),
                        op.index,
                    )
                )
    return found


def _zero_times_infinite_log(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        if op.op != "mul" or len(op.inputs) < 2:
            continue
        a, b = op.inputs[0].value, op.inputs[1].value
        if not (isinstance(a, float) and isinstance(b, float)):
            continue
        for zero, other, k in ((a, b, 1), (b, a, 0)):
            log = producer(trace, op.inputs[k])
            if zero == 0 and math.isinf(other) and _is(log, "log", "log1p", "log_sigmoid_forward") and log is not None:
                found.append(
                    Fix(
                        "zero-times-infinite-log",
                        "a label of 0 times log(0) = -inf is NaN, not 0",
                        "torch.xlogy(y, p) for y * log(p), and torch.special.xlog1py(1 - y, -p) for "
                        "(1 - y) * log(1 - p)",
                        (log.index, op.index),
                        op.index,
                    )
                )
                break
    return found


def _log1p_of_exp(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        if op.op not in ("log1p", "log") or not op.inputs:
            continue
        arg = producer(trace, op.inputs[0])
        if op.op == "log" and arg is not None and arg.op == "add" and any(scalar(o) == 1.0 for o in arg.inputs[:2]):
            arg = producer(trace, arg.inputs[0])
        x = arg.inputs[0].value if arg is not None and arg.inputs else None
        # exp(x) <= 1 (x <= 0, as in log1p(exp(-|z|))) neither overflows nor cancels
        if _is(arg, "exp") and arg is not None and isinstance(x, float) and x > 0:
            found.append(
                Fix(
                    "log1p-of-exp",
                    "log1p(exp(x)) overflows once exp(x) does, and its value and derivative cancel against a "
                    "linear term (softplus(z) - y*z)",
                    "-F.logsigmoid(-x) for log1p(exp(x)) (softplus with neither overflow nor threshold); for the "
                    "whole loss -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))",
                    (arg.index, op.index),
                    arg.index,
                )
            )
    return found


def _bce_with_logits_cancels(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in trace.ops:
        if op.op != "binary_cross_entropy_with_logits" or len(op.inputs) < 2:
            continue
        z, y = op.inputs[0].value, op.inputs[1].value
        if isinstance(z, float) and isinstance(y, float) and z < 0 and y < 1:
            found.append(
                Fix(
                    "bce-with-logits-cancels",
                    "binary_cross_entropy_with_logits computes (1 - y)*z - logsigmoid(z), whose terms cancel for z < 0",
                    "-(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))",
                    (op.index,),
                    op.index,
                )
            )
    return found


def _sigmoid_minus_label(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in trace.ops:
        # sigmoid(z) - y with y a tensor (1 - sigmoid(z) is the log-of-sigmoid pattern's)
        if op.op != "sub" or len(op.inputs) < 2 or op.inputs[1].kind is not OperandKind.TENSOR:
            continue
        sig = producer(trace, op.inputs[0])
        scale = sig
        if _is(sig, "mul") and sig is not None:  # (w_p*y + 1 - y) * sigmoid(z) - w_p*y: a pos_weight
            sig = next((p for p in (producer(trace, o) for o in tensor_inputs(sig)) if _is(p, "sigmoid")), None)
            if sig is not None and scale is not None:
                found.append(
                    Fix(
                        "sigmoid-minus-label",
                        "a * sigmoid(z) - b cancels where a * sigmoid(z) rounds next to b (a weighted label: "
                        "pos_weight; its gradient vanishes)",
                        "a loss whose gradient is (1 - y) * sigmoid(z) - pos_weight * y * sigmoid(-z): "
                        "-(pos_weight * y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))",
                        (sig.index, scale.index, op.index),
                        op.index,
                    )
                )
            continue
        if _is(sig, "sigmoid") and sig is not None:
            found.append(
                Fix(
                    "sigmoid-minus-label",
                    "sigmoid(z) - y cancels where sigmoid(z) rounds next to y (its gradient vanishes)",
                    "a loss whose gradient is (1 - y) * sigmoid(z) - y * sigmoid(-z): "
                    "-(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))",
                    (sig.index, op.index),
                    op.index,
                )
            )
    return found


def _gradient_cancellation(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    """The backward adds two rounded terms of opposite sign that nearly cancel (max-abs's
    1 - y - sigmoid(-|z|) for y = 1 and z > 0): the difference keeps the terms' rounding errors
    and loses the digits they share."""
    found = []
    for op in trace.ops:
        if op.phase is not Phase.BACKWARD or op.op not in ("add", "sub") or len(op.inputs) < 2 or not op.outputs:
            continue
        a, b, out = op.inputs[0].value, op.inputs[1].value, op.outputs[0].value
        if not all(isinstance(v, float) and math.isfinite(v) for v in (a, b, out)):
            continue
        assert isinstance(a, float) and isinstance(b, float) and isinstance(out, float)
        b = -b if op.op == "sub" else b
        if a == 0 or b == 0 or (a > 0) == (b > 0) or abs(out) > 0.5 * max(abs(a), abs(b)):
            continue  # no two terms of opposite sign that cancel
        found.append(
            Fix(
                "gradient-cancellation",
                f"the backward adds {in_format(a, dtype.format)} and {in_format(b, dtype.format)}, terms of opposite "
                "sign that nearly cancel: their rounding errors survive the difference",
                "a loss whose gradient comes out in one piece, (1 - y) * sigmoid(z) - y * sigmoid(-z): "
                "-(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))",
                (op.index,),
                op.index,
            )
        )
    return found


def _clip_changes_value(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        if op.op not in ("clamp", "clamp_max", "clamp_min") or not op.inputs or not op.outputs:
            continue
        before, after = op.inputs[0].value, op.outputs[0].value
        if not (isinstance(before, float) and isinstance(after, float)) or before == after:
            continue
        if producer(trace, op.inputs[0]) is not None and not _is(producer(trace, op.inputs[0]), "sigmoid"):
            continue  # a clip of an intermediate, not of the probability
        found.append(
            Fix(
                "clip-changes-value",
                f"the clip replaces {in_format(before, dtype.format)} by {in_format(after, dtype.format)}: the loss "
                "there is the bound's, and its "
                "gradient is 0",
                "no clip: -(torch.xlogy(y, p) + torch.special.xlog1py(1 - y, -p)), or work on logits with "
                "-(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))",
                (op.index,),
                op.index,
            )
        )
    return found


def _logit_of_probability(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        # the sweep's conversion only: a logit of the formulation's own is not a domain mismatch
        if op.op == "logit" and op.index == trace.conversion:
            found.append(
                Fix(
                    "logit-of-probability",
                    "a logits formulation fed probabilities: logit(p) is ±inf at 0 and 1 and amplifies the "
                    "rounding of p near them",
                    "give it the logits themselves, or compute from the probability: "
                    "-(torch.xlogy(y, p) + torch.special.xlog1py(1 - y, -p))",
                    (op.index,),
                    op.index,
                )
            )
    return found


def _sigmoid_of_logits(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in forward_ops(trace):
        # the sweep's conversion only: a logits formulation's own sigmoid(z) (p in a focal
        # factor) is not "a probabilities formulation fed logits"
        if op.op == "sigmoid" and op.index == trace.conversion:
            found.append(
                Fix(
                    "sigmoid-of-logits",
                    "a probabilities formulation fed logits: sigmoid(z) rounds to 0 or 1 (and its gradient "
                    "vanishes) long before the loss does",
                    "a logits formulation: -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)), or "
                    "F.binary_cross_entropy_with_logits(z, y)",
                    (op.index,),
                    op.index,
                )
            )
    return found


# ops through which a value computed from sigmoid(z) is still "a probability" (p, 1 - p, p_t)
_ARITHMETIC = ("mul", "add", "sub", "rsub", "neg", "clamp", "clamp_min", "clamp_max")


def _sigmoid_under(trace: Trace, operand: Operand, depth: int = 6) -> TracedOp | None:
    """The sigmoid op that ``operand`` is computed from through arithmetic (p, 1 - p,
    p * y + (1 - p) * (1 - y)), else None."""
    op = producer(trace, operand)
    if op is None or depth == 0:
        return None
    if op.op == "sigmoid":
        return op
    if op.op in _ARITHMETIC:
        for o in tensor_inputs(op):
            found = _sigmoid_under(trace, o, depth - 1)
            if found is not None:
                return found
    return None


def _one_minus_probability(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    """1 - x with x computed from sigmoid(z) and near 1: the subtraction is exact (Sterbenz), so
    it keeps nothing but x's rounding error, and is 0 once x rounds to 1 (sigmoid(z) for z
    beyond about 17 in float32; a focal loss's 1 - p_t)."""
    found = []
    for op in forward_ops(trace):
        if _one_minus(trace, op) is None:
            continue
        x = op.inputs[0] if op.op == "rsub" else op.inputs[1]
        value = x.value
        sig = _sigmoid_under(trace, x)
        if sig is None or not isinstance(value, float) or not 0.5 <= value <= 1:
            continue
        direct = producer(trace, x) is sig
        what = "sigmoid(z)" if direct else f"x, x = {_short(value)} computed from sigmoid(z)"
        found.append(
            Fix(
                "one-minus-probability",
                f"1 - {what}: exact arithmetic on a value that rounded next to 1, so it keeps only that "
                "rounding (0 once the value is 1)",
                "1 - sigmoid(z) is torch.sigmoid(-z), with no cancellation; a focal loss's 1 - p_t, p_t = "
                "p * y + (1 - p) * (1 - y), is p * (1 - y) + (1 - p) * y: torch.sigmoid(z) * (1 - y) + "
                "torch.sigmoid(-z) * y (terms >= 0), its ** gamma the focal factor",
                (sig.index, op.index),
                op.index,
            )
        )
    return found


def _bce_log_clamp(trace: Trace, quantity: Quantity, dtype: DType) -> list[Fix]:
    found = []
    for op in trace.ops:
        if op.op == "binary_cross_entropy" and len(op.inputs) >= 2:
            p, y = op.inputs[0].value, op.inputs[1].value
            if isinstance(p, float) and isinstance(y, float) and 0 <= p <= 1:
                clamped = (y != 0 and p < math.exp(-100)) or (y != 1 and 1 - p < math.exp(-100))
                if clamped:
                    found.append(_bce_fix("binary_cross_entropy clamps each log at -100", op))
        if op.op == "binary_cross_entropy_backward" and len(op.inputs) >= 3:
            p = op.inputs[1].value
            if isinstance(p, float) and 0 <= p <= 1 and (1 - p) * p < 1e-12:
                title = "binary_cross_entropy's backward divides by max(p(1 - p), 1e-12)"
                if round_float(1e-12, dtype.format) == 0:
                    title += f", and 1e-12 is 0 in {dtype}: 0/0"
                found.append(_bce_fix(title, op))
    return found


def _bce_fix(title: str, op: TracedOp) -> Fix:
    return Fix(
        "bce-log-clamp",
        title,
        "F.binary_cross_entropy_with_logits(z, y) on logits; on probabilities "
        "-(torch.xlogy(y, p) + torch.special.xlog1py(1 - y, -p)), without the clamp",
        (op.index,),
        op.index,
    )


CATALOGUE: tuple[Pattern, ...] = (
    Pattern("log-of-sigmoid", _log_of_sigmoid, supersedes=("log1p", "sigmoid-of-logits", "one-minus-probability")),
    Pattern("log1p", _log_of_one_plus, supersedes=("one-minus-probability",)),
    Pattern("where-discards-overflow", _where_discards_overflow, supersedes=("log1p-of-exp",)),
    Pattern("log1p-of-exp", _log1p_of_exp),
    Pattern("subgradient-at-kink", _subgradient),
    Pattern("pow-zero-negative", _pow_zero_negative),
    Pattern("backward-overflow", _backward_overflow),
    Pattern("subnormal-result-lost", _subnormal_result_lost),
    Pattern("exp-of-log", _exp_of_log),
    Pattern("clip-changes-value", _clip_changes_value, supersedes=("log1p",)),
    Pattern("clip-epsilon-rounds", _clip_epsilon_rounds, supersedes=("log1p",)),
    Pattern("zero-times-infinite-log", _zero_times_infinite_log),
    Pattern("bce-log-clamp", _bce_log_clamp),
    Pattern("bce-with-logits-cancels", _bce_with_logits_cancels),
    Pattern("sigmoid-minus-label", _sigmoid_minus_label, supersedes=("gradient-cancellation",)),
    Pattern("gradient-cancellation", _gradient_cancellation),
    Pattern("logit-of-probability", _logit_of_probability, supersedes=("zero-times-infinite-log",)),
    Pattern("sigmoid-of-logits", _sigmoid_of_logits),
    # a log(1 - x) of it is the log patterns' (log1p: log1p(-x)); a pow(0, negative) of it, that one's
    Pattern("one-minus-probability", _one_minus_probability),
)


def find_fixes(trace: Trace, quantity: Quantity, dtype: DType, within: set[int] | None = None) -> tuple[Fix, ...]:
    """The catalogue's matches in ``trace``; with ``within`` (the explained chain's op indices),
    only those whose culprit is one of them."""
    matches = [fix for pattern in CATALOGUE for fix in pattern.find(trace, quantity, dtype)]
    if within is not None:
        # the chain's ops, and the ops that feed them (a logit(0) = -inf that the chain's first
        # op took as its input is where the value went, though it is exact itself)
        fed = {o.source[0] for i in within for o in trace.ops[i].inputs if o.source is not None}
        matches = [m for m in matches if m.culprit in within | fed]
    by_id = {p.id: p for p in CATALOGUE}
    kept = []
    for m in matches:
        beaten = any(m.pattern in by_id[o.pattern].supersedes for o in matches if o is not m)
        if not beaten and m not in kept:
            kept.append(m)
    return tuple(kept)
