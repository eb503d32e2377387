"""Input grids (grid.py): representable values only, the special inputs of docs/cli.md, both ends covered."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bce_audit.floats import from_bits, to_bits
from bce_audit.settings import Settings
from bce_audit.sweep.grid import build_grid
from bce_audit.sweep.run import grids
from bce_audit.vocabulary import Domain, DType, Sampling

TORCH = {
    DType.FLOAT16: torch.float16,
    DType.BFLOAT16: torch.bfloat16,
    DType.FLOAT32: torch.float32,
    DType.FLOAT64: torch.float64,
}
INT_OF_WIDTH = {16: torch.int16, 32: torch.int32, 64: torch.int64}
POINTS = 400


def bitwise(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.int64)


def torch_from_bits(pattern: int, dtype: DType) -> float:
    """The value of one bit pattern, decoded by torch."""
    width = torch.finfo(TORCH[dtype]).bits
    if pattern >= 1 << (width - 1):
        pattern -= 1 << width
    return torch.tensor([pattern], dtype=INT_OF_WIDTH[width]).view(TORCH[dtype]).item()


def all_finite_values(dtype: DType) -> torch.Tensor:
    """Every finite value of a 16-bit dtype, from all 2^16 bit patterns (as float64)."""
    patterns = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = patterns.view(TORCH[dtype])
    return values[torch.isfinite(values)].to(torch.float64)


def expected_specials(dtype: DType, domain: Domain) -> list[float]:
    fi = torch.finfo(TORCH[dtype])
    tiny_sub = torch_from_bits(1, dtype)
    if domain is Domain.LOGITS:
        return [0.0, -0.0, tiny_sub, -tiny_sub, fi.smallest_normal, -fi.smallest_normal, fi.max, -fi.max]
    one_bits = int(torch.tensor([1.0], dtype=TORCH[dtype]).view(INT_OF_WIDTH[fi.bits]).item())
    below_one = torch_from_bits(one_bits - 1, dtype)
    return [0.0, 1.0, tiny_sub, below_one]


@pytest.fixture(scope="module")
def sampled():
    return {(dt, dom): build_grid(dt, dom, POINTS, Sampling.BITS, seed=1) for dt in DType for dom in Domain}


@pytest.mark.parametrize("domain", list(Domain), ids=str)
@pytest.mark.parametrize("dtype", list(DType), ids=str)
def test_grid_values_are_representable(sampled, dtype, domain):
    g = sampled[dtype, domain]
    fmt = dtype.format
    # 16-bit probabilities: only 2^(p-1) values in [1/2, 1), so many draws coincide
    assert len(g.finite) >= POINTS * (0.5 if fmt.is_16bit and domain is Domain.PROBABILITIES else 0.9)
    assert np.all(np.isfinite(g.finite))
    back = from_bits(to_bits(g.finite, fmt), fmt)
    np.testing.assert_array_equal(bitwise(back), bitwise(g.finite))
    t = torch.tensor(g.finite, dtype=torch.float64).to(TORCH[dtype]).to(torch.float64).numpy()
    np.testing.assert_array_equal(bitwise(t), bitwise(g.finite))
    # sorted and distinct (with -0 and +0 counted apart)
    assert np.all(np.diff(g.finite) >= 0)
    assert len(np.unique(bitwise(g.finite))) == len(g.finite)
    if domain is Domain.PROBABILITIES:
        assert g.finite.min() >= 0 and g.finite.max() <= 1


@pytest.mark.parametrize("domain", list(Domain), ids=str)
@pytest.mark.parametrize("dtype", list(DType), ids=str)
def test_grid_has_specials_and_nonfinite(sampled, dtype, domain):
    g = sampled[dtype, domain]
    present = set(bitwise(g.finite).tolist())
    for special in expected_specials(dtype, domain):
        assert int(bitwise([special])[0]) in present, special
    if domain is Domain.LOGITS:
        assert sorted(x for x in g.nonfinite.tolist() if not math.isnan(x)) == [-math.inf, math.inf]
        assert np.isnan(g.nonfinite).sum() == 1
    else:
        assert len(g.nonfinite) == 1 and math.isnan(g.nonfinite[0])


@pytest.mark.parametrize("dtype", [DType.FLOAT32, DType.FLOAT64], ids=str)
def test_probability_grid_covers_both_ends(dtype):
    g = build_grid(dtype, Domain.PROBABILITIES, 1000, Sampling.BITS, seed=0)
    p = g.finite
    near_zero = np.count_nonzero(p < 2.0**-10)
    near_one = np.count_nonzero(1 - p < 2.0**-10)  # exact: p > 1/2 there (Sterbenz)
    # 1 - p is sampled log-uniformly (by bit patterns of the distance to 1); the binades
    # closest to 1 hold only 1, 2, 4, ... values, so draws there collapse into the same few
    # values (all of them present, checked below): float32 keeps ~18% of distinct points with
    # 1 - p < 2^-10 out of the ~37% drawn for the upper end, hence 15% rather than 20%.
    assert near_zero >= 0.2 * len(p)
    assert near_one >= 0.15 * len(p)
    steps = set(np.round((1 - p[p > 0.5]) * 2.0**dtype.format.precision).astype(np.int64).tolist())
    assert {1, 2, 3, 4} <= steps  # the values 1 - k*2^-precision right below 1
    # reaching deep into both ends, not just 2^-10 away
    assert np.count_nonzero((p > 0) & (p < 2.0**-100)) > 0.05 * len(p)
    ulp_below_one = 2.0**-dtype.format.precision
    assert np.count_nonzero((1 - p > 0) & (1 - p < 2.0**-15)) > 0.05 * len(p)
    assert np.count_nonzero(1 - p == ulp_below_one) == 1


@pytest.mark.parametrize("dtype", [DType.FLOAT16, DType.BFLOAT16], ids=str)
def test_exhaustive_logits_hold_every_finite_value(dtype):
    g = build_grid(dtype, Domain.LOGITS, 10, Sampling.EXHAUSTIVE, seed=0)
    expected = all_finite_values(dtype).numpy()
    assert len(g.finite) == len(expected)
    if dtype is DType.FLOAT16:
        assert len(expected) == 2**16 - 2 * 2**10  # exponent all ones: inf and NaN
    assert set(bitwise(g.finite).tolist()) == set(bitwise(expected).tolist())


def test_exhaustive_probabilities_float16():
    g = build_grid(DType.FLOAT16, Domain.PROBABILITIES, 10, Sampling.EXHAUSTIVE, seed=0)
    v = all_finite_values(DType.FLOAT16).numpy()
    expected = v[(v >= 0) & (v <= 1) & ~((v == 0) & np.signbit(v))]
    assert set(bitwise(g.finite).tolist()) == set(bitwise(expected).tolist())


def test_grid_is_deterministic_for_a_seed():
    a = build_grid(DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=5)
    b = build_grid(DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=5)
    c = build_grid(DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=6)
    np.testing.assert_array_equal(bitwise(a.finite), bitwise(b.finite))
    assert len(a.finite) != len(c.finite) or not np.array_equal(bitwise(a.finite), bitwise(c.finite))


def test_grid_does_not_depend_on_other_dtypes_or_domains():
    def grid_of(dtypes, domains):
        settings = Settings(formulations=("naive",), dtypes=dtypes, domains=domains, points=200, seed=3)
        return {(g.dtype, g.domain): g for g in grids(settings)}

    alone = grid_of((DType.FLOAT32,), (Domain.PROBABILITIES,))
    among = grid_of(tuple(DType), tuple(Domain))
    reordered = grid_of((DType.FLOAT64, DType.FLOAT32), (Domain.PROBABILITIES, Domain.LOGITS))
    key = (DType.FLOAT32, Domain.PROBABILITIES)
    for other in (among, reordered):
        np.testing.assert_array_equal(bitwise(alone[key].finite), bitwise(other[key].finite))


@pytest.mark.parametrize("dtype", list(DType), ids=str)
def test_range_restricts_logits(dtype):
    g = build_grid(dtype, Domain.LOGITS, 300, Sampling.BITS, seed=2, logit_range=(-5.0, 3.0))
    assert g.finite.min() >= -5.0 and g.finite.max() <= 3.0
    assert len(g.finite) > 200
    assert np.count_nonzero(g.finite < -1) > 0 and np.count_nonzero(g.finite > 1) > 0
    assert np.isnan(g.nonfinite).sum() == 1  # non-finite inputs are still evaluated


def test_range_restricts_exhaustive_float16_logits_to_exactly_the_values_inside():
    g = build_grid(DType.FLOAT16, Domain.LOGITS, 10, Sampling.EXHAUSTIVE, seed=0, logit_range=(-2.5, 7.3))
    v = all_finite_values(DType.FLOAT16).numpy()
    expected = v[(v >= -2.5) & (v <= 7.3)]
    assert set(bitwise(g.finite).tolist()) == set(bitwise(expected).tolist())


@pytest.mark.parametrize("dtype", [DType.FLOAT16, DType.FLOAT32, DType.FLOAT64], ids=str)
def test_range_restricts_probabilities(dtype):
    lo, hi = -3.0, 4.0
    g = build_grid(dtype, Domain.PROBABILITIES, 300, Sampling.BITS, seed=2, logit_range=(lo, hi))
    p_lo = torch.sigmoid(torch.tensor(lo, dtype=torch.float64)).item()
    p_hi = torch.sigmoid(torch.tensor(hi, dtype=torch.float64)).item()
    tol = 1e-15
    assert g.finite.min() >= p_lo * (1 - tol) and g.finite.max() <= p_hi * (1 + tol)
    assert len(g.finite) > 100
    # the ends of the interval are reached (the whole sample is not squeezed in one place)
    assert g.finite.min() < p_lo + 0.05 and g.finite.max() > p_hi - 0.05
