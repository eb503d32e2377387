"""Threshold crossings (oracle/crossings.py): exactly the transitions an exhaustive scan of the
float16 truth finds, each proven by the reference oracle, and the narrow bands they put in grids."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from bce_audit.floats import from_ordinal, ordinal
from bce_audit.oracle.crossings import (
    NEIGHBOURS,
    _positive_gradient,
    _threshold_predicates,
    crossing_inputs,
    find_crossings,
    intermediate_inputs,
)
from bce_audit.oracle.reference import logit_truth, probability_truth
from bce_audit.oracle.table import FORMATS, evaluate_points
from bce_audit.settings import Settings
from bce_audit.sweep.grid import build_grid
from bce_audit.sweep.run import run_sweep
from bce_audit.vocabulary import Domain, DType, Quantity, Sampling

F16, F32 = DType.FLOAT16.format, DType.FLOAT32.format


def _scan_transitions(domain: Domain, labels: list[float]) -> set[tuple[Quantity, str, float, float, float]]:
    """Every transition of every threshold predicate over all float16 inputs of the domain, on
    each side of the gradient's sign change, from the exhaustive truth."""
    lo, hi = ordinal(np.array([-F16.largest_finite if domain is Domain.LOGITS else 0.0, F16.largest_finite]), F16)
    if domain is Domain.PROBABILITIES:
        hi = ordinal(np.array([1.0]), F16)[0]
    xs = from_ordinal(np.arange(lo, hi + 1), F16)
    found = set()
    for y in labels:
        rows = evaluate_points(domain, xs, y)
        positive = _positive_gradient(rows)
        flips = np.flatnonzero(positive[1:] != positive[:-1])
        assert len(flips) <= 1  # the gradient is increasing
        for i in flips.tolist():
            found.add((Quantity.GRAD, "sign", y, float(xs[i]), float(xs[i + 1])))
        # a transition across the sign change itself is not one of a monotone run
        same_run = positive[1:] == positive[:-1]
        for quantity in Quantity:
            for name, predicate in _threshold_predicates(F16, quantity).items():
                p = predicate(rows)
                for i in np.flatnonzero((p[1:] != p[:-1]) & same_run).tolist():
                    found.add((quantity, name, y, float(xs[i]), float(xs[i + 1])))
    return found


@pytest.mark.parametrize(
    ("domain", "labels"),
    [(Domain.LOGITS, [0.0, 0.25]), (Domain.PROBABILITIES, [0.0, 1.0, 0.25, 2.0**-24])],
    ids=["logits", "probabilities"],
)
def test_float16_crossings_are_every_transition_of_the_exhaustive_truth(domain, labels):
    found = {(c.quantity, c.threshold, c.label, c.before, c.after) for c in find_crossings(F16, domain, labels)}
    scanned = _scan_transitions(domain, labels)
    assert len(scanned) >= 8
    assert found == scanned


def _reference_rows(domain: Domain, xs: list[float], y: float) -> np.ndarray:
    truth = logit_truth if domain is Domain.LOGITS else probability_truth
    return np.array([[*t.loss, *t.grad] for t in (truth(x, y, FORMATS) for x in xs)])


@pytest.mark.parametrize("domain", list(Domain), ids=str)
def test_float32_crossings_hold_in_the_reference(domain):
    """Each pair: the reference oracle (not the fast path that found it) puts the truth beyond the
    threshold on one side and not on the other, and the two inputs are neighbours in float32."""
    labels = [0.0, 1.0, 0.5, 0.1]
    crossings = find_crossings(F32, domain, labels)
    names = {(c.quantity, c.threshold) for c in crossings}
    assert (Quantity.LOSS, "nonzero") in names and (Quantity.GRAD, "smallest normal") in names
    for c in crossings:
        a, b = ordinal(np.array([c.before, c.after]), F32).tolist()
        assert b == a + 1
        rows = _reference_rows(domain, [c.before, c.after], c.label)
        predicate = _positive_gradient if c.threshold == "sign" else _threshold_predicates(F32, c.quantity)[c.threshold]
        at = predicate(rows).tolist()
        assert at[0] != at[1], c


def test_float32_underflow_band_of_the_loss_is_located_exactly():
    """y = 0, logits: the loss softplus(z) rounds to nonzero above log(2^-150) and reaches the
    smallest subnormal at log(2^-149), both transcendental: the pairs bracket them exactly."""
    crossings = {(c.quantity, c.threshold): c for c in find_crossings(F32, Domain.LOGITS, [0.0])}
    with mpmath.workprec(200):
        for name, level in (("nonzero", 2.0**-150), ("smallest subnormal", 2.0**-149)):
            c = crossings[Quantity.LOSS, name]
            assert mpmath.log1p(mpmath.exp(c.before)) < level < mpmath.log1p(mpmath.exp(c.after))


def test_intermediate_thresholds_are_bracketed():
    """exp(z) overflows float32 between two of the inputs added, with NEIGHBOURS more each side."""
    xs = intermediate_inputs(F32)
    overflow = (2 - 2.0**-24) * 2.0**127  # the midpoint above the largest float32
    with mpmath.workprec(200):
        above = [x for x in xs.tolist() if x > 0 and mpmath.exp(x) > overflow]
        below = [x for x in xs.tolist() if x > 0 and x < 89 and mpmath.exp(x) < overflow]
        last_below, first_above = max(below), min(above)
        assert int(ordinal(np.array([first_above]), F32)[0] - ordinal(np.array([last_below]), F32)[0]) == 1
        assert sum(first_above < x < 89 for x in xs.tolist()) == NEIGHBOURS
        assert sum(88 < x < last_below for x in xs.tolist()) == NEIGHBOURS
        # sigmoid rounds to 1 in float32 above log(2^25 - 1), mirrored below
        s = math.log(2.0**25 - 1)
        assert any(abs(x - s) < 1e-5 for x in xs.tolist()) and any(abs(x + s) < 1e-5 for x in xs.tolist())


def test_grids_with_labels_hold_the_crossings_and_are_deterministic():
    a = build_grid(DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=5, labels=[0.0, 1.0])
    b = build_grid(DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=5, labels=[0.0, 1.0])
    plain = build_grid(DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=5)
    np.testing.assert_array_equal(a.finite.view(np.int64), b.finite.view(np.int64))
    extra = crossing_inputs(F32, Domain.LOGITS, [0.0, 1.0])
    assert np.isin(extra, a.finite).all()
    assert len(a.finite) == len(np.union1d(plain.finite.view(np.int64), extra.view(np.int64)))  # ±0 apart
    # a range keeps only the crossings inside it
    ranged = build_grid(
        DType.FLOAT32, Domain.LOGITS, 300, Sampling.BITS, seed=5, logit_range=(-100.0, 0.0), labels=[0.0]
    )
    assert ranged.finite.min() >= -100.0 and ranged.finite.max() <= 0.0
    assert ((ranged.finite > -87.34) & (ranged.finite < -87.33)).sum() >= 2  # smallest normal crossing


def test_the_logsigmoid_float32_underflow_band_is_found():
    """torch's logsigmoid returns 0 for z in about [-103.97, -102.87) with y = 0, where the true
    loss is the smallest subnormal: 1000 samples miss the band, the crossing inputs hit it."""
    settings = Settings(
        formulations=("torch-logsigmoid",), dtypes=(DType.FLOAT32,), domains=(Domain.LOGITS,), labels=(0.0,)
    )
    result = run_sweep(settings, keep_details=True)
    (case,) = [c for c in result.cases if c.quantity is Quantity.LOSS]
    assert case.figures is not None and case.figures.zero > 0
    assert case.details is not None
    zero = case.details.inputs[case.details.statuses == "zero"]
    assert len(zero) == case.figures.zero
    assert zero.min() >= -103.98 and zero.max() < -102.87
    # the sampled inputs alone never land in the band
    plain = build_grid(DType.FLOAT32, Domain.LOGITS, settings.points, Sampling.BITS, settings.seed)
    assert not ((plain.finite >= -103.97) & (plain.finite < -102.87)).any()


def _crossing_tuples(fmt, domain, labels):  # type: ignore[no-untyped-def]
    return [(c.quantity, c.threshold, c.label, c.before, c.after) for c in find_crossings(fmt, domain, labels)]


# labels of every kind: the ends, 1/2 (whose gradient root is z = 0 exactly), inexact roots, a
# subnormal and the largest value below 1
_MANY_LABELS = [0.0, 1.0, 0.5, 0.25, 0.1, 0.999, 1e-30, 5e-324, 1 - 2.0**-53]


@pytest.mark.parametrize("dtype", list(DType), ids=str)
@pytest.mark.parametrize("domain", list(Domain), ids=str)
def test_the_estimate_guided_search_finds_what_a_plain_exact_bisection_finds(monkeypatch, dtype, domain):
    """The float64 estimate only guides the search: with the exact truth alone (every bisection
    step evaluated by the oracle), the same crossings are found."""
    from bce_audit.floats import round_array
    from bce_audit.oracle import crossings

    fmt = dtype.format
    labels = sorted({float(y) for y in round_array(np.array(_MANY_LABELS), fmt)})
    guided = _crossing_tuples(fmt, domain, labels)
    monkeypatch.setattr(crossings, "_bisect_all", lambda truth, searches: crossings._bisect(truth.rows, searches))
    assert guided == _crossing_tuples(fmt, domain, labels)


@pytest.mark.parametrize("domain", list(Domain), ids=str)
def test_a_wrong_estimate_changes_no_crossing(monkeypatch, domain):
    """An estimate far off (the truth at inputs 2^40 ordinals away, or plain noise) costs exact
    steps, never a crossing: only the exact values decide."""
    from bce_audit.oracle import crossings

    fmt = DType.FLOAT64.format
    labels = [0.0, 1.0, 0.5, 0.25]
    expected = _crossing_tuples(fmt, domain, labels)
    real = crossings._estimated_rows
    rng = np.random.default_rng(7)

    def shifted(d, xs, ys):  # type: ignore[no-untyped-def]
        return real(d, from_ordinal(ordinal(xs, fmt) + 2**40, fmt), ys)

    def noise(d, xs, ys):  # type: ignore[no-untyped-def]
        with np.errstate(over="ignore"):
            return real(d, xs, ys) * rng.uniform(-2, 2, size=(len(xs), 1))

    for wrong in (shifted, noise):
        monkeypatch.setattr(crossings, "_estimated_rows", wrong)
        assert _crossing_tuples(fmt, domain, labels) == expected


def test_the_estimate_settles_the_default_labels_in_two_exact_calls(monkeypatch):
    """The point of the estimate: for labels 0 and 1 the exact oracle is called twice per grid
    (the domain's ends, then every search's final pair at once), not once per bisection step."""
    from bce_audit.oracle import crossings

    calls = []
    real = crossings.evaluate_points

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(crossings, "evaluate_points", counting)
    for dtype in DType:
        for domain in Domain:
            calls.clear()
            assert find_crossings(dtype.format, domain, [0.0, 1.0])
            assert len(calls) == 2, (dtype, domain, calls)
