"""The data of an explanation: a traced run of a formulation at one input, every op's exact
judgement, the chain that lost the value, and the fixes that remove it.

A trace travels as JSON (``to_wire`` / ``from_wire``) from the sandbox process that ran a user's
function: floats as ``float.hex`` text (exact, and ±inf and NaN included).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bce_audit.reference import PLAIN_BCE, Reference
from bce_audit.vocabulary import Domain, DType, FloatFormat, ParsableEnum, Quantity, Status


class Layout(ParsableEnum):
    """How the point is evaluated. Torch's CPU kernels compute most of a tensor in a vectorized
    loop and its last few elements in a scalar tail, which can round differently.

    batch: the point repeated to fill a block of ``BATCH_BLOCK`` elements, so that it runs in the
        vectorized loop, as almost every point of a sweep's batch does.
    alone: a one-element tensor (the scalar path), as the sweep evaluates ±inf and NaN inputs.
    """

    BATCH = "batch"
    ALONE = "alone"


# Elements per point in the batch layout: a multiple of every vector loop's step (two vectors of
# 32 half-precision values with AVX-512), so that no element falls in a scalar tail.
BATCH_BLOCK = 128


class Phase(ParsableEnum):
    """Where an op ran: the formulation's forward pass, or autograd's backward pass."""

    FORWARD = "forward"
    BACKWARD = "backward"


class OperandKind(ParsableEnum):
    """TENSOR: an element of a tensor (a 0-dim tensor: its only element). SCALAR: a Python number
    argument. NONE: an optional argument left out. OTHER: anything else (a list, a dtype): not a
    value the models take."""

    TENSOR = "tensor"
    SCALAR = "scalar"
    NONE = "none"
    OTHER = "other"


def _hex(x: float | bool | None) -> Any:
    if x is None or isinstance(x, bool):
        return x
    return float(x).hex()


def _unhex(x: Any) -> float | bool | None:
    if x is None or isinstance(x, bool):
        return x
    return float.fromhex(x)


@dataclasses.dataclass(frozen=True)
class Operand:
    """One argument or output of a traced op.

    kind: see OperandKind.
    value: the element at the point (a float, a bool for a mask, None), or the Python number.
    dtype: the tensor's dtype as torch names it (``float32``, ``bool``), None for a Python value.
    source: (op index, output index) of the op that produced the tensor; None for an input of the
        formulation, a constant made outside the trace, or a Python value.
    name: the formulation's own inputs: ``z`` or ``p`` (the swept input), ``y`` (the label).
    text: how an OTHER argument is shown.
    """

    kind: OperandKind
    value: float | bool | None = None
    dtype: str | None = None
    source: tuple[int, int] | None = None
    name: str | None = None
    text: str = ""

    @property
    def is_float(self) -> bool:
        return self.kind in (OperandKind.TENSOR, OperandKind.SCALAR) and not isinstance(self.value, bool)

    @property
    def format(self) -> FloatFormat | None:
        """The float format of a tensor of one of the four dtypes; None for anything else (a mask,
        an integer tensor, a Python value)."""
        try:
            return DType(self.dtype).format if self.dtype is not None else None
        except ValueError:
            return None

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "value": _hex(self.value),
            "dtype": self.dtype,
            "source": None if self.source is None else list(self.source),
            "name": self.name,
            "text": self.text,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Operand:
        source = data["source"]
        return cls(
            OperandKind(data["kind"]),
            _unhex(data["value"]),
            data["dtype"],
            None if source is None else (int(source[0]), int(source[1])),
            data["name"],
            str(data["text"]),
        )


@dataclasses.dataclass(frozen=True)
class TracedOp:
    """One aten op the formulation ran, at the point.

    index: its place in the run (forward ops first, then the backward's).
    name: the overload as torch names it (``aten.sigmoid.default``).
    phase: forward or backward.
    inputs: its positional arguments, then its keyword arguments' values.
    outputs: its tensor outputs (one for most ops).
    """

    index: int
    name: str
    phase: Phase
    inputs: tuple[Operand, ...]
    outputs: tuple[Operand, ...]

    @property
    def op(self) -> str:
        """The overload packet's name: ``aten.sigmoid.default`` -> ``sigmoid``."""
        parts = self.name.split(".")
        return parts[1] if len(parts) >= 2 and parts[0] == "aten" else parts[0]

    def to_wire(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "phase": str(self.phase),
            "inputs": [o.to_wire() for o in self.inputs],
            "outputs": [o.to_wire() for o in self.outputs],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TracedOp:
        return cls(
            int(data["index"]),
            str(data["name"]),
            Phase(data["phase"]),
            tuple(Operand.from_wire(o) for o in data["inputs"]),
            tuple(Operand.from_wire(o) for o in data["outputs"]),
        )


@dataclasses.dataclass(frozen=True)
class Trace:
    """A formulation's forward and backward pass at one input, every aten op recorded.

    point: the input (exact in the dtype); label: the label, rounded to the dtype.
    layout: how the point was evaluated (see Layout).
    ops: every op, in the order it ran.
    loss / grad: the outputs (their ``source`` names the op that gave each); None when the run
        raised before giving it.
    error: what the formulation raised, on one line; None if nothing.
    conversion: the index of the op that converted the input into the formulation's own domain
        (sigmoid(z) for a probabilities formulation swept on logits, logit(p) the other way); None
        when it takes the input as it is (a sigmoid(z) of its own formula is not one).
    """

    point: float
    label: float
    layout: Layout
    ops: tuple[TracedOp, ...]
    loss: Operand | None
    grad: Operand | None
    error: str | None = None
    conversion: int | None = None

    def output(self, quantity: Quantity) -> Operand | None:
        return self.loss if quantity is Quantity.LOSS else self.grad

    def to_wire(self) -> dict[str, Any]:
        return {
            "point": _hex(self.point),
            "label": _hex(self.label),
            "layout": str(self.layout),
            "ops": [op.to_wire() for op in self.ops],
            "loss": None if self.loss is None else self.loss.to_wire(),
            "grad": None if self.grad is None else self.grad.to_wire(),
            "error": self.error,
            "conversion": self.conversion,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Trace:
        point, label = _unhex(data["point"]), _unhex(data["label"])
        assert isinstance(point, float) and isinstance(label, float)
        return cls(
            point,
            label,
            Layout(data["layout"]),
            tuple(TracedOp.from_wire(o) for o in data["ops"]),
            None if data["loss"] is None else Operand.from_wire(data["loss"]),
            None if data["grad"] is None else Operand.from_wire(data["grad"]),
            data["error"],
            None if data.get("conversion") is None else int(data["conversion"]),
        )

    @classmethod
    def failed(cls, point: float, label: float, layout: Layout, error: str) -> Trace:
        """The trace of a run that gave nothing (its process died, it raised at once)."""
        return cls(point, label, layout, (), None, None, error)


class Verdict(ParsableEnum):
    """An op judged on its own actual inputs, against its exact result rounded once.

    exact: the output is the exact result (nothing was rounded away).
    rounded: the output is the exact result correctly rounded (within half an ulp).
    inaccurate: the output is further from the exact result (the ULP error says how far).
    not_analysed: the op has no exact model, or an argument the models do not take.
    """

    EXACT = "exact"
    ROUNDED = "rounded"
    INACCURATE = "inaccurate"
    NOT_ANALYSED = "not_analysed"


@dataclasses.dataclass(frozen=True)
class OpAnalysis:
    """One traced op, judged.

    op: the traced op.
    verdict: see Verdict.
    exact: its exact result on its actual inputs, rounded once into its output dtype (NaN when
        not analysed).
    exact_shown: the same exact value rounded to float64, to show what rounding took away.
    ulp: the distance of its output from ``exact`` in ULPs of its dtype (NaN where undefined).
    ideal: the value this intermediate has in the exact program (every op before it exact as
        well), rounded to float64; NaN when some op it depends on is not analysed.
    damaged: its output differs from the ideal value by more than the ULP threshold, or is
        ±inf, NaN or 0 where the ideal value is not.
    departs: its output is not exactly its ideal value (by any amount).
    """

    op: TracedOp
    verdict: Verdict
    exact: float = math.nan
    exact_shown: float = math.nan
    ulp: float = math.nan
    ideal: float | None = None
    damaged: bool = False
    departs: bool = False


@dataclasses.dataclass(frozen=True)
class Fix:
    """A known pattern found in a trace, and the rewrite that removes it.

    pattern: the catalogue entry's id (``log-of-sigmoid``).
    title: what was found, one line.
    rewrite: the code to write instead, one line.
    ops: the indices of the traced ops that make the pattern.
    culprit: the index of the op where the pattern does its harm (the log of ``log(1 - x)``, the
        op that overflows in a discarded branch): a fix is shown when the chain holds it.
    """

    pattern: str
    title: str
    rewrite: str
    ops: tuple[int, ...]
    culprit: int


@dataclasses.dataclass(frozen=True)
class ExplainPoint:
    """An input to explain, and why it was chosen (``worst input``, ``first failure above the
    stable range``, ``--at``). A failure map's interval edges come in as more of these."""

    value: float
    why: str


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why one case gives what it gives at one input.

    formulation, domain, dtype, label, quantity: the case.
    point: the input and why it was chosen; layout: how it was evaluated.
    output: what the formulation gave; truth: the exact value of ``reference``, correctly rounded
        into the dtype; status: the point's status, as the sweep judges it; ulp: the output's
        ULP error.
    ops: every traced op, judged, in the order it ran.
    chain: the indices of the ops from the first that lost the value to the output (empty when
        the output is right).
    first: the index of the first op whose output departs from the exact program, None if none.
    fixes: the catalogue's patterns found along the chain.
    cause: the explanation in one line.
    alone_output: what the point gives evaluated alone (a one-element tensor) when that differs
        from ``output``; None when it is the same.
    error: why there is no trace (the formulation raised, or its process died); None otherwise.
    not_analysed: the ops the output depends on that have no exact model, by name: their outputs
        are taken as they are, never guessed.
    reference: the loss the output is measured against (``Formulation.reference``: plain BCE
        unless the formulation declares another member of the family), as in the sweep.
    """

    formulation: str
    domain: Domain
    dtype: DType
    label: float
    quantity: Quantity
    point: ExplainPoint
    layout: Layout
    output: float
    truth: float
    status: Status
    ulp: float
    ops: tuple[OpAnalysis, ...]
    chain: tuple[int, ...]
    first: int | None
    fixes: tuple[Fix, ...]
    cause: str
    alone_output: float | None = None
    error: str | None = None
    not_analysed: tuple[str, ...] = ()
    reference: Reference = PLAIN_BCE

    def chain_ops(self) -> tuple[OpAnalysis, ...]:
        by_index = {a.op.index: a for a in self.ops}
        return tuple(by_index[i] for i in self.chain)
