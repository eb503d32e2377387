"""The exact op models, cross-checked against mpmath at a much higher precision (2000 bits, with
each function written out independently here), rounded once into the dtype."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from bce_audit.floats import round_to_format
from bce_audit.oracle.ops import exact_op, ideal_is, ideal_op, ideal_value
from bce_audit.vocabulary import DType

HIGH = 2000


def _round(v, fmt) -> float:
    if mpmath.isnan(v):
        return math.nan
    if mpmath.isinf(v):
        return math.inf if v > 0 else -math.inf
    sign, man, exp, _ = mpmath.mpf(v)._mpf_
    return round_to_format(sign, int(man), exp, fmt)


def _x(v: float):
    return mpmath.mpf(v)  # exact at HIGH precision: 2000 bits hold every float


# each op written out plainly, evaluated at 2000 bits
REFERENCE = {
    "log": lambda x: mpmath.log(x),
    "log1p": lambda x: mpmath.log(1 + x),
    "exp": lambda x: mpmath.exp(x),
    "expm1": lambda x: mpmath.exp(x) - 1,
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "log_sigmoid_forward": lambda x: -mpmath.log(1 + mpmath.exp(-x)),
}


def _values(dtype: DType, lo: float, hi: float, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    fmt = dtype.format
    raw = rng.uniform(lo, hi, size=n)
    return sorted({_round_float(float(v), fmt) for v in raw})


def _round_float(x: float, fmt) -> float:
    from bce_audit.floats import round_float

    return round_float(x, fmt)


@pytest.mark.parametrize("dtype", [DType.FLOAT16, DType.BFLOAT16, DType.FLOAT32, DType.FLOAT64])
@pytest.mark.parametrize(
    ("op", "lo", "hi"),
    [
        ("log", 1e-6, 40.0),
        ("log1p", -0.999, 40.0),
        ("exp", -100.0, 100.0),
        ("expm1", -20.0, 20.0),
        ("sigmoid", -60.0, 60.0),
        ("log_sigmoid_forward", -60.0, 60.0),
    ],
)
def test_elementary_ops_are_correctly_rounded(op, lo, hi, dtype):
    fmt = dtype.format
    xs = _values(dtype, lo, hi, 60, seed=len(op))
    with mpmath.workprec(HIGH):
        want = [_round(REFERENCE[op](_x(x)), fmt) for x in xs]
    got = [exact_op(op, [x], fmt) for x in xs]
    assert all(g is not None for g in got)
    assert [g.rounded for g in got] == want  # type: ignore[union-attr]


def test_hard_cases_near_rounding_boundaries():
    f32 = DType.FLOAT32.format
    # sigmoid just below where float32 rounds it to 1: 1 - 2^-25 is the midpoint
    for z in (16.6355, 16.63553, 16.635532, 17.0, 88.72, 103.97):
        zf = _round_float(z, f32)
        with mpmath.workprec(HIGH):
            want = _round(REFERENCE["sigmoid"](_x(zf)), f32)
        assert exact_op("sigmoid", [zf], f32).rounded == want
    # exp overflows float32 just above log(max): rounds to inf, the exact value is finite
    big = exact_op("exp", [89.0], f32)
    assert big.rounded == math.inf and math.isfinite(big.shown) and not big.exact
    assert exact_op("exp", [88.0], f32).rounded < math.inf


@pytest.mark.parametrize("dtype", [DType.FLOAT16, DType.FLOAT32])
def test_exact_arithmetic_ops_round_once(dtype):
    fmt = dtype.format
    xs = _values(dtype, -3.0, 3.0, 40, seed=7)
    for a in xs[::3]:
        for b in xs[1::5]:
            with mpmath.workprec(HIGH):
                sums = {
                    "add": _x(a) + _x(b),
                    "sub": _x(a) - _x(b),
                    "rsub": _x(b) - _x(a),
                    "mul": _x(a) * _x(b),
                    "div": _x(a) / _x(b) if b != 0 else None,
                }
            for op, v in sums.items():
                if v is None:
                    continue
                assert exact_op(op, [a, b], fmt).rounded == _round(v, fmt), (op, a, b)
            # sigmoid_backward(g, out) = g·out·(1 - out), all exact before the one rounding
            with mpmath.workprec(HIGH):
                sb = _x(a) * _x(b) * (1 - _x(b))
            assert exact_op("sigmoid_backward", [a, b], fmt).rounded == _round(sb, fmt)


def test_limits_and_exactness_flags():
    f32 = DType.FLOAT32.format
    assert exact_op("log", [0.0], f32).rounded == -math.inf
    assert exact_op("log", [0.0], f32).exact
    assert math.isnan(exact_op("log", [-1.0], f32).rounded)
    assert math.isnan(exact_op("mul", [0.0, math.inf], f32).rounded)
    assert exact_op("div", [1.0, 0.0], f32).rounded == math.inf
    assert exact_op("rsub", [1.0, 1.0], f32).rounded == 0.0 and exact_op("rsub", [1.0, 1.0], f32).exact
    assert exact_op("sigmoid", [0.0], f32).rounded == 0.5 and exact_op("sigmoid", [0.0], f32).exact
    assert exact_op("log", [1.0], f32).exact
    # torch's documented clamp of binary_cross_entropy's logs at -100
    assert exact_op("binary_cross_entropy", [0.0, 1.0, None, 0], f32).rounded == 100.0
    # a weight is outside the models: not analysed
    assert exact_op("binary_cross_entropy", [0.5, 1.0, 2.0, 0], f32) is None
    assert exact_op("erfc", [1.0], f32) is None
    # masks
    assert exact_op("gt", [21.0, 20.0], f32).rounded == 1.0
    assert exact_op("where", [False, 1.0, 2.0], f32).rounded == 2.0


def test_bce_with_logits_matches_the_reference_formula():
    f32 = DType.FLOAT32.format
    for z in (-100.0, -14.617728233337402, -2.0, 0.5, 30.0):
        for y in (0.0, 0.25, 1.0):
            with mpmath.workprec(HIGH):
                want = _round((1 - _x(y)) * _x(z) + mpmath.log(1 + mpmath.exp(-_x(z))), f32)
            assert exact_op("binary_cross_entropy_with_logits", [z, y, None, None, 0], f32).rounded == want


def test_ideal_program_keeps_values_unrounded():
    # the ideal 1 - sigmoid(16.7) is e^-16.7 / (1 + e^-16.7), not 0
    s = ideal_op("sigmoid", [ideal_value(16.7)])
    one_minus = ideal_op("rsub", [s, 1.0])
    with mpmath.workprec(HIGH):
        want = mpmath.exp(-_x(16.7)) / (1 + mpmath.exp(-_x(16.7)))
    # 320 bits, less the 24 that 1 - sigmoid cancels: still far beyond any dtype
    assert abs(one_minus - want) / want < mpmath.mpf(2) ** -280
    assert ideal_is(ideal_value(0.5), 0.5) and not ideal_is(s, 1.0)
