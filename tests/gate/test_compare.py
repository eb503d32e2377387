"""A run against its baseline, case by case, on synthetic records: which figures moved, which way,
and whether beyond the tolerance."""

from __future__ import annotations

import math

import pytest
from synthetic import F32_MAX, F64_MAX, INF, NAN, key, record

from bce_audit.gate.compare import compare, figure_deltas
from bce_audit.gate.interface import CaseComparison, Change, Direction, FigureDelta, Tolerance
from bce_audit.gate.tolerance import ZERO_TOLERANCE, parse_tolerance
from bce_audit.report.verdict_text import comparison_text

K = key("f")


def _one(old: dict, new: dict, tolerance: Tolerance | None = None) -> CaseComparison:
    (c,) = compare({K: record(**old)}, {K: record(**new)}, tolerance or Tolerance(), allow_missing=False)
    return c


@pytest.mark.parametrize(
    "old, new, change, moved",
    [
        ({}, {}, Change.UNCHANGED, []),
        ({}, {"max_ulp": 2.0}, Change.UNCHANGED, [("max_ulp", Direction.TOLERATED)]),  # exactly +1
        ({}, {"max_ulp": 2.5}, Change.REGRESSED, [("max_ulp", Direction.WORSE)]),
        ({}, {"max_ulp": INF}, Change.REGRESSED, [("max_ulp", Direction.WORSE)]),
        ({"max_ulp": INF}, {"max_ulp": INF}, Change.UNCHANGED, []),
        ({"max_ulp": INF}, {}, Change.IMPROVED, [("max_ulp", Direction.BETTER)]),
        ({"max_ulp": F64_MAX}, {"max_ulp": F64_MAX}, Change.UNCHANGED, []),
        ({}, {"max_ulp": NAN}, Change.REGRESSED, [("max_ulp", Direction.WORSE)]),  # now undefined
        ({"max_ulp": NAN}, {}, Change.IMPROVED, [("max_ulp", Direction.BETTER)]),
        ({"max_ulp": NAN}, {"max_ulp": NAN}, Change.UNCHANGED, []),
        ({"mean_bits": 0.1}, {"mean_bits": 0.2}, Change.UNCHANGED, [("mean_bits", Direction.TOLERATED)]),
        ({"mean_bits": 0.1}, {"mean_bits": 0.25}, Change.REGRESSED, [("mean_bits", Direction.WORSE)]),
        ({}, {"p99_ulp": 0.5}, Change.IMPROVED, [("p99_ulp", Direction.BETTER)]),
        ({}, {"nonfinite": 1}, Change.REGRESSED, [("nonfinite", Direction.WORSE)]),
        ({}, {"zero": 1, "ok": 1009}, Change.REGRESSED, [("zero", Direction.WORSE)]),
        ({"zero": 1, "ok": 1009}, {}, Change.IMPROVED, [("zero", Direction.BETTER)]),
        ({}, {"mean_ulp": 5.0, "max_rel_err": 1.0, "worst_input": 3.0, "ok": 1010}, Change.UNCHANGED, []),  # not gated
        ({}, {"stable_hi": 4.0}, Change.REGRESSED, [("stable_range", Direction.WORSE)]),
        ({}, {"stable_lo": -F32_MAX * 2, "stable_hi": 4.0}, Change.REGRESSED, [("stable_range", Direction.WORSE)]),
        ({"stable_lo": -5.0}, {}, Change.IMPROVED, [("stable_range", Direction.BETTER)]),
        ({}, {"stable_lo": NAN, "stable_hi": NAN}, Change.REGRESSED, [("stable_range", Direction.WORSE)]),
        ({"stable_lo": NAN, "stable_hi": NAN}, {}, Change.IMPROVED, [("stable_range", Direction.BETTER)]),
        ({"stable_lo": NAN, "stable_hi": NAN}, {"stable_lo": NAN, "stable_hi": NAN}, Change.UNCHANGED, []),
        ({}, {"points": 1011, "ok": 1011}, Change.REGRESSED, [("points", Direction.WORSE)]),
        (  # a better figure does not make up for a worse one
            {},
            {"max_ulp": 0.5, "zero": 1, "ok": 1009},
            Change.REGRESSED,
            [("max_ulp", Direction.BETTER), ("zero", Direction.WORSE)],
        ),
        ({}, {"error": "boom"}, Change.REGRESSED, [("error", Direction.WORSE)]),
        ({"error": "boom"}, {}, Change.IMPROVED, [("error", Direction.BETTER)]),
        ({"error": "boom"}, {"error": "other"}, Change.STILL_RAISES, []),  # reported, passes
    ],
)
def test_compare_one_case(old, new, change, moved):
    c = _one(old, new)
    assert c.change is change
    assert [(d.figure, d.direction) for d in c.deltas] == moved
    assert c.failed == (change is Change.REGRESSED)


def test_minus_zero_and_zero_are_the_same_figure():
    assert _one({"stable_lo": 0.0}, {"stable_lo": -0.0}).change is Change.UNCHANGED
    assert _one({"max_ulp": 0.0}, {"max_ulp": -0.0}).change is Change.UNCHANGED


def test_deltas_carry_both_values_and_the_allowance():
    c = _one({"max_ulp": 8388000.0, "zero": 2, "ok": 1008}, {"max_ulp": 8388608.0, "zero": 3, "ok": 1007})
    assert c.deltas == (
        FigureDelta("max_ulp", 8388000.0, 8388608.0, 1.0, Direction.WORSE),
        FigureDelta("zero", 2, 3, 0, Direction.WORSE),
    )
    assert c.worst_input == -19.151866912841797  # this run's
    assert comparison_text(c, Direction.WORSE) == (
        "f logits float32 y=0 loss: max_ulp 8388000 -> 8388608 (allowed +1); zero 2 -> 3 (allowed +0) "
        "(worst input -19.2)"
    )


def test_every_count_tolerance_is_its_own():
    old, new = {"zero": 1, "ok": 1009}, {"zero": 3, "ok": 1007}
    assert _one(old, new, parse_tolerance(None, ("zero:+1",), "c")).change is Change.REGRESSED
    assert _one(old, new, parse_tolerance(None, ("zero:+2",), "c")).change is Change.UNCHANGED
    assert _one(old, new, parse_tolerance(None, ("nan:+5",), "c")).change is Change.REGRESSED


def test_with_zero_tolerance_any_worse_figure_regresses():
    c = _one({}, {"max_ulp": math.nextafter(1.0, 2.0)}, ZERO_TOLERANCE)
    assert c.change is Change.REGRESSED and c.deltas[0].allowed == 0


def test_a_tolerance_on_max_ulp_does_not_cover_p99_ulp():
    assert _one({}, {"max_ulp": 4.0, "p99_ulp": 4.0}, parse_tolerance(None, ("max_ulp:+3",), "c")).deltas == (
        FigureDelta("max_ulp", 1.0, 4.0, 3.0, Direction.TOLERATED),
        FigureDelta("p99_ulp", 1.0, 4.0, 1.0, Direction.WORSE),
    )


def test_nothing_evaluated_is_never_as_good_as_anything():
    old, new = record(), record(points=0, ok=0, max_ulp=NAN)
    assert figure_deltas(old, new, Tolerance()) == (FigureDelta("points", 1010, 0, None, Direction.WORSE),)


def test_the_error_deltas():
    raised, ran = record(error="E: x"), record()
    assert figure_deltas(ran, raised, Tolerance()) == (FigureDelta("error", None, "E: x", None, Direction.WORSE),)
    assert figure_deltas(raised, ran, Tolerance()) == (FigureDelta("error", "E: x", None, None, Direction.BETTER),)
    assert figure_deltas(raised, record(error="E: y"), Tolerance()) == ()


def test_a_case_that_still_raises_keeps_both_messages():
    c = _one({"error": "E: old"}, {"error": "E: new"})
    assert (c.change, c.errors, c.deltas, c.failed) == (Change.STILL_RAISES, ("E: old", "E: new"), (), False)
    assert math.isnan(c.worst_input)


def test_a_lost_case_is_not_judged():
    (c,) = compare({K: record(max_ulp=0.5)}, {K: record(lost="hung")}, Tolerance(), allow_missing=False)
    assert (c.change, c.lost, c.deltas, c.failed) == (Change.LOST, "hung", (), False)
    # lost before anything else: a lost case the baseline lacks is not new either
    (c,) = compare({}, {K: record(lost="hung")}, Tolerance(), allow_missing=False)
    assert c.change is Change.LOST


def test_new_and_missing_cases_in_run_order_then_the_missing():
    a, b, c, d = (key(f) for f in "abcd")
    old = {a: record(), c: record(), d: record()}
    new = {b: record(worst_input=F32_MAX), a: record()}
    comparisons = compare(old, new, Tolerance(), allow_missing=False)
    assert [(x.key, x.change) for x in comparisons] == [
        (b, Change.NEW),
        (a, Change.UNCHANGED),
        (c, Change.MISSING),
        (d, Change.MISSING),
    ]
    assert comparisons[0].worst_input == F32_MAX and comparisons[0].deltas == ()
    assert [x.failed for x in comparisons] == [False, False, True, True]
    allowed = compare(old, new, Tolerance(), allow_missing=True)
    assert [x.change for x in allowed[2:]] == [Change.MISSING_ALLOWED] * 2
    assert not any(x.failed for x in allowed)


@pytest.mark.parametrize(
    "change, failed",
    [
        (Change.UNCHANGED, False),
        (Change.IMPROVED, False),
        (Change.REGRESSED, True),
        (Change.STILL_RAISES, False),
        (Change.NEW, False),
        (Change.MISSING, True),
        (Change.MISSING_ALLOWED, False),
        (Change.LOST, False),
    ],
)
def test_which_changes_fail(change, failed):
    assert CaseComparison(K, change).failed is failed
