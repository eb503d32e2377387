"""The exact truth of the BCE loss family (``bce_audit.reference``): loss and derivative by the
input, correctly rounded into each format.

Same method as the plain oracle (``oracle.reference``): the exact binary input, label and
parameters are evaluated at a working precision that doubles until every value within the
error bound rounds to one number in every requested format (Ziv), then each format is rounded
once, directly, from the high-precision value (subnormals and overflow included). Plain BCE
itself keeps its own path (``oracle.reference`` and ``oracle.fast``); this module is checked
against it bit for bit (tests/oracle/test_family.py).

Arithmetic with a certified error
---------------------------------
Every intermediate is an ``_V``: an exact dyadic part plus a rounded part with a bound on its
absolute error, |rounded - true| <= 2^err. Sums and products keep the exact parts exact (a
product of exact parts is computed exactly), so a result whose true value is an exact dyadic
plus a tiny transcendental term (a limit approached at a large |z|) keeps that structure to the
end: there, as in the plain oracle, a term far below every rounding boundary of the exact part
counts only by its sign (``_finish``). The error bounds assume mpmath's exp, log, log1p, expm1
and division are within 2 ulps of the working precision (they are within 1).

Power (1 - p_t)^γ = m^γ: when m = E + A with E exact, m^γ = E^γ·(1 + A/E)^γ with E^γ exact
whenever it is a dyadic rational (``_exact_power``: E a perfect 2^s-th power for γ = r/2^s) and
(1 + A/E)^γ - 1 = expm1(γ·log1p(A/E)) to full relative precision; otherwise exp(γ·log m), with
log m split into an exact part (-max(±z, 0) for a hard label) and a bounded one, so that
e^(-γ|z|) at |z| = 1e300 needs no 1000-bit logarithm.

The gradients, derived once (P = σ(z), Q = σ(-z) = 1 - P, dP/dz = P·Q)
-----------------------------------------------------------------------
``bce`` (a = w_p·y', b = 1-y'): L = w·(a·sp(-z) + b·sp(z)), sp = softplus;
    dL/dz = w·((a+b)·P - a); on probabilities dL/dp = w·((a+b)·p - a)/(p(1-p)), a quotient of
    exact dyadics (exact when it is dyadic).
``focal``, torchvision form: m = 1 - p_t = y·Q + (1-y)·P (a sum of non-negative terms: no
    cancellation), ce = y·sp(-z) + (1-y)·sp(z), L = α_t·ce·m^γ. With dm/dz = (1-2y)·P·Q and
    dce/dz = P - y:
        dL/dz = α_t·m^γ·((P - y) + γ·(1-2y)·ce·(P·Q/m)).
    m^(γ-1) never appears: P·Q/m <= max(P, Q) <= 1 because m is a convex combination of P
    and Q, so the gradient is finite for every γ >= 0 where naive autograd of (1 - p_t)^γ
    with γ < 1 computes γ·0^(γ-1)·0 = NaN at p_t = 1. For a hard label P·Q/m is exactly P
    (y = 1) or Q (y = 0) and both terms have one sign:
        y = 1: dL/dz = -α·Q^γ·(Q + γ·P·sp(-z));  y = 0: dL/dz = (1-α)·P^γ·(P + γ·Q·sp(z)).
    On probabilities (m exact): dL/dp = α_t·m^γ·((p - y)/(p(1-p)) + γ·(1-2y)·ce/m).
``focal``, per-term form: L = α·y·Q^γ·sp(-z) + (1-α)(1-y)·P^γ·sp(z),
        dL/dz = -α·y·Q^γ·(Q + γ·P·sp(-z)) + (1-α)(1-y)·P^γ·(P + γ·Q·sp(z));
    on probabilities dL/dp = -α·y·(1-p)^γ·(1/p + γ·(-log p)/(1-p))
                            + (1-α)(1-y)·p^γ·(1/(1-p) + γ·(-log(1-p))/p).
A focal loss with γ = 0 is BCE-shaped (a = α_t·y, b = α_t·(1-y); per-term a = α·y,
b = (1-α)(1-y)) and takes that path, where the probability gradient is one exact quotient.
tests/oracle/test_family.py checks every gradient against mpmath.diff at 240 digits.

Limits (z = ±inf, p = 0 and 1) are the exact limits of these expressions, listed in
``_logit_limits`` and ``_probability_limits``; NaN in, NaN out; a focal loss needs y in [0, 1]
(NaN otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, TypeAlias

from bce_audit.errors import OracleError
from bce_audit.oracle.reference import (
    _MAX_PRECISION,
    _START_PRECISION,
    TruthPoint,
    _dyadic_quotient,
    _mp,
    _round_mpf,
    _round_unambiguously,
)
from bce_audit.reference import FocalForm, Member, Reference
from bce_audit.vocabulary import Domain, FloatFormat

if TYPE_CHECKING:  # pragma: no cover
    from mpmath import mpf  # untyped: Any to the type checker

# What one quantity is at a working precision: a constant (±inf, NaN, an exact float) or an mpf
# with the bits of its relative error bound (None: exact, or its rounding provably settled).
_Outcome: TypeAlias = "float | tuple[mpf, int | None]"

# Relative error of one mpmath elementary function or rounded operation, in units of
# 2^-precision (they are within 1 ulp; 2 leaves room).
_ULPS = 2
_NO_ERROR = None
_HUGE_POWER_BITS = 200_000  # an exact power with more bits than this is left to exp·log


def _mag(x: mpf) -> int:
    """An integer M with 2^(M-1) <= |x| < 2^M (x nonzero)."""
    _, man, exp, bc = x._mpf_
    return int(exp) + int(bc)


def _is_zero(x: mpf) -> bool:
    return not x._mpf_[1]


def _mpf_of(q: Fraction | float | int) -> mpf:
    """The exact mpf of a dyadic rational (a float, or a Fraction with a power-of-two denominator)."""
    mpmath = _mp()
    q = Fraction(q)
    den = q.denominator
    if den & (den - 1):
        raise ValueError(f"{q} is not a dyadic rational")
    return mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(q.numerator, -(den.bit_length() - 1)))


class _V:
    """exact + rounded, |rounded - its true value| <= 2^err (err None: the rounded part is 0
    and exact). The exact part is an exact dyadic, kept exact through sums and products."""

    __slots__ = ("e", "a", "err")

    def __init__(self, e: mpf, a: mpf | None = None, err: int | None = None) -> None:
        self.e = e
        self.a = _mp().mpf(0) if a is None else a
        self.err = err

    @property
    def exact(self) -> bool:
        return self.err is None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"_V({self.e}, {self.a}, 2^{self.err})"


def _exact(x: Fraction | float | int) -> _V:
    return _V(_mpf_of(x))


def _approx(a: mpf, lost_bits: int = _ULPS) -> _V:
    """A value computed by one correctly rounded-ish operation at the working precision."""
    prec = _mp().mp.prec
    if _is_zero(a):
        return _V(_mp().mpf(0), a, -prec * 4)
    return _V(_mp().mpf(0), a, _mag(a) - prec + lost_bits)


def _combine(*errs: int) -> int:
    """An exponent bounding a sum of 2^e for each e."""
    return max(errs) + max(0, (len(errs) - 1).bit_length())


def _add(u: _V, v: _V) -> _V:
    mpmath = _mp()
    e = mpmath.fadd(u.e, v.e, exact=True)
    if u.err is None:
        return _V(e, v.a, v.err)
    if v.err is None:
        return _V(e, u.a, u.err)
    s = u.a + v.a  # rounded at the working precision
    errs = [u.err, v.err]
    if not _is_zero(s):
        errs.append(_mag(s) - mpmath.mp.prec)
    return _V(e, s, _combine(*errs))


def _neg(u: _V) -> _V:
    mpmath = _mp()
    return _V(mpmath.fneg(u.e, exact=True), mpmath.fneg(u.a, exact=True), u.err)


def _sub(u: _V, v: _V) -> _V:
    return _add(u, _neg(v))


def _mul(u: _V, v: _V) -> _V:
    mpmath = _mp()
    prec = mpmath.mp.prec
    e = mpmath.fmul(u.e, v.e, exact=True)
    terms: list[tuple[mpf, int]] = []  # (rounded product, its error exponent)

    def rounded(x: mpf, y: mpf, *errs: int) -> None:
        r = x * y
        terms.append((r, _combine(*errs, *([] if _is_zero(r) else [_mag(r) - prec]))))

    if u.err is not None and not _is_zero(v.e):
        rounded(u.a, v.e, _mag(v.e) + u.err)
    if v.err is not None and not _is_zero(u.e):
        rounded(u.e, v.a, _mag(u.e) + v.err)
    if u.err is not None and v.err is not None:
        errs = [u.err + v.err]
        if not _is_zero(u.a):
            errs.append(_mag(u.a) + v.err)
        if not _is_zero(v.a):
            errs.append(_mag(v.a) + u.err)
        rounded(u.a, v.a, *errs)
    if not terms:
        return _V(e)
    out = _V(e, terms[0][0], terms[0][1])
    for r, err in terms[1:]:
        out = _add(out, _V(mpmath.mpf(0), r, err))
    return out


def _collapse(u: _V) -> tuple[mpf, int | None]:
    """(value, error exponent) of u as one rounded number (error None: exact)."""
    mpmath = _mp()
    if u.err is None:
        return u.e, None
    if _is_zero(u.e):
        return u.a, u.err
    p = mpmath.mp.prec + 8
    v = mpmath.fadd(u.e, u.a, prec=p)
    return v, _combine(u.err, _mag(v) - p) if not _is_zero(v) else u.err + 1


def _rel(value: mpf, err: int | None) -> int | None:
    """Exponent r with |error| <= |value|·2^r; None: exact; a huge number when unknown."""
    if err is None:
        return None
    if _is_zero(value):
        return 1 << 20
    return err - (_mag(value) - 1)


def _from_rel(value: mpf, rel: int) -> _V:
    if _is_zero(value):
        return _V(_mp().mpf(0), value, -(1 << 20))
    return _V(_mp().mpf(0), value, _mag(value) + rel)


def _div(u: _V, v: _V) -> _V:
    mpmath = _mp()
    prec = mpmath.mp.prec
    if u.err is None and _is_zero(u.e):
        return _V(mpmath.mpf(0))
    if u.err is None and v.err is None:
        q = _dyadic_quotient(u.e, v.e)
        if q is not None:
            return _V(q)
        return _approx(u.e / v.e)
    n, n_err = _collapse(u)
    d, d_err = _collapse(v)
    rn = _rel(n, n_err)
    rd = _rel(d, d_err)
    q = n / d
    if rd is not None and rd > -3:
        return _from_rel(q, 2)  # the denominator's sign is unknown: more precision needed
    worst = max(-prec, *(r for r in (rn, rd) if r is not None))
    if _is_zero(n):  # 0 ± 2^n_err over d
        assert n_err is not None
        return _V(mpmath.mpf(0), q, n_err - (_mag(d) - 1) + 1)
    return _from_rel(q, worst + 2)


def _exp(u: _V) -> _V:
    """exp of a value with a bounded absolute error: exp(E)·exp(A)."""
    mpmath = _mp()
    mp = mpmath.mp
    prec = mp.prec
    if u.err is None and _is_zero(u.e):
        return _exact(1)
    x = mp.exp(u.e) if not _is_zero(u.e) else mpmath.mpf(1)
    rel = -prec + _ULPS if not _is_zero(u.e) else -(4 * prec)
    if u.err is None:
        return _from_rel(x, rel)
    if u.err > -3:
        return _from_rel(x, 2)  # too uncertain to say anything: more precision needed
    y = mp.exp(u.a)
    # |e^(A+d) - e^A| <= e^A·2|d| for |d| <= 1/8; exp's own rounding
    rel_y = max(u.err + 1, -prec + _ULPS)
    return _from_rel(x * y, max(rel, rel_y) + 2)


def _mp_log(v: mpf) -> mpf:
    """mp.log(v) for v > 0, at the working precision.

    mpmath 1.3.0's log is wrong for v in [1/4, 1/2) within a relative 2^-(precision + 20) of 1/4:
    its shortcut for v next to 1 (log v ~ v - 1) is taken for |magnitude| <= 1, so for magnitude
    -1 as well, and drops the factor 1/4 (log(1/4 + 2^-1000) comes out as 2^-998). An exact value
    with a long mantissa gets there (the focal factor 1 - p_t = (1-y)p + y(1-p) is 1/4 + p/2 at
    y = 1/4 and a tiny p): such a v is doubled, into [1/2, 1), where the shortcut is right, and
    log 2 taken off (tests/oracle/test_family.py checks it against log1p)."""
    mpmath = _mp()
    mp = mpmath.mp
    if _mag(v) != -1:
        return mp.log(v)
    with mpmath.workprec(mp.prec + 8):  # two roundings, no cancellation (both terms near -log 2)
        r = mp.log(mpmath.ldexp(v, 1)) - mp.ln2
    return +r


def _log(u: _V) -> _V:
    """log of a positive value."""
    mpmath = _mp()
    mp = mpmath.mp
    prec = mp.prec
    v, err = _collapse(u)
    if err is None:
        if v == 1:
            return _exact(0)
        return _approx(_mp_log(v))
    r = _rel(v, err)
    assert r is not None
    if r > -3:
        return _V(mpmath.mpf(0), mpmath.mpf(0), 2)  # unknown: more precision needed
    lv = _mp_log(v)
    # |log(v(1+d)) - log v| <= 2|d|, plus log's rounding
    errs = [r + 1] + ([] if _is_zero(lv) else [_mag(lv) - prec + _ULPS])
    return _V(mpmath.mpf(0), lv, _combine(*errs))


def _exact_power(base: mpf, gamma: Fraction) -> mpf | None:
    """base^γ exactly when it is a dyadic rational (base >= 0 exact, γ > 0 dyadic), else None.

    With γ = r/2^s (r odd, or s = 0) and base = n·2^e (n odd), base^(1/2^s) is dyadic exactly
    when n is a perfect 2^s-th power and 2^s divides e; otherwise base^γ is irrational."""
    mpmath = _mp()
    sign, man, exp, _ = base._mpf_
    man, exp = int(man), int(exp)
    if man == 0:
        return mpmath.mpf(0)
    if sign:
        return None
    r, den = gamma.numerator, gamma.denominator
    s = den.bit_length() - 1
    while s and man != 1:
        root = math.isqrt(man)
        if root * root != man or exp % 2:
            return None
        man, exp, s = root, exp // 2, s - 1
    if s:  # man == 1: 2^exp
        if exp % (1 << s):
            return None
        exp >>= s
    if man.bit_length() * r > _HUGE_POWER_BITS or abs(exp) * r > 1 << 40:
        return None
    return mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(man**r, exp * r))


def _power(m: _V, gamma: Fraction, log_m: Callable[[], _V] | None = None) -> _V:
    """m^γ for m > 0 (γ > 0). log_m: a better-split log m than log(collapse(m)), when known."""
    mpmath = _mp()
    mp = mpmath.mp
    prec = mp.prec
    g = _exact(gamma)
    if m.err is None:
        ex = _exact_power(m.e, gamma)
        if ex is not None:
            return _V(ex)
    elif not _is_zero(m.e):
        ratio = _div(_V(mpmath.mpf(0), m.a, m.err), _V(m.e))
        rv, rerr = _collapse(ratio)
        spread = max(1, math.ceil(gamma)).bit_length()
        if _is_zero(rv) and rerr is not None and rerr + spread <= -4:
            # the rounded part came out 0 (terms that cancel exactly in the truth, e.g. y·Q and
            # (1-y)·P at y = 1/2): m = E(1 + r) with |r| <= 2^rerr, and |(1+r)^γ - 1| <= 2γ|r|
            # for γ|r| <= 1/16, so the exact power keeps its exact part (else the result is all
            # rounded, and a truth that sits on a midpoint plus e^-65408 is never settled)
            ex = _exact_power(m.e, gamma)
            base = _V(ex) if ex is not None else _exp(_mul(g, _log(_V(m.e))))
            bound = _V(mpmath.mpf(0), mpmath.mpf(0), rerr + spread + 1)
            return _add(base, _mul(base, bound))
        rr = _rel(rv, rerr)
        if rv is not None and abs(rv) <= 0.5 and rr is not None and rr <= -4:
            # (1 + ratio)^γ - 1 = expm1(γ·log1p(ratio)), to a relative error that grows with
            # the conditioning of log1p (<= 2 for |ratio| <= 1/2) and of expm1 (1 + |u|)
            u = mp.log1p(rv) * g.e
            d = mp.expm1(u)
            cond = 1 + max(0, int(abs(u)) + 1).bit_length()
            rel_d = max(rr + 1 + cond, -prec + _ULPS + cond) + 2
            ex = _exact_power(m.e, gamma)
            if ex is not None:
                dd = _from_rel(d, rel_d)
                return _add(_V(ex), _mul(_V(ex), dd))
            base = _exp(_mul(g, _log(_V(m.e))))
            return _mul(base, _add(_exact(1), _from_rel(d, rel_d)))
    lm = log_m() if log_m is not None else _log(m)
    return _exp(_mul(g, lm))


# --- the pieces of a logit --------------------------------------------------------------------


class _Logit:
    """σ(z), σ(-z), softplus(±z) at an exact, finite z, as _V values."""

    def __init__(self, z: mpf) -> None:
        mpmath = _mp()
        mp = mpmath.mp
        zero = mpmath.mpf(0)
        if _is_zero(z):
            half = _exact(Fraction(1, 2))
            self.P = self.Q = half
            log2 = _approx(mp.log(2))
            self.sp_pos = self.sp_neg = log2
            return
        a = abs(z)
        e = mp.exp(-a)  # in (0, 1), within 1 ulp
        prec = mp.prec
        l_ = mp.log1p(e)  # within e·2^-prec·2 + 1 ulp
        t = e / (1 + e)  # σ(-|z|), three roundings
        lv = _V(zero, l_, _mag(l_) - prec + 3)
        tv = _V(zero, t, _mag(t) - prec + 4)
        one_minus_t = _sub(_exact(1), tv)
        pos_part = _V(z) if z > 0 else _exact(0)  # max(z, 0), exactly
        neg_part = _V(mpmath.fneg(z, exact=True)) if z < 0 else _exact(0)  # max(-z, 0)
        self.sp_pos = _add(pos_part, lv)  # softplus(z) = max(z,0) + log1p(e^-|z|)
        self.sp_neg = _add(neg_part, lv)  # softplus(-z)
        self.P, self.Q = (one_minus_t, tv) if z > 0 else (tv, one_minus_t)


# --- the members --------------------------------------------------------------------------------


def _finish(u: _V) -> tuple[mpf, int | None]:
    """The value of u with the bits of its relative error (None: its rounding is settled).

    As in oracle.reference._exact_plus_small: a rounded part far below every rounding boundary
    around a nonzero exact part (all multiples of 2^cut in formats of <= 53 bits) counts only
    by its sign."""
    mpmath = _mp()
    if u.err is None:
        return u.e, None
    if _is_zero(u.e):
        if _is_zero(u.a):
            return u.a, 0
        return u.a, _mag(u.a) - 1 - u.err
    _, man, exp, bc = u.e._mpf_
    top = int(exp) + int(bc) - 1
    cut = min(int(exp), top - 54) - 2
    a_mag = _mag(u.a) if not _is_zero(u.a) else u.err
    if max(a_mag, u.err) + 1 <= cut:
        if _is_zero(u.a) or _mag(u.a) - 1 <= u.err:
            return u.e, 0  # its sign is not known yet
        tiny = mpmath.mpf(2) ** (cut - 1)
        return mpmath.fadd(u.e, tiny if u.a > 0 else -tiny, exact=True), None
    v, err = _collapse(u)
    assert err is not None
    if _is_zero(v):
        return v, 0
    return v, _mag(v) - 1 - err


def _bce_logit(a: _V, b: _V, w: _V, x: _Logit) -> tuple[_V, _V]:
    """w·(a·sp(-z) + b·sp(z)) = w·(a·max(-z,0) + b·max(z,0) + (a+b)·log1p(e^-|z|)), and
    w·((a+b)·P - a): exact parts plus one rounded term each, (a+b) exact."""
    ab = _add(a, b)
    loss = _add(_add(_mul(a, _exact_part(x.sp_neg)), _mul(b, _exact_part(x.sp_pos))), _mul(ab, _tail(x)))
    grad = _sub(_mul(ab, x.P), a)
    return _mul(w, loss), _mul(w, grad)


def _exact_part(u: _V) -> _V:
    return _V(u.e)


def _tail(x: _Logit) -> _V:
    """log1p(e^-|z|): the rounded part of softplus(±z) (log 2 at z = 0)."""
    return _V(_mp().mpf(0), x.sp_pos.a, x.sp_pos.err)


def _bce_probability(a: _V, b: _V, w: _V, p: mpf) -> tuple[_V, _V]:
    mpmath = _mp()
    one_minus_p = mpmath.fsub(1, p, exact=True)
    ab = _add(a, b)
    loss = _mul(w, _neg(_add(_mul(a, _log(_V(p))), _mul(b, _log(_V(one_minus_p))))))
    num = _sub(_mul(ab, _V(p)), a)  # exact
    den = _V(mpmath.fmul(p, one_minus_p, exact=True))
    return loss, _mul(w, _div(num, den))


def _focal_logit(ref: Reference, y: Fraction, x: _Logit, z: mpf) -> tuple[_V, _V]:
    gamma = Fraction(ref.gamma)
    g = _exact(gamma)
    yv, omy = _exact(y), _exact(1 - y)

    def power_p() -> _V:  # P^γ, with log P = -softplus(-z)
        return _power(x.P, gamma, lambda: _neg(x.sp_neg))

    def power_q() -> _V:  # Q^γ, with log Q = -softplus(z)
        return _power(x.Q, gamma, lambda: _neg(x.sp_pos))

    if ref.form is FocalForm.TORCHVISION:
        at = _exact(ref.alpha_t(y))
        ce = _add(_mul(yv, x.sp_neg), _mul(omy, x.sp_pos))
        if y == 1:
            mg = power_q()
            inner = _neg(_add(x.Q, _mul(g, _mul(x.P, x.sp_neg))))
        elif y == 0:
            mg = power_p()
            inner = _add(x.P, _mul(g, _mul(x.Q, x.sp_pos)))
        else:
            m = _add(_mul(yv, x.Q), _mul(omy, x.P))
            mg = _power(m, gamma)
            pq_over_m = _div(_mul(x.P, x.Q), m)
            inner = _add(_sub(x.P, yv), _mul(_mul(g, _exact(1 - 2 * y)), _mul(ce, pq_over_m)))
        return _mul(at, _mul(ce, mg)), _mul(at, _mul(mg, inner))
    pos_w, neg_w = ref.focal_term_weights()
    cp, cn = _exact(pos_w * y), _exact(neg_w * (1 - y))
    qg = _exact(0) if _is_zero(cp.e) else power_q()
    pg = _exact(0) if _is_zero(cn.e) else power_p()
    loss = _add(_mul(cp, _mul(qg, x.sp_neg)), _mul(cn, _mul(pg, x.sp_pos)))
    g_pos = _mul(qg, _add(x.Q, _mul(g, _mul(x.P, x.sp_neg))))  # -d/dz[Q^γ·sp(-z)]
    g_neg = _mul(pg, _add(x.P, _mul(g, _mul(x.Q, x.sp_pos))))  # d/dz[P^γ·sp(z)]
    if _is_zero(z):  # σ(0) = 1/2: both terms share one factor, and may cancel exactly
        return loss, _mul(_sub(cn, cp), g_pos if _is_zero(cn.e) else g_neg)
    return loss, _sub(_mul(cn, g_neg), _mul(cp, g_pos))


def _focal_probability(ref: Reference, y: Fraction, p: mpf) -> tuple[_V, _V]:
    mpmath = _mp()
    gamma = Fraction(ref.gamma)
    g = _exact(gamma)
    yv, omy = _exact(y), _exact(1 - y)
    pv = _V(p)
    qv = _V(mpmath.fsub(1, p, exact=True))
    neg_log_p = _neg(_log(pv))
    neg_log_q = _neg(_log(qv))
    one = _exact(1)
    if ref.form is FocalForm.TORCHVISION:
        at = _exact(ref.alpha_t(y))
        ce = _add(_mul(yv, neg_log_p), _mul(omy, neg_log_q))
        m = _add(_mul(yv, qv), _mul(omy, pv))  # exact
        mg = _power(m, gamma)
        dce = _div(_sub(pv, yv), _mul(pv, qv))
        inner = _add(dce, _mul(_mul(g, _exact(1 - 2 * y)), _div(ce, m)))
        return _mul(at, _mul(ce, mg)), _mul(at, _mul(mg, inner))
    pos_w, neg_w = ref.focal_term_weights()
    cp, cn = _exact(pos_w * y), _exact(neg_w * (1 - y))
    qg = _exact(0) if _is_zero(cp.e) else _power(qv, gamma)
    pg = _exact(0) if _is_zero(cn.e) else _power(pv, gamma)
    loss = _add(_mul(cp, _mul(qg, neg_log_p)), _mul(cn, _mul(pg, neg_log_q)))
    g_pos = _mul(qg, _add(_div(one, pv), _mul(g, _div(neg_log_p, qv))))
    g_neg = _mul(pg, _add(_div(one, qv), _mul(g, _div(neg_log_q, pv))))
    if p == 0.5:  # both terms share one factor, and may cancel exactly
        return loss, _mul(_sub(cn, cp), g_pos if _is_zero(cn.e) else g_neg)
    return loss, _sub(_mul(cn, g_neg), _mul(cp, g_pos))


# --- limits -------------------------------------------------------------------------------------


def _infinite(sign_of: Fraction) -> float:
    """±inf with the sign of a nonzero coefficient, or 0 (the diverging term is absent)."""
    if sign_of == 0:
        return 0.0
    return math.inf if sign_of > 0 else -math.inf


def _logit_limits(ref: Reference, y: Fraction, plus: bool) -> tuple[float, Callable[[], _V] | float]:
    """(loss, grad) at z = +inf (plus) or -inf: the loss a constant, the grad a value to settle."""
    if ref.member is not Member.FOCAL or ref.gamma == 0:
        a, b, w = ref.bce_coefficients(y)
        if plus:  # L ~ w·b·z, dL/dz -> w·b
            return _infinite(w * b), lambda: _exact(w * b)
        return _infinite(w * a), lambda: _exact(-w * a)  # L ~ w·a·|z|, dL/dz -> -w·a
    gamma = Fraction(ref.gamma)
    if ref.form is FocalForm.TORCHVISION:
        at = ref.alpha_t(y)
        side = (1 - y) if plus else y  # m -> 1-y (z -> +inf) or y (z -> -inf)
        # L ~ α_t·side·|z|·side^γ; dL/dz -> ±α_t·side^(γ+1)
        loss = _infinite(at * side)

        def grad() -> _V:
            v = _mul(_exact(at), _power(_exact(side), gamma + 1))
            return v if plus else _neg(v)

        return loss, grad
    pos_w, neg_w = ref.focal_term_weights()
    if plus:  # the negative term: (1-α)(1-y)·P^γ·sp(z) ~ (1-α)(1-y)·z, slope (1-α)(1-y)
        c = neg_w * (1 - y)
        return _infinite(c), lambda: _exact(c)
    c = pos_w * y
    return _infinite(c), lambda: _exact(-c)


def _probability_limits(ref: Reference, y: Fraction, one: bool) -> tuple[float, float | Callable[[], _V]]:
    """(loss, grad) at p = 1 (one) or p = 0."""
    if ref.member is not Member.FOCAL or ref.gamma == 0:
        a, b, w = ref.bce_coefficients(y)
        if one:  # L = -w·b·log(1-p) -> w·b·inf; dL/dp = w·((a+b)p - a)/(p(1-p)) -> +inf·w·b, or -w·a
            return (_infinite(w * b), _infinite(w * b)) if w * b != 0 else (0.0, lambda: _exact(-w * a))
        return (_infinite(w * a), _infinite(-w * a)) if w * a != 0 else (0.0, lambda: _exact(w * b))
    # γ > 0: the vanishing term carries p^γ or (1-p)^γ -> 0, so its gradient vanishes too
    if ref.form is FocalForm.TORCHVISION:
        at = ref.alpha_t(y)
        c = at * ((1 - y) if one else y)  # α_t·(diverging label weight)·m^γ, m -> 1-y or y
    else:
        pos_w, neg_w = ref.focal_term_weights()
        c = neg_w * (1 - y) if one else pos_w * y
    if c != 0:
        return _infinite(c), _infinite(c if one else -c)
    return 0.0, 0.0


# --- public API ---------------------------------------------------------------------------------


def _settle(compute: Callable[[int], tuple[_Outcome, _Outcome]], formats: Sequence[FloatFormat]) -> TruthPoint:
    """Ziv's loop over both quantities; a constant (inf, NaN, an exact 0.0) needs no precision."""
    mpmath = _mp()
    saved = mpmath.mp.prec
    prec = _START_PRECISION
    try:
        while prec <= _MAX_PRECISION:
            mpmath.mp.prec = prec
            outcomes = compute(prec)
            rounded: list[tuple[float, ...] | None] = []
            for outcome in outcomes:
                if isinstance(outcome, float):
                    rounded.append((outcome,) * len(formats))
                    continue
                value, bits = outcome
                if bits is None:
                    rounded.append(tuple(_round_mpf(value, f) for f in formats))
                else:
                    rounded.append(_round_unambiguously(value, bits, formats) if bits > 0 else None)
            loss_r, grad_r = rounded
            if loss_r is not None and grad_r is not None:
                exact = [o if isinstance(o, float) else o[0] for o in outcomes]
                return TruthPoint(loss_r, grad_r, exact[0], exact[1], prec)
            prec *= 2
    finally:
        mpmath.mp.prec = saved
    raise OracleError(f"precision loop did not converge (last tried {prec // 2} bits)")


def _outcome(v: float | Callable[[], _V]) -> _Outcome:
    return v if isinstance(v, float) else _finish(v())


def family_truth(
    reference: Reference, domain: Domain, x: float, y: float, formats: Sequence[FloatFormat]
) -> TruthPoint:
    """The loss and its derivative by the input x (a logit or a probability) of a family member
    at the exact x and label y, correctly rounded into each format.

    Evaluates every member, plain BCE included, by this module's formulas; the truth table keeps
    plain BCE on ``oracle.reference`` and ``oracle.fast`` (``truth_point``)."""
    n = len(formats)
    nan = (math.nan,) * n
    if math.isnan(x) or math.isnan(y):
        return TruthPoint(nan, nan, math.nan, math.nan, 0)
    if math.isinf(y):
        return TruthPoint(nan, nan, math.nan, math.nan, 0)
    if domain is Domain.PROBABILITIES and not 0 <= x <= 1:
        return TruthPoint(nan, nan, math.nan, math.nan, 0)
    focal = reference.member is Member.FOCAL and reference.gamma != 0
    if reference.member is Member.FOCAL and not 0 <= y <= 1:
        return TruthPoint(nan, nan, math.nan, math.nan, 0)
    label = reference.smoothed_label(y)

    def compute(prec: int) -> tuple[_Outcome, _Outcome]:
        if domain is Domain.LOGITS:
            if math.isinf(x):
                loss_c, grad_f = _logit_limits(reference, label, x > 0)
                return loss_c, _outcome(grad_f)
            z = _mpf_of(x)
            piece = _Logit(z)
            if focal:
                loss, grad = _focal_logit(reference, label, piece, z)
            else:
                a, b, w = (_exact(c) for c in reference.bce_coefficients(label))
                loss, grad = _bce_logit(a, b, w, piece)
            return _finish(loss), _finish(grad)
        if x == 0 or x == 1:
            loss_p, grad_p = _probability_limits(reference, label, x == 1)
            return loss_p, _outcome(grad_p)
        p = _mpf_of(x)
        if focal:
            loss, grad = _focal_probability(reference, label, p)
        else:
            a, b, w = (_exact(c) for c in reference.bce_coefficients(label))
            loss, grad = _bce_probability(a, b, w, p)
        return _finish(loss), _finish(grad)

    return _settle(compute, formats)


__all__ = ["family_truth"]
