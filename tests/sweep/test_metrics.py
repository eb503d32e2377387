"""Per-point metrics (metrics.py): ulp, ULP error, bits of error, status, stable range."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bce_audit.floats import from_ordinal, ordinal
from bce_audit.sweep.metrics import bits_of_error, point_status, stable_range, summarize, ulp, ulp_error
from bce_audit.vocabulary import Domain, DType, Status

F16 = DType.FLOAT16.format
BF16 = DType.BFLOAT16.format
F32 = DType.FLOAT32.format
F64 = DType.FLOAT64.format
NP_TYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
INT_TYPES = {"float16": np.int16, "float32": np.int32, "float64": np.int64}


def nulp_distance(a: np.ndarray, b: np.ndarray, np_type) -> np.ndarray:
    """Representable values between a and b, from the integer view (numpy's integer_repr)."""
    int_type = INT_TYPES[np.dtype(np_type).name]

    def integer_repr(x):
        rx = np.asarray(x, dtype=np_type).view(int_type).astype(np.int64)
        comp = np.int64(np.iinfo(int_type).min)
        # sign-magnitude -> two's complement ordering (numpy.testing._private.utils._integer_repr)
        return np.where(rx < 0, comp - rx, rx)

    return np.abs(integer_repr(a) - integer_repr(b))


def random_finite(np_type, n, rng):
    int_type = INT_TYPES[np.dtype(np_type).name]
    info = np.iinfo(int_type)
    bits = rng.integers(info.min, info.max, size=4 * n, endpoint=True, dtype=int_type)
    v = bits.view(np_type)
    return v[np.isfinite(v)][:n]


# --- ulp -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_ulp_matches_numpy_spacing(name):
    fmt = DType(name).format
    np_type = NP_TYPES[name]
    rng = np.random.default_rng(3)
    v = random_finite(np_type, 5000, rng)
    v = v[np.abs(v) < np.finfo(np_type).max]  # spacing() of the largest is inf
    tiny = np.array([0, 1, 2, 2 ** (fmt.precision - 1) - 1], dtype=INT_TYPES[name]).view(np_type)
    v = np.concatenate([v, tiny, -tiny, np.array([1, 2, 0.5], dtype=np_type)])
    # docs/reports.md: 2^(max(floor(log2|t|), emin) - p + 1) is the gap above |t| (numpy's spacing)
    # (spacing of |v|: numpy's float16 spacing of a negative power of two is the gap below it)
    want = np.spacing(np.abs(v.astype(np_type))).astype(np.float64)
    got = ulp(v.astype(np.float64), fmt)
    np.testing.assert_array_equal(got, want)


def test_ulp_hand_values():
    assert ulp(np.array([0.0]), F64)[0] == 5e-324  # ulp(0): the smallest subnormal
    assert ulp(np.array([-0.0]), F16)[0] == 2.0**-24
    assert ulp(np.array([1.0]), F64)[0] == 2.0**-52
    assert ulp(np.array([-1.0]), F32)[0] == 2.0**-23
    assert ulp(np.array([1.5]), F16)[0] == 2.0**-10
    assert ulp(np.array([2.0**-126]), F32)[0] == 2.0**-149
    assert ulp(np.array([3 * 2.0**-149]), F32)[0] == 2.0**-149  # subnormal truth
    assert ulp(np.array([65504.0]), F16)[0] == 32.0
    # bfloat16: p = 8, emin = -126
    np.testing.assert_array_equal(
        ulp(np.array([0.0, 1.0, 3.0, 2.0**-126, 2.0**-130, 2.0**-133, (2 - 2.0**-7) * 2.0**127]), BF16),
        [2.0**-133, 2.0**-7, 2.0**-6, 2.0**-133, 2.0**-133, 2.0**-133, 2.0**120],
    )


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_ulp_error_equals_nulp_distance_in_one_binade(name):
    fmt = DType(name).format
    np_type = NP_TYPES[name]
    int_type = INT_TYPES[name]
    rng = np.random.default_rng(17)
    a = random_finite(np_type, 3000, rng)
    mant_bits = fmt.precision - 1
    bits = a.view(int_type).astype(np.int64)
    mant = bits & ((1 << mant_bits) - 1)
    # a second value in the same binade: same sign and exponent, another significand
    other = rng.integers(0, 1 << min(mant_bits, 62), size=len(a), dtype=np.int64)
    b_bits = (bits - mant + other).astype(int_type)
    b = b_bits.view(np_type)
    want = nulp_distance(a, b, np_type).astype(np.float64)
    try:  # numpy's own helper, where this numpy still has it
        from numpy.testing._private.utils import nulp_diff

        if name != "float16":
            np.testing.assert_array_equal(np.ravel(nulp_diff(a, b)), want)
    except ImportError:
        pass
    got = ulp_error(b.astype(np.float64), a.astype(np.float64), fmt)
    np.testing.assert_array_equal(got, want)
    # and the other way round (the truth's binade is the same)
    np.testing.assert_array_equal(ulp_error(a.astype(np.float64), b.astype(np.float64), fmt), want)
    assert want.max() > 100  # the check is not vacuous


def test_ulp_error_bfloat16_by_hand():
    truth = np.full(6, 1.0)
    ords = ordinal(truth, BF16) + np.array([0, 1, 2, 5, 127, -1])
    out = from_ordinal(ords, BF16)
    np.testing.assert_array_equal(out[:5], [1.0, 1 + 2.0**-7, 1 + 2 * 2.0**-7, 1 + 5 * 2.0**-7, 2 - 2.0**-7])
    assert out[5] == 1 - 2.0**-8  # below 1 the spacing halves
    # measured in ulps of the truth: below 1 a neighbour is half an ulp of 1 away
    np.testing.assert_array_equal(ulp_error(out, truth, BF16), [0, 1, 2, 5, 127, 0.5])
    # across zero in subnormals: -2*tiny vs +tiny is 3 ulps
    tiny = 2.0**-133
    assert ulp_error(np.array([-2 * tiny]), np.array([tiny]), BF16)[0] == 3.0
    # non-finite output or truth: NaN, not a number of ulps
    e = ulp_error(np.array([math.inf, math.nan, 1.0]), np.array([1.0, 1.0, math.inf]), BF16)
    assert np.isnan(e).all()


def test_ulp_error_opposite_signs_near_float64_max():
    big = np.finfo(np.float64).max
    e = ulp_error(np.array([-big]), np.array([big]), F64)[0]
    assert math.isfinite(e) and e == big / 2.0**970  # 2·big / ulp(big), ulp = 2^971


# --- bits of error --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
def test_bits_of_error(fmt):
    one = np.array([1.0])
    nan = np.array([math.nan])
    assert bits_of_error(nan, one, fmt)[0] == fmt.width
    assert bits_of_error(one, nan, fmt)[0] == fmt.width
    assert bits_of_error(nan, nan, fmt)[0] == 0.0
    assert bits_of_error(one, one, fmt)[0] == 0.0
    assert bits_of_error(np.array([0.0]), np.array([-0.0]), fmt)[0] == 0.0
    up = from_ordinal(ordinal(one, fmt) + 1, fmt)
    assert up[0] == 1.0 + 2.0 ** (1 - fmt.precision)
    assert bits_of_error(up, one, fmt)[0] == 1.0
    assert bits_of_error(one, up, fmt)[0] == 1.0
    three_up = from_ordinal(ordinal(one, fmt) + 3, fmt)
    assert bits_of_error(three_up, one, fmt)[0] == 2.0  # log2(1 + 3)
    tiny = fmt.smallest_subnormal
    # -tiny, ±0, +tiny: two steps apart
    assert bits_of_error(np.array([-tiny]), np.array([tiny]), fmt)[0] == pytest.approx(math.log2(3))
    # +inf is one step past the largest finite
    assert bits_of_error(np.array([math.inf]), np.array([fmt.largest_finite]), fmt)[0] == 1.0


def test_bits_of_error_float64_far_apart():
    # 1 vs 2: 2^52 values apart
    assert bits_of_error(np.array([2.0]), np.array([1.0]), F64)[0] == pytest.approx(52.0)
    # -largest vs +largest: about 2^64 values apart
    big = np.finfo(np.float64).max
    assert bits_of_error(np.array([-big]), np.array([big]), F64)[0] == pytest.approx(64.0, abs=0.01)


# --- statuses ---------------------------------------------------------------------------------------


def _status(output, truth, err=None, threshold=4.0):
    output = np.array(output, dtype=np.float64)
    truth = np.array(truth, dtype=np.float64)
    if err is None:
        err = ulp_error(output, truth, F32)
    return list(point_status(output, truth, np.asarray(err, dtype=np.float64), threshold))


def test_point_status_each_status():
    u = 2.0**-23  # ulp of 1 in float32
    out = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1 + 10 * u, 1 + 3 * u, 0.0, math.inf, math.nan]
    tru = [1.0, 1.0, 3.0, 1e-30, -2.0, 1.0, 1.0, 0.0, math.inf, math.nan]
    assert _status(out, tru) == [
        "nan", "inf", "inf", "zero", "zero", "inaccurate", "ok", "ok", "ok", "ok",
    ]  # fmt: skip


def test_point_status_threshold_boundary():
    u = 2.0**-23
    # exactly 4 ulps is ok, 5 is not (ULP errors computed from the values)
    below = 1 - 8 * 2.0**-24  # 8 steps below 1 are 4 ulps of 1
    assert _status([1 + 4 * u, 1 + 5 * u, below], [1.0, 1.0, 1.0]) == ["ok", "inaccurate", "ok"]
    # the comparison is strict: 4.0 ok, the next double above 4 inaccurate
    above = np.nextafter(4.0, math.inf)
    s = _status([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], err=[4.0, above, 0.0])
    assert s == ["ok", "inaccurate", "ok"]
    assert _status([1.0], [1.0], err=[0.5], threshold=0.0) == ["inaccurate"]
    assert Status.OK.value == "ok"


def test_point_status_missed_infinite_or_nan_truth():
    # an infinite truth missed by a finite output, or the wrong infinity, is inaccurate
    assert _status([1e30, -math.inf], [math.inf, math.inf]) == ["inaccurate", "inaccurate"]
    # a number where the truth is NaN (outside the domain)
    assert _status([0.5], [math.nan]) == ["inaccurate"]


# --- stable range ------------------------------------------------------------------------------------


def test_stable_range_widens_to_first_failure_each_side():
    x = np.array([-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    ok = np.array([True, False, True, True, True, True, False, True, True])
    assert stable_range(x, ok, 0.0) == (-2.0, 1.0)
    assert stable_range(x, np.ones(9, bool), 0.0) == (-4.0, 4.0)
    ok_left_only = ok.copy()
    ok_left_only[6] = True
    assert stable_range(x, ok_left_only, 0.0) == (-2.0, 4.0)


def test_stable_range_centre_not_ok_is_nan():
    x = np.array([-1.0, 0.0, 1.0])
    lo, hi = stable_range(x, np.array([True, False, True]), 0.0)
    assert math.isnan(lo) and math.isnan(hi)


def test_stable_range_centre_between_samples():
    p = np.array([0.1, 0.3, 0.45, 0.55, 0.7, 0.9])
    assert stable_range(p, np.array([False, True, True, True, False, True]), 0.5) == (0.3, 0.55)
    # the neighbours on both sides of the centre must be ok
    lo, hi = stable_range(p, np.array([True, True, True, False, True, True]), 0.5)
    assert math.isnan(lo) and math.isnan(hi)


def test_stable_range_signed_zeros():
    x = np.array([-1.0, -0.0, 0.0, 1.0])
    assert stable_range(x, np.array([False, True, True, True]), 0.0) == (-0.0, 1.0)
    lo, _ = stable_range(x, np.array([True, False, True, True]), 0.0)
    assert math.isnan(lo)  # -0 is the centre too


def test_summarize_counts_and_errors():
    u = 2.0**-23
    inputs = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    truth = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    output = np.array([math.nan, 1 + 6 * u, 1.0, 1 + 2 * u, math.inf])
    stats, errs, status = summarize(inputs, output, truth, truth, F32, Domain.LOGITS, 4.0)
    assert stats.points == 5
    assert stats.counts == {"ok": 2, "inaccurate": 1, "zero": 0, "inf": 1, "nan": 1}
    assert stats.max_ulp == 6.0 and stats.mean_ulp == pytest.approx(8 / 3)
    assert stats.max_rel_err == pytest.approx(6 * u)
    assert (stats.stable_lo, stats.stable_hi) == (0.0, 1.0)
    assert stats.worst_input in (-2.0, 2.0)  # NaN output: 32 bits (first of equals)
    assert stats.worst_input == -2.0
    assert stats.worst_status is Status.NAN
    assert list(status) == ["nan", "inaccurate", "ok", "ok", "inf"]
