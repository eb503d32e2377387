"""Exact models of single aten ops: what each op would return if it computed the exact real
function of its actual (already rounded) inputs and rounded once into its output dtype.

``explain`` uses them to judge every op of a traced formulation on its own: an op whose output
is this correctly rounded value did its job, whatever happened around it. The same models,
evaluated at a high fixed precision on the *exact* values of their inputs (``ideal``), give the
value each intermediate would have had in a program where no op rounded at all: where the two
part, the value was lost.

An op is modelled as the function torch documents (``binary_cross_entropy`` clamps its logs at
-100 and its backward divides by at least 1e-12: both are part of its definition), never as a
shortcut of its implementation (``softplus`` is log1p(exp(x)) at every x, although torch returns x
itself above its threshold). Limits follow IEEE 754: log(0) = -inf,
exp(+inf) = inf, 0·inf = NaN, x/0 = ±inf. An op with no model, or with an argument the model
does not cover (a weight tensor, a reduction), is *not analysed*: ``exact_op`` returns None.
This is the only module besides ``reference`` that computes in mpmath.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from bce_audit.floats import round_to_format
from bce_audit.oracle.reference import _round_unambiguously, preserve_precision
from bce_audit.vocabulary import FloatFormat

# A value an op takes or gives: a float (a tensor's element or a Python number), a bool (a
# mask), or None (an optional argument left out).
Value = float | bool | None

# Working precision of the ideal program (bits): far above the 53 of the widest dtype, so that an
# intermediate of the ideal program is known to many more digits than any output compared with it.
IDEAL_PRECISION = 320
_START_PRECISION = 96
_MAX_PRECISION = 1 << 14
# torch's binary_cross_entropy clamps each log at this value; its backward divides by at least EPS.
BCE_LOG_CLAMP = -100.0
BCE_BACKWARD_EPS = 1e-12


class NotModelled(Exception):
    """The op, or one of its arguments, is outside the models: the op is not analysed."""


def _mp() -> Any:
    import mpmath

    return mpmath


def _num(v: Any) -> Any:
    """An argument as an mpf (exact for a float), a bool kept as a bool."""
    mpmath = _mp()
    if isinstance(v, bool):
        return v
    if v is None:
        raise NotModelled("a missing argument")
    if isinstance(v, int | float):
        return mpmath.mp.make_mpf(mpmath.libmp.from_float(float(v))) if isinstance(v, float) else mpmath.mpf(v)
    return v  # an mpf already (the ideal program)


def _isnan(x: Any) -> bool:
    return bool(_mp().isnan(x))


def _isinf(x: Any) -> bool:
    return bool(_mp().isinf(x))


def _nan() -> Any:
    return _mp().mpf("nan")


def _inf(sign: int = 1) -> Any:
    return _mp().mpf("inf") if sign > 0 else _mp().mpf("-inf")


# Exact sums and products of the arguments: on floats (an op's actual inputs) they cost at most
# a few thousand bits. The ideal program's values are not floats (1 - 2^-(10^38) is one of them),
# so there the same operations round at IDEAL_PRECISION instead.
_ARITHMETIC = {"exact": True}


def _exact_add(a: Any, b: Any) -> Any:
    return _mp().fadd(a, b, exact=_ARITHMETIC["exact"])


def _exact_mul(a: Any, b: Any) -> Any:
    return _mp().fmul(a, b, exact=_ARITHMETIC["exact"])


def _exact_sub(a: Any, b: Any) -> Any:
    return _mp().fsub(a, b, exact=_ARITHMETIC["exact"])


def _div(a: Any, b: Any) -> Any:
    mpmath = _mp()
    if _isnan(a) or _isnan(b):
        return _nan()
    if b == 0:
        if a == 0:
            return _nan()
        return _inf(1 if a > 0 else -1)  # the sign of a zero is not tracked: +0
    return mpmath.mpf(a) / b


def _exp(x: Any) -> Any:
    return _mp().exp(x)


def _log(x: Any) -> Any:
    if _isnan(x) or x < 0:
        return _nan()
    return _mp().log(x)


def _log1p(x: Any) -> Any:
    if _isnan(x) or x < -1:
        return _nan()
    if x == -1:
        return _inf(-1)
    return _mp().log1p(x)


def _expm1(x: Any) -> Any:
    return _mp().expm1(x)


def _sigmoid(x: Any) -> Any:
    if _isnan(x):
        return _nan()
    if _isinf(x):
        return _mp().mpf(1 if x > 0 else 0)
    return 1 / (1 + _exp(-x))


def _log_sigmoid(x: Any) -> Any:
    """-log1p(exp(-x)) for x > 0, x - log1p(exp(x)) for x <= 0: no cancellation either way."""
    if _isnan(x):
        return _nan()
    if _isinf(x):
        return _mp().mpf(0) if x > 0 else _inf(-1)
    if x > 0:
        return -_mp().log1p(_exp(-x))
    return x - _mp().log1p(_exp(x))


def _softplus(x: Any) -> Any:
    return -_log_sigmoid(-x)


def _where(c: Any, a: Any, b: Any) -> Any:
    if not isinstance(c, bool):
        c = bool(c != 0)
    return a if c else b


def _clamp(x: Any, lo: Any | None, hi: Any | None) -> Any:
    if _isnan(x):
        return x
    if lo is not None and not isinstance(lo, bool):
        if _isnan(lo):
            return lo
        x = lo if x < lo else x
    if hi is not None and not isinstance(hi, bool):
        if _isnan(hi):
            return hi
        x = hi if x > hi else x
    return x


def _pow(x: Any, e: Any) -> Any:
    mpmath = _mp()
    if _isnan(x) or _isnan(e):
        return mpmath.mpf(1) if e == 0 else _nan()
    if e == 0:
        return mpmath.mpf(1)
    if x == 0:
        return mpmath.mpf(0) if e > 0 else _inf(1)  # pow(0, negative) = inf (an odd integer: ±inf)
    if x < 0 and e != mpmath.floor(e):
        return _nan()
    return mpmath.power(x, e)


def _compare(name: str) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if _isnan(a) or _isnan(b):
            return name == "ne"
        return bool({"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b, "eq": a == b, "ne": a != b}[name])

    return compare


def _no_weight(*rest: Any) -> None:
    """binary_cross_entropy's optional weight (and pos_weight) and reduction: only none and 0."""
    *weights, reduction = rest if rest else (0,)
    if any(w is not None for w in weights) or (reduction not in (0, None) and reduction != 0):
        raise NotModelled("a weight or a reduction")


def _bce(p: Any, y: Any, *rest: Any) -> Any:
    _no_weight(*rest)
    mpmath = _mp()
    if _isnan(p) or _isnan(y):
        return _nan()
    clamp = mpmath.mpf(BCE_LOG_CLAMP)
    log_p = max(_log(p), clamp) if p >= 0 else _nan()
    log_q = max(_log(_exact_sub(1, p)), clamp) if p <= 1 else _nan()
    return -(y * log_p + _exact_sub(1, y) * log_q)


def _bce_backward(g: Any, p: Any, y: Any, *rest: Any) -> Any:
    _no_weight(*rest)
    mpmath = _mp()
    den = _exact_mul(_exact_sub(1, p), p)
    den = max(den, mpmath.mpf(BCE_BACKWARD_EPS))
    return _exact_mul(g, _exact_sub(p, y)) / den


def _bce_with_logits(z: Any, y: Any, *rest: Any) -> Any:
    """(1-y)·z - log_sigmoid(z) = max(z,0) - y·z + log1p(exp(-|z|)): an exact part and a
    positive term (the arrangement of the oracle's reference)."""
    _no_weight(*rest)
    mpmath = _mp()
    if _isnan(z) or _isnan(y):
        return _nan()
    if _isinf(z):
        diverging = _exact_sub(1, y) if z > 0 else y
        return _inf(1) if diverging != 0 else mpmath.mpf(0)
    exact = _exact_sub(max(z, 0), _exact_mul(y, z))
    return exact + mpmath.log1p(_exp(-abs(z)))


def _logit(p: Any, eps: Any = None) -> Any:
    if eps is not None:
        p = _clamp(p, eps, _exact_sub(1, eps))
    if _isnan(p) or p < 0 or p > 1:
        return _nan()
    return _log(p) - _log(_exact_sub(1, p)) if 0 < p < 1 else _inf(1 if p == 1 else -1)


def _logit_backward(g: Any, p: Any, eps: Any = None) -> Any:
    if eps is not None:
        lo, hi = eps, _exact_sub(1, eps)
        if p < lo or p > hi:
            return _mp().mpf(0)
    if _isnan(p) or p < 0 or p > 1:
        return _nan()
    return _div(g, _exact_mul(p, _exact_sub(1, p)))


def _softplus_op(x: Any, beta: Any = 1, threshold: Any = 20) -> Any:
    """log1p(exp(beta·x)) / beta: the threshold above which torch returns x itself is a shortcut
    of the implementation (its documentation says so), not part of the function."""
    return _softplus(_exact_mul(x, beta)) / beta


def _softplus_backward(g: Any, x: Any, beta: Any = 1, threshold: Any = 20) -> Any:
    return g * _sigmoid(_exact_mul(x, beta))


def _threshold_backward(g: Any, x: Any, threshold: Any) -> Any:
    return _mp().mpf(0) if x <= threshold else g


def _sign(x: Any) -> Any:
    mpmath = _mp()
    if _isnan(x):
        return _nan()
    return mpmath.mpf((x > 0) - (x < 0))


def _rsub(a: Any, b: Any, alpha: Any = 1) -> Any:
    return _exact_sub(b, _exact_mul(alpha, a))


def _add(a: Any, b: Any, alpha: Any = 1) -> Any:
    return _exact_add(a, _exact_mul(alpha, b))


def _sub(a: Any, b: Any, alpha: Any = 1) -> Any:
    return _exact_sub(a, _exact_mul(alpha, b))


def _identity(x: Any, *_: Any) -> Any:
    return x


def _constant(value: float) -> Callable[..., Any]:
    def constant(*_: Any) -> Any:
        return _mp().mpf(value)

    return constant


@dataclasses.dataclass(frozen=True)
class OpModel:
    """The exact real function of one aten op (its overload packet: ``sigmoid``, ``mul``, ...).

    function: the function of the op's arguments (mpf values, bools for masks, None for an
        optional argument left out); extra arguments (a dtype, a layout) are not passed.
    arity: how many leading arguments the function takes.
    exact: the function uses exact arithmetic only (additions, products, comparisons, choices):
        its value is exact at any precision and is rounded once, directly. Otherwise the value
        is evaluated at growing precision until its rounding is settled (Ziv's strategy).
    boolean: the op gives a mask.
    """

    function: Callable[..., Any]
    arity: int
    exact: bool = False
    boolean: bool = False


def _m(function: Callable[..., Any], arity: int, exact: bool = False, boolean: bool = False) -> OpModel:
    return OpModel(function, arity, exact, boolean)


MODELS: dict[str, OpModel] = {
    # elementary functions
    "log": _m(_log, 1),
    "log1p": _m(_log1p, 1),
    "exp": _m(_exp, 1),
    "expm1": _m(_expm1, 1),
    "sigmoid": _m(_sigmoid, 1),
    "log_sigmoid_forward": _m(_log_sigmoid, 1),
    "log_sigmoid": _m(_log_sigmoid, 1),
    "softplus": _m(_softplus_op, 3),
    "logit": _m(_logit, 2),
    "pow": _m(_pow, 2),
    "binary_cross_entropy": _m(_bce, 4),
    "binary_cross_entropy_with_logits": _m(_bce_with_logits, 5),
    # arithmetic: exact before the one rounding
    "neg": _m(lambda x: -x, 1, exact=True),
    "abs": _m(lambda x: abs(x), 1, exact=True),
    "sgn": _m(_sign, 1, exact=True),
    "sign": _m(_sign, 1, exact=True),
    "add": _m(_add, 3, exact=True),
    "sub": _m(_sub, 3, exact=True),
    "rsub": _m(_rsub, 3, exact=True),
    "mul": _m(lambda a, b: _exact_mul(a, b), 2, exact=True),
    "div": _m(_div, 2),
    "reciprocal": _m(lambda x: _div(_mp().mpf(1), x), 1),
    "clamp": _m(_clamp, 3, exact=True),
    "clamp_min": _m(lambda x, lo: _clamp(x, lo, None), 2, exact=True),
    "clamp_max": _m(lambda x, hi: _clamp(x, None, hi), 2, exact=True),
    "maximum": _m(lambda a, b: _nan() if _isnan(a) or _isnan(b) else max(a, b), 2, exact=True),
    "minimum": _m(lambda a, b: _nan() if _isnan(a) or _isnan(b) else min(a, b), 2, exact=True),
    "relu": _m(lambda x: _clamp(x, _mp().mpf(0), None), 1, exact=True),
    "where": _m(_where, 3, exact=True),
    # masks
    **{name: _m(_compare(name), 2, exact=True, boolean=True) for name in ("gt", "ge", "lt", "le", "eq", "ne")},
    "logical_and": _m(lambda a, b: bool(a) and bool(b), 2, exact=True, boolean=True),
    "logical_and_": _m(lambda a, b: bool(a) and bool(b), 2, exact=True, boolean=True),
    "logical_or": _m(lambda a, b: bool(a) or bool(b), 2, exact=True, boolean=True),
    "logical_not": _m(lambda a: not bool(a), 1, exact=True, boolean=True),
    # backward ops
    "sigmoid_backward": _m(lambda g, out: _exact_mul(_exact_mul(g, out), _exact_sub(1, out)), 2, exact=True),
    "log_sigmoid_backward": _m(lambda g, x, _buffer: g * _sigmoid(-x), 3),
    "binary_cross_entropy_backward": _m(_bce_backward, 5),
    "logit_backward": _m(_logit_backward, 3),
    "softplus_backward": _m(_softplus_backward, 4),
    "threshold_backward": _m(_threshold_backward, 3, exact=True),
    # copies and constants
    **{
        name: _m(_identity, 1, exact=True)
        for name in ("detach", "alias", "clone", "view", "expand", "_to_copy", "contiguous", "lift_fresh")
    },
    "ones_like": _m(_constant(1.0), 1, exact=True),
    "zeros_like": _m(_constant(0.0), 1, exact=True),
    "full_like": _m(lambda _x, v: v, 2, exact=True),
    "scalar_tensor": _m(_identity, 1, exact=True),
}


def modelled(op: str) -> bool:
    """Whether an op (its overload packet's name) has an exact model."""
    return op in MODELS


def _call(model: OpModel, args: Sequence[Any]) -> Any:
    if len(args) < 1:
        raise NotModelled("no argument")
    taken = list(args[: model.arity])
    # a missing trailing optional argument takes the function's default
    values = [None if a is None else _num(a) for a in taken]
    try:
        return model.function(*values)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise NotModelled(str(exc)) from None


def _to_float(v: Any, fmt: FloatFormat) -> float:
    """An exact (or settled) value rounded once into ``fmt``."""
    if isinstance(v, bool):
        return float(v)
    v = _mp().mpf(v)
    if _isnan(v):
        return math.nan
    if _isinf(v):
        return math.inf if v > 0 else -math.inf
    sign, man, exp, _ = v._mpf_
    return round_to_format(sign, int(man), exp, fmt)


@dataclasses.dataclass(frozen=True)
class ExactResult:
    """An op's exact result on its actual inputs.

    rounded: rounded once into the op's output format (a mask: 1.0 or 0.0).
    shown: the same exact value rounded to float64, to show what was rounded away.
    exact: the exact value is ``rounded`` itself (nothing was rounded away; limits such as
        log(0) = -inf included).
    """

    rounded: float
    shown: float
    exact: bool


def exact_op(op: str, args: Sequence[Value], fmt: FloatFormat) -> ExactResult | None:
    """The exact result of ``op`` on ``args`` (floats of the op's actual inputs, bools, None),
    correctly rounded into ``fmt``; None when the op is not analysed."""
    from bce_audit.vocabulary import FLOAT64

    model = MODELS.get(op)
    if model is None:
        return None
    mpmath = _mp()
    with preserve_precision():
        try:
            if model.exact:
                mpmath.mp.prec = 64  # the value is exact whatever the precision: the ops are exact
                v = _call(model, args)
                if isinstance(v, bool):
                    return ExactResult(float(v), float(v), True)
                rounded = _to_float(v, fmt)
                same = _isnan(v) or (_isinf(v) and rounded == v) or (math.isfinite(rounded) and v == rounded)
                return ExactResult(rounded, _to_float(v, FLOAT64), bool(same))
            prec = _START_PRECISION
            while prec <= _MAX_PRECISION:
                mpmath.mp.prec = prec
                low = _call(model, args)
                mpmath.mp.prec = 2 * prec
                high = _call(model, args)
                if _isnan(high) or _isinf(high):
                    if (_isnan(low) and _isnan(high)) or low == high:
                        return ExactResult(_to_float(high, fmt), _to_float(high, FLOAT64), True)
                elif high == 0 and low == 0:
                    return ExactResult(0.0, 0.0, True)
                elif not (_isnan(low) or _isinf(low)) and high != 0:
                    # the error of ``high`` is far below its distance to ``low`` plus prec's own ulps
                    diff = abs(high - low)
                    bits = prec - 8 if diff == 0 else int(-mpmath.log(diff / abs(high), 2)) - 2
                    bits = min(bits, prec - 8)
                    if bits > 0:
                        if diff == 0 and math.isfinite(_to_float(high, fmt)) and high == _to_float(high, fmt):
                            # a value of the format at two precisions (log(1), exp(0), 1/2): exact
                            return ExactResult(_to_float(high, fmt), _to_float(high, FLOAT64), True)
                        settled = _round_unambiguously(high, bits, (fmt, FLOAT64))
                        if settled is not None:
                            return ExactResult(settled[0], settled[1], False)
                prec *= 2
        except (NotModelled, OverflowError, MemoryError):  # beyond the models: not analysed, never guessed
            return None
    return None  # not settled: never guessed


def ideal_op(op: str, args: Sequence[Any]) -> Any | None:
    """The op's exact function at IDEAL_PRECISION on ideal arguments (mpf values of an exact
    program, floats, bools, None); None when the op is not analysed. The value is kept unrounded
    (an mpf, or a bool) for the ops downstream."""
    model = MODELS.get(op)
    if model is None:
        return None
    mpmath = _mp()
    with preserve_precision():
        mpmath.mp.prec = IDEAL_PRECISION
        _ARITHMETIC["exact"] = False
        try:
            return _call(model, args)
        except (NotModelled, OverflowError, MemoryError):
            return None
        finally:
            _ARITHMETIC["exact"] = True


def ideal_value(value: float | bool) -> Any:
    """A float or a mask as the ideal program holds it (an exact mpf, or the bool)."""
    return value if isinstance(value, bool) else _num(float(value))


def ideal_rounded(ideal: Any, fmt: FloatFormat) -> float:
    """An ideal value rounded once into ``fmt`` (a mask: 1.0 or 0.0)."""
    return _to_float(ideal, fmt)


def ideal_is(ideal: Any, value: float | bool) -> bool:
    """Whether an actual value is exactly the ideal value (NaN is NaN)."""
    if isinstance(ideal, bool) or isinstance(value, bool):
        return bool(ideal) == bool(value) and isinstance(ideal, bool) == isinstance(value, bool)
    if _isnan(ideal):
        return math.isnan(value)
    return not math.isnan(value) and bool(ideal == _num(float(value)))
