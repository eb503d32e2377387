"""The words of an audit as str enums and frozen value objects (docs/design.md, Vocabulary).

Each enum owns its conversion from the strings users type.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Self

from bce_audit.errors import UsageError, did_you_mean


class ParsableEnum(enum.StrEnum):
    """A str enum that parses what users type, with a one-line error that names the choices."""

    @classmethod
    def parse(cls, text: str, what: str) -> Self:
        try:
            return cls(text)
        except ValueError:
            names = [m.value for m in cls]
            # a choice with a comma or a space in it ("target, input") is quoted, each one then
            shown = [repr(n) for n in names] if any(c in n for n in names for c in ", ") else names
            raise UsageError(
                f"unknown {what} {text!r}{did_you_mean(text, names)}; choose from {', '.join(shown)}"
            ) from None

    def __str__(self) -> str:
        return self.value


class Domain(ParsableEnum):
    """What the swept input is: a logit z (any real) or a probability p in [0, 1]."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"

    @property
    def centre(self) -> float:
        """The point the stable range grows from."""
        return 0.0 if self is Domain.LOGITS else 0.5

    @property
    def short(self) -> str:
        """The name in narrow table columns."""
        return "probs" if self is Domain.PROBABILITIES else self.value


class EngineName(ParsableEnum):
    """The framework that evaluates a formulation and its gradient (``engines/``): torch is a
    dependency, the others are extras (``pip install 'bce-audit[jax]'``)."""

    TORCH = "torch"
    JAX = "jax"
    TENSORFLOW = "tensorflow"
    KERAS = "keras"


class Mode(ParsableEnum):
    """How the torch engine runs a formulation (``--mode``), a case dimension: eager (plain
    calls), vmap (``torch.func.vmap`` of the function of one element, its gradient by
    ``torch.func.grad`` inside the vmap), autocast (the forward under ``torch.autocast`` to
    bfloat16, the backward as autograd replays it) or compile (``torch.compile``, inductor)."""

    EAGER = "eager"
    VMAP = "vmap"
    AUTOCAST = "autocast"
    COMPILE = "compile"


class Device(ParsableEnum):
    """Where the torch engine's tensors live (``--device``); results come back to the CPU in float64."""

    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class Quantity(ParsableEnum):
    """The loss, or its derivative by the swept input."""

    LOSS = "loss"
    GRAD = "grad"


class Sampling(ParsableEnum):
    """bits: uniform over bit patterns plus a dense band; exhaustive: every value (16-bit dtypes and
    float32, streamed)."""

    BITS = "bits"
    EXHAUSTIVE = "exhaustive"


class Status(ParsableEnum):
    """Per-point verdict, in order of increasing severity (the scoreboard shows the worst)."""

    OK = "ok"
    INACCURATE = "inaccurate"
    ZERO = "zero"
    INF = "inf"
    NAN = "nan"
    ERROR = "error"  # the formulation raised, or could not be run: no output at all

    @property
    def severity(self) -> int:
        return list(Status).index(self)


@dataclasses.dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754-style binary format.

    name: the dtype name users type.
    precision: significand bits including the implicit one (11 for float16).
    emin: exponent of the smallest normal number (-14 for float16).
    emax: exponent of the largest finite number (15 for float16).
    width: storage bits; a NaN against a non-NaN scores this many bits of error.
    """

    name: str
    precision: int
    emin: int
    emax: int
    width: int

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.precision + 1)

    @property
    def smallest_normal(self) -> float:
        return 2.0**self.emin

    @property
    def largest_finite(self) -> float:
        return (2.0 - 2.0 ** (1 - self.precision)) * 2.0**self.emax

    @property
    def is_16bit(self) -> bool:
        return self.width == 16


class DType(ParsableEnum):
    """The precision a formulation computes in."""

    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def format(self) -> FloatFormat:  # type: ignore[override]  # shadows str.format: a public name
        return _FORMATS[self]


_FORMATS = {
    DType.FLOAT16: FloatFormat("float16", 11, -14, 15, 16),
    DType.BFLOAT16: FloatFormat("bfloat16", 8, -126, 127, 16),
    DType.FLOAT32: FloatFormat("float32", 24, -126, 127, 32),
    DType.FLOAT64: FloatFormat("float64", 53, -1022, 1023, 64),
}
FLOAT64 = _FORMATS[DType.FLOAT64]
