"""The truth in the narrow formats for millions of points: float64 arithmetic in numpy, a proven
error bound, and every point whose rounding that bound cannot settle sent to the exact path.

Inputs and labels must be values of float32 (so of float16 and bfloat16 too); the results are the
loss and the gradient correctly rounded into float16, bfloat16 and float32 (``NARROW``), never
float64. A point is *settled* when every value within the error bound of the float64 estimate
rounds to the same number of the format (no midpoint of the format within the bound, the sign
of a zero included); ``truth`` sends the rest to ``oracle.table.evaluate_points`` (the fast path
and the reference), so its result is the reference's, bit for bit.

Error model. u = 2^-53 is float64's unit roundoff: +, -, ·, / of float64 values are correctly
rounded, fl(x) = x(1 + δ), |δ| <= u, and also |fl(x) - x| <= 2u|fl(x)| (generous, for bounds
stated on computed values). numpy's float64 ``exp``, ``log`` and ``log1p`` are not correctly
rounded: we assume each is within a relative A = 2^-50 of the exact value (8 ULPs; library
implementations claim 1 to 4), for arguments where the result is normal. That assumption is
the only one, and ``tests/oracle/test_vectorized.py`` checks the results bit for bit against the
reference on random and adversarial points of every binade.

Logits (z ≠ ±inf, a = |z|, e = exp(-a), t = σ(-a) = e/(1+e), L = log1p(e); as in the reference):
  loss = P + L with P = (1-y)·z for z > 0 and y·a for z <= 0 (an exact part >= 0 plus L > 0);
  grad = X - t for z > 0 with X = 1-y, and t - y for z <= 0 (z = ±0: 1/2 - y both ways).

* 1-y: s = fl(1-y) and its exact error r = (1 - s) - y (Fast2Sum, exact as 1 >= y), X = s + r.
* ê = e(1+ε1), |ε1| <= A, for a <= 700 (e >= 2^-1010, normal).
* L̂ = fl_log1p(ê) = log1p(ê)(1+ε2); |log1p(ê) - log1p(e)| <= |ê - e|/(1 + min(e, ê)) and
  log1p(e) >= e/(1+e), so log1p(ê) = L(1+ε'), |ε'| <= A(1+A)(1+e)/(1+e(1-A)) <= 1.01A; hence
  |L̂ - L| <= 2.02A·L̂.
* t̂ = fl(ê / fl(1+ê)): the map x -> x/(1+x) has relative condition 1/(1+x) <= 1, so
  |t̂ - t| <= (1.02A + 2.02u)·t̂ (two roundings, second-order terms inside the 0.02).
* P̂ = fl(s·a) (or fl(y·a)) with its exact error (Dekker's product: a has 24 bits), so
  |P̂ - P| <= |product error| + |r|·a; when that is 0, P is known exactly.
* loss: v̂ = fl(P̂ + L̂), a sum of terms >= 0: B_loss = 2u·v̂ + |P̂ - P| bound + 2.02A·L̂.
* grad: ĝ = fl(s - t̂) (or fl(t̂ - y)): B_grad = 2u|ĝ| + |r| + (1.02A + 2.02u)·t̂.
* One-sided limits: the truth is strictly above P when P is exact (L > 0), strictly below X for
  z > 0 when r = 0, strictly above -y for z <= 0 (t > 0). These settle the points where P or X
  is a midpoint of the format and the transcendental term, far below the bound, breaks the tie
  (e.g. y = 1/4: 3z/4 is often a float32 midpoint, and the loss for large z lies just above it).
* a > 700: e < 2^-1009 is replaced by a stand-in 2^-900 with no error term. Sound: P and X are
  multiples of 2^-298 (products and differences of float32 values) and every midpoint of a
  narrow format a multiple of 2^-150, so no midpoint lies strictly between P + L and P + L' for
  any L, L' in (0, 2^-899): both round alike. When P or X is itself a midpoint, the estimate
  equals it and is flagged (below), so the exact path decides.

Probabilities (0 < p < 1; p = 0, 1 go to the exact path, whose limits are exact):
  loss = y·(-log p) + (1-y)·(-log1p(-p)), two terms >= 0 with relative A each;
  B_loss = 2u·v̂ + (1.02A + 4.04u)·(T̂1 + T̂2) + |r|·ℓ̂2·1.01, T̂1 = fl(y·ℓ̂1), T̂2 = fl(s·ℓ̂2).
  grad = (p-y)/(p(1-p)): p-y is fl(p-y) plus its exact TwoSum error (relative <= u), 1-p
  likewise (Fast2Sum), so the quotient of float64 operations is within 5u: B_grad = 6u|ĝ|.

Rounding. Each bound B is widened to B' = 2B + 4u|v̂| + 2^-1070 (the rounding of B itself and
of v̂ ± B', and B's own underflow; B = 0 only for an exact zero gradient, p = y, kept as it is).
The ends lo = fl(v̂ - B'), hi = fl(v̂ + B'), clipped to the float64 successor of a floor and the
predecessor of a ceiling (no midpoint of a narrow format, itself a float64 value, lies between a
limit and its neighbour), are rounded into the format with
``floats.round_array_flagging_midpoints``. The point is settled in that format when both ends
round to the same bit pattern and neither end is a midpoint: rounding is monotone, so every value
in [lo, hi] (the truth among them) rounds to it. A bound that reaches across 0 gives ends of
different signs, never settled.
"""

from __future__ import annotations

import numpy as np

from bce_audit.floats import round_array_flagging_midpoints
from bce_audit.vocabulary import FLOAT64, Domain, DType, FloatFormat, Quantity

# The formats this path rounds into (float64 is never settled here).
NARROW: tuple[FloatFormat, ...] = (DType.FLOAT16.format, DType.BFLOAT16.format, DType.FLOAT32.format)
U = 2.0**-53
# The assumed relative error of numpy's float64 exp, log and log1p (see the module docstring).
LIBM_ERROR = 2.0**-50
# Beyond this |z|, exp(-|z|) is replaced by a stand-in (see the module docstring).
_FAR = 700.0
_STAND_IN = 2.0**-900


def _fast_two_sum_one_minus(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s, r): s = fl(1 - y), r the exact error, 1 - y = s + r (Fast2Sum: |1| >= |y|)."""
    s = 1.0 - y
    r = (1.0 - s) - y
    return s, r


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, e): p = fl(a·b) and its exact error, a·b = p + e (Dekker; a has at most 26
    significant bits, as a float32 value does, so only b is split)."""
    p = a * b
    c = b * 134217729.0  # 2^27 + 1: Veltkamp's split of b into 26 + 27 bits
    b_hi = c - (c - b)
    b_lo = b - b_hi
    e = (a * b_hi - p) + a * b_lo
    return p, e


# The estimate of one quantity: (value, bound, exclusive floor, exclusive ceiling): the truth
# lies within the bound of the value and strictly between floor and ceiling (±inf: no limit).
Estimate = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def logit_estimates(z: np.ndarray, y: np.ndarray) -> tuple[Estimate, Estimate]:
    """The loss's and the gradient's estimates for finite z; see the module docstring."""
    inf = np.full(z.shape, np.inf)
    with np.errstate(all="ignore"):
        a = np.abs(z)
        far = a > _FAR
        e = np.where(far, _STAND_IN, np.exp(-np.where(far, 0.0, a)))
        libm = np.where(far, 0.0, 1.0)  # the stand-in carries no libm error
        log_term = np.log1p(e)
        t = e / (1.0 + e)
        s, r = _fast_two_sum_one_minus(y)
        positive = z > 0
        product, product_error = _two_product(a, np.where(positive, s, y))
        part_error = np.abs(product_error) + np.where(positive, np.abs(r) * a, 0.0)
        loss = product + log_term
        loss_bound = 2 * U * loss + part_error + 2.02 * LIBM_ERROR * libm * log_term
        # an exact part known exactly: the truth is above it (log1p(e) > 0)
        loss_floor = np.where(part_error == 0, product, -inf)
        grad = np.where(positive, s - t, t - y)
        grad_bound = (
            2 * U * np.abs(grad) + np.where(positive, np.abs(r), 0.0) + (1.02 * LIBM_ERROR * libm + 2.02 * U) * t
        )
        # X - t < X = 1 - y for z > 0 (when s is exactly 1 - y), t - y > -y for z <= 0
        grad_floor = np.where(positive, -inf, -y)
        grad_ceiling = np.where(positive & (r == 0), s, inf)
    return (loss, loss_bound, loss_floor, inf), (grad, grad_bound, grad_floor, grad_ceiling)


def probability_estimates(p: np.ndarray, y: np.ndarray) -> tuple[Estimate, Estimate]:
    """The loss's and the gradient's estimates for p in (0, 1); see the module docstring."""
    inf = np.full(p.shape, np.inf)
    with np.errstate(all="ignore"):
        l1 = -np.log(p)
        l2 = -np.log1p(-p)
        s, r = _fast_two_sum_one_minus(y)
        t1, t2 = y * l1, s * l2
        loss = t1 + t2
        loss_bound = 2 * U * loss + (1.02 * LIBM_ERROR + 4.04 * U) * (t1 + t2) + 1.01 * np.abs(r) * l2
        grad = (p - y) / (p * (1.0 - p))
        grad_bound = 6 * U * np.abs(grad)
    return (loss, loss_bound, -inf, inf), (grad, grad_bound, -inf, inf)


def _round_settled(estimate: Estimate, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(the value rounded into fmt, whether every value the truth can be rounds to it)."""
    value, bound, floor, ceiling = estimate
    with np.errstate(all="ignore"):
        # a zero bound only ever comes with an exact value (a gradient p - y = 0)
        widened = 2 * bound + 4 * U * np.abs(value) + np.where(bound > 0, 2.0**-1070, 0.0)
        # strictly above the floor: no midpoint of fmt (a float64 value) lies between the floor
        # and its float64 successor, so the successor rounds as every value in between does
        lo = np.maximum(value - widened, np.nextafter(floor, np.inf))
        hi = np.minimum(value + widened, np.nextafter(ceiling, -np.inf))
        lo_rounded, lo_mid = round_array_flagging_midpoints(lo, fmt)
        hi_rounded, hi_mid = round_array_flagging_midpoints(hi, fmt)
    same = lo_rounded.view(np.int64) == hi_rounded.view(np.int64)
    return lo_rounded, same & ~lo_mid & ~hi_mid & (lo <= hi) & np.isfinite(value) & np.isfinite(bound)


def estimate(
    domain: Domain, inputs: np.ndarray, labels: float | np.ndarray, formats: tuple[FloatFormat, ...] = NARROW
) -> tuple[np.ndarray, np.ndarray]:
    """(values, settled): values (n, 2·len(formats)), the loss rounded into each format, then the
    gradient in each; settled (n,) bool, True where every one of them is proven. Unsettled rows
    hold no meaningful value. Inputs and labels must be float32 values (``ValueError`` if not)."""
    values, settled, _ = _estimate(domain, inputs, labels, formats)
    return values, settled


def _estimate(
    domain: Domain, inputs: np.ndarray, labels: float | np.ndarray, formats: tuple[FloatFormat, ...]
) -> tuple[np.ndarray, np.ndarray, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """``estimate``, plus the float64 estimates of the loss and the gradient with their bounds."""
    x = np.ascontiguousarray(inputs, dtype=np.float64)
    y = np.broadcast_to(np.asarray(labels, dtype=np.float64), x.shape)
    for name, v in (("inputs", x), ("labels", y)):
        finite = np.isfinite(v)
        if (v[finite].astype(np.float32).astype(np.float64) != v[finite]).any():
            raise ValueError(f"the vectorized oracle takes float32 values only; some {name} are not")
    if any(f.precision > 24 for f in formats):
        raise ValueError("the vectorized oracle rounds into float32 and narrower formats only")
    if domain is Domain.LOGITS:
        regular = np.isfinite(x) & np.isfinite(y) & (y >= 0) & (y <= 1)
        estimates = logit_estimates(np.where(regular, x, 1.0), np.where(regular, y, 0.0))
    else:
        regular = (x > 0) & (x < 1) & np.isfinite(y) & (y >= 0) & (y <= 1)
        estimates = probability_estimates(np.where(regular, x, 0.5), np.where(regular, y, 0.0))
    values = np.empty((len(x), 2 * len(formats)))
    settled = regular.copy()
    for k, quantity_estimate in enumerate(estimates):
        for j, fmt in enumerate(formats):
            rounded, ok = _round_settled(quantity_estimate, fmt)
            values[:, k * len(formats) + j] = rounded
            settled &= ok
    return values, settled, (estimates[0][:2], estimates[1][:2])


def truth(
    domain: Domain, inputs: np.ndarray, labels: float | np.ndarray, fmt: FloatFormat
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(loss, grad, loss64, grad64, exact): the truth rounded into ``fmt`` (float32 or narrower)
    at every point, the unsettled ones from the exact path (``exact`` counts those); loss64 and
    grad64 are float64 values within a relative 2^-46 of the exact ones (the estimates, where
    their bound is that tight; the exact path's float64 truth elsewhere: for relative errors)."""
    from bce_audit.oracle.table import column, evaluate_points

    x = np.ascontiguousarray(inputs, dtype=np.float64)
    y = np.broadcast_to(np.asarray(labels, dtype=np.float64), x.shape)
    values, settled, ((loss64, loss_bound), (grad64, grad_bound)) = _estimate(domain, x, y, (fmt,))
    loss, grad = values[:, 0].copy(), values[:, 1].copy()
    loss64, grad64 = loss64.copy(), grad64.copy()
    with np.errstate(invalid="ignore"):
        tight = (loss_bound <= 2.0**-47 * np.abs(loss64)) & (grad_bound <= 2.0**-47 * np.abs(grad64))
    rest = np.flatnonzero(~(settled & tight))
    if len(rest):
        rows = evaluate_points(domain, x[rest], np.ascontiguousarray(y[rest]))
        loss[rest] = rows[:, column(Quantity.LOSS, fmt)]
        grad[rest] = rows[:, column(Quantity.GRAD, fmt)]
        loss64[rest] = rows[:, column(Quantity.LOSS, FLOAT64)]
        grad64[rest] = rows[:, column(Quantity.GRAD, FLOAT64)]
    return loss, grad, loss64, grad64, len(rest)
