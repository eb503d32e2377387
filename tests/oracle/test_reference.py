"""The exact oracle (truth.py) and the rounding it relies on (_rounding.py).

Every expectation is derived independently inside the test: mpmath at a fixed, generous
precision with the textbook formulas (docs/cli.md, The reference), numpy's own float conversions, or values
worked out by hand from the IEEE-754 definitions.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from mpmath import mp, mpf

from bce_audit.floats import round_float, round_to_format
from bce_audit.oracle.reference import logit_truth, probability_truth
from bce_audit.vocabulary import FLOAT64, DType

F16 = DType.FLOAT16.format
BF16 = DType.BFLOAT16.format
F32 = DType.FLOAT32.format
F64 = DType.FLOAT64.format
ALL_FORMATS = (F16, BF16, F32, F64)
INDEPENDENT_PREC = 2000


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    saved = mp.prec
    yield
    mp.prec = saved


# --- helpers: an independent evaluation, written from the textbook formulas ----------------


def rnd(v, fmt):
    """Round an mpf (raw _mpf_ tuple) into fmt; floats (limits) pass through."""
    if isinstance(v, float):
        return v
    if mp.isnan(v):
        return math.nan
    if mp.isinf(v):
        return math.inf if v > 0 else -math.inf
    sign, man, exp, _ = v._mpf_
    return round_to_format(sign, int(man), exp, fmt)


def same(a: float, b: float) -> bool:
    """Bit-for-bit equality of two floats: NaN matches NaN and the sign of zero counts."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def textbook_logit(z: float, y: float, prec: int):
    with mp.workprec(prec):
        zz, yy = mpf(z), mpf(y)  # exact: prec >= 53
        loss = max(zz, 0) - yy * zz + mp.log1p(mp.exp(-abs(zz)))
        grad = 1 / (1 + mp.exp(-zz)) - yy
    return loss, grad


def textbook_prob(p: float, y: float, prec: int):
    with mp.workprec(prec):
        pp, yy = mpf(p), mpf(y)
        loss = -(yy * mp.log(pp) + (1 - yy) * mp.log1p(-pp))
        grad = (pp - yy) / (pp * (1 - pp))
    return loss, grad


def exact_dyadic(x: float) -> tuple[int, int, int]:
    """(sign, man, exp) with x = (-1)^sign * man * 2^exp exactly."""
    num, den = abs(x).as_integer_ratio()
    return int(math.copysign(1.0, x) < 0), num, -(den.bit_length() - 1)


def random_values(fmt, n: int, rng) -> np.ndarray:
    """n finite values of fmt from uniformly random bit patterns (every binade, both signs)."""
    if fmt.name == "float64":
        v = rng.integers(0, 2**64, size=4 * n, dtype=np.uint64).view(np.float64)
    elif fmt.name == "float32":
        v = rng.integers(0, 2**32, size=4 * n, dtype=np.uint32).view(np.float32)
    elif fmt.name == "float16":
        v = rng.integers(0, 2**16, size=4 * n, dtype=np.uint16).view(np.float16)
    else:  # bfloat16: the top half of a float32
        u = rng.integers(0, 2**16, size=4 * n, dtype=np.uint32) << np.uint32(16)
        v = u.view(np.float32)
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        v = v.astype(np.float64)
    return v[np.isfinite(v)][:n]


def random_subnormals(fmt, n: int, rng) -> list[float]:
    """n subnormals of fmt, both signs: random multiples of the smallest subnormal."""
    k = rng.integers(1, 2 ** (fmt.precision - 1), size=n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return [s * math.ldexp(int(m), fmt.emin - fmt.precision + 1) for s, m in zip(sign, k, strict=True)]


def random_probabilities(fmt, n: int, rng) -> list[float]:
    """Probabilities of fmt in (0, 1): random bit patterns near 0, the same mirrored near 1."""
    positive = np.abs(random_values(fmt, 8 * n, rng))
    low = positive[(positive > 0) & (positive < 0.5)][: n // 2]
    q = positive[(positive >= 2.0**-fmt.precision) & (positive <= 0.5)][: n // 2]
    high = [round_float(1.0 - x, fmt) for x in q.tolist()]
    ps = low.tolist() + high + [round_float(x, fmt) for x in rng.uniform(0, 1, 16).tolist()]
    return [p for p in ps if 0 < p < 1]


# --- simple exact values and symmetry -----------------------------------------------------------


@pytest.mark.parametrize("y", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("z", [0.0, -0.0])
def test_loss_at_zero_is_log2(z, y):
    t = logit_truth(z, y, ALL_FORMATS)
    assert t.loss[-1] == math.log(2)  # float64(log 2), correctly rounded by the libm
    with mp.workprec(INDEPENDENT_PREC):
        log2 = mp.log(2)
    assert t.loss == tuple(rnd(log2, f) for f in ALL_FORMATS)
    assert t.loss[0] == float(np.float16(math.log(2)))  # no tie nearby: double rounding is safe
    # dL/dz(0) = 1/2 - y exactly
    assert all(same(g, 0.5 - y) for g in t.grad)


SYMMETRY_Z = [
    0.5, 1.0, 2.5, 17.0, 30.0, 40.0, 88.0, 710.0, 1000.0, 1e5, 1e30, 1e300,
    1.7976931348623157e308, 5e-324, 2.5e-320, 2.2250738585072014e-308, 1e-300,
    2.0**-149, 2.0**-133, 2.0**-24, 65504.0,
]  # fmt: skip


@pytest.mark.parametrize("z", SYMMETRY_Z + [-z for z in SYMMETRY_Z])
def test_symmetry(z):
    a = logit_truth(z, 1.0, ALL_FORMATS)
    b = logit_truth(-z, 0.0, ALL_FORMATS)
    assert all(same(la, lb) for la, lb in zip(a.loss, b.loss, strict=True))
    assert all(same(ga, -gb) for ga, gb in zip(a.grad, b.grad, strict=True))


# --- points where a fixed working precision gives the wrong answer ------------------------------


def test_grad_at_large_logit_label_one():
    t = logit_truth(1000.0, 1.0, (F64,))
    with mp.workprec(3000):
        expected = -1 / (1 + mp.exp(mpf(1000)))  # sigmoid(1000) - 1 without cancellation
        assert abs(t.grad_exact / expected - 1) < mpf("1e-25")
        assert mp.fabs(expected + mp.exp(-1000)) < mp.exp(-1999)  # ≈ -exp(-1000)
    # it underflows float64, but from below: the sign survives
    assert t.grad[0] == 0.0 and math.copysign(1.0, t.grad[0]) == -1.0
    # a fixed 20 digits gets exactly zero here: no sign, no magnitude
    with mp.workdps(20):
        assert 1 / (1 + mp.exp(-mpf(1000))) - 1 == 0


@pytest.mark.parametrize("z", [37.5, 40.0, 41.25])
def test_grad_label_one_cancellation_float64(z):
    # sigmoid(z) - 1 ~ 1e-17: 20 digits leave only a few correct bits
    t = logit_truth(z, 1.0, (F64,))
    expected = rnd(textbook_logit(z, 1.0, INDEPENDENT_PREC)[1], F64)
    assert same(t.grad[0], expected)
    assert abs(expected / -math.exp(-z) - 1) < 1e-15  # sigmoid(z) - 1 ≈ -exp(-z)
    with mp.workdps(20):
        naive = 1 / (1 + mp.exp(-mpf(z))) - 1
    assert rnd(naive, F64) != expected


@pytest.mark.parametrize("p", [1 - 2.0**-52, 1 - 2.0**-53])
def test_prob_grad_near_one(p):
    t = probability_truth(p, 1.0, (F64,))
    with mp.workprec(INDEPENDENT_PREC):
        exact = -1 / mpf(p)
    expected = rnd(exact, F64)
    assert same(t.grad[0], expected)
    assert t.grad[0] == rnd(textbook_prob(p, 1.0, INDEPENDENT_PREC)[1], F64)


def test_prob_grad_fixed_precision_trap():
    # p = 1 - 2^-53, the largest float64 below 1: -1/p = -(1 + 2^-53 + 2^-106 + ...) lies just
    # beyond the midpoint between -1 and -(1 + 2^-52). At 20 digits (~70 bits) the 2^-106 is
    # lost, the value becomes the midpoint and ties to even: -1.0, which is wrong.
    # (At p = 1 - 2^-52 the same naive evaluation happens to round correctly.)
    p = 1 - 2.0**-53
    correct = probability_truth(p, 1.0, (F64,)).grad[0]
    assert correct == -(1 + 2.0**-52)
    with mp.workdps(20):
        pp, yy = mpf(p), mpf(1)
        naive = (pp - yy) / (pp * (1 - pp))
    assert rnd(naive, F64) == -1.0 != correct


@pytest.mark.parametrize("z0", [-6.3, -2.0, -0.7, 0.3, 1.1, 2.75, 4.9, 9.0])
@pytest.mark.parametrize("fmt", [F32, F64], ids=["float32", "float64"])
def test_soft_label_close_to_sigmoid(z0, fmt):
    z = round_float(z0, fmt)
    with mp.workprec(INDEPENDENT_PREC):
        sig = 1 / (1 + mp.exp(-mpf(z)))
    y_near = rnd(sig, fmt)  # sigmoid(z) within half an ulp of y
    spacing = np.spacing(np.float32(y_near)) if fmt is F32 else np.spacing(y_near)
    for y in (y_near, y_near + float(spacing), y_near - float(spacing)):
        y = round_float(y, fmt)
        t = logit_truth(z, y, (fmt, FLOAT64))
        _, grad = textbook_logit(z, y, INDEPENDENT_PREC)
        assert same(t.grad[0], rnd(grad, fmt))
        assert same(t.grad[1], rnd(grad, F64))
        assert t.grad[1] != 0.0  # transcendental sigmoid never equals a dyadic label
        assert abs(t.grad[1]) < 4 * abs(float(spacing))
    if fmt is F64:
        # 20 digits (~66 bits) keep only a dozen bits of sigmoid(z) - y here
        with mp.workdps(20):
            naive = 1 / (1 + mp.exp(-mpf(z))) - mpf(y_near)
        t = logit_truth(z, y_near, (F64,))
        assert rnd(naive, F64) != t.grad[0]


# --- the cross-check: a few hundred random points per format, bit for bit ------------------------

# The textbook logit formulas at 2000 bits are exact enough everywhere except where the
# tiny term e^-|z| (~2^(-1.44|z|)) decides the result: in sigmoid(z) - y with y = 1 the
# difference cancels ~1.44 z bits, and wherever the exact dyadic part (max(z,0) - y*z of the
# loss, 1 - y or -y of the gradient) sits on a rounding midpoint of the format, only the tiny
# term breaks the tie.
# * |z| <= 1e5: the working precision grows with |z| (2000 + 1.5|z| bits): the rounding error
#   of the sum, ~2^(17 - 2000 - 1.5|z|), stays far below e^-|z|, so the tiny term keeps its
#   effect on both the value and the side of any midpoint.
# * |z| > 1e5: written as exact dyadic part A plus a tiny term of known sign s and magnitude
#   below e^-1e5 < 2^-144000. A is a product of a <= 53-bit and a <= 1075-bit dyadic, so its
#   lowest bit is >= 2^(top(A) - 1130), and every rounding boundary of a format of <= 53 bits
#   near A is a multiple of 2^(top(A) - 55): a boundary other than A is at least
#   2^(top(A) - 1130) away. A + s*tiny and A + s*2^(top(A) - 1900) therefore lie on the same
#   side of every boundary and round alike; the latter is exact at 2000 bits.
#   Where A = 0 the tiny term alone is the value, and 2000 bits give it to full relative
#   precision.
BIG_Z = 1e5


def _a_plus_tiny(a, tiny, sign):
    if a == 0:
        return tiny if sign > 0 else -tiny
    nudge = mpf(2) ** (int(mp.mag(a)) - 1900)
    return mpmath.fadd(a, nudge if sign > 0 else -nudge, exact=True)


def textbook_logit_huge(z: float, y: float):
    """Loss and dL/dz for |z| > 1e5 (see above), at 2000 bits."""
    with mp.workprec(INDEPENDENT_PREC):
        zz, yy = mpf(z), mpf(y)
        e = mp.exp(-abs(zz))  # sigmoid(-|z|) = e/(1+e); log1p(e) is the loss's tail
        loss = _a_plus_tiny(max(zz, 0) - yy * zz, mp.log1p(e), +1)
        if zz > 0:  # sigmoid(z) - y = (1 - y) - sigmoid(-z)
            grad = _a_plus_tiny(1 - yy, e / (1 + e), -1)
        else:  # sigmoid(z) - y = -y + sigmoid(z)
            grad = _a_plus_tiny(-yy, e / (1 + e), +1)
    return loss, grad


def _check_logit_point(z, y, fmt):
    t = logit_truth(z, y, (fmt, FLOAT64))
    if abs(z) <= BIG_Z:
        loss, grad = textbook_logit(z, y, INDEPENDENT_PREC + int(1.5 * abs(z)))
    else:
        loss, grad = textbook_logit_huge(z, y)
    assert same(t.loss[0], rnd(loss, fmt)), (z, y, fmt.name, "loss")
    assert same(t.loss[1], rnd(loss, F64)), (z, y, fmt.name, "loss f64")
    assert same(t.grad[0], rnd(grad, fmt)), (z, y, fmt.name, "grad")
    assert same(t.grad[1], rnd(grad, F64)), (z, y, fmt.name, "grad f64")
    if abs(z) > BIG_Z and y == 1.0 and z > 0:
        # the exact value lies in (-e^-1e5, 0): -0.0 in every format
        assert same(t.grad[0], -0.0) and same(t.grad[1], -0.0)


def _check_prob_point(p, y, fmt):
    # At 2000 bits p - y and p(1 - p) are exact (at most ~1130 significant bits for float64
    # inputs), the division is correctly rounded, and the loss is a sum of same-signed terms.
    t = probability_truth(p, y, (fmt, FLOAT64))
    loss, grad = textbook_prob(p, y, INDEPENDENT_PREC)
    assert same(t.loss[0], rnd(loss, fmt)), (p, y, fmt.name, "loss")
    assert same(t.loss[1], rnd(loss, F64)), (p, y, fmt.name, "loss f64")
    assert same(t.grad[0], rnd(grad, fmt)), (p, y, fmt.name, "grad")
    assert same(t.grad[1], rnd(grad, F64)), (p, y, fmt.name, "grad f64")


@pytest.mark.parametrize("dtype", list(DType), ids=str)
def test_cross_check_random_points(dtype):
    fmt = dtype.format
    rng = np.random.default_rng([20240611, list(DType).index(dtype)])
    soft = [round_float(v, fmt) for v in rng.uniform(0, 1, 2).tolist()]
    # 1 - y = 3/4 - 2^-(p+1) is a midpoint of the format: large z > 0 puts grad on a tie
    tie_label = 0.25 + 2.0 ** -(fmt.precision + 1)
    labels = [0.0, 1.0, tie_label] + soft
    logits = random_values(fmt, 90, rng).tolist()
    logits += [round_float(v, fmt) for v in rng.uniform(-40, 40, 30).tolist()]
    logits += random_subnormals(fmt, 6, rng)
    probs = random_probabilities(fmt, 100, rng)
    assert len(probs) > 80
    assert any(abs(z) > BIG_Z for z in logits) or fmt.emax < 17
    for y in labels:
        for z in logits:
            _check_logit_point(z, y, fmt)
        for p in probs:
            _check_prob_point(p, y, fmt)


def test_cross_check_float64_subnormal_logits_and_probabilities():
    # uniform bit patterns rarely hit float64 subnormals: a dedicated handful
    rng = np.random.default_rng(7)
    subs = [abs(x) for x in random_subnormals(F64, 20, rng)]
    for y in (0.0, 1.0, 0.375):
        for x in subs:
            _check_logit_point(x, y, F64)
            _check_logit_point(-x, y, F64)
            _check_prob_point(x, y, F64)


def test_loss_on_a_float32_midpoint_plus_tiny_term():
    # z = (2^23 + 3) / 32, y = 1/4: the dyadic part 3z/4 is a float32 midpoint whose
    # ties-to-even neighbour is the lower one; the exact loss, 3z/4 + log1p(e^-z), lies above it.
    z, y = (2**23 + 3) / 32, 0.25
    a = 0.75 * z  # exact in float64 (25 bits)
    a32 = np.float32(a)
    lo, hi = float(a32), float(np.nextafter(a32, np.float32(np.inf)))
    assert lo < a < hi and (lo + hi) / 2 == a  # a is a midpoint; ties-to-even gives lo
    t = logit_truth(z, y, (F32, F64))
    assert t.loss == (hi, a)


def test_grad_on_a_bfloat16_midpoint_minus_tiny_term():
    # y = 2^-9: 1 - y = 1 - 2^-9 is the midpoint of 1 - 2^-8 and 1 in bfloat16 (ties to 1.0);
    # at z = 999424 the exact gradient (1 - y) - sigmoid(-z) lies just below it.
    z = round_float(1e6, BF16)
    t = logit_truth(z, 2.0**-9, (BF16, F64))
    assert t.grad == (1 - 2.0**-8, 1 - 2.0**-9)
    t = logit_truth(-z, 1 - 2.0**-9, (BF16, F64))  # the mirror image: -(1 - 2^-9) + sigmoid(z)
    assert t.grad == (-(1 - 2.0**-8), -(1 - 2.0**-9))


# --- limits, non-finite inputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "p, y, loss, grad",
    [
        # dL/dp = (p - y) / (p (1 - p)): p -> 0 with y = 0 is 1/(1-p) -> 1; y > 0 is -> -inf;
        # p -> 1 with y = 1 is -1/p -> -1; y < 1 is (1-y)/(1-p)... -> +inf.
        (0.0, 0.0, 0.0, 1.0),
        (0.0, 1.0, math.inf, -math.inf),
        (0.0, 0.25, math.inf, -math.inf),
        (1.0, 1.0, 0.0, -1.0),
        (1.0, 0.0, math.inf, math.inf),
        (1.0, 0.75, math.inf, math.inf),
    ],
)
def test_probability_limits(p, y, loss, grad):
    t = probability_truth(p, y, ALL_FORMATS)
    assert all(same(v, loss) for v in t.loss)
    assert all(v == grad for v in t.grad)


@pytest.mark.parametrize(
    "z, y, loss, grad",
    [
        (math.inf, 0.0, math.inf, 1.0),
        (math.inf, 1.0, 0.0, 0.0),
        (math.inf, 0.25, math.inf, 0.75),
        (-math.inf, 0.0, 0.0, 0.0),
        (-math.inf, 1.0, math.inf, -1.0),
        (-math.inf, 0.25, math.inf, -0.25),
    ],
)
def test_logit_limits(z, y, loss, grad):
    t = logit_truth(z, y, ALL_FORMATS)
    assert all(v == loss for v in t.loss)
    assert all(v == grad for v in t.grad)


@pytest.mark.parametrize("y", [0.0, 1.0, 0.5])
def test_nan_input_gives_nan(y):
    for t in (logit_truth(math.nan, y, ALL_FORMATS), probability_truth(math.nan, y, ALL_FORMATS)):
        assert all(math.isnan(v) for v in t.loss + t.grad)


def test_oracle_ignores_ambient_mpmath_precision():
    # the inputs are exact binary values; a caller's low mpmath precision must not round them
    z, p, y = 1 + 2.0**-40, 0.3, 0.1
    expected = (logit_truth(z, 0.0, (F64,)), probability_truth(p, y, (F64,)))
    mp.prec = 20
    got = (logit_truth(z, 0.0, (F64,)), probability_truth(p, y, (F64,)))
    assert got[0].loss == expected[0].loss and got[0].grad == expected[0].grad
    assert got[1].loss == expected[1].loss and got[1].grad == expected[1].grad
    mp.prec = 20
    assert logit_truth(-math.inf, 0.1, (F64,)).grad == (-0.1,)


# --- round_to_format ----------------------------------------------------------------------------


def _float16_positive_values() -> np.ndarray:
    return np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)


def test_round_to_format_float16_exhaustive_midpoints():
    vals = _float16_positive_values()  # +0 .. 65504
    lower = vals
    upper = np.append(vals[1:], 65536.0)  # 2^16: the next value the exponent range cuts off
    mids = (lower + upper) / 2  # exact in float64
    odd_lower = (np.arange(len(vals)) & 1).astype(bool)
    tie_expected = np.where(odd_lower, upper, lower)  # ties to the even significand
    tie_expected[tie_expected == 65536.0] = math.inf
    up_expected = np.where(upper == 65536.0, math.inf, upper)
    cases = [
        (mids, tie_expected),
        (np.nextafter(mids, math.inf), up_expected),
        (np.nextafter(mids, -math.inf), lower),
        (vals, vals),
    ]
    with np.errstate(over="ignore"):
        for xs, want in cases:
            by_numpy = xs.astype(np.float16).astype(np.float64)
            np.testing.assert_array_equal(by_numpy, want)  # numpy agrees with the hand rule
            for sign in (0, 1):
                got = [round_to_format(sign, *exact_dyadic(x)[1:], F16) for x in xs.tolist()]
                expected = -want if sign else want
                assert np.array_equal(np.array(got), expected)
                assert all(math.copysign(1, g) == (-1 if sign else 1) for g in got)


def test_round_float_float32_random_vs_numpy():
    rng = np.random.default_rng(11)
    n = 20000
    man = rng.integers(2**52, 2**53, size=n, dtype=np.int64).astype(np.float64)
    exps = rng.integers(-160 - 52, 130 - 52, size=n)
    xs = np.ldexp(man, exps) * np.where(rng.random(n) < 0.5, -1, 1)
    # float32 midpoints (exact ties) and their neighbours
    a = random_values(F32, 4000, rng)
    b = np.nextafter(a.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    ok = np.isfinite(b)
    mids = (a[ok] + b[ok]) / 2
    xs = np.concatenate([xs, mids, np.nextafter(mids, 0), np.nextafter(mids, np.inf)])
    with np.errstate(over="ignore"):
        want = xs.astype(np.float32).astype(np.float64)
    got = np.array([round_float(x, F32) for x in xs.tolist()])
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    got2 = np.array([round_to_format(*exact_dyadic(x), F32) for x in xs[:2000].tolist()])
    assert np.array_equal(got2.view(np.int64), want[:2000].view(np.int64))


def test_round_float_bfloat16_vs_torch_from_float32():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    xs = random_values(F32, 20000, rng)
    # float32 -> bfloat16 in torch is one round-to-nearest-even step
    want = torch.tensor(xs, dtype=torch.float32).to(torch.bfloat16).to(torch.float64).numpy()
    got = np.array([round_float(x, BF16) for x in xs.tolist()])
    assert np.array_equal(got.view(np.int64), want.view(np.int64))


@pytest.mark.parametrize(
    "sign, man, exp, expected",
    [
        (0, 2**8 + 1, -8, 1.0),  # 1 + 2^-8: the midpoint of 1 and 1 + 2^-7 ties to even 1
        (0, 2**8 + 3, -8, 1 + 2.0**-6),  # 1 + 3*2^-8 ties to the even 1 + 2^-6
        (0, 2**16 + 2**8 + 1, -16, 1 + 2.0**-7),  # just above the midpoint: up
        (0, 2**9 - 1, 127 - 8, math.inf),  # (2 - 2^-8) * 2^127 ties to 2^128: overflow
        (1, 2**9 - 1, 127 - 8, -math.inf),
        (0, 2**10 - 3, 127 - 9, (2 - 2.0**-7) * 2.0**127),  # below that midpoint: largest finite
        (0, 1, 200, math.inf),
        (0, 1, -133, 2.0**-133),  # smallest subnormal
        (0, 1, -134, 0.0),  # half of it ties to the even zero
        (1, 1, -134, -0.0),
        (0, 2**66 + 1, -200, 2.0**-133),  # just above that half
        (0, 3, -134, 2.0**-132),  # 1.5 * 2^-133 ties to the even 2 * 2^-133
        (0, 255, -134, 2.0**-126),  # (largest subnormal + smallest normal) / 2 -> normal
        (0, 1, -500, 0.0),
        (1, 1, -500, -0.0),
        (0, 0, 3, 0.0),
        (1, 0, 3, -0.0),
        (0, 3 * 2**50 + 1, -50, 3.0),  # 3 + 2^-50 in bfloat16
    ],
)
def test_round_to_format_bfloat16_by_hand(sign, man, exp, expected):
    got = round_to_format(sign, man, exp, BF16)
    assert same(got, expected)


@pytest.mark.parametrize(
    "sign, man, exp, fmt, expected",
    [
        (0, 1, -1074, F64, 5e-324),
        (0, 1, -1075, F64, 0.0),  # tie to zero
        (0, 3, -1076, F64, 5e-324),  # 0.75 of the smallest subnormal
        (0, 2**54 - 1, 1024 - 54, F64, math.inf),  # (2 - 2^-53) 2^1023: tie, overflows
        # (2 - 3*2^-53) 2^1023: the midpoint below the largest finite (odd significand): down
        (0, 2**54 - 3, 1024 - 54, F64, 1.7976931348623155e308),
        (0, 2**55 - 5, 1024 - 55, F64, 1.7976931348623157e308),  # nearer the largest finite
        (0, 1, -24, F16, 2.0**-24),
        (0, 1, -25, F16, 0.0),
        (1, 3, -26, F16, -(2.0**-24)),
        (0, 65520, 0, F16, math.inf),  # midpoint of 65504 and 2^16
        (0, 65519, 0, F16, 65504.0),
        (0, 1, -149, F32, 2.0**-149),
        (0, 1, -150, F32, 0.0),
        (1, 2**25 - 1, 128 - 25, F32, -math.inf),  # (2 - 2^-24) 2^127: tie, overflows
    ],
)
def test_round_to_format_edges(sign, man, exp, fmt, expected):
    assert same(round_to_format(sign, man, exp, fmt), expected)


def test_round_float_passes_nonfinite_and_zero():
    for fmt in ALL_FORMATS:
        assert math.isnan(round_float(math.nan, fmt))
        assert round_float(math.inf, fmt) == math.inf
        assert round_float(-math.inf, fmt) == -math.inf
        assert same(round_float(-0.0, fmt), -0.0)
        assert same(round_float(0.0, fmt), 0.0)
        assert round_float(1e300, fmt) == (1e300 if fmt is F64 else math.inf)
        assert same(round_float(-1e-320, fmt), -1e-320 if fmt is F64 else -0.0)
