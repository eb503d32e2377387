"""bce-audit repro: torch-bce logits float32 y=1 loss. 3 failing point(s) (error, inaccurate, zero)
of this case, each a test that fails while the bug is there and passes once the loss is within 4
ULP of the exact value.

Standalone: it needs torch and pytest only. The expected values are bce-audit's exact oracle
(mpmath, correctly rounded into float32); the input is z in the logits domain; torch-bce takes
probabilities: the audit feeds it torch.sigmoid(x) (part of what is audited).

Run: pytest test_torch_bce_logits_float32_y1_loss.py
Written by bce_audit 0.1.0, torch 2.13.0+cpu, cpu_capability AVX512.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor


# The formulation: bce-audit's built-in 'torch-bce': its torch code, as the audit runs it.
def torch_bce(p: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.binary_cross_entropy(p, y, reduction="none")


def loss(x: Tensor, y: Tensor) -> Tensor:
    """The elementwise loss of x, z in the logits domain."""
    x = torch.sigmoid(x)
    return torch_bce(x, y)


DTYPE = torch.float32
PRECISION, EMIN = 24, -126  # float32: significand bits, exponent of the smallest normal
LABEL = float.fromhex("0x1.0000000000000p+0")  # y = 1, rounded into float32
ULP_THRESHOLD = 4.0  # bce-audit's --ulp-threshold


def ulp_error(got: float, expected: float) -> float:
    """|got - expected| in units in the last place of the expected value in DTYPE (ulp(0) is the
    smallest subnormal), as bce-audit measures it."""
    mantissa, exponent = math.frexp(abs(expected))  # |expected| = m * 2**e, m in [0.5, 1)
    ulp = 2.0 ** ((max(exponent - 1, EMIN) if expected != 0 else EMIN) - PRECISION + 1)
    difference = abs(got - expected)
    if math.isinf(difference):  # opposite signs near the top of float64
        return min(2 * (abs(got * 0.5 - expected * 0.5) / ulp), sys.float_info.max)
    return min(difference / ulp, sys.float_info.max)


def failure(got: float, expected: float) -> str | None:
    """Why ``got`` fails against the exact ``expected``, as bce-audit judges a point (status:
    nan, inf, zero, inaccurate); None when it is within ULP_THRESHOLD."""
    shown = f"got {got!r} ({got.hex()}), expected {expected!r} ({expected.hex()})"
    if math.isnan(expected):
        return None if math.isnan(got) else f"inaccurate: {shown}: the exact value is undefined"
    if math.isnan(got):
        return f"nan: ULP error undefined: {shown}"
    if math.isinf(got) and math.isfinite(expected):
        return f"inf: ULP error undefined: {shown}"
    if math.isinf(expected):
        if got == expected:
            return None
        status = "zero" if got == 0 else "inaccurate"
        return f"{status}: ULP error undefined (the exact value is {expected!r}): {shown}"
    error = ulp_error(got, expected)
    if got == 0 and expected != 0:
        return f"zero: ULP error {error:.4g} (threshold {ULP_THRESHOLD:g}): {shown}"
    if error > ULP_THRESHOLD:
        return f"inaccurate: ULP error {error:.4g} > threshold {ULP_THRESHOLD:g}: {shown}"
    return None


def evaluate(inputs: list[float], index: int) -> float:
    """the loss at inputs[index];
    every input evaluated in one call, as the audit does."""
    # each input is a value of DTYPE: the conversion is exact
    x = torch.tensor(inputs, dtype=torch.float64).to(DTYPE).requires_grad_(True)
    y = torch.full_like(x, LABEL)
    out = loss(x, y)
    return float(out.detach()[index])


def test_worst_input_and_first_inaccurate() -> None:
    """z = -3.4028234663852886e+38 (-0x1.fffffe0000000p+127).

    Chosen as: worst input, first inaccurate. The audit saw inaccurate: 100.0 where the exact value
    is 3.4028234663852886e+38 (1.678e7 ULP off). It fails evaluated alone, so this test evaluates
    that one input.
    """
    got = evaluate([float.fromhex("-0x1.fffffe0000000p+127")], 0)
    expected = float.fromhex("0x1.fffffe0000000p+127")
    message = failure(got, expected)
    assert message is None, message + " at z = -0x1.fffffe0000000p+127"


def test_first_zero() -> None:
    """z = 16.994569778442383 (0x1.0fe9c20000000p+4).

    Chosen as: first zero. The audit saw zero: -0.0 where the exact value is 4.1624794278050103e-08
    (1.172e7 ULP off). It fails evaluated alone, so this test evaluates that one input.
    """
    got = evaluate([float.fromhex("0x1.0fe9c20000000p+4")], 0)
    expected = float.fromhex("0x1.658de40000000p-25")
    message = failure(got, expected)
    assert message is None, message + " at z = 0x1.0fe9c20000000p+4"


def test_first_error() -> None:
    """z = nan (nan).

    Chosen as: first error. The audit saw error: the formulation raised RuntimeError: all elements
    of input should be between 0 and 1. It fails evaluated alone, so this test evaluates that one
    input.
    """
    got = evaluate([float.fromhex("nan")], 0)
    expected = float.fromhex("nan")
    message = failure(got, expected)
    assert message is None, message + " at z = nan"
