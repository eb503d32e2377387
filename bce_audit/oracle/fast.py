"""The oracle's fast path: one pass at a fixed working precision on mpmath's raw libmp tuples.

Most points settle at the first working precision, so this is the first step of Ziv's strategy,
written without mpmath's ``mpf`` objects and context (whose bookkeeping costs more than the
arithmetic at these precisions). It produces only the float64 rounding of the loss and the
gradient; the narrower formats follow from it exactly in ``oracle.table`` (rounding the float64
value again is exact unless it lies on a midpoint of the narrower format, which is checked).

Whenever this pass cannot prove its float64 rounding (a value too close to a float64 midpoint,
cancellation, a tiny term that is neither negligible nor cheap, an end point or a limit) it
returns None and the caller uses the reference oracle in ``oracle.reference``, which escalates the
precision as far as needed. So this module may be incomplete, but never wrong: a result it
returns is the one the reference returns, which ``tests/oracle/test_fast.py`` checks bit for bit.

Error model: libmp's exp, log and div at precision P are within 1 ulp (they run with 14-20
guard bits and truncate once); every inexact value here is a composition of at most three of
them, so a relative error bound of 2^-(P-4) is generous.
"""

from __future__ import annotations

import math
from typing import TypeAlias, TypedDict

from mpmath.libmp import fone, from_float, mpf_add, mpf_div, mpf_exp, mpf_log, mpf_mul, mpf_neg, mpf_sub

from bce_audit.floats import round_to_format
from bce_audit.vocabulary import FLOAT64

# A raw libmp value: (sign, mantissa, exponent, bit count of the mantissa). The mantissa is a
# gmpy2 mpz when mpmath runs on gmpy2: an int in every way used here.
RawMpf: TypeAlias = tuple[int, int, int, int]

# The label-free terms of one input, kept for all its labels: exp(-|z|)'s log1p and sigmoid for
# a logit; p and 1-p, and their logarithms, for a probability.
Memo = TypedDict(
    "Memo",
    {"logit": tuple[RawMpf, RawMpf], "p": tuple[RawMpf, RawMpf], "log p": RawMpf, "log 1-p": RawMpf},
    total=False,
)

# Working precision of the single pass: 53 bits for float64 plus room for the error bound and
# a rounding test that fails with probability about 2^-(P - 4 - 53) per value.
WORKING_PRECISION = 80
_ERROR_BITS = WORKING_PRECISION - 4
# Below 2^-_TINY_EXP a term e = exp(-|z|) is replaced by e itself in log1p(e) and e/(1+e):
# the relative error of that, e/2 and e, is far below 2^-_ERROR_BITS.
_TINY_EXP = WORKING_PRECISION + 8
_LOG2_E = 1.4426950408889634
# float64: emin and precision, for the rounding test
_EMIN, _PREC, _EMAX = -1022, 53, 1023


def settle_float64(sign: int, man: int, exp: int, error_bits: int) -> float | None:
    """The float64 rounding of v = (-1)^sign·man·2^exp if every value within a relative
    2^-error_bits of v rounds to it (no float64 midpoint in that interval); else None."""
    if not man or error_bits < _PREC + 6:
        # cancellation ate every bit (the interval holds both signs), or too wide to be sure
        return None
    bc = man.bit_length()
    top = exp + bc - 1  # floor(log2 |v|)
    if top < _EMIN - _PREC - 2:
        # |v|·(1 + 2^-error_bits) < 2^(emin-prec) = half the smallest subnormal: rounds to 0
        return -0.0 if sign else 0.0
    if top > _EMAX:
        return None  # overflow is the reference's business (never reached by BCE values)
    shift = (top if top > _EMIN else _EMIN) - _PREC + 1 - exp  # quantum exponent - exp
    if shift <= 0:
        # v is a float64 value; the nearest midpoint is half a quantum away, far beyond the
        # error (error_bits > prec + 6), even across a binade boundary
        return math.ldexp(-man if sign else man, exp)
    rem = man & ((1 << shift) - 1)
    above_half = rem - (1 << (shift - 1))
    # the error in units of 2^exp: |v|·2^-error_bits < 2^(bc - error_bits)
    d = bc - error_bits
    limit = 1 << d if d > 0 else 1
    if -limit <= above_half <= limit:
        return None
    m = (man >> shift) + (above_half > 0)
    if top == _EMAX and m >> _PREC:
        return None  # rounds up to 2^1024: overflow, the reference's business
    v = math.ldexp(m, shift + exp)
    return -v if sign else v  # m may be 0: -0.0 keeps the sign


def _exact_float64(v: RawMpf) -> float:
    """The float64 rounding of an exact libmp value."""
    sign, man, exp, _ = v
    return round_to_format(sign, int(man), exp, FLOAT64)


def _cut(v: RawMpf) -> int:
    """Like truth._exact_plus_small: every float64 (or narrower) rounding boundary near the
    exact dyadic v is a multiple of 2^cut, so a term below 2^cut only matters by its sign."""
    _, _, exp, bc = v
    return min(exp, exp + bc - 1 - 54) - 2


def _plus_small(exact: RawMpf, small: RawMpf, small_sign: int, bits: int) -> tuple[RawMpf, int] | None:
    """(value, error bits) of exact + small_sign·small, exact dyadic and small > 0 known to a
    relative 2^-bits, or None when the sum cancels to 0 (the reference settles that)."""
    term = small if small_sign > 0 else mpf_neg(small)
    if not exact[1]:
        return term, bits
    value = mpf_add(exact, term, 0)  # exact
    if not value[1]:
        return None
    # absolute error <= small·2^-bits; relative: bits - log2(small / |value|)
    loss_of_bits = max(0, (small[2] + small[3]) - (value[2] + value[3]) + 1)
    return value, bits - loss_of_bits


def _tiny_sum(exact: RawMpf, small_sign: int) -> float:
    """float64 rounding of exact + small_sign·tiny, tiny below 2^cut (the reference's rule)."""
    sign, man, exp, bc = exact
    if bc <= _PREC and _EMIN - _PREC < exp and exp + bc <= _EMAX:
        # exact is a float64 value and tiny is below a quarter of its ulp: it rounds to exact
        return math.ldexp(-int(man) if sign else int(man), exp)
    c = _cut(exact) - 1
    man = int(man)
    # exact + ±2^c as an integer multiple of 2^c (c < exp)
    total = (-man if sign else man) << (exp - c)
    total += 1 if small_sign > 0 else -1
    return _exact_float64((int(total < 0), abs(total), c, abs(total).bit_length()))


def logit_float64(z: float, y: RawMpf, one_minus_y: RawMpf, memo: Memo) -> tuple[float, float] | None:
    """(loss, dL/dz) rounded to float64 at a finite nonzero logit z, or None (use the reference).

    y and one_minus_y are the exact label and 1-y as libmp tuples; memo is a dict kept for this
    z alone, so the label-free terms are computed once for all its labels. As in the reference:
      loss = (max(z,0) - y·z) + log1p(e),  grad = (1-y) - e/(1+e) for z > 0, e/(1+e) - y for
      z < 0, with e = exp(-|z|) and the first terms exact dyadics.
    """
    a = abs(z)
    at = from_float(a)
    if z > 0:
        exact_loss = mpf_mul(one_minus_y, at)  # z = |z|
        exact_grad, grad_sign = one_minus_y, -1
    else:
        exact_loss = mpf_mul(y, at)
        exact_grad, grad_sign = mpf_neg(y), +1
    # log2 of an upper bound on e (and so on log1p(e) and e/(1+e), both below e); above about
    # 2^50 the +1 is lost to rounding, where the value is far below -1100 and every cut anyway
    log2_e = -a * _LOG2_E + 1
    loss_tiny = exact_loss[1] and log2_e < _cut(exact_loss)
    grad_tiny = exact_grad[1] and log2_e < _cut(exact_grad)
    loss: float | None
    grad: float | None
    if log2_e < -1100:
        # e < 2^-1100: alone, a term rounds to ±0 in float64 and in every narrower format;
        # beside a nonzero exact part only its sign may count, and only if it is below the cut
        if (exact_loss[1] and not loss_tiny) or (exact_grad[1] and not grad_tiny):
            return None
        loss = _tiny_sum(exact_loss, +1) if exact_loss[1] else 0.0
        grad = _tiny_sum(exact_grad, grad_sign) if exact_grad[1] else (-0.0 if grad_sign < 0 else 0.0)
        return loss, grad
    if loss_tiny and grad_tiny:
        return _tiny_sum(exact_loss, +1), _tiny_sum(exact_grad, grad_sign)
    terms = memo.get("logit")
    if terms is None:
        e = mpf_exp(mpf_neg(at), WORKING_PRECISION)
        if e[2] + e[3] < -_TINY_EXP:
            terms = memo["logit"] = (e, e)
        else:
            s = mpf_add(fone, e, 0)  # 1 + e, exact
            terms = memo["logit"] = (mpf_log(s, WORKING_PRECISION), mpf_div(e, s, WORKING_PRECISION))
    log_term, sig = terms
    if loss_tiny:
        loss = _tiny_sum(exact_loss, +1)
    else:
        r = _plus_small(exact_loss, log_term, +1, _ERROR_BITS)
        loss = None if r is None else settle_float64(r[0][0], int(r[0][1]), r[0][2], r[1])
    if grad_tiny:
        grad = _tiny_sum(exact_grad, grad_sign)
    else:
        r = _plus_small(exact_grad, sig, grad_sign, _ERROR_BITS)
        grad = None if r is None else settle_float64(r[0][0], int(r[0][1]), r[0][2], r[1])
    if loss is None or grad is None:
        return None
    return loss, grad


def probability_float64(p: float, y: RawMpf, one_minus_y: RawMpf, memo: Memo) -> tuple[float, float] | None:
    """(loss, dL/dp) rounded to float64 at a probability 0 < p < 1, or None (use the reference).

    memo: a dict kept for this p alone (its logarithms serve all its labels).

    loss = -(y·log p + (1-y)·log(1-p)), 1-p exact, both terms >= 0;
    grad = (p-y) / (p·(1-p)), numerator and denominator exact (a dyadic quotient is exact).
    """
    exact = memo.get("p")
    if exact is None:
        pt = from_float(p)
        exact = memo["p"] = (pt, mpf_sub(fone, pt, 0))
    pt, omp = exact
    loss: RawMpf | None = None
    if y[1]:
        log_p = memo.get("log p") or memo.setdefault("log p", mpf_log(pt, WORKING_PRECISION))
        loss = mpf_mul(y, log_p, WORKING_PRECISION + 8)
    if one_minus_y[1]:
        log_omp = memo.get("log 1-p") or memo.setdefault("log 1-p", mpf_log(omp, WORKING_PRECISION))
        term = mpf_mul(one_minus_y, log_omp, WORKING_PRECISION + 8)
        loss = term if loss is None else mpf_add(loss, term, 0)  # same sign: no cancellation
    assert loss is not None  # y and 1-y are not both 0
    loss_f = settle_float64(loss[0] ^ 1, int(loss[1]), loss[2], _ERROR_BITS) if loss[1] else 0.0
    if loss_f is None:
        return None
    num = mpf_sub(pt, y, 0)
    den = mpf_mul(pt, omp)
    if not num[1]:
        return loss_f, 0.0
    nm, dm = int(num[1]), int(den[1])
    grad_f: float | None
    if nm % dm == 0:  # a dyadic rational: exact
        q = nm // dm
        grad_f = _exact_float64((num[0] ^ den[0], q, num[2] - den[2], q.bit_length()))
    else:
        g = mpf_div(num, den, WORKING_PRECISION)
        grad_f = settle_float64(g[0], int(g[1]), g[2], _ERROR_BITS)
    if grad_f is None:
        return None
    return loss_f, grad_f
