"""The vectorized oracle (oracle/vectorized.py): every settled value is the reference's, bit for bit,
in float16, bfloat16 and float32; what its error bound cannot settle is flagged, never guessed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bce_audit.floats import from_ordinal, ordinal
from bce_audit.oracle.crossings import crossing_inputs
from bce_audit.oracle.reference import logit_truth, probability_truth
from bce_audit.oracle.table import column, evaluate_points
from bce_audit.oracle.vectorized import NARROW, estimate, truth
from bce_audit.vocabulary import Domain, DType, Quantity

F32 = DType.FLOAT32.format
LABELS = [0.0, 1.0, 0.25, float(np.float32(0.1)), 2.0**-149, float(np.float32(1 - 2**-24)), float(np.float32(0.7))]


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def random_float32(n: int, seed: int) -> np.ndarray:
    """Finite float32 values uniform over bit patterns (every binade), plus a band of |z| < 120."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = bits.view(np.float32).astype(np.float64)
    return np.concatenate([z[np.isfinite(z)], f32(rng.uniform(-120, 120, n // 4))])


def adversarial_logits(y: float) -> np.ndarray:
    """Points where the float64 estimate is least comfortable: sigmoid(z) = y to the last bit
    (the gradient cancels), the far end where exp(-|z|) is a stand-in, ±0, the dtype's
    threshold crossings, neighbours of log 2 and of the rounding of 1 - y."""
    parts = [f32([0.0, -0.0, 700.0, -700.0, 699.99994, -700.00006, 1e-30, -1e-30])]
    if 0 < y < 1:
        centre = float(np.log(y) - np.log1p(-y))
        o = int(ordinal(np.array([float(np.float32(centre))]), F32)[0])
        parts.append(from_ordinal(np.arange(o - 300, o + 300), F32))
    parts.append(crossing_inputs(F32, Domain.LOGITS, [y]))
    for c in (700.0, -700.0, 88.7, -103.97, 17.3, -17.3):
        o = int(ordinal(f32([c]), F32)[0])
        parts.append(from_ordinal(np.arange(o - 5, o + 6), F32))
    return np.unique(np.concatenate(parts).view(np.int64)).view(np.float64)


def adversarial_probabilities(y: float) -> np.ndarray:
    parts = [crossing_inputs(F32, Domain.PROBABILITIES, [y]), np.array([0.0, 1.0, 0.5, 2.0**-149])]
    one = int(ordinal(np.array([1.0]), F32)[0])
    parts.append(from_ordinal(np.arange(one - 200, one + 1), F32))
    if 0 < y < 1:
        o = int(ordinal(np.array([y]), F32)[0])
        parts.append(from_ordinal(np.arange(o - 100, o + 100), F32))
    return np.unique(np.concatenate(parts).view(np.int64)).view(np.float64)


def narrow_columns(rows: np.ndarray) -> np.ndarray:
    return np.stack([rows[:, column(q, f)] for q in Quantity for f in NARROW], axis=1)


def assert_settled_agree(domain: Domain, xs: np.ndarray, y: float) -> tuple[int, int]:
    values, settled = estimate(domain, xs, y)
    expected = narrow_columns(evaluate_points(domain, xs, y))
    wrong = (values.view(np.int64) != expected.view(np.int64)).any(axis=1) & settled
    assert not wrong.any(), (y, xs[wrong][:5], values[wrong][:5], expected[wrong][:5])
    return int(settled.sum()), int((~settled).sum())


@pytest.mark.parametrize("y", LABELS)
def test_logits_settled_values_match_the_oracle_bit_for_bit(y):
    xs = np.concatenate([random_float32(8000, seed=3), adversarial_logits(y)])
    settled, unsettled = assert_settled_agree(Domain.LOGITS, xs, y)
    assert settled > 0.9 * len(xs)


@pytest.mark.parametrize("y", LABELS)
def test_probabilities_settled_values_match_the_oracle_bit_for_bit(y):
    z = random_float32(8000, seed=4)
    xs = np.concatenate([np.abs(z[np.abs(z) <= 1]), adversarial_probabilities(y)])
    settled, _ = assert_settled_agree(Domain.PROBABILITIES, xs, y)
    assert settled > 0.9 * len(xs)


@pytest.mark.parametrize("domain", list(Domain), ids=str)
def test_settled_values_are_the_reference_itself(domain):
    """A sample straight against the reference (Ziv's loop in mpmath), not the fast path."""
    rng = np.random.default_rng(7)
    z = random_float32(400, seed=8)
    xs = z if domain is Domain.LOGITS else np.abs(z[np.abs(z) <= 1])
    point = logit_truth if domain is Domain.LOGITS else probability_truth
    for y in (0.0, 1.0, float(np.float32(rng.uniform()))):
        values, settled = estimate(domain, xs, y)
        for x, row in zip(xs[settled].tolist(), values[settled], strict=True):
            t = point(x, y, NARROW)
            np.testing.assert_array_equal(row.view(np.int64), np.array([*t.loss, *t.grad]).view(np.int64))


def test_cancellation_is_flagged_not_guessed():
    """Where sigmoid(z) = y to many bits, the gradient's float64 estimate has no correct bit left:
    those points are unsettled, and ``truth`` takes them from the exact path."""
    y = float(np.float32(0.7))
    o = int(ordinal(f32([np.log(y) - np.log1p(-y)]), F32)[0])
    xs = from_ordinal(np.arange(o - 3, o + 4), F32)
    _, settled = estimate(Domain.LOGITS, xs, y)
    assert (~settled).sum() >= 3
    loss, grad, _, grad64, exact = truth(Domain.LOGITS, xs, y, F32)
    assert exact >= (~settled).sum()
    rows = evaluate_points(Domain.LOGITS, xs, y)
    np.testing.assert_array_equal(grad.view(np.int64), rows[:, column(Quantity.GRAD, F32)].view(np.int64))
    np.testing.assert_array_equal(loss.view(np.int64), rows[:, column(Quantity.LOSS, F32)].view(np.int64))
    unsettled = ~settled
    np.testing.assert_array_equal(grad64[unsettled], rows[unsettled, column(Quantity.GRAD, DType.FLOAT64.format)])


def test_ends_and_non_float32_values_go_elsewhere():
    _, settled = estimate(Domain.PROBABILITIES, np.array([0.0, 1.0, 0.5]), 0.5)
    assert settled.tolist() == [False, False, True]
    _, settled = estimate(Domain.LOGITS, np.array([np.inf, -np.inf, np.nan, 1.0]), 0.0)
    assert settled.tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="float32"):
        estimate(Domain.LOGITS, np.array([0.1]), 0.0)
    with pytest.raises(ValueError, match="float32"):
        estimate(Domain.LOGITS, np.array([1.0]), 0.0, (DType.FLOAT64.format,))


def test_numpy_libm_within_the_assumed_error():
    """The one assumption of the error bound: numpy's float64 exp, log and log1p are within a
    relative LIBM_ERROR of the exact value, here checked at 200 bits on the arguments the
    vectorized path gives them (float32 values; exp(-|z|) for |z| <= 700)."""
    import mpmath

    from bce_audit.oracle.vectorized import LIBM_ERROR

    rng = np.random.default_rng(9)
    a = np.concatenate([f32(rng.uniform(0, 700, 3000)), f32(np.exp(rng.uniform(-100, 0, 3000)))])
    p = random_float32(6000, seed=10)
    p = np.abs(p[(np.abs(p) > 0) & (np.abs(p) < 1)])
    worst = 0.0
    with mpmath.workprec(200):
        for name, fn, exact, xs in (
            ("exp", lambda v: np.exp(-v), lambda v: mpmath.exp(-mpmath.mpf(v)), a),
            ("log", np.log, lambda v: mpmath.log(mpmath.mpf(v)), p),
            ("log1p", np.log1p, lambda v: mpmath.log1p(mpmath.mpf(v)), np.concatenate([p, -p, np.exp(-a)])),
        ):
            got = fn(xs)
            for x, g in zip(xs.tolist(), got.tolist(), strict=True):
                e = exact(x)
                if e != 0:
                    worst = max(worst, float(abs((mpmath.mpf(g) - e) / e)))
            assert worst <= LIBM_ERROR, name
    assert worst <= 2.0**-52  # in fact within about one float64 ulp


@pytest.mark.parametrize("dtype", [DType.FLOAT16, DType.BFLOAT16], ids=str)
@pytest.mark.parametrize("domain", list(Domain), ids=str)
def test_every_16bit_input_agrees_with_the_oracle(dtype, domain):
    """Exhaustive where it is cheap: every finite value of the dtype (on probabilities those in
    [0, 1]), with labels 0, 1 and a soft one of the dtype, all three narrow formats."""
    fmt = dtype.format
    lo, hi = (-fmt.largest_finite, fmt.largest_finite) if domain is Domain.LOGITS else (0.0, 1.0)
    a, b = ordinal(np.array([lo, hi]), fmt).tolist()
    xs = from_ordinal(np.arange(a, b + 1), fmt)
    soft = float(from_ordinal(ordinal(np.array([0.3]), fmt), fmt)[0])
    for y in (0.0, 1.0, soft):
        settled, unsettled = assert_settled_agree(domain, xs, y)
        assert unsettled < 0.01 * len(xs), (y, unsettled)
