"""Input grids: representable values of each dtype, chosen so that every binade is reached.

A grid holds exact values of the dtype (stored in float64, which holds all four dtypes
exactly), so no rounding is hidden between the grid and the formulation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bce_audit.floats import from_ordinal, ordinal, round_array
from bce_audit.vocabulary import Domain, DType, FloatFormat, Sampling

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.oracle.cache import TruthCache

# Where ML logits live: a band sampled uniformly in value (not in bit patterns), so that the
# breakdown points of the common formulations (|z| of a few to a few dozen) are resolved finely.
LOGIT_BAND = (-40.0, 40.0)
# Share of the sampled points that go to the dense band; the rest are uniform in bit patterns.
BAND_SHARE = 0.25


@dataclasses.dataclass(frozen=True)
class Grid:
    """The inputs of one (dtype, domain).

    finite: sorted, distinct finite inputs (specials included); these make the statistics.
    nonfinite: ±inf and NaN inputs, evaluated and reported apart.
    """

    dtype: DType
    domain: Domain
    finite: np.ndarray
    nonfinite: np.ndarray


def logit_specials(fmt: FloatFormat) -> list[float]:
    tiny, normal, big = fmt.smallest_subnormal, fmt.smallest_normal, fmt.largest_finite
    return [0.0, -0.0, tiny, -tiny, normal, -normal, big, -big, 1.0, -1.0]


def probability_specials(fmt: FloatFormat) -> list[float]:
    below_one = 1.0 - 2.0**-fmt.precision  # the largest value below 1
    return [0.0, 1.0, 0.5, fmt.smallest_subnormal, fmt.smallest_normal, below_one]


def _sample_ordinals(lo: float, hi: float, n: int, fmt: FloatFormat, rng: np.random.Generator) -> np.ndarray:
    """n values uniform over the bit patterns (ordinals) in [lo, hi]."""
    olo, ohi = ordinal(np.array([lo, hi]), fmt).tolist()
    if n <= 0 or ohi < olo:
        return np.empty(0)
    return from_ordinal(rng.integers(olo, ohi, size=n, endpoint=True), fmt)


def _all_values(lo: float, hi: float, fmt: FloatFormat) -> np.ndarray:
    olo, ohi = ordinal(np.array([lo, hi]), fmt).tolist()
    return from_ordinal(np.arange(olo, ohi + 1, dtype=np.int64), fmt)


def _inward(lo: float, hi: float, fmt: FloatFormat) -> tuple[float, float]:
    """The representable interval inside [lo, hi] (bounds rounded inwards)."""
    rl, rh = round_array(np.array([lo, hi]), fmt).tolist()
    if rl < lo:
        rl = from_ordinal(ordinal(np.array([rl]), fmt) + 1, fmt)[0]
    if rh > hi:
        rh = from_ordinal(ordinal(np.array([rh]), fmt) - 1, fmt)[0]
    return max(rl, -fmt.largest_finite), min(rh, fmt.largest_finite)


def probability_bounds(logit_range: tuple[float, float] | None) -> tuple[float, float]:
    """The probability interval that a logit range maps to (the whole [0, 1] without one)."""
    if logit_range is None:
        return 0.0, 1.0

    def sigmoid(z: float) -> float:
        if z == -math.inf:
            return 0.0
        if z == math.inf:
            return 1.0
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))

    return sigmoid(logit_range[0]), sigmoid(logit_range[1])


def build_grid(
    dtype: DType,
    domain: Domain,
    points: int,
    sampling: Sampling,
    seed: int,
    logit_range: tuple[float, float] | None = None,
    labels: Sequence[float] = (),
    cache: TruthCache | None = None,
) -> Grid:
    """The grid of one (dtype, domain). labels: the run's labels, rounded to the dtype; with
    sampled grids, the inputs where the truth crosses a threshold of the dtype for any of them
    are added (``oracle.crossings``, the union over the labels: one grid per (dtype, domain)),
    found once and kept in ``cache`` when one is given."""
    fmt = dtype.format
    if sampling is Sampling.EXHAUSTIVE and not fmt.is_16bit:
        # 2^32 or 2^64 values: the sweep falls back to bit patterns before it gets here
        raise ValueError(f"exhaustive sampling enumerates 16-bit dtypes only, not {dtype}")
    # One stream per (dtype, domain): a grid does not change when other dtypes are selected.
    rng = np.random.default_rng([seed, list(DType).index(dtype), list(Domain).index(domain)])
    if domain is Domain.LOGITS:
        lo, hi = logit_range or (-math.inf, math.inf)
        lo, hi = _inward(max(lo, -fmt.largest_finite), min(hi, fmt.largest_finite), fmt)
        specials = logit_specials(fmt)
        nonfinite = np.array([-math.inf, math.inf, math.nan])
        if sampling is Sampling.EXHAUSTIVE:
            parts = [_all_values(lo, hi, fmt)]
        else:
            n_band = int(points * BAND_SHARE)
            blo, bhi = max(lo, LOGIT_BAND[0]), min(hi, LOGIT_BAND[1])
            band = rng.uniform(blo, bhi, size=n_band) if blo < bhi else np.empty(0)
            parts = [
                _sample_ordinals(lo, hi, points - n_band, fmt, rng),
                round_array(band, fmt),
            ]
    else:
        lo, hi = _inward(*probability_bounds(logit_range), fmt)
        specials = probability_specials(fmt)
        nonfinite = np.array([math.nan])
        if sampling is Sampling.EXHAUSTIVE:
            parts = [_all_values(max(lo, 0.0), hi, fmt)]
        else:
            # Both ends equally well: bit patterns near 0, and the same for the distance to 1,
            # which reaches every representable value just below 1 (1 - 2^-p, 1 - 2^-(p-1), ...).
            n_band = int(points * BAND_SHARE)
            n_low = (points - n_band) // 2
            n_high = points - n_band - n_low
            spacing_below_one = 2.0**-fmt.precision
            low = _sample_ordinals(max(lo, 0.0), min(hi, 0.5), n_low, fmt, rng)
            dist = _sample_ordinals(spacing_below_one, 0.5, n_high, fmt, rng)
            high = round_array(1.0 - dist, fmt)
            band = round_array(rng.uniform(lo, hi, size=n_band) if lo <= hi else np.empty(0), fmt)
            parts = [low, high, band]
    if labels and sampling is not Sampling.EXHAUSTIVE:
        from bce_audit.oracle.crossings import crossing_inputs

        parts.append(crossing_inputs(fmt, domain, labels, cache))
    values = np.concatenate(parts + [np.array(specials, dtype=np.float64)])
    values = values[(values >= lo) & (values <= hi)]
    if domain is Domain.PROBABILITIES and logit_range is not None:
        # sigmoid(40) is 1 in float64, so [sigmoid(lo), sigmoid(hi)] can hold p = 1 (or 0) for a
        # range that does not: keep the probabilities whose logit lies in the range itself
        with np.errstate(divide="ignore"):
            z = np.log(values) - np.log1p(-values)
        values = values[(z >= logit_range[0]) & (z <= logit_range[1])]
    # distinct values, keeping -0 and +0 apart (np.unique would merge them)
    bits = np.unique(values.view(np.int64))
    finite = np.sort(bits.view(np.float64), kind="stable")
    return Grid(dtype=dtype, domain=domain, finite=finite, nonfinite=nonfinite)
