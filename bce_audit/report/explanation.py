"""An explanation as text: the one-line cause, and the report `bce-audit explain` prints.

Each op of the chain reads as what it computed and how that compares with its exact result:
``sigmoid(16.64) = 1, correctly rounded from 0.99999994``, ``rsub: 1 - 1 = 0, exact``,
``log(0) = -inf, exact``.
"""

from __future__ import annotations

import math

from bce_audit.explanation.graph import COPY_OPS, dependencies, forward_ops, producer
from bce_audit.explanation.interface import Explanation, OpAnalysis, Operand, OperandKind, Phase, Verdict
from bce_audit.report import numbers
from bce_audit.vocabulary import FLOAT64, Domain, FloatFormat, Quantity, Status

# the ops written as arithmetic: name -> (operator, operand order)
_INFIX = {"add": ("+", (0, 1)), "sub": ("-", (0, 1)), "rsub": ("-", (1, 0)), "mul": ("*", (0, 1)), "div": ("/", (0, 1))}
# Links the one-line cause shows before it elides the middle of a long chain.
CAUSE_LINKS = 5


def _fmt(operand: Operand) -> FloatFormat:
    return operand.format or FLOAT64


def _value(operand: Operand) -> str:
    if operand.kind is OperandKind.NONE:
        return "None"
    if operand.kind is OperandKind.OTHER:
        return operand.text
    v = operand.value
    if isinstance(v, bool):
        return str(v)
    if v is None:
        return "None"
    if operand.kind is OperandKind.SCALAR:
        return numbers.in_format(v, FLOAT64)
    return numbers.in_format(v, _fmt(operand))


def _call(a: OpAnalysis) -> str:
    """``sigmoid(16.64) = 1`` or ``rsub: 1 - 1 = 0``."""
    op = a.op
    out = _value(op.outputs[0]) if op.outputs else "nothing"
    args = [o for o in op.inputs if o.kind is not OperandKind.OTHER]
    if op.op in _INFIX and len(args) >= 2:
        sign, order = _INFIX[op.op]
        left, right = (_value(args[k]) for k in order)
        alpha = args[2].value if len(args) > 2 else None
        if isinstance(alpha, float) and alpha != 1:
            right = f"{numbers.in_format(alpha, FLOAT64)} * {right}"
        text = f"{left} {sign} {right} = {out}"
        return text if op.op in ("mul", "div", "add", "sub") else f"{op.op}: {text}"
    if op.op == "neg" and args:
        return f"-({_value(args[0])}) = {out}"
    shown = [_value(o) for o in args if o.kind is not OperandKind.NONE]
    return f"{op.op}({', '.join(shown)}) = {out}"


def _verdict(a: OpAnalysis) -> str:
    out = a.op.outputs[0] if a.op.outputs else None
    fmt = _fmt(out) if out is not None else FLOAT64
    value = out.value if out is not None and isinstance(out.value, float) else math.nan
    if a.verdict is Verdict.NOT_ANALYSED:
        return f"not analysed (no exact model of {a.op.op})" if a.op.op else "not analysed"
    if a.verdict is Verdict.EXACT:
        return "exact"
    shown = numbers.beside(a.exact_shown, value, fmt)
    if a.verdict is Verdict.ROUNDED:
        if math.isinf(value) and math.isfinite(a.exact_shown):
            return f"overflows (exact {shown})"
        if value == 0 and a.exact_shown != 0:
            return f"underflows (exact {shown})"
        return f"correctly rounded from {shown}"
    if math.isnan(a.ulp):
        return f"its exact result is {numbers.in_format(a.exact, fmt)}"
    unit = "ULP" if a.ulp == 1 else "ULPs"
    return f"{numbers.short(a.ulp)} {unit} from its exact result {shown}"


def _discarded(explanation: Explanation) -> set[int]:
    """The forward ops that only the branch a where() does not take depends on."""
    from bce_audit.explanation.interface import Trace

    trace = Trace(0.0, 0.0, explanation.layout, tuple(a.op for a in explanation.ops), None, None)
    found: set[int] = set()
    for op in forward_ops(trace):
        if op.op == "where" and len(op.inputs) >= 3 and isinstance(op.inputs[0].value, bool):
            taken, untaken = (op.inputs[1], op.inputs[2]) if op.inputs[0].value else (op.inputs[2], op.inputs[1])
            branch = producer(trace, untaken)
            if branch is None:
                continue
            kept: set[int] = set()
            for other in (taken, op.inputs[0]):
                if other.source is not None:
                    kept |= dependencies(trace, other.source[0])
            found |= dependencies(trace, branch.index) - kept
    return found


def link(a: OpAnalysis, discarded: set[int], first: int | None, backward_starts: bool = False) -> str:
    """One op of the chain on one line; ``backward_starts``: the first backward op after forward
    ones (in the one-line cause)."""
    text = _call(a)
    if a.op.index in discarded:
        text += " in the branch that where() discards"
    if backward_starts:
        text = f"its backward gives {text}"
    text += f", {_verdict(a)}"
    out = a.op.outputs[0] if a.op.outputs else None
    if a.op.index == first and a.ideal is not None and out is not None and isinstance(out.value, float):
        if not _same(a.ideal, out.value) and not _same(a.ideal, a.exact_shown):
            text += f", where the exact program has {numbers.beside(a.ideal, out.value, _fmt(out))}"
    return text


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _links(e: Explanation) -> list[str]:
    discarded = _discarded(e)
    links = []
    previous = Phase.FORWARD
    for a in e.chain_ops():
        starts = a.op.phase is Phase.BACKWARD and previous is Phase.FORWARD
        links.append(link(a, discarded, e.first, starts))
        previous = a.op.phase
    return links


def _input_name(domain: Domain) -> str:
    return "z" if domain is Domain.LOGITS else "p"


def _ending(e: Explanation) -> str:
    out = numbers.in_format(e.output, e.dtype.format)
    if e.quantity is Quantity.LOSS:
        return f"the loss is {out}"
    return f"dL/d{_input_name(e.domain)} is {out}"


def cause_line(e: Explanation) -> str:
    """The explanation in one line (the failure map's ``cause`` column)."""
    fmt = e.dtype.format
    if e.error is not None:
        return f"not traced: {e.error}"
    truth = numbers.in_format(e.truth, fmt)
    if e.status is Status.OK:
        return f"ok: {_ending(e)}, within the threshold of the exact {truth}"
    if e.first is None:
        fix = f": {e.fixes[0].title}" if e.fixes else ""
        got = numbers.in_format(e.output, fmt)
        exact = "BCE's" if e.reference.is_plain else f"{e.reference.key}'s"
        return (
            f"no op loses the value: the exact program gives {got} as well, where {exact} exact value is {truth}{fix}"
        )
    links = _links(e)
    if len(links) > CAUSE_LINKS:
        links = links[: CAUSE_LINKS - 1] + ["...", links[-1]]
    return "; ".join(links) + f": {_ending(e)} (exact {truth})"


def _where(e: Explanation) -> str:
    name = _input_name(e.domain)
    # plain BCE goes unsaid, as in the sweep's reports; another member is named
    against = "" if e.reference.is_plain else f", against {e.reference.key}"
    return (
        f"{e.formulation} on {e.domain}, {e.dtype}, y={numbers.label(e.label)}, {e.quantity} at "
        f"{name} = {numbers.in_format(e.point.value, e.dtype.format)} ({e.point.why}){against}"
    )


def render_explanation(e: Explanation) -> list[str]:
    """The report of one explanation, as lines of plain text."""
    fmt = e.dtype.format
    lines = [_where(e)]
    if e.error is not None:
        lines.append(f"  not traced: {e.error}")
        return lines
    got = numbers.in_format(e.output, fmt)
    truth = numbers.in_format(e.truth, fmt)
    ulp = "" if math.isnan(e.ulp) else f", {numbers.short(e.ulp)} ULPs"
    layout = "repeated in a batch (torch's vectorized loop)" if e.layout == "batch" else "alone (the scalar path)"
    lines.append(f"  output {got}, exact {truth}: {e.status}{ulp}; evaluated {layout}")
    if e.alone_output is not None:
        lines.append(
            f"  evaluated alone (a one-element tensor) it gives {numbers.in_format(e.alone_output, fmt)} instead"
        )
    lines.append(f"  cause: {e.cause}")
    chain = e.chain_ops()
    if chain:
        discarded = _discarded(e)
        head = "the first op that lost the value" if e.first is not None else "the ops that decide it"
        lines.append(f"  chain, from {head} to the output:")
        for a in chain:
            lines.append(f"    [{a.op.index}] {a.op.phase!s:8} {link(a, discarded, e.first)}")
    if e.not_analysed:
        lines.append(f"  not analysed (no exact model; outputs taken as computed): {', '.join(e.not_analysed)}")
    previous = None
    for fix in e.fixes:
        lines.append(f"  fix ({fix.pattern}): {fix.title}")
        if fix.rewrite != previous:  # two matches of one pattern share their rewrite
            lines.append(f"    rewrite: {fix.rewrite}")
        previous = fix.rewrite
    if e.status is not Status.OK and not e.fixes:
        lines.append("  fix: no pattern of the catalogue matches this chain")
    return lines


def render_ops(e: Explanation) -> list[str]:
    """Every traced op, judged (for --all-ops)."""
    lines = []
    discarded = _discarded(e)
    for a in e.ops:
        if a.op.op in COPY_OPS:
            continue
        mark = "*" if a.op.index in e.chain else " "
        lines.append(f"  {mark}[{a.op.index}] {a.op.phase!s:8} {link(a, discarded, e.first)}")
    return lines
