"""Exact rounding of dyadic values into a binary format, and bit-pattern views of each dtype.

Pure integer arithmetic and numpy views: no torch, no mpmath.
"""

from __future__ import annotations

import math

import numpy as np

from bce_audit.vocabulary import FloatFormat


def round_to_format(sign: int, man: int, exp: int, fmt: FloatFormat) -> float:
    """Round (-1)^sign · man · 2^exp to nearest-even in ``fmt``; returns an exact Python float.

    Handles subnormals (a fixed quantum below emin), overflow to ±inf and signed zero.
    """
    if man == 0:
        return -0.0 if sign else 0.0
    e = exp + man.bit_length() - 1  # floor(log2 |v|)
    # Far outside the format, decide without building huge integers: below half the smallest
    # subnormal everything rounds to zero (a tie at exactly half goes to the even zero too);
    # at or above 2^(emax+1) everything overflows.
    if e < fmt.emin - fmt.precision:
        return -0.0 if sign else 0.0
    if e > fmt.emax:
        return -math.inf if sign else math.inf
    quantum = max(e, fmt.emin) - fmt.precision + 1
    shift = quantum - exp
    if shift <= 0:
        m = man << -shift
    else:
        m = man >> shift
        rem = man & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and m & 1):
            m += 1
    if m == 0:
        return -0.0 if sign else 0.0
    if m.bit_length() + quantum - 1 > fmt.emax:
        return -math.inf if sign else math.inf
    return math.ldexp(-m if sign else m, quantum)


def round_float(x: float, fmt: FloatFormat) -> float:
    """Round a float64 value once, directly, into ``fmt`` (NaN and ±inf pass through)."""
    if math.isnan(x) or math.isinf(x):
        return x
    m, e = math.frexp(x)
    man = int(abs(m) * (1 << 53))
    return round_to_format(int(math.copysign(1, x) < 0), man, e - 53, fmt)


def round_array(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Round float64 values into ``fmt`` (once), returned as float64 holding exact values."""
    return round_array_flagging_midpoints(values, fmt)[0]


def round_array_flagging_midpoints(values: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values rounded to nearest-even into ``fmt``, mask of the values that are
    midpoints of ``fmt``).

    ±0, ±inf and NaN pass through. A midpoint (the overflow threshold and half the smallest
    subnormal included) is flagged: a value that was itself rounded to float64 may round
    differently from the exact value it came from there (the oracle checks this).
    """
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x) & (x != 0)
    out = x.copy()
    midpoint = np.zeros(x.shape, dtype=bool)
    if fmt.precision >= 53 or not finite.any():
        return out, midpoint
    xf = x[finite]
    _, e = np.frexp(xf)  # |x| = m·2^e, m in [0.5, 1): floor(log2|x|) = e - 1
    q = np.maximum(e - 1, fmt.emin) - fmt.precision + 1
    scaled = np.ldexp(xf, -q)  # exact: |scaled| < 2^precision
    midpoint[finite] = (scaled - np.floor(scaled)) == 0.5
    with np.errstate(over="ignore"):  # a carry past float64's range: inf, as it should be
        r = np.ldexp(np.rint(scaled), q)  # rint: to nearest, ties to even
    r = np.where(np.abs(r) > fmt.largest_finite, np.copysign(np.inf, r), r)
    out[finite] = r
    return out, midpoint


_UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}


def to_bits(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Bit patterns (as int64) of float64 values that are representable in ``fmt``."""
    if fmt.name == "float64":
        return values.astype(np.float64).view(np.int64)
    if fmt.name == "float32":
        return values.astype(np.float32).view(np.uint32).astype(np.int64)
    if fmt.name == "float16":
        return values.astype(np.float16).view(np.uint16).astype(np.int64)
    # bfloat16 is the top half of a float32 with the same value.
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.int64)


def from_bits(bits: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Inverse of ``to_bits``: float64 values of the given bit patterns."""
    bits = np.asarray(bits, dtype=np.int64)
    if fmt.name == "float64":
        return bits.view(np.float64).copy()
    if fmt.name == "float32":
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    if fmt.name == "float16":
        return bits.astype(np.uint16).view(np.float16).astype(np.float64)
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def ordinal(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """A monotone integer index of each value: neighbours in ``fmt`` differ by 1; ±0 -> 0.

    +inf is the successor of the largest finite value. Not meaningful for NaN.
    """
    bits = to_bits(values, fmt)
    if fmt.width == 64:
        # int64 view: negative numbers have the sign bit set (bits < 0)
        mag = bits & np.int64(0x7FFFFFFFFFFFFFFF)
        return np.where(bits < 0, -mag, mag)
    sign_bit = 1 << (fmt.width - 1)
    mag = bits & (sign_bit - 1)
    return np.where(bits & sign_bit, -mag, mag)


def from_ordinal(ordinals: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Inverse of ``ordinal`` (0 maps to +0)."""
    o = np.asarray(ordinals, dtype=np.int64)
    if fmt.width == 64:
        bits = np.where(o < 0, (-o) | np.int64(-0x8000000000000000), o)
    else:
        bits = np.where(o < 0, (-o) | (1 << (fmt.width - 1)), o)
    return from_bits(bits, fmt)


def position(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Like ``ordinal``, but -0 and +0 apart: a monotone index in which every two neighbouring
    bit patterns of ``fmt`` differ by 1 (-tiny -> -1, -0 -> 0, +0 -> 1, +tiny -> 2).

    So the number of representable values in [lo, hi] is position(hi) - position(lo) + 1, each
    zero counted once: both are inputs a sweep evaluates apart. Not meaningful for NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    at_or_after_plus_zero = (v > 0) | ((v == 0) & ~np.signbit(v))
    positions: np.ndarray = ordinal(v, fmt) + at_or_after_plus_zero.astype(np.int64)
    return positions


def from_position(positions: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Inverse of ``position`` (0 maps to -0, 1 to +0)."""
    p = np.asarray(positions, dtype=np.int64)
    values: np.ndarray = np.where(p == 0, -0.0, from_ordinal(np.where(p > 0, p - 1, p), fmt))
    return values
