"""The fast oracle path against the reference path, bit for bit, and its building blocks."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from bce_audit.floats import round_array_flagging_midpoints, round_float, round_to_format
from bce_audit.oracle.fast import settle_float64
from bce_audit.oracle.reference import logit_truth, probability_truth
from bce_audit.oracle.table import COLUMNS, FORMATS, evaluate_points
from bce_audit.sweep.grid import build_grid
from bce_audit.vocabulary import Domain, DType, Sampling

F16, BF16, F32, F64 = (d.format for d in DType)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)  # tells -0.0 from 0.0 and compares NaN equal to itself


def _reference_rows(domain: Domain, inputs, label: float) -> np.ndarray:
    point = logit_truth if domain is Domain.LOGITS else probability_truth
    rows = []
    for x in inputs:
        t = point(float(x), label, FORMATS)
        rows.append([*t.loss, *t.grad])
    return np.array(rows, dtype=np.float64).reshape(-1, COLUMNS)


def _assert_same_bits(domain, inputs, label, fast, ref):
    for x, a, b in zip(inputs, fast, ref, strict=True):
        got = [_bits(v) for v in a.tolist()]
        want = [_bits(v) for v in b.tolist()]
        assert got == want, f"{domain} x={float(x)!r} y={label!r}: fast {a.tolist()} != reference {b.tolist()}"


# Labels as they reach the oracle: already rounded into some dtype, including the awkward ones
# (a subnormal label makes 1-y and y·z exact dyadics with a thousand bits).
LABELS = [
    0.0,
    1.0,
    0.5,
    round_float(0.3, F16),
    round_float(0.3, BF16),
    round_float(0.3, F32),
    0.3,
    round_float(0.9, F32),
    1 - 2.0**-53,
    2.0**-30,
    5e-324,
]


def _adversarial_logits(label: float) -> list[float]:
    xs = [5e-324, 2.0**-1022, 1e-300, 2.0**-60, 1e-8, 0.5, 1.0, 2.0, 36.0, 38.5, 40.0, 44.0, 45.0, 46.0]
    xs += [88.7, 103.0, 709.7, 745.0, 745.1, 745.5, 746.0, 760.0, 1e3, 1e5, 1e30, 1.7976931348623157e308]
    if 0 < label < 1:
        # sigmoid(z) = y: the gradient cancels; its nearest values in every format and around
        z = math.log(label / (1 - label))
        for fmt in (F16, BF16, F32, F64):
            zr = round_float(z, fmt)
            xs += [zr, math.nextafter(zr, math.inf), math.nextafter(zr, -math.inf)]
    return sorted({v for x in xs for v in (x, -x)})


def _adversarial_probabilities(label: float) -> list[float]:
    xs = [5e-324, 2.0**-1022, 1e-300, 2.0**-60, 1e-8, 0.25, 0.5, 0.75, 1 - 2.0**-24, 1 - 2.0**-53]
    xs += [round_float(0.3, F16), round_float(0.7, BF16), 0.1, 0.9]
    if 0 < label < 1:
        # p = y: the gradient is exactly 0; next to it, it cancels
        xs += [label, math.nextafter(label, 0.0), math.nextafter(label, 1.0)]
        for fmt in (F16, BF16, F32):
            xs.append(round_float(label, fmt))
    return sorted({x for x in xs if 0 < x < 1})


@pytest.mark.parametrize("label", LABELS)
def test_fast_path_matches_reference_on_adversarial_points(label):
    for domain, xs in (
        (Domain.LOGITS, _adversarial_logits(label)),
        (Domain.PROBABILITIES, _adversarial_probabilities(label)),
    ):
        inputs = np.array(xs)
        fast = evaluate_points(domain, inputs, label)
        _assert_same_bits(domain, inputs, label, fast, _reference_rows(domain, xs, label))


@pytest.mark.parametrize("dtype", list(DType))
@pytest.mark.parametrize("domain", list(Domain))
def test_fast_path_matches_reference_on_random_points(dtype, domain):
    # bit-pattern samples cover every binade; with the specials and non-finite inputs
    grid = build_grid(dtype, domain, 250, Sampling.BITS, seed=11)
    inputs = np.concatenate([grid.finite, grid.nonfinite])
    for label in (0.0, 1.0, round_float(0.3, dtype.format)):
        fast = evaluate_points(domain, inputs, label)
        _assert_same_bits(domain, inputs, label, fast, _reference_rows(domain, inputs.tolist(), label))


def test_fast_path_is_independent_of_batching():
    grid = build_grid(DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=2).finite
    whole = evaluate_points(Domain.LOGITS, grid, 0.25)
    parts = np.concatenate([evaluate_points(Domain.LOGITS, grid[i : i + 7], 0.25) for i in range(0, len(grid), 7)])
    assert whole.tobytes() == parts.tobytes()


# --------------------------------------------------------------------------- rounding blocks


@pytest.mark.parametrize("fmt", [F16, BF16, F32])
def test_rounding_from_float64_matches_exact_rounding(fmt):
    rng = np.random.default_rng(3)
    # random float64 bit patterns over the format's whole range and beyond, plus the values
    # around every rounding boundary of the format's smallest and largest binades
    top = math.ldexp(1.0, fmt.emax + 2)
    values = [fmt.smallest_subnormal * k / 4 for k in range(0, 64)]
    values += [fmt.largest_finite * (1 + k * 2.0 ** -(fmt.precision + 2)) for k in range(-8, 9)]
    values += [top, 5e-324, 1e-300, 1e300]
    raw = rng.integers(0, 2**63, size=20_000, dtype=np.int64).view(np.float64)
    raw = raw[np.isfinite(raw)]
    values += [v for v in raw.tolist() if abs(v) < top][:8_000]
    values += [v * 2.0 ** rng.integers(fmt.emin - fmt.precision, fmt.emax) for v in rng.uniform(1, 2, 4_000)]
    values = np.array(values + [-v for v in values])
    got, midpoint = round_array_flagging_midpoints(values, fmt)
    for x, r, mid in zip(values.tolist(), got.tolist(), midpoint.tolist(), strict=True):
        m, e = math.frexp(x)
        man = int(abs(m) * 2**53)
        assert _bits(r) == _bits(round_to_format(int(x < 0 or _bits(x) == _bits(-0.0)), man, e - 53, fmt)), x
        # a midpoint: the two neighbours of x in float64 round differently in fmt
        below = round_float(math.nextafter(x, -math.inf), fmt) if x else 0.0
        above = round_float(math.nextafter(x, math.inf), fmt) if x else 0.0
        assert mid == (below != above), x


def test_rounding_from_float64_flags_every_float16_midpoint():
    # exhaustive: the midpoint between each pair of adjacent finite float16 values
    h = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    mids = (h[:-1] + h[1:]) / 2  # exact in float64
    overflow = 65504.0 + 16.0  # halfway to the next binade's first value: rounds to inf
    _, flagged = round_array_flagging_midpoints(np.append(mids, overflow), F16)
    assert flagged.all()
    _, flagged = round_array_flagging_midpoints(h, F16)
    assert not flagged.any()


def test_settle_float64_is_right_or_declines():
    # whenever it answers, both ends of the error interval round to the answer
    rng = np.random.default_rng(4)
    answered = 0
    for _ in range(3_000):
        bits = int(rng.integers(60, 80))
        man = int(rng.integers(1, 2**62)) | 1
        man = (man << int(rng.integers(0, 20))) | int(rng.integers(0, 2))
        exp = int(rng.integers(-1200, 900))
        sign = int(rng.integers(0, 2))
        got = settle_float64(sign, man, exp, bits)
        if got is None:
            continue
        answered += 1
        # the interval is man·2^exp·(1 ± 2^-bits); its ends, scaled to integers
        scale = 2 + bits
        lo = (man << scale) - (man << scale >> bits) - 1
        hi = (man << scale) + (man << scale >> bits) + 1
        assert _bits(round_to_format(sign, lo, exp - scale, F64)) == _bits(got)
        assert _bits(round_to_format(sign, hi, exp - scale, F64)) == _bits(got)
    assert answered > 2_500  # declining is rare: it would only make the oracle slow


def test_settle_float64_declines_on_a_midpoint():
    # 1 + 2^-53 is the midpoint between 1 and its successor: any error straddles it
    man = (1 << 53) + 1
    assert settle_float64(0, man, -53, 70) is None
    assert settle_float64(0, man << 20, -73, 70) is None
    # far from one, it answers
    assert settle_float64(0, (1 << 60) + (1 << 5), -60, 70) == 1.0


def test_labels_sharing_an_input_match_one_label_at_a_time():
    # the label-free terms of an input are computed once for all its labels
    xs = build_grid(DType.FLOAT32, Domain.LOGITS, 200, Sampling.BITS, seed=5).finite
    ps = build_grid(DType.BFLOAT16, Domain.PROBABILITIES, 200, Sampling.BITS, seed=5).finite
    labels = (0.0, round_float(0.3, F32), 1.0)
    for domain, inputs in ((Domain.LOGITS, xs), (Domain.PROBABILITIES, ps)):
        shared = evaluate_points(domain, np.repeat(inputs, 3), np.tile(labels, len(inputs)))
        for k, y in enumerate(labels):
            assert shared[k::3].tobytes() == evaluate_points(domain, inputs, y).tobytes()


def test_negative_zero_label_is_the_label_zero():
    from bce_audit.oracle.table import build_truth_table

    xs = np.array([-3.0, 0.5, 2.0])
    table, work = build_truth_table([(Domain.LOGITS, 0.0, xs), (Domain.LOGITS, -0.0, xs)])
    assert work.points == 3
    assert table.rows(Domain.LOGITS, -0.0, xs).tobytes() == evaluate_points(Domain.LOGITS, xs, 0.0).tobytes()


@pytest.mark.parametrize("domain", list(Domain))
def test_nan_label_gives_nan_rows(domain):
    # the command line never passes one, the API may: the fast path must not read it as 0
    rows = evaluate_points(domain, np.array([0.25, 1.0]), math.nan)
    assert np.isnan(rows).all()
