"""The exact oracle: BCE loss and gradient from mpmath, rounded once into each dtype.

This is the only module that imports mpmath. For every point the exact binary value of the
input and of the label (both already rounded to the dtype under test) is evaluated at a working
precision that grows until the result rounds to one number in every requested format (Ziv's
strategy). The rounding goes straight from the high-precision value to the target format,
subnormals and overflow included: never through float64 first.

Formulas are arranged so that only genuine cancellation is left to the precision loop:

* logits:  loss = (max(z,0) - y·z) + log1p(exp(-|z|))   (an exact dyadic plus a positive term)
           grad = (1-y) - sigmoid(-|z|) for z > 0, sigmoid(-|z|) - y for z < 0
                  (an exact dyadic and a term of known sign; cancels only where sigmoid(z) ≈ y)
* probabilities: loss = -(y·log(p) + (1-y)·log(1-p)) with 1-p exact (both terms ≥ 0)
                 grad = (p-y) / (p·(1-p)) with numerator and denominator exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from bce_audit.errors import OracleError
from bce_audit.floats import round_to_format
from bce_audit.vocabulary import FloatFormat

if TYPE_CHECKING:  # pragma: no cover
    from mpmath import mpf  # untyped: Any to the type checker

    # what a formula gives at one working precision: (loss, grad, loss error bits, grad error
    # bits), error bits None when the value is exact or its rounding provably settled
    _Values: TypeAlias = tuple[mpf, mpf, int | None, int | None]

# Working precision to start from, above the widest target (53 bits), and the bits the error
# bound of a composed expression is allowed to eat (mpmath's elementary functions are accurate
# to about one ulp of the working precision; a handful of them are composed).
_START_PRECISION = 96
_GUARD_BITS = 6
# A point that needs more than this is a bug (every value here is either exact, handled
# explicitly, or transcendental and therefore never on a rounding boundary).
_MAX_PRECISION = 1 << 16


def _round_mpf(v: mpf, fmt: FloatFormat) -> float:
    sign, man, exp, _ = v._mpf_
    return round_to_format(sign, int(man), exp, fmt)


def _round_unambiguously(v: mpf, rel_error_bits: int, formats: Sequence[FloatFormat]) -> tuple[float, ...] | None:
    """Rounded values of v in each format if every v·(1±2^-k) rounds the same; else None."""
    sign, man, exp, _ = v._mpf_
    man = int(man)
    if man == 0:
        return None  # cancellation ate everything: more precision needed
    # delta = 2^d >= |v|·2^-k
    d = exp + man.bit_length() - rel_error_bits
    if d < exp:
        man <<= exp - d
        exp = d
        step = 1
    else:
        step = 1 << (d - exp)
    out: list[float] = []
    for fmt in formats:
        r = round_to_format(sign, man, exp, fmt)
        if round_to_format(sign, man - step, exp, fmt) != r or round_to_format(sign, man + step, exp, fmt) != r:
            return None
        out.append(r)
    return tuple(out)


@contextlib.contextmanager
def preserve_precision() -> Iterator[None]:
    """Restore mpmath's global working precision afterwards (the Ziv loop changes it)."""
    mpmath = _mp()
    saved = mpmath.mp.prec
    try:
        yield
    finally:
        mpmath.mp.prec = saved


def _mp() -> Any:  # the mpmath module (untyped)
    import mpmath

    return mpmath


def _exact(x: float) -> mpf:
    """The exact mpf of a float, whatever mpmath's ambient precision is (mpf(x) rounds to it)."""
    mpmath = _mp()
    return mpmath.mp.make_mpf(mpmath.libmp.from_float(x))


# --- the formulas at a given working precision ------------------------------------------------


def _exact_plus_small(exact: mpf, small: mpf, sign: int, bits: int) -> tuple[mpf, int | None]:
    """exact + sign·small, where ``exact`` is an exact dyadic and ``small`` > 0 is known to a
    relative 2^-bits. Returns (value, error bits), error bits None when the rounding of the
    value is provably that of the exact sum.

    When ``small`` is far below every rounding boundary of the target formats around ``exact``
    (all of them are multiples of 2^min(lsb(exact), top(exact) - 54)), only its sign matters: it
    is replaced by a power of two below that scale, which rounds identically in every format of
    at most 53 bits. Without this, an exact value on a midpoint plus e^-100000 would need
    150,000 bits to settle.
    """
    mpmath = _mp()
    if exact == 0:
        return (small if sign > 0 else -small), bits
    _, man, exp, bc = exact._mpf_
    top = exp + bc - 1
    cut = min(exp, top - 54) - 2
    _, sman, sexp, sbc = small._mpf_
    if sexp + sbc <= cut:  # small < 2^cut
        tiny = mpmath.mpf(2) ** (cut - 1)
        return mpmath.fadd(exact, tiny if sign > 0 else -tiny, exact=True), None
    value = mpmath.fadd(exact, small if sign > 0 else -small, exact=True)
    if value == 0:
        return value, 0
    # absolute error <= small·2^-bits, so relative error <= 2^-(bits - log2(small/|value|))
    _, vman, vexp, vbc = value._mpf_
    loss_of_bits = max(0, (sexp + sbc) - (vexp + vbc) + 1)
    return value, bits - loss_of_bits


def _logit_values(z: mpf, y: mpf, one_minus_y: mpf, prec: int) -> _Values:
    """(loss, grad, loss error bits, grad error bits) at working precision prec; z ≠ 0, finite.

    Both are written as an exact dyadic plus a transcendental term of known sign:
      loss = (max(z,0) - y·z) + log1p(exp(-|z|))
      grad = (1-y) - sigmoid(-|z|)  for z > 0,   -y + sigmoid(-|z|)  for z < 0.
    """
    mpmath = _mp()
    mp = mpmath.mp
    mp.prec = prec
    a = abs(z)
    e = mp.exp(-a)  # in (0, 1)
    log_term = mp.log1p(e)
    t = e / (1 + e)  # sigmoid(-|z|)
    bits = prec - _GUARD_BITS
    if z > 0:
        exact_loss = mpmath.fmul(one_minus_y, z, exact=True)
        grad = _exact_plus_small(one_minus_y, t, -1, bits)
    else:
        exact_loss = mpmath.fmul(y, a, exact=True)
        grad = _exact_plus_small(-y, t, +1, bits)
    loss = _exact_plus_small(exact_loss, log_term, +1, bits)
    return loss[0], grad[0], loss[1], grad[1]


def _exact_logit_grad_at_zero(y: mpf) -> mpf:
    # sigmoid(0) = 1/2 exactly, so dL/dz = 1/2 - y is an exact dyadic.
    return _mp().fsub(0.5, y, exact=True)


def _prob_loss(p: mpf, y: mpf, one_minus_p: mpf, one_minus_y: mpf, prec: int) -> mpf:
    mp = _mp().mp
    mp.prec = prec
    loss = 0
    if y != 0:
        loss -= y * mp.log(p)
    if one_minus_y != 0:
        loss -= one_minus_y * mp.log(one_minus_p)
    return mp.mpf(loss)


def _prob_grad_exact_parts(p: mpf, y: mpf, one_minus_p: mpf) -> tuple[mpf, mpf]:
    mpmath = _mp()
    num = mpmath.fsub(p, y, exact=True)
    den = mpmath.fmul(p, one_minus_p, exact=True)
    return num, den


def _dyadic_quotient(num: mpf, den: mpf) -> mpf | None:
    """num/den exactly if it is a dyadic rational, else None (then it is never a tie)."""
    mpmath = _mp()
    ns, nm, ne, _ = num._mpf_
    ds, dm, de, _ = den._mpf_
    nm, dm = int(nm), int(dm)
    if nm == 0:
        return mpmath.mpf(0)
    if nm % dm:
        return None
    sign = -1 if ns ^ ds else 1
    return mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(sign * (nm // dm), ne - de))


# --- public API --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TruthPoint:
    """The truth at one (input, label), rounded into each requested format.

    loss / grad: tuple of floats, one per requested format, in the order asked.
    loss_exact / grad_exact: the high-precision value (mpf), or a float for limits and NaN;
        kept for tests and the cross-check against an independent evaluation.
    precision: the working precision that settled the rounding (bits).
    """

    loss: tuple[float, ...]
    grad: tuple[float, ...]
    loss_exact: object
    grad_exact: object
    precision: int


def _const(value: float, n: int) -> tuple[float, ...]:
    return (value,) * n


def _settle(compute: Callable[[int], _Values], formats: Sequence[FloatFormat]) -> TruthPoint:
    """Ziv's loop: raise the precision until both quantities round unambiguously."""
    prec = _START_PRECISION
    while prec <= _MAX_PRECISION:
        loss, grad, loss_bits, grad_bits = compute(prec)
        rl: tuple[float, ...] | None
        rg: tuple[float, ...] | None
        if loss_bits is None:
            rl = tuple(_round_mpf(loss, f) for f in formats)
        else:
            rl = _round_unambiguously(loss, loss_bits, formats) if loss_bits > 0 else None
        if grad_bits is None:
            rg = tuple(_round_mpf(grad, f) for f in formats)
        else:
            rg = _round_unambiguously(grad, grad_bits, formats) if grad_bits > 0 else None
        if rl is not None and rg is not None:
            return TruthPoint(rl, rg, loss, grad, prec)
        prec *= 2
    raise OracleError(f"precision loop did not converge (last tried {prec // 2} bits)")


def logit_truth(z: float, y: float, formats: Sequence[FloatFormat]) -> TruthPoint:
    """Loss and dL/dz at the exact logit z and exact label y."""
    n = len(formats)
    mpmath = _mp()
    if math.isnan(z) or math.isnan(y):
        return TruthPoint(_const(math.nan, n), _const(math.nan, n), math.nan, math.nan, 0)
    if math.isinf(z):
        # loss -> +inf unless the label makes the diverging term vanish; grad -> 1-y or -y.
        diverging = (1 - y) if z > 0 else y  # exact in float64 for labels in a dtype
        loss = math.inf if diverging != 0 else 0.0
        grad_exact = mpmath.fsub(1, y, exact=True) if z > 0 else _exact(-y)
        grad = tuple(_round_mpf(grad_exact, f) for f in formats)
        return TruthPoint(_const(loss, n), grad, loss, grad_exact, 0)
    zz = _exact(z)
    yy = _exact(y)
    omy = mpmath.fsub(1, yy, exact=True)
    if z == 0:
        grad = _exact_logit_grad_at_zero(yy)

        def compute_at_zero(prec: int) -> _Values:
            mp = mpmath.mp
            mp.prec = prec
            return mp.log(2), grad, prec - _GUARD_BITS, None

        return _settle(compute_at_zero, formats)

    def compute(prec: int) -> _Values:
        return _logit_values(zz, yy, omy, prec)

    return _settle(compute, formats)


def probability_truth(p: float, y: float, formats: Sequence[FloatFormat]) -> TruthPoint:
    """Loss and dL/dp at the exact probability p in [0, 1] and exact label y."""
    n = len(formats)
    mpmath = _mp()
    if math.isnan(p) or math.isnan(y) or not 0 <= p <= 1:
        return TruthPoint(_const(math.nan, n), _const(math.nan, n), math.nan, math.nan, 0)
    yy = _exact(y)
    omy = mpmath.fsub(1, yy, exact=True)
    if p == 0:
        # log p diverges unless y = 0; then L = -log1p(-p) and dL/dp = 1/(1-p) -> 1.
        if y == 0:
            return TruthPoint(_const(0.0, n), _const(1.0, n), mpmath.mpf(0), mpmath.mpf(1), 0)
        return TruthPoint(_const(math.inf, n), _const(-math.inf, n), math.inf, -math.inf, 0)
    if p == 1:
        # log(1-p) diverges unless y = 1; then L = -log p and dL/dp = -1/p -> -1.
        if y == 1:
            return TruthPoint(_const(0.0, n), _const(-1.0, n), mpmath.mpf(0), mpmath.mpf(-1), 0)
        return TruthPoint(_const(math.inf, n), _const(math.inf, n), math.inf, math.inf, 0)
    pp = _exact(p)
    omp = mpmath.fsub(1, pp, exact=True)
    num, den = _prob_grad_exact_parts(pp, yy, omp)
    exact_grad = _dyadic_quotient(num, den)

    def compute(prec: int) -> _Values:
        loss = _prob_loss(pp, yy, omp, omy, prec)
        if exact_grad is not None:
            return loss, exact_grad, prec - _GUARD_BITS, None
        mpmath.mp.prec = prec
        # one correctly rounded division of exact operands: within 1 ulp of prec
        return loss, num / den, prec - _GUARD_BITS, prec - 2

    return _settle(compute, formats)
