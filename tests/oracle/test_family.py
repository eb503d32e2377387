"""The BCE family's oracle (oracle/family.py) against independent evaluations.

Every expectation is computed here, independently: the textbook formulas of docs/oracle.md (The
BCE family) in mpmath at 1,200 bits and more, with the naive (1 - p_t)^(γ-1) form of the focal
gradient that the oracle never uses, rounded once into each format; mpmath.diff at 240 digits
for the gradients' derivation; plain BCE's own oracle (oracle/reference.py) for the members that
reduce to it; and symmetries.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from mpmath import mp, mpf

from bce_audit.errors import UsageError
from bce_audit.floats import round_float, round_to_format
from bce_audit.oracle.family import family_truth
from bce_audit.oracle.reference import logit_truth, probability_truth
from bce_audit.reference import PLAIN_BCE, FocalForm, Member, Reference
from bce_audit.vocabulary import Domain, DType

FORMATS = tuple(d.format for d in DType)
F64 = DType.FLOAT64.format
LOGITS, PROBS = Domain.LOGITS, Domain.PROBABILITIES
INDEPENDENT_PREC = 1200


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    saved = mp.prec
    yield
    mp.prec = saved


def same(a: float, b: float) -> bool:
    """Bit-for-bit equality: NaN matches NaN, the sign of zero counts."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def all_same(a, b) -> bool:
    return all(same(x, y) for x, y in zip(a, b, strict=True))


def rnd(v, fmt) -> float:
    """Round an mpf once into fmt (±inf and NaN pass through)."""
    if isinstance(v, float):
        return v
    if mp.isnan(v):
        return math.nan
    if mp.isinf(v):
        return math.inf if v > 0 else -math.inf
    sign, man, exp, _ = v._mpf_
    return round_to_format(sign, int(man), exp, fmt)


def settled(v, fmt, margin_bits: int) -> bool:
    """Whether every value within a relative 2^-margin_bits of v rounds like v in fmt."""
    if isinstance(v, float) or v == 0:
        return True
    with mp.workprec(margin_bits + 200):
        d = abs(v) * mpf(2) ** -margin_bits
        return rnd(v - d, fmt) == rnd(v, fmt) == rnd(v + d, fmt)


# --- the textbook formulas, straightforward, at a given precision --------------------------------


def textbook(ref: Reference, domain: Domain, x: float, y: float, prec: int):
    """(loss, dL/dx) of ref at (x, y) at ``prec`` bits, from the definitions as written in
    docs/oracle.md: p, 1-p and their logarithms, then the formula; the focal gradient in its
    naive form with (1-p_t)^(γ-1)."""
    with mp.workprec(prec):
        label = ref.smoothed_label(y)
        yy = mpf(label.numerator) / label.denominator
        x_ = mpf(x)
        if domain is LOGITS:
            p = 1 / (1 + mp.exp(-x_))
            q = 1 / (1 + mp.exp(x_))
            log_p = -mp.log1p(mp.exp(-x_))
            log_q = -mp.log1p(mp.exp(x_))
            dp = p * q  # dp/dz
        else:
            p, q = x_, 1 - x_
            log_p, log_q = mp.log(p), mp.log(q)
            dp = mpf(1)
        if ref.member is not Member.FOCAL:
            wp, w = mpf(ref.pos_weight), mpf(ref.weight)
            loss = -w * (wp * yy * log_p + (1 - yy) * log_q)
            dloss_dp = -w * (wp * yy / p - (1 - yy) / q)
            return loss, dloss_dp * dp
        g = mpf(ref.gamma)
        if ref.form is FocalForm.TORCHVISION:
            at = 1 if ref.alpha is None else mpf(ref.alpha) * yy + (1 - mpf(ref.alpha)) * (1 - yy)
            ce = -(yy * log_p + (1 - yy) * log_q)
            m = yy * q + (1 - yy) * p  # 1 - p_t
            loss = at * ce * m**g
            dce = -(yy / p - (1 - yy) / q)
            dm = 1 - 2 * yy
            mg1 = m ** (g - 1) if g != 1 else mpf(1)
            dloss_dp = at * (dce * m**g + ce * g * mg1 * dm)
            return loss, dloss_dp * dp
        a = 1 if ref.alpha is None else mpf(ref.alpha)
        b = 1 if ref.alpha is None else 1 - mpf(ref.alpha)
        loss = -a * yy * q**g * log_p - b * (1 - yy) * p**g * log_q
        qg1 = q ** (g - 1) if g != 1 else mpf(1)
        pg1 = p ** (g - 1) if g != 1 else mpf(1)
        dloss_dp = -a * yy * (-g * qg1 * log_p + q**g / p) - b * (1 - yy) * (g * pg1 * log_q - p**g / q)
        return loss, dloss_dp * dp


def check_point(ref: Reference, domain: Domain, x: float, y: float, fmt) -> bool:
    """The oracle's loss and grad at (x, y) in fmt and float64 equal the textbook values
    rounded once. Returns False (checked nothing) only when |z| > 3000 and the 1,200-bit value
    lies within 2^-1000 of a rounding boundary (where only the tiny term decides)."""
    t = family_truth(ref, domain, x, y, (fmt, F64))
    big = domain is LOGITS and abs(x) > 3000
    # |z| <= 3000: 1200 + 2|z| bits resolve e^-|z| beside every O(1) term with 1,000 bits left
    prec = INDEPENDENT_PREC + (0 if big or domain is PROBS else int(2 * abs(x)))
    loss, grad = textbook(ref, domain, x, y, prec)
    if big and not all(settled(v, f, 1000) for v in (loss, grad) for f in (fmt, F64)):
        return False
    assert same(t.loss[0], rnd(loss, fmt)), (ref.key, domain, x, y, fmt.name, "loss", t.loss[0], rnd(loss, fmt))
    assert same(t.loss[1], rnd(loss, F64)), (ref.key, domain, x, y, "loss f64", t.loss[1], rnd(loss, F64))
    assert same(t.grad[0], rnd(grad, fmt)), (ref.key, domain, x, y, fmt.name, "grad", t.grad[0], rnd(grad, fmt))
    assert same(t.grad[1], rnd(grad, F64)), (ref.key, domain, x, y, "grad f64", t.grad[1], rnd(grad, F64))
    return True


# --- points ---------------------------------------------------------------------------------------


def random_values(fmt, n: int, rng) -> list[float]:
    """n finite values of fmt from uniformly random bit patterns (every binade, both signs)."""
    width = {"float64": np.uint64, "float32": np.uint32}.get(fmt.name)
    if width is not None:
        bits = rng.integers(0, np.iinfo(width).max, size=4 * n, dtype=width, endpoint=True)
        v = bits.view(np.float64 if fmt.name == "float64" else np.float32)
    elif fmt.name == "float16":
        v = rng.integers(0, 2**16, size=4 * n, dtype=np.uint16).view(np.float16)
    else:  # bfloat16: the top half of a float32
        v = (rng.integers(0, 2**16, size=4 * n, dtype=np.uint32) << np.uint32(16)).view(np.float32)
    with np.errstate(invalid="ignore"):
        v = v.astype(np.float64)
    return v[np.isfinite(v)][:n].tolist()


def logit_points(fmt, rng, n: int) -> list[float]:
    zs = random_values(fmt, n, rng)
    zs += [round_float(v, fmt) for v in rng.uniform(-40, 40, n).tolist()]
    zs += [
        0.0,
        -0.0,
        fmt.smallest_subnormal,
        -fmt.smallest_subnormal,
        round_float(700.5, fmt),
        -round_float(700.5, fmt),
    ]
    return zs


def probability_points(fmt, rng, n: int) -> list[float]:
    ps = [abs(v) for v in random_values(fmt, 4 * n, rng) if 0 < abs(v) < 1][:n]
    ps += [round_float(1 - v, fmt) for v in ps[: n // 2] if v >= 2.0**-fmt.precision]
    ps += [round_float(v, fmt) for v in rng.uniform(0, 1, n).tolist()]
    ps += [0.5, fmt.smallest_subnormal, round_float(1 - 2.0**-fmt.precision, fmt)]
    return [p for p in ps if 0 < p < 1]


MEMBERS = [
    Reference(pos_weight=2.0),
    Reference(pos_weight=0.3, weight=3.0),
    Reference(pos_weight=1.0, weight=-0.5),
    Reference(member=Member.FOCAL, gamma=2.0, alpha=0.25),
    Reference(member=Member.FOCAL, gamma=0.5),
    Reference(member=Member.FOCAL, gamma=1.5, alpha=0.1),
    Reference(member=Member.FOCAL, gamma=0.5, alpha=0.25, form=FocalForm.PER_TERM),
    Reference(member=Member.FOCAL, gamma=3.0, form=FocalForm.PER_TERM),
    Reference(member=Member.LABEL_SMOOTHED, smoothing=0.1),
    Reference(member=Member.LABEL_SMOOTHED, smoothing=0.1, convention="smp"),
]


@pytest.mark.parametrize("dtype", list(DType), ids=str)
def test_cross_check_random_and_adversarial_points(dtype):
    """Every member, both domains, hard and soft labels, against the textbook at 1,200+ bits."""
    fmt = dtype.format
    rng = np.random.default_rng([20261130, list(DType).index(dtype)])
    soft = round_float(float(rng.uniform(0.05, 0.95)), fmt)
    tie = 0.25 + 2.0 ** -(fmt.precision + 1)  # 1 - y = 3/4 - 2^-(p+1): a midpoint of the format
    labels = [0.0, 1.0, 0.5, soft, tie]
    logits = logit_points(fmt, rng, 10)
    probs = probability_points(fmt, rng, 10)
    checked = skipped = 0
    for ref in MEMBERS:
        for y in labels:
            for z in logits:
                if check_point(ref, LOGITS, z, y, fmt):
                    checked += 1
                else:
                    skipped += 1
            for p in probs:
                assert check_point(ref, PROBS, p, y, fmt)
                checked += 1
    assert checked > 1500 and skipped <= checked // 100, (checked, skipped)


@pytest.mark.parametrize("ref", MEMBERS, ids=lambda r: r.key)
def test_cross_check_float64_near_the_labels(ref):
    """Points where σ(z) or p is within a few ulps of a soft label: the gradient cancels."""
    for y in (0.3, 0.7, 0.5):
        with mp.workprec(200):
            z0 = float(mp.log(mpf(y) / (1 - mpf(y))))
        for k in range(-3, 4):
            z = z0 + k * math.ulp(z0)
            check_point(ref, LOGITS, z, y, F64)
        for k in range(-3, 4):
            check_point(ref, PROBS, y + k * math.ulp(y), y, F64)


# --- members that are plain BCE, bit for bit ------------------------------------------------------


PLAIN_EQUIVALENTS = [
    PLAIN_BCE,
    Reference(pos_weight=1.0, weight=1.0),
    Reference(member=Member.FOCAL, gamma=0.0),
    Reference(member=Member.FOCAL, gamma=0.0, form=FocalForm.PER_TERM),
    Reference(member=Member.LABEL_SMOOTHED, smoothing=0.0),
    Reference(member=Member.LABEL_SMOOTHED, smoothing=0.0, convention="smp"),
]


@pytest.mark.parametrize("ref", PLAIN_EQUIVALENTS, ids=lambda r: r.key)
def test_members_that_reduce_to_plain_bce_agree_bit_for_bit(ref):
    rng = np.random.default_rng(11)
    special = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1e300, -1e300, 37.5, -745.5, 1000.0]
    labels = [0.0, 1.0, 0.5, 0.3, 0.25 + 2.0**-54, 2.0**-1074]
    n = 0
    for fmt in FORMATS:
        zs = special + logit_points(fmt, rng, 8)
        ps = [0.0, 1.0, 0.5, math.nan, 2.0**-1074, 1 - 2.0**-53] + probability_points(fmt, rng, 8)
        for y in labels:
            for z in zs:
                a, b = family_truth(ref, LOGITS, z, y, FORMATS), logit_truth(z, y, FORMATS)
                assert all_same(a.loss, b.loss) and all_same(a.grad, b.grad), (ref.key, z, y)
                n += 1
            for p in ps:
                a, b = family_truth(ref, PROBS, p, y, FORMATS), probability_truth(p, y, FORMATS)
                assert all_same(a.loss, b.loss) and all_same(a.grad, b.grad), (ref.key, p, y)
                n += 1
    assert n > 900


def test_label_smoothing_is_plain_bce_at_the_smoothed_label():
    # ε = 1/8: keras moves 0 to 1/16 and 1 to 15/16, smp moves 0 to 1/8 and 1 to 7/8; all exact
    keras = Reference(member=Member.LABEL_SMOOTHED, smoothing=0.125)
    smp = Reference(member=Member.LABEL_SMOOTHED, smoothing=0.125, convention="smp")
    for y, y_keras, y_smp in ((0.0, 1 / 16, 1 / 8), (1.0, 15 / 16, 7 / 8), (0.5, 0.5, 0.5)):
        for z in (-1e300, -30.0, -2.5, 0.0, 0.75, 12.0, 1e5, math.inf, -math.inf):
            assert all_same(family_truth(keras, LOGITS, z, y, FORMATS).grad, logit_truth(z, y_keras, FORMATS).grad)
            assert all_same(family_truth(keras, LOGITS, z, y, FORMATS).loss, logit_truth(z, y_keras, FORMATS).loss)
            assert all_same(family_truth(smp, LOGITS, z, y, FORMATS).loss, logit_truth(z, y_smp, FORMATS).loss)
        for p in (0.0, 1e-300, 0.1, 0.5, 0.9375, 1 - 2.0**-53, 1.0):
            a, b = family_truth(smp, PROBS, p, y, FORMATS), probability_truth(p, y_smp, FORMATS)
            assert all_same(a.loss, b.loss) and all_same(a.grad, b.grad)
    # the smoothed label itself is exact, not rounded: keras at ε = 0.1 moves 1 to 0.95 exactly
    assert Reference(member=Member.LABEL_SMOOTHED, smoothing=0.1).smoothed_label(1.0) == 1 - Fraction(0.1) / 2


def test_pos_weight_zero_and_weight():
    no_positive = Reference(pos_weight=0.0)
    for z in (-1e300, -50.0, -1.0, 0.0, 2.0, 60.0, math.inf, -math.inf):
        # y = 1: the loss is identically 0
        t = family_truth(no_positive, LOGITS, z, 1.0, FORMATS)
        assert all(v == 0 for v in t.loss + t.grad)
        # y = 0: only the negative term, which pos_weight does not touch
        a, b = family_truth(no_positive, LOGITS, z, 0.0, FORMATS), logit_truth(z, 0.0, FORMATS)
        assert all_same(a.loss, b.loss) and all_same(a.grad, b.grad)
    # a weight of 2^k scales exactly (float64, away from overflow and subnormals)
    quarter = Reference(weight=0.25)
    for z in (-30.0, -1.5, 0.0, 0.3, 7.0):
        for y in (0.0, 1.0, 0.3):
            a, b = family_truth(quarter, LOGITS, z, y, (F64,)), logit_truth(z, y, (F64,))
            assert a.loss[0] == b.loss[0] / 4 and a.grad[0] == b.grad[0] / 4
    # weight 0: zero everywhere, limits included
    for z in (-math.inf, -3.0, 0.0, 5.0, math.inf):
        t = family_truth(Reference(weight=0.0), LOGITS, z, 0.5, FORMATS)
        assert all(v == 0 for v in t.loss + t.grad)


# --- limits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", list(FocalForm), ids=str)
def test_focal_gradient_stays_finite_where_p_t_reaches_one(form):
    """γ = 0.5 < 1: (1 - p_t)^γ has an infinite derivative at p_t = 1, yet the loss's gradient
    tends to 0 (the ce factor vanishes faster). The oracle gets it exactly, up to z = 1e300."""
    ref = Reference(member=Member.FOCAL, gamma=0.5, form=form)
    for z in (20.0, 40.0, 100.0, 700.0, 1e5, 1e300):
        t = family_truth(ref, LOGITS, z, 1.0, FORMATS)
        assert all(math.isfinite(v) for v in t.loss + t.grad)
        if z <= 700:
            check_point(ref, LOGITS, z, 1.0, F64)
            check_point(ref, LOGITS, -z, 0.0, F64)
        # dL/dz = -Q^γ(Q + γ·P·sp(-z)) ≈ -(1 + γ)·e^(-(1+γ)z): negative, underflowing late
        if z < 1e4:
            with mp.workprec(200):
                expected = -(1 + mpf(0.5)) * mp.exp(-mpf(1.5) * z)
            assert t.grad[-1] == 0 or abs(mpf(t.grad[-1]) / expected - 1) < 1e-6
        assert math.copysign(1.0, t.grad[-1]) == -1.0
    # and on probabilities, up to the last float below 1, and at p = 1 itself
    for p in (1 - 2.0**-20, 1 - 2.0**-40, 1 - 2.0**-53):
        check_point(ref, PROBS, p, 1.0, F64)
        check_point(ref, PROBS, 1 - p, 0.0, F64)
    at_one = family_truth(ref, PROBS, 1.0, 1.0, FORMATS)
    assert all(v == 0 for v in at_one.loss + at_one.grad)
    # the naive derivative of (1 - p_t)^γ at p_t = 1 is γ·0^(γ-1) = inf, times 0: NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = np.float64(0.5) * np.float64(0.0) ** np.float64(-0.5) * np.float64(0.0)
    assert math.isnan(naive)


@pytest.mark.parametrize("ref", MEMBERS + PLAIN_EQUIVALENTS[:1], ids=lambda r: r.key)
def test_limits_at_infinite_logits_are_the_limits_of_large_ones(ref):
    """At z = ±inf the oracle gives the exact limit: the loss's (0 or ±inf) and the gradient's,
    which the textbook gradient approaches at |z| = 2000 to within e^-1900. Where that limit is
    itself a midpoint (1 - 0.3 is one in float64) the value at z = 2000 rounds by the side it
    approaches from, the limit by ties-to-even: there the high-precision values are compared."""
    for y in (0.0, 1.0, 0.3, 0.75):
        for sign in (1, -1):
            t = family_truth(ref, LOGITS, sign * math.inf, y, FORMATS)
            loss, grad = textbook(ref, LOGITS, sign * 2000.0, y, 6000)
            if all(settled(grad, f, 1000) for f in FORMATS):
                expected = tuple(rnd(grad, f) for f in FORMATS)
                assert all(same(v, w) or v == w == 0 for v, w in zip(t.grad, expected, strict=True)), (
                    ref.key,
                    sign,
                    y,
                    t.grad,
                    grad,
                )
            else:
                assert abs(t.grad_exact - grad) <= abs(grad) * mpf(2) ** -80, (ref.key, sign, y, t.grad_exact, grad)
            # the loss grows like |z| (at least 2000·0.6·0.3^3 here) or vanishes like e^-|z|
            expected = math.inf if loss > 1 else -math.inf if loss < -1 else 0.0
            assert abs(loss) > 10 or abs(loss) < 1e-100
            assert all(v == expected for v in t.loss), (ref.key, sign, y, t.loss, loss)


@pytest.mark.parametrize("ref", MEMBERS + PLAIN_EQUIVALENTS[:1], ids=lambda r: r.key)
def test_limits_at_p_zero_and_one(ref):
    """At p = 0 and 1: the loss's limit (0 or ±inf) and the gradient's one-sided limit, compared
    with the textbook at p = 2^-3000 and 1 - 2^-3000."""
    tiny = mpf(2) ** -100000  # -log(tiny) ≈ 69315: times any weight here, far beyond 1000
    for y in (0.0, 1.0, 0.3):
        for p_end, p_near, q_near in ((0.0, tiny, 1 - tiny), (1.0, 1 - tiny, tiny)):
            t = family_truth(ref, PROBS, p_end, y, FORMATS)
            with mp.workprec(400):
                ref_y = ref.smoothed_label(y)
                yy = mpf(ref_y.numerator) / ref_y.denominator
                loss, grad = _textbook_at_mpf_probability(ref, p_near, q_near, yy)
            for v, expected in ((t.loss[-1], loss), (t.grad[-1], grad)):
                if abs(expected) > 1000:
                    assert v == math.copysign(math.inf, expected), (ref.key, p_end, y, v, expected)
                else:
                    assert abs(v - float(expected)) < 1e-300 + 1e-12 * abs(v), (ref.key, p_end, y, v, expected)


def _textbook_at_mpf_probability(ref, p, q, yy):
    """The textbook formulas on probabilities at an mpf p (not a float64) and q = 1 - p given
    separately (exact, however close p is to 1), at the current precision."""
    log_p, log_q = mp.log(p), mp.log(q)
    if ref.member is not Member.FOCAL:
        wp, w = mpf(ref.pos_weight), mpf(ref.weight)
        return -w * (wp * yy * log_p + (1 - yy) * log_q), -w * (wp * yy / p - (1 - yy) / q)
    g = mpf(ref.gamma)
    if ref.form is FocalForm.TORCHVISION:
        at = 1 if ref.alpha is None else mpf(ref.alpha) * yy + (1 - mpf(ref.alpha)) * (1 - yy)
        ce = -(yy * log_p + (1 - yy) * log_q)
        m = yy * q + (1 - yy) * p
        d = at * (-(yy / p - (1 - yy) / q) * m**g + ce * g * m ** (g - 1) * (1 - 2 * yy))
        return at * ce * m**g, d
    a = 1 if ref.alpha is None else mpf(ref.alpha)
    b = 1 if ref.alpha is None else 1 - mpf(ref.alpha)
    loss = -a * yy * q**g * log_p - b * (1 - yy) * p**g * log_q
    d = -a * yy * (-g * q ** (g - 1) * log_p + q**g / p) - b * (1 - yy) * (g * p ** (g - 1) * log_q - p**g / q)
    return loss, d


@pytest.mark.parametrize("form", list(FocalForm), ids=str)
def test_alpha_zero_and_one_switch_a_class_off(form):
    # torchvision α = 1: α_t = y, so y = 0 weighs nothing; per-term α = 1: the negative term is off
    one = Reference(member=Member.FOCAL, gamma=2.0, alpha=1.0, form=form)
    zero = Reference(member=Member.FOCAL, gamma=2.0, alpha=0.0, form=form)
    for x, domain in ((-40.0, LOGITS), (0.0, LOGITS), (3.0, LOGITS), (math.inf, LOGITS), (0.0, PROBS), (0.3, PROBS)):
        off_one = family_truth(one, domain, x, 0.0, FORMATS)
        off_zero = family_truth(zero, domain, x, 1.0, FORMATS)
        assert all(v == 0 for v in off_one.loss + off_one.grad + off_zero.loss + off_zero.grad)
    for z in (-40.0, -1.0, 0.0, 2.5, 1e300):
        check_point(one, LOGITS, z, 1.0, F64)
        check_point(zero, LOGITS, z, 0.0, F64)
        check_point(one, LOGITS, z, 0.3, F64)


def test_nan_in_nan_out_and_focal_labels_outside_0_1():
    focal = Reference(member=Member.FOCAL, gamma=2.0)
    for ref in (focal, Reference(pos_weight=3.0)):
        for domain, x, y in (
            (LOGITS, math.nan, 0.0),
            (LOGITS, 1.0, math.nan),
            (PROBS, 1.5, 0.0),
            (PROBS, -0.0, math.nan),
        ):
            t = family_truth(ref, domain, x, y, FORMATS)
            assert all(math.isnan(v) for v in t.loss + t.grad)
    t = family_truth(focal, LOGITS, 1.0, 1.5, FORMATS)
    assert all(math.isnan(v) for v in t.loss + t.grad)


# --- the gradient is the derivative of the loss -------------------------------------------------


@pytest.mark.parametrize("ref", MEMBERS, ids=lambda r: r.key)
def test_gradient_matches_numerical_differentiation_at_240_digits(ref):
    """The oracle's gradient (from the derivation in oracle/family.py) against mpmath.diff of
    the textbook loss at 240 digits, rounded to float64 (and NOT the textbook gradient)."""
    points = [(LOGITS, z) for z in (-30.0, -4.25, -0.5, 0.0, 0.375, 3.0, 25.0)]
    points += [(PROBS, p) for p in (1e-20, 0.01, 0.25, 0.5, 0.8, 0.999, 1 - 2.0**-40)]
    for y in (0.0, 1.0, 0.3):
        for domain, x in points:
            with mp.workdps(240):

                def loss_at(v, domain=domain, y=y):
                    return textbook_at_mpf(ref, domain, v, y)

                derivative = mp.diff(loss_at, mpf(x))
            got = family_truth(ref, domain, x, y, (F64,)).grad[0]
            assert got == rnd(derivative, F64) or abs(got - float(derivative)) <= 1e-300, (ref.key, domain, x, y)


def textbook_at_mpf(ref, domain, x, y):
    """The textbook loss at an mpf input (mp.diff evaluates it off the float grid)."""
    label = ref.smoothed_label(y)
    yy = mpf(label.numerator) / label.denominator
    if domain is LOGITS:
        p = 1 / (1 + mp.exp(-x))
        q = 1 / (1 + mp.exp(x))
        log_p, log_q = -mp.log1p(mp.exp(-x)), -mp.log1p(mp.exp(x))
    else:
        p, q = x, 1 - x
        log_p, log_q = mp.log(p), mp.log(q)
    if ref.member is not Member.FOCAL:
        return -mpf(ref.weight) * (mpf(ref.pos_weight) * yy * log_p + (1 - yy) * log_q)
    g = mpf(ref.gamma)
    if ref.form is FocalForm.TORCHVISION:
        at = 1 if ref.alpha is None else mpf(ref.alpha) * yy + (1 - mpf(ref.alpha)) * (1 - yy)
        return at * -(yy * log_p + (1 - yy) * log_q) * (yy * q + (1 - yy) * p) ** g
    a = 1 if ref.alpha is None else mpf(ref.alpha)
    b = 1 if ref.alpha is None else 1 - mpf(ref.alpha)
    return -a * yy * q**g * log_p - b * (1 - yy) * p**g * log_q


# --- symmetries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", list(FocalForm), ids=str)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_symmetry_label_and_logit_swap(form, gamma):
    """L(z, y; α) = L(-z, 1-y; 1-α) and the gradient flips sign; likewise p ↔ 1-p."""
    a = Reference(member=Member.FOCAL, gamma=gamma, alpha=0.25, form=form)
    b = Reference(member=Member.FOCAL, gamma=gamma, alpha=0.75, form=form)
    rng = np.random.default_rng(5)
    zs = [0.0, 1e300, math.inf, 745.25, 1e-300] + rng.uniform(-60, 60, 25).tolist()
    for y in (0.0, 1.0, 0.25, 0.375):
        for z in zs + [-z for z in zs]:
            ta, tb = family_truth(a, LOGITS, z, y, FORMATS), family_truth(b, LOGITS, -z, 1 - y, FORMATS)
            assert all_same(ta.loss, tb.loss), (z, y)
            assert all(same(g, -h) or g == h == 0 for g, h in zip(ta.grad, tb.grad, strict=True)), (z, y)
        for p in [0.5, 0.75, 1 - 2.0**-53, 1.0] + rng.uniform(0.5, 1, 10).tolist():
            ta, tb = family_truth(a, PROBS, p, y, FORMATS), family_truth(b, PROBS, 1 - p, 1 - y, FORMATS)
            assert all_same(ta.loss, tb.loss), (p, y)
            assert all(same(g, -h) or g == h == 0 for g, h in zip(ta.grad, tb.grad, strict=True)), (p, y)


def test_focal_forms_agree_on_hard_labels_and_differ_on_soft_ones():
    tv = Reference(member=Member.FOCAL, gamma=2.0, alpha=0.25)
    pt = Reference(member=Member.FOCAL, gamma=2.0, alpha=0.25, form=FocalForm.PER_TERM)
    for z in (-8.0, -0.5, 0.0, 1.25, 30.0):
        for y in (0.0, 1.0):
            a, b = family_truth(tv, LOGITS, z, y, FORMATS), family_truth(pt, LOGITS, z, y, FORMATS)
            assert all_same(a.loss, b.loss) and all_same(a.grad, b.grad)
    a, b = family_truth(tv, LOGITS, 1.0, 0.3, (F64,)), family_truth(pt, LOGITS, 1.0, 0.3, (F64,))
    assert a.loss[0] != b.loss[0]


# --- the declaration ----------------------------------------------------------------------------


def test_reference_declaration():
    assert PLAIN_BCE.is_plain and PLAIN_BCE.key == "bce"
    assert Reference(pos_weight=1, weight=1).is_plain
    focal = Reference(member="focal", gamma=2, alpha=-1)
    assert focal.alpha is None and focal.gamma == 2.0 and not focal.is_plain
    assert focal.key == "focal(gamma=2.0, alpha=none, form=torchvision)"
    assert Reference(member="focal", gamma=2, alpha=0.25) != focal
    assert Reference(member="focal", gamma=-0.0).key == "focal(gamma=0.0, alpha=none, form=torchvision)"
    with pytest.raises(UsageError, match="gamma"):
        Reference(member="focal", gamma=-1)
    with pytest.raises(UsageError, match="alpha"):
        Reference(member="focal", gamma=1, alpha=1.5)
    with pytest.raises(UsageError, match="pos_weight"):
        Reference(member="focal", gamma=1, pos_weight=2)
    with pytest.raises(UsageError, match="smoothing"):
        Reference(member="label-smoothed-bce", smoothing=1.5)
    with pytest.raises(UsageError, match="weight"):
        Reference(weight=math.inf)
    with pytest.raises(UsageError, match="unknown reference"):
        Reference(member="hinge")


def test_alpha_t_and_smoothed_labels_are_exact():
    ref = Reference(member="focal", gamma=1, alpha=0.1)
    y = 0.3
    assert ref.alpha_t(Fraction(y)) == Fraction(0.1) * Fraction(y) + (1 - Fraction(0.1)) * (1 - Fraction(y))
    smp = Reference(member="label-smoothed-bce", smoothing=0.1, convention="smp")
    assert smp.smoothed_label(0.0) == Fraction(0.1) and smp.smoothed_label(1.0) == 1 - Fraction(0.1)
    # the oracle uses the exact label: at ε = 0.1 (keras) and y = 1 the loss is plain BCE at
    # 1 - 0.05 exactly, not at the float64 0.95
    keras = Reference(member="label-smoothed-bce", smoothing=0.1)
    exact_label = keras.smoothed_label(1.0)
    assert float(exact_label) != exact_label  # not a float64
    with mp.workprec(2000):
        yy = mpf(exact_label.numerator) / exact_label.denominator
        grad = 1 / (1 + mp.exp(-mpf(2.9444389791664403))) - yy  # σ(z) ≈ 0.95: cancellation
        rounded_label_grad = 1 / (1 + mp.exp(-mpf(2.9444389791664403))) - mpf(0.95)
    got = family_truth(keras, LOGITS, 2.9444389791664403, 1.0, (F64,)).grad[0]
    assert got == rnd(grad, F64) != rnd(rounded_label_grad, F64)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.5, 2.0])
@pytest.mark.parametrize("form", list(FocalForm), ids=str)
def test_focal_at_a_quarter_label_and_tiny_probabilities(form, gamma):
    """y = 1/4, p tiny: the focal factor's base 1 - p_t = 1/4 + p/2 is an exact value just above
    1/4 with a mantissa of a thousand bits, where mpmath 1.3.0's log drops the factor 1/4 (it
    gave twice the loss at gamma = 1/2, found by a hostile test). Against the textbook at
    1,200 bits, in every format, for the smallest subnormals up to ordinary small p."""
    ref = Reference(member=Member.FOCAL, gamma=gamma, alpha=0.25, form=form)
    for dtype in DType:
        fmt = dtype.format
        tiny = [fmt.smallest_subnormal, 2 * fmt.smallest_subnormal, fmt.smallest_normal, 2.0**-60, 1e-30]
        for p in [round_float(v, fmt) for v in tiny if round_float(v, fmt) > 0]:
            for y in (0.25, 0.75):
                assert check_point(ref, PROBS, p, y, fmt)
                assert check_point(ref, PROBS, 1 - p if 1 - p < 1 else 0.5, y, fmt)


@pytest.mark.parametrize("k", range(-4, 4))
@pytest.mark.parametrize("j", [60, 200, 1100])
def test_the_family_log_of_exact_values_next_to_a_power_of_two(k, j):
    """_mp_log(2^k (1 + 2^-j)) equals k log 2 + log1p(2^-j) (computed at 400 bits more), for
    every magnitude, including [1/4, 1/2) where mpmath's own log is wrong."""
    from mpmath.libmp import from_man_exp

    from bce_audit.oracle.family import _mp_log

    v = mp.make_mpf(from_man_exp((1 << j) + 1, k - j))  # 2^k (1 + 2^-j), exact (mpf(int) would round)
    mp.prec = 100
    found = _mp_log(v)
    mp.prec = 500
    want = k * mp.ln2 + mp.log1p(mp.ldexp(mpf(1), -j))
    mp.prec = 100
    assert abs(found - want) <= abs(want) * mpf(2) ** -97, (k, j, found, want)


@pytest.mark.parametrize("form", list(FocalForm), ids=str)
def test_the_largest_gamma_the_oracle_takes_settles_and_one_more_is_refused(form):
    """gamma = MAX_GAMMA: the oracle settles every point (a gamma of 100,000 ran out of precision,
    exit 3) and agrees with the textbook; above it, a one-line UsageError."""
    from bce_audit.reference import MAX_GAMMA

    ref = Reference(member=Member.FOCAL, gamma=MAX_GAMMA, alpha=0.25, form=form)
    fmt = DType.FLOAT32.format
    for y in (0.0, 0.3, 1.0):
        for z in (-30.0, -1.0, -(2.0**-20), 0.0, 2.0**-20, 1.0, 30.0, 1e4):
            assert check_point(ref, LOGITS, z, y, fmt)
        for p in (2.0**-149, 1e-3, 0.5, 0.999, 1 - 2.0**-24):
            assert check_point(ref, PROBS, p, y, fmt)
    with pytest.raises(UsageError, match="at most 10,000"):
        Reference(member=Member.FOCAL, gamma=MAX_GAMMA + 1, form=form)


@pytest.mark.parametrize(("z", "gamma"), [(65408.0, 2.0), (-65408.0, 2.0), (1e5, 1.0), (65408.0, 3.0)])
def test_focal_at_label_one_half_and_huge_logits_settles_on_a_midpoint(z, gamma):
    """y = 1/2: 1 - p_t is exactly 1/2, and the loss is an exact value plus e^-|z| (65408/8 = 4088
    is a bfloat16 midpoint, 6250 a float16 one). The rounded parts of y·Q and (1-y)·P cancel
    exactly; the oracle used to lose the power's exact part there and ran out of precision
    (exit 3 for `-f torchvision-focal -d float16 -y 0 -y 0.5`). Against the textbook at 2|z| +
    2,000 bits, enough to see e^-|z| = 2^-1.44|z| beside the exact part."""
    ref = Reference(member=Member.FOCAL, gamma=gamma, alpha=0.25)
    t = family_truth(ref, LOGITS, z, 0.5, FORMATS)
    loss, grad = textbook(ref, LOGITS, z, 0.5, int(2 * abs(z)) + 2000)
    assert all_same(t.loss, [rnd(loss, f) for f in FORMATS])
    assert all_same(t.grad, [rnd(grad, f) for f in FORMATS])
