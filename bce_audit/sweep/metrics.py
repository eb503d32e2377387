"""Error metrics: ULP error, bits of error, per-point status, and a case's figures."""

from __future__ import annotations

import math

import numpy as np

from bce_audit.figures import COUNTED_STATUSES, CaseFigures
from bce_audit.floats import ordinal
from bce_audit.vocabulary import Domain, FloatFormat, Status


def ulp(truth: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """2^(max(floor(log2|t|), emin) - p + 1) at the correctly rounded truth; ulp(0) = tiniest."""
    t = np.abs(np.asarray(truth, dtype=np.float64))
    _, e = np.frexp(t)  # t = m·2^e with m in [0.5, 1): floor(log2 t) = e - 1
    exponent = np.where(t == 0, fmt.emin, np.maximum(e - 1, fmt.emin)) - fmt.precision + 1
    return np.ldexp(1.0, exponent.astype(np.int64))


# The largest float64. An error figure can exceed it: ulp(0) in float64 is 2^-1074, so an output of
# 1e-7 against an exact 0 is 2e316 ULPs off. Such a figure is written as this value, a lower
# bound, so that a finite output against a finite truth always has a finite error (never inf).
ERROR_CAP = float(np.finfo(np.float64).max)


def ulp_error(output: np.ndarray, truth: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """|output - truth| / ulp(truth), for finite output and finite rounded truth (else NaN);
    at most ERROR_CAP."""
    output = np.asarray(output, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    with np.errstate(all="ignore"):
        diff = np.abs(output - truth)
        # opposite-signed values near the top of float64 overflow the plain difference:
        # halve both, and double only after dividing by the ulp
        halves = np.abs(output * 0.5 - truth * 0.5)
        u = ulp(np.where(np.isfinite(truth), truth, 0.0), fmt)
        err = np.minimum(np.where(np.isinf(diff), 2 * (halves / u), diff / u), ERROR_CAP)
    finite = np.isfinite(output) & np.isfinite(truth)
    return np.where(finite, err, np.nan)


def _mean(values: np.ndarray) -> float:
    """The mean, finite for finite values: a sum of values near ERROR_CAP overflows, so then each
    is divided by the count first."""
    with np.errstate(over="ignore"):
        m = float(values.mean())
    if not math.isinf(m):
        return m
    # the exact mean is at most the largest value; the rounding of the sum of the quotients can
    # carry it past the largest float64
    with np.errstate(over="ignore"):
        return min(float(np.sum(values / len(values))), ERROR_CAP)


def bits_of_error(output: np.ndarray, truth: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Herbie's metric: log2(1 + representable values between output and rounded truth).

    NaN against non-NaN scores the format's width; NaN against NaN scores 0.
    """
    output = np.asarray(output, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    out_nan, truth_nan = np.isnan(output), np.isnan(truth)
    o = ordinal(np.where(out_nan, 0.0, output), fmt)
    t = ordinal(np.where(truth_nan, 0.0, truth), fmt)
    # The distance in unsigned 64-bit arithmetic is exact (it is below 2^64); a float64
    # difference of two float64 ordinals (~2^62) would lose the small distances entirely.
    distance = (np.maximum(o, t).astype(np.uint64) - np.minimum(o, t).astype(np.uint64)).astype(np.float64)
    bits = np.log2(1.0 + distance)
    bits = np.where(out_nan != truth_nan, float(fmt.width), bits)
    return np.where(out_nan & truth_nan, 0.0, bits)


def status_codes(output: np.ndarray, truth: np.ndarray, ulp_err: np.ndarray, threshold: float) -> np.ndarray:
    """One Status per point as its index in ``Status`` (int8), as docs/reports.md defines them."""
    output = np.asarray(output, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    codes = np.zeros(output.shape, dtype=np.int8)  # ok
    with np.errstate(invalid="ignore"):
        inaccurate = ulp_err > threshold
        # an infinite truth missed (wrong sign or finite output) is an accuracy failure
        inaccurate |= np.isinf(truth) & (output != truth) & ~np.isnan(output)
        # a non-NaN output where the truth is NaN (outside the domain) is wrong too
        inaccurate |= np.isnan(truth) & ~np.isnan(output)
    codes[inaccurate] = Status.INACCURATE.severity
    codes[(output == 0) & (truth != 0) & ~np.isnan(truth)] = Status.ZERO.severity
    codes[np.isinf(output) & np.isfinite(truth)] = Status.INF.severity
    codes[np.isnan(output) & ~np.isnan(truth)] = Status.NAN.severity
    return codes


_STATUS_VALUES = np.array([s.value for s in Status], dtype=object)


def point_status(output: np.ndarray, truth: np.ndarray, ulp_err: np.ndarray, threshold: float) -> np.ndarray:
    """One Status per point (as an array of str), as docs/reports.md defines them."""
    status: np.ndarray = _STATUS_VALUES[status_codes(output, truth, ulp_err, threshold)]
    return status


def stable_range(inputs: np.ndarray, ok: np.ndarray, centre: float) -> tuple[float, float]:
    """Widest [lo, hi] around ``centre`` in which every sampled input is ok (inputs sorted)."""
    below = np.nonzero(inputs <= centre)[0]
    above = np.nonzero(inputs >= centre)[0]
    if len(below) == 0 or len(above) == 0:
        return math.nan, math.nan
    i, j = below[-1], above[0]
    if not (ok[i] and ok[j]):
        return math.nan, math.nan
    bad_below = np.nonzero(~ok[: i + 1])[0]
    bad_above = np.nonzero(~ok[j:])[0]
    lo_index = bad_below[-1] + 1 if len(bad_below) else 0
    hi_index = j + bad_above[0] - 1 if len(bad_above) else len(inputs) - 1
    return float(inputs[lo_index]), float(inputs[hi_index])


def summarize(
    inputs: np.ndarray,
    output: np.ndarray,
    truth: np.ndarray,
    truth_f64: np.ndarray,
    fmt: FloatFormat,
    domain: Domain,
    threshold: float,
    nonfinite: int = 0,
) -> tuple[CaseFigures, np.ndarray, np.ndarray]:
    """The case's figures (see ``figures.CaseFigures``) plus the per-point ULP errors and statuses
    (for ``--details``). ``nonfinite``: how many ±inf / NaN inputs missed their limit.

    max_rel_err is |output - truth| / |truth| with the truth rounded to float64, over the points
    where both are finite and the truth nonzero; the worst input is the one with the most bits of
    error (the first of equals); the stable range is the widest interval around the domain's
    centre on which every sampled input is ok (the run replaces it with the one read from the
    failure map: see ``sweep.failure_map.stable_range``)."""
    errs = ulp_error(output, truth, fmt)
    codes = status_codes(output, truth, errs, threshold)
    status: np.ndarray = _STATUS_VALUES[codes]
    bits = bits_of_error(output, truth, fmt)
    finite_errs = errs[~np.isnan(errs)]
    with np.errstate(all="ignore"):
        rel = np.minimum(np.abs(output - truth_f64) / np.abs(truth_f64), ERROR_CAP)
    rel = rel[np.isfinite(output) & np.isfinite(truth_f64) & (truth_f64 != 0)]
    # counted on the codes: comparing an array of str objects costs a Python call per point
    per_code = np.bincount(codes, minlength=len(Status))
    counts = {s.value: int(per_code[s.severity]) for s in COUNTED_STATUSES}
    # no worst input when every point is exact (the first of equals would mean nothing)
    worst = float(inputs[int(np.argmax(bits))]) if len(bits) and bits.max() > 0 else math.nan
    lo, hi = stable_range(inputs, codes == Status.OK.severity, domain.centre)
    figures = CaseFigures(
        points=len(inputs),
        **counts,
        nonfinite=nonfinite,
        max_ulp=float(finite_errs.max()) if len(finite_errs) else math.nan,
        p99_ulp=float(np.percentile(finite_errs, 99, method="higher")) if len(finite_errs) else math.nan,
        mean_ulp=_mean(finite_errs) if len(finite_errs) else math.nan,
        mean_bits=float(bits.mean()) if len(bits) else math.nan,
        max_rel_err=float(rel.max()) if len(rel) else math.nan,
        worst_input=worst,
        stable_lo=lo,
        stable_hi=hi,
    )
    return figures, errs, status
