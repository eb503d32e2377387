"""Threshold rules on synthetic cases: parsing, selection, evaluation, and how a failure is worded."""

from __future__ import annotations

import math

import pytest
from synthetic import F16_MAX, F64_MAX, GRAD_0, GRAD_0_FIGURES, LABEL, LOSS_0, NAN, key, record, rules, variants_result

from bce_audit.errors import UsageError
from bce_audit.gate.interface import BoundCheck, ThresholdRule
from bce_audit.gate.thresholds import check_selection, evaluate_rule, evaluate_rules, parse_rules
from bce_audit.report.verdict_text import check_text, rule_failure_text, rule_heading, rule_tag

# --------------------------------------------------------------------------- parsing


def test_a_rule_table_becomes_a_rule_with_its_bounds_in_figure_order():
    (rule,) = rules(
        {
            "zero": 2,
            "stable_range": [-5, 5.5],
            "max_ulp": 4,
            "name": "strict",
            "label": 1,
            "formulation": "max-*",
            "quantity": "grad",
            "mean_bits": 0.25,
        }
    )
    assert rule == ThresholdRule(
        index=0,
        name="strict",
        formulation="max-*",
        dtype=None,
        domain=None,
        label=1.0,
        quantity="grad",
        bounds=(("max_ulp", 4.0), ("mean_bits", 0.25), ("zero", 2), ("stable_range", (-5.0, 5.5))),
    )
    assert isinstance(rule.label, float) and isinstance(dict(rule.bounds)["zero"], int)
    assert rule.id == "thresholds[0]"
    assert rule.selector_text == "formulation=max-* label=1 quantity=grad"
    assert rule.bounds_text == "max_ulp <= 4, mean_bits <= 0.25, zero <= 2, stable_range contains [-5, 5.5]"
    assert rule.title == f'thresholds[0] "strict": {rule.bounds_text}'
    unnamed = rules({"nan": 0}, {"label": LABEL, "max_ulp": 1e300, "dtype": "float*"})
    assert [r.id_and_name for r in unnamed] == [
        "thresholds[0] every case",
        "thresholds[1] dtype=float* label=0.30000000000000004",
    ]
    assert unnamed[1].bounds_text == "max_ulp <= 1e300"


def test_no_thresholds_is_no_rule():
    assert parse_rules(None, "c.toml") == ()
    assert parse_rules([], "c.toml") == ()


@pytest.mark.parametrize(
    "table, culprits",
    [
        ({"max_ulps": 1}, ["c.toml: thresholds[0]: unknown key 'max_ulps' (did you mean 'max_ulp'?)", "rule keys:"]),
        ({"formulation": "max-abs"}, ["c.toml: thresholds[0] sets no bound", "max_ulp, p99_ulp, mean_bits"]),
        ({"max_ulp": -1}, ["c.toml: thresholds[0].max_ulp must be >= 0, got -1"]),
        ({"max_ulp": "one"}, ["thresholds[0].max_ulp must be a number, got 'one'"]),
        ({"max_ulp": math.nan}, ["thresholds[0].max_ulp must be a number, got nan"]),
        ({"max_ulp": True}, ["thresholds[0].max_ulp must be a number, got True"]),
        ({"nan": 1.5}, ["thresholds[0].nan must be a whole number of points >= 0, got 1.5"]),
        ({"nan": True}, ["thresholds[0].nan must be a whole number of points >= 0, got True"]),
        ({"zero": -1}, ["thresholds[0].zero must be a whole number of points >= 0, got -1"]),
        ({"stable_range": [5, -5]}, ["thresholds[0].stable_range [5, -5] is inverted (LO must be <= HI)"]),
        ({"stable_range": [5]}, ["thresholds[0].stable_range must be two numbers [LO, HI], got [5]"]),
        ({"stable_range": 5}, ["thresholds[0].stable_range must be two numbers [LO, HI], got 5"]),
        ({"stable_range": [0, "x"]}, ["thresholds[0].stable_range must be a number, got 'x'"]),
        ({"dtype": "float15", "nan": 0}, ["thresholds[0]: unknown dtype 'float15' (did you mean 'float16'?)"]),
        ({"quantity": "gradient", "nan": 0}, ["thresholds[0]: unknown quantity 'gradient'", "loss, grad"]),
        ({"domain": "logit", "nan": 0}, ["thresholds[0]: unknown domain 'logit'"]),
        ({"formulation": "", "nan": 0}, ["thresholds[0].formulation must be a name or a glob pattern, got ''"]),
        ({"formulation": 3, "nan": 0}, ["thresholds[0].formulation must be a name or a glob pattern, got 3"]),
        ({"label": 2, "nan": 0}, ["thresholds[0].label 2 is outside [0, 1]"]),
        ({"label": "0", "nan": 0}, ["thresholds[0].label must be a number, got '0'"]),
        ({"name": 3, "nan": 0}, ["thresholds[0].name must be a string, got 3"]),
    ],
)
def test_bad_rules_are_one_line_usage_errors(table, culprits):
    with pytest.raises(UsageError) as exc:
        parse_rules([table], "c.toml")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("c.toml: thresholds[0]")
    for culprit in culprits:
        assert culprit in message


def test_the_rule_that_is_wrong_is_named_by_its_index():
    with pytest.raises(UsageError, match=r"^c\.toml: thresholds\[2\]\.max_ulp must be >= 0"):
        parse_rules([{"nan": 0}, {"zero": 0}, {"max_ulp": -0.5}], "c.toml")


@pytest.mark.parametrize(
    "items, message",
    [
        (5, "c.toml: thresholds must be a list of tables ([[thresholds]])"),
        ({"nan": 0}, "c.toml: thresholds must be a list of tables ([[thresholds]])"),
        ([1], "c.toml: thresholds[0] must be a table"),
    ],
)
def test_thresholds_that_are_not_a_list_of_tables(items, message):
    with pytest.raises(UsageError) as exc:
        parse_rules(items, "c.toml")
    assert str(exc.value) == message


def test_a_glob_is_not_checked_against_the_names_but_a_plain_name_is():
    (rule,) = rules({"dtype": "float1?", "domain": "prob*", "quantity": "[lg]*", "nan": 0})
    assert (rule.dtype, rule.domain, rule.quantity) == ("float1?", "prob*", "[lg]*")


# --------------------------------------------------------------------------- selection


def test_selection_by_glob_exact_name_and_exact_label():
    keys = [
        key("max-abs", "logits", "float32", 0.0, "loss"),
        key("max-abs", "logits", "float32", 0.0, "grad"),
        key("torch-logsigmoid", "logits", "float16", 1.0, "grad"),
        key("naive", "probabilities", "bfloat16", LABEL, "grad"),
    ]
    chosen = {
        "formulation=torch-*": [2],
        "formulation=*-abs": [0, 1],
        "quantity=g*": [1, 2, 3],
        "dtype=float*": [0, 1, 2],
        "dtype=*float16": [2, 3],
        "domain=probabilities": [3],
        "label=0": [0, 1],
        "label=1": [2],
        f"label={LABEL!r}": [3],
        "label=0.3": [],  # 0.3 is not 0.1 + 0.2
        "formulation=max-abs dtype=float32 quantity=grad": [1],
    }
    for text, expected in chosen.items():
        table: dict = {"nan": 0}
        for part in text.split():
            name, value = part.split("=")
            table[name] = float(value) if name == "label" else value
        (rule,) = rules(table)
        assert [i for i, k in enumerate(keys) if rule.selects(k)] == expected, text


def test_a_glob_is_case_sensitive():
    (rule,) = rules({"formulation": "MAX-*", "nan": 0})
    assert not rule.selects(LOSS_0)


PLANNED = [
    key(f, "logits", "float32", y, q)
    for f in ("max-abs", "torch-logsigmoid")
    for y in (0.0, 1.0)
    for q in ("loss", "grad")
]


@pytest.mark.parametrize(
    "table, message",
    [
        (
            {"formulation": "max-abz"},
            "c.toml: thresholds[0] (formulation=max-abz) selects no case of this sweep: no formulation matches "
            "'max-abz' (did you mean 'max-abs'?); this sweep has max-abs, torch-logsigmoid",
        ),
        (
            {"formulation": "naive"},
            "c.toml: thresholds[0] (formulation=naive) selects no case of this sweep: no formulation matches "
            "'naive'; this sweep has max-abs, torch-logsigmoid",
        ),
        (
            {"dtype": "float16"},
            "c.toml: thresholds[0] (dtype=float16) selects no case of this sweep: no dtype matches 'float16' "
            "(did you mean 'float32'?); this sweep has float32",
        ),
        (
            {"domain": "probabilities"},
            "c.toml: thresholds[0] (domain=probabilities) selects no case of this sweep: no domain matches "
            "'probabilities'; this sweep has logits",
        ),
        (
            {"label": 0.5},
            "c.toml: thresholds[0] (label=0.5) selects no case of this sweep: no label 0.5; this sweep has 0, 1",
        ),
        (
            {"formulation": "torch-*", "quantity": "loss", "label": 0.25},
            "c.toml: thresholds[0] (formulation=torch-* label=0.25 quantity=loss) selects no case of this sweep: "
            "no label 0.25; this sweep has 0, 1",
        ),
        (  # each selector matches some case, but no case matches them all
            {"formulation": "torch-*", "quantity": "grad", "label": 1, "dtype": "float16"},
            "c.toml: thresholds[0] (formulation=torch-* dtype=float16 label=1 quantity=grad) selects no case of "
            "this sweep: no dtype matches 'float16' (did you mean 'float32'?); this sweep has float32",
        ),
    ],
)
def test_a_rule_that_selects_no_planned_case_is_a_config_error(table, message):
    selecting = rules({"nan": 0}, table | {"nan": 0})
    with pytest.raises(UsageError) as exc:
        check_selection(selecting, PLANNED, "c.toml")
    assert str(exc.value) == message.replace("thresholds[0]", "thresholds[1]")


def _combination_only(rule_table: dict) -> tuple[ThresholdRule, list]:
    """A rule each of whose selectors matches a planned case, though no case matches them all."""
    (rule,) = rules(rule_table)
    check_selection((rule,), PLANNED, "c.toml")  # max-abs y=1 loss is planned
    planned = [k for k in PLANNED if not (k.formulation == "max-abs" and k.label == 1.0 and k.quantity == "loss")]
    return rule, planned


def test_a_rule_whose_selectors_each_match_but_not_together_is_refused():
    rule, planned = _combination_only({"formulation": "max-abs", "label": 1, "quantity": "loss", "nan": 0})
    with pytest.raises(UsageError) as exc:
        check_selection((rule,), planned, "c.toml")
    assert str(exc.value).startswith(
        "c.toml: thresholds[0] (formulation=max-abs label=1 quantity=loss) selects no case of this sweep"
    )


def test_the_hint_of_a_rule_that_selects_nothing_never_contradicts_itself():
    rule, planned = _combination_only({"formulation": "max-abs", "label": 1, "quantity": "loss", "nan": 0})
    with pytest.raises(UsageError) as exc:
        check_selection((rule,), planned, "c.toml")
    # today: "...: no label 1; this sweep has 0, 1"
    assert "no label 1;" not in str(exc.value)


# --------------------------------------------------------------------------- evaluation


def test_a_rule_holds_when_every_bound_holds_at_every_case_it_selects():
    figures = {LOSS_0: record(), key(quantity="grad"): record(max_ulp=4.0, zero=2, ok=1008)}
    (outcome,) = evaluate_rules(rules({"max_ulp": 4, "zero": 2, "stable_range": [-1e38, 1e38]}), figures)
    assert outcome.passed and outcome.failures == () and outcome.lost == ()
    checks = outcome.cases[1].checks
    assert [(c.figure, c.bound, c.actual, c.passed) for c in checks] == [
        ("max_ulp", 4.0, 4.0, True),
        ("zero", 2, 2, True),
        ("stable_range", (-1e38, 1e38), (-3.4028234663852886e38, 3.4028234663852886e38), True),
    ]
    assert rule_tag(outcome) == "ok"
    assert rule_heading(outcome) == (
        "thresholds[0] every case (2 cases): max_ulp <= 4, zero <= 2, stable_range contains [-1e38, 1e38]"
    )


def test_only_the_failing_bounds_of_a_case_are_named():
    grad_1 = key(label=1.0, quantity="grad")
    figures = {grad_1: record(ok=1004, zero=3, inaccurate=3, worst_input=-0.0)}
    (outcome,) = evaluate_rules(rules({"zero": 2, "nan": 0, "inaccurate": 5}), figures)
    (failure,) = outcome.failures
    assert [c.figure for c in failure.failed_checks] == ["zero"]
    assert [c.figure for c in failure.checks] == ["inaccurate", "nan", "zero"]
    assert rule_failure_text(failure) == "max-abs logits float32 y=1 grad: zero 3 > 2 (worst input 0)"
    assert rule_heading(outcome) == "thresholds[0] every case (1 of 1 case fail): inaccurate <= 5, nan <= 0, zero <= 2"
    assert rule_tag(outcome) == "FAIL"


def test_a_bound_is_inclusive_and_a_figure_just_above_it_fails():
    just_above = math.nextafter(4.0, math.inf)
    figures = {LOSS_0: record(max_ulp=4.0), GRAD_0: record(max_ulp=just_above)}
    (outcome,) = evaluate_rules(rules({"max_ulp": 4}), figures)
    assert [f.key for f in outcome.failures] == [GRAD_0]
    # 4.000000000000001 rounds to "4" with four digits: every digit is shown instead
    assert rule_failure_text(outcome.failures[0]) == (
        "max-abs logits float32 y=0 grad: max_ulp 4.000000000000001 > 4 (worst input -19.2)"
    )


def test_the_stable_range_must_contain_the_interval():
    figures = {
        key(label=0.0): record(stable_lo=-1.0, stable_hi=1.0),  # exactly the interval
        key(label=1.0): record(stable_lo=-1.0, stable_hi=0.5),  # short on one side
        key(label=0.5): record(stable_lo=NAN, stable_hi=NAN),  # no stable range at all
        key(label=0.25): record(),  # every finite float32
    }
    (outcome,) = evaluate_rules(rules({"stable_range": [-1, 1]}), figures)
    assert [f.key.label for f in outcome.failures] == [1.0, 0.5]
    texts = [rule_failure_text(f) for f in outcome.failures]
    assert texts == [
        "max-abs logits float32 y=1 loss: stable range [-1, 0.5] does not contain [-1, 1] (worst input -19.2)",
        "max-abs logits float32 y=0.5 loss: stable range none does not contain [-1, 1] (worst input -19.2)",
    ]
    (huge,) = evaluate_rules(rules({"stable_range": [-1e38, 1e38]}), {LOSS_0: record()})
    assert huge.passed


def test_an_undefined_figure_never_holds_even_against_a_huge_bound():
    figures = {LOSS_0: record(max_ulp=NAN, worst_input=NAN)}
    (outcome,) = evaluate_rules(rules({"max_ulp": F64_MAX}), figures)
    (failure,) = outcome.failures
    assert failure.checks[0].passed is False and math.isnan(failure.checks[0].actual)
    assert rule_failure_text(failure) == (
        "max-abs logits float32 y=0 loss: max_ulp undefined (no point with a finite output and truth), "
        "bound 1.79769e308"
    )


def test_the_largest_float64_fails_a_bound_of_1e300_and_the_dtypes_max_is_named():
    f16 = key(dtype="float16", label=1.0, quantity="grad")
    figures = {f16: record(max_ulp=F64_MAX, worst_input=F16_MAX)}
    (outcome,) = evaluate_rules(rules({"max_ulp": 1e300}), figures)
    assert rule_failure_text(outcome.failures[0]) == (
        "max-abs logits float16 y=1 grad: max_ulp 1.798e308 > 1e300 (worst input max)"
    )


def test_a_case_that_raised_fails_every_rule_that_selects_it():
    mine = key("mine")
    other = key("other")
    figures = {mine: record(error="ValueError: boom"), other: record(max_ulp=0.5)}
    outcomes = evaluate_rules(rules({"nan": 0}, {"formulation": "other", "max_ulp": 1}, {"max_ulp": 0.25}), figures)
    assert [o.passed for o in outcomes] == [False, True, False]
    assert [f.key for f in outcomes[0].failures] == [mine]
    assert outcomes[0].failures[0].error == "ValueError: boom" and outcomes[0].failures[0].checks == ()
    assert [f.key for f in outcomes[2].failures] == [mine, other]
    assert (
        rule_failure_text(outcomes[0].failures[0])
        == "mine logits float32 y=0 loss: the formulation raised: ValueError: boom"
    )


def test_a_case_with_no_point_never_passes():
    figures = {LOSS_0: record(points=0, ok=0, max_ulp=NAN, worst_input=NAN)}
    (outcome,) = evaluate_rules(rules({"nan": 1000}), figures)
    (failure,) = outcome.failures
    assert failure.error == "no input was evaluated (an empty grid)"
    assert rule_failure_text(failure) == (
        "max-abs logits float32 y=0 loss: the formulation raised: no input was evaluated (an empty grid)"
    )


def test_a_lost_case_neither_passes_nor_fails_a_rule():
    lost = key("mine")
    figures = {LOSS_0: record(), lost: record(lost="killed by SIGKILL")}
    (outcome,) = evaluate_rules(rules({"max_ulp": 1}), figures)
    assert outcome.failures == () and not outcome.passed
    (gone,) = outcome.lost
    assert (gone.key, gone.lost, gone.passed, gone.failed, gone.checks) == (lost, "killed by SIGKILL", False, False, ())
    assert rule_tag(outcome) == "LOST"
    assert rule_heading(outcome) == "thresholds[0] every case (1 of 2 cases not evaluated): max_ulp <= 1"
    (failing,) = evaluate_rules(rules({"max_ulp": 0.5}), figures)
    assert rule_tag(failing) == "FAIL"
    assert rule_heading(failing) == (
        "thresholds[0] every case (1 of 2 cases fail; 1 of 2 cases not evaluated): max_ulp <= 0.5"
    )


def test_evaluating_a_rule_that_selects_nothing_is_refused():
    (rule,) = rules({"formulation": "naive", "nan": 0})
    with pytest.raises(UsageError, match=r"^thresholds\[0\] \(formulation=naive\) selects no case of this sweep$"):
        evaluate_rule(rule, {LOSS_0: record()})


def test_the_worst_input_of_a_failure_is_the_cases():
    figures = {GRAD_0: record(**GRAD_0_FIGURES)}
    (outcome,) = evaluate_rules(rules({"max_ulp": 4}), figures)
    failure = outcome.failures[0]
    assert failure.worst_input == 0.0 and math.copysign(1.0, failure.worst_input) == -1.0


@pytest.mark.parametrize(
    "check, text",
    [
        (BoundCheck("max_ulp", 4.0, 8388608.0, False), "max_ulp 8388608 > 4"),
        (BoundCheck("p99_ulp", 0.9995, 0.99951171875, False), "p99_ulp 0.99951171875 > 0.9995"),
        (BoundCheck("mean_bits", 0.25, 16.0, False), "mean_bits 16 > 0.25"),
        (BoundCheck("mean_bits", 1e-3, 0.0123456, False), "mean_bits 0.01235 > 0.001"),
        (BoundCheck("zero", 2, 3, False), "zero 3 > 2"),
        (BoundCheck("max_ulp", 1.0, math.inf, False), "max_ulp inf > 1"),
        (BoundCheck("stable_range", (-1.0, 1.0), (NAN, NAN), False), "stable range none does not contain [-1, 1]"),
        (
            BoundCheck("stable_range", (-1e38, 1e38), (-F16_MAX, F16_MAX), False),
            "stable range [-max, max] does not contain [-1e38, 1e38]",
        ),
    ],
)
def test_a_failed_bound_in_words(check, text):
    dtype = "float16" if check.figure == "stable_range" else "float32"
    assert check_text(check, dtype) == text


# --------------------------------------------------------------------------- variant dimensions


def test_rules_select_by_the_variant_dimensions():
    keys = [c.key for c in variants_result().cases]  # focal gamma=0, gamma=2, gamma=2 compile; max-abs
    chosen = {
        "parameters=gamma=2": [2, 3, 4, 5],
        "parameters=gamma=*": [0, 1, 2, 3, 4, 5],
        "mode=compile": [4, 5],
        "mode=eager formulation=focal": [0, 1, 2, 3],
        "device=cpu quantity=grad": [1, 3, 5, 7],
        "device=cuda*": [],
    }
    for text, expected in chosen.items():
        table: dict = {"nan": 0}
        for part in text.split():
            name, _, value = part.partition("=")
            table[name] = value
        (rule,) = rules(table)
        assert [i for i, k in enumerate(keys) if rule.selects(k)] == expected, text
    (rule,) = rules({"mode": "compile", "parameters": "gamma=2", "nan": 0})
    assert rule.selector_text == "parameters=gamma=2 mode=compile"


def test_a_variant_selector_that_matches_nothing_names_what_the_sweep_has():
    keys = [c.key for c in variants_result().cases]
    with pytest.raises(UsageError) as info:
        check_selection(rules({"mode": "vmap", "nan": 0}), keys, "gate.toml")
    assert str(info.value).endswith("no mode matches 'vmap'; this sweep has eager, compile")
    plain = [key()]
    with pytest.raises(UsageError) as info:
        check_selection(rules({"parameters": "gamma=*", "nan": 0}), plain, "gate.toml")
    assert str(info.value).endswith("no parameters matches 'gamma=*'; this sweep has none")
