"""The steps of a check on synthetic results: the plan (everything refused before a sweep), judge()
and its verdict's exit code, and --update-baseline's file and report."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from synthetic import LOST, NASTY, PROVENANCE, case, figures, key, named, record, result, rules

from bce_audit.errors import ExitCode, IncompleteRun, UsageError
from bce_audit.files import Output
from bce_audit.gate.baseline import read_baseline, render_baseline
from bce_audit.gate.interface import (
    CaseComparison,
    Change,
    RuleCaseResult,
    RuleOutcome,
    Tolerance,
    Verdict,
    first_few,
    planned_keys,
)
from bce_audit.gate.plan import CheckPlan, case_records, judge, plan_check, render_update_file, still_raising_warning
from bce_audit.sweep.result import AuditResult
from bce_audit.vocabulary import Domain, DType

# The sweep of these tests: 8 cases, max-abs and torch-logsigmoid, float32 logits, y in {0, 1}.
KEYS = [
    key(f, "logits", "float32", y, q)
    for f in ("max-abs", "torch-logsigmoid")
    for y in (0.0, 1.0)
    for q in ("loss", "grad")
]


def _run(**changes) -> AuditResult:
    """A clean case for each of KEYS; changes: {name: CaseResult} by index name k0..k7."""
    cases = [changes.get(f"k{i}") or case(*named(k)) for i, k in enumerate(KEYS)]
    return result(cases, points=50)


RUN = _run()
SETTINGS = RUN.settings


def _write(path: Path, run: AuditResult, **settings_changes) -> Path:
    settings = run.settings.to_dict() | settings_changes
    path.write_text(render_baseline(case_records(run), settings, run.provenance), encoding="utf-8")
    return path


def _plan(config: dict | None = None, source: str | None = None, **kw) -> CheckPlan:
    args = dict(baseline_flag=None, update=False, tolerance_flags=(), allow_missing_flag=None, paths=[])
    return plan_check(config or {}, source, kw.pop("settings", SETTINGS), **(args | kw))


def _usage(**kw) -> str:
    with pytest.raises(UsageError) as exc:
        _plan(**kw)
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- the plan


def test_the_planned_cases_in_report_order():
    assert planned_keys(SETTINGS) == KEYS
    two = dataclasses.replace(SETTINGS, dtypes=(DType.FLOAT16, DType.FLOAT32), domains=tuple(Domain))
    keys = planned_keys(two)
    assert len(keys) == 32 and keys[:3] == [
        key("max-abs", "logits", "float16", 0.0, "loss"),
        key("max-abs", "logits", "float16", 0.0, "grad"),
        key("max-abs", "logits", "float16", 1.0, "loss"),
    ]
    assert keys[4] == key("max-abs", "logits", "float32", 0.0, "loss")
    assert keys[8] == key("max-abs", "probabilities", "float16", 0.0, "loss")


def test_nothing_to_check_is_refused():
    assert _usage() == (
        "nothing to check: no [[thresholds]] in the config and no baseline "
        '(--baseline FILE, or baseline = "FILE" in the config); see `bce-audit check --help`'
    )


def test_rules_alone_are_a_plan():
    plan = _plan({"thresholds": [{"nan": 0}], "allow_missing": True}, "c.toml")
    assert (plan.baseline, plan.baseline_path, plan.update, plan.config, plan.allow_missing) == (
        None,
        None,
        False,
        "c.toml",
        True,
    )
    assert [r.id for r in plan.rules] == ["thresholds[0]"] and plan.tolerance == Tolerance()


def test_update_needs_a_baseline_file():
    assert _usage(config={"thresholds": [{"nan": 0}]}, update=True) == (
        '--update-baseline needs a baseline file: --baseline FILE, or baseline = "FILE" in the config'
    )


def test_the_baseline_is_a_file_not_standard_output():
    assert _usage(baseline_flag=Path("-")) == "--baseline -: the baseline is a file, not standard output"
    message = _usage(config={"baseline": "-"}, source="c.toml")
    assert message == "baseline (from c.toml) -: the baseline is a file, not standard output"


def test_a_baseline_from_a_config_that_is_no_file_is_named_without_none():
    message = _usage(config={"baseline": "-"}, source=None)  # bce_audit.check(config={"baseline": ...})
    assert "(from None)" not in message  # today: "baseline (from None) -: the baseline is a file, ..."


def test_the_rules_are_checked_before_the_baseline_is_read(tmp_path: Path):
    config = {"thresholds": [{"formulation": "naive", "nan": 0}]}
    message = _usage(config=config, source="c.toml", baseline_flag=tmp_path / "absent.json")
    assert message.startswith("c.toml: thresholds[0] (formulation=naive) selects no case of this sweep")


def test_a_baseline_in_the_config_is_relative_to_the_config(tmp_path: Path):
    conf = tmp_path / "conf"
    conf.mkdir()
    _write(conf / "b.json", RUN)
    plan = _plan({"baseline": "b.json"}, str(conf / "gate.toml"))
    assert plan.baseline_path == conf / "b.json" and plan.baseline is not None
    assert plan.baseline_name == f"baseline (from {conf / 'gate.toml'})"
    assert plan.baseline_output == Output(f"baseline (from {conf / 'gate.toml'})", conf / "b.json")
    # the flag wins over the config, and is taken as given
    _write(tmp_path / "flag.json", RUN)
    plan = _plan({"baseline": "b.json"}, str(conf / "gate.toml"), baseline_flag=tmp_path / "flag.json")
    assert (plan.baseline_path, plan.baseline_name) == (tmp_path / "flag.json", "--baseline")


@pytest.mark.parametrize(
    "flag, config, allowed",
    [
        (None, {}, False),
        (None, {"allow_missing": True}, True),
        (False, {"allow_missing": True}, False),
        (True, {}, True),
    ],
)
def test_allow_missing_from_the_flag_else_the_config(tmp_path: Path, flag, config, allowed):
    path = _write(tmp_path / "b.json", RUN)
    assert _plan(config, "c.toml", baseline_flag=path, allow_missing_flag=flag).allow_missing is allowed


def test_the_tolerance_from_the_config_then_the_flags(tmp_path: Path):
    path = _write(tmp_path / "b.json", RUN)
    plan = _plan(
        {"tolerance": {"max_ulp": 3, "zero": 1}}, "c.toml", baseline_flag=path, tolerance_flags=("max_ulp:+5",)
    )
    assert (plan.tolerance.allowed("max_ulp"), plan.tolerance.allowed("zero")) == (5.0, 1)
    assert _usage(config={"tolerance": {"zero": 0.5}}, source="c.toml", baseline_flag=path) == (
        "c.toml: tolerance: zero must be a whole number of points, got 0.5"
    )


@pytest.mark.parametrize(
    "changes, difference",
    [
        ({"points": 60}, "points 60 (baseline 50)"),
        ({"seed": 1}, "seed 1 (baseline 0)"),
        ({"ulp_threshold": 2.0}, "ulp_threshold 2 (baseline 4)"),
        ({"logit_range": (-5.0, 5.0)}, "range [-5, 5] (baseline (default))"),
        ({"sampling": "exhaustive"}, 'sampling "exhaustive" (baseline "bits")'),
        ({"points": 60, "seed": 1}, "points 60 (baseline 50); seed 1 (baseline 0)"),
    ],
)
def test_a_baseline_made_with_other_settings_is_refused(tmp_path: Path, changes: dict, difference: str):
    path = _write(tmp_path / "b.json", RUN)
    from bce_audit.vocabulary import Sampling

    if "sampling" in changes:
        changes = changes | {"sampling": Sampling(changes["sampling"])}
    assert _usage(baseline_flag=path, settings=dataclasses.replace(SETTINGS, **changes)) == (
        f"baseline {path}: made with other settings, so its figures are not comparable: {difference}; "
        "run with the baseline's settings, or regenerate it with --update-baseline"
    )


def test_settings_that_only_choose_cases_may_differ(tmp_path: Path):
    path = _write(tmp_path / "b.json", RUN)
    narrower = dataclasses.replace(SETTINGS, formulations=("max-abs",), labels=(0.0,))
    plan = _plan(baseline_flag=path, settings=narrower)
    assert plan.baseline is not None and len(plan.baseline.figures) == 8


@pytest.mark.parametrize(
    "config, flag",
    [({}, None), ({}, True), ({"allow_missing": True}, None), ({"thresholds": [{"nan": 1000}]}, True)],
)
def test_a_baseline_that_holds_no_case_of_the_run_is_refused(tmp_path: Path, config: dict, flag):
    path = _write(tmp_path / "b.json", RUN)
    naive = dataclasses.replace(SETTINGS, formulations=("naive",))
    message = _usage(config=config, source="c.toml", baseline_flag=path, allow_missing_flag=flag, settings=naive)
    assert message == (
        f"no case of this run is in baseline {path} (4 new, 8 missing): nothing was compared; the baseline holds "
        "max-abs, torch-logsigmoid; run its formulations, dtypes, domains and labels, or regenerate it with "
        "--update-baseline"
    )


def test_an_unreadable_baseline_is_refused_but_replaced_by_an_update(tmp_path: Path):
    path = tmp_path / "b.json"
    path.write_text("{ truncated", encoding="utf-8")
    message = _usage(baseline_flag=path)
    assert message.startswith(f"baseline {path}: not valid JSON (truncated or corrupt?): ")
    plan = _plan(baseline_flag=path, update=True)
    assert plan.update and plan.baseline is None and plan.unreadable == message


def test_an_update_reads_the_old_file_if_there_is_one(tmp_path: Path):
    plan = _plan(baseline_flag=tmp_path / "new.json", update=True)
    assert (plan.baseline, plan.unreadable) == (None, None)
    old = _write(tmp_path / "old.json", RUN, points=40)  # other settings: an update replaces it all the same
    plan = _plan(baseline_flag=old, update=True)
    assert plan.baseline is not None and plan.baseline.settings["points"] == 40


def test_an_update_into_a_missing_directory_is_refused(tmp_path: Path):
    where = tmp_path / "no" / "b.json"
    assert _usage(config={"baseline": "no/b.json"}, source=str(tmp_path / "c.toml"), update=True).startswith(
        f"baseline (from {tmp_path / 'c.toml'}) {where}: "
    )
    assert "does not exist" in _usage(baseline_flag=where, update=True)


def test_no_output_may_be_the_baseline(tmp_path: Path):
    path = _write(tmp_path / "b.json", RUN)
    message = _usage(baseline_flag=path, paths=[Output("--junit", tmp_path / "." / "b.json")])
    assert message.startswith(f"--junit {tmp_path / 'b.json'} and --baseline {path} are the same file")


# --------------------------------------------------------------------------- judge


def _judge(run: AuditResult, baseline_run: AuditResult | None, tmp_path: Path, **kw) -> Verdict:
    config = kw.pop("config", {})
    flag = None if baseline_run is None else _write(tmp_path / "b.json", baseline_run)
    return judge(_plan(config, "c.toml", baseline_flag=flag, **kw), run)


def test_a_run_as_in_its_baseline_passes(tmp_path: Path):
    v = _judge(RUN, RUN, tmp_path, config={"thresholds": [{"max_ulp": 1}]})
    assert (v.exit_code, v.passed, v.failed) == (ExitCode.OK, True, False)
    assert [c.change for c in v.comparisons] == [Change.UNCHANGED] * 8
    assert (v.cases_checked, v.config, v.baseline, v.tolerance, v.warnings, v.lost) == (
        8,
        "c.toml",
        str(tmp_path / "b.json"),
        Tolerance(),
        (),
        (),
    )
    assert v.summary() == "check passed: 1 rule, 8 cases checked, 0 failed, 0 improved, 0 new"


def test_without_a_baseline_there_is_nothing_to_compare(tmp_path: Path):
    v = _judge(RUN, None, tmp_path, config={"thresholds": [{"max_ulp": 0.5}]})
    assert (v.comparisons, v.baseline, v.tolerance) == ((), None, None)
    assert v.exit_code is ExitCode.REGRESSION and len(v.failed_cases) == 8
    assert v.summary() == "check FAILED: 1 rule (1 failed), 8 cases checked, 8 failed"


def test_a_regression_fails_with_exit_1(tmp_path: Path):
    worse = _run(k1=case(*named(KEYS[1]), figures(max_ulp=2.5)))
    v = _judge(worse, RUN, tmp_path)
    assert v.exit_code is ExitCode.REGRESSION and [c.key for c in v.regressed] == [KEYS[1]]
    assert _judge(worse, RUN, tmp_path, tolerance_flags=("max_ulp:+1.5",)).exit_code is ExitCode.OK


def test_a_lost_case_makes_the_check_incomplete_exit_4(tmp_path: Path):
    lost = _run(k2=case(*named(KEYS[2]), lost=LOST))
    v = _judge(lost, RUN, tmp_path, config={"thresholds": [{"max_ulp": 1}]})
    assert v.lost == ((KEYS[2], LOST),)
    assert (v.exit_code, v.passed, v.failed) == (ExitCode.INCOMPLETE, False, False)
    assert [c.key for c in v.comparisons if c.change is Change.LOST] == [KEYS[2]]
    assert [c.key for c in v.rules[0].lost] == [KEYS[2]]
    assert v.summary() == "check INCOMPLETE: 1 rule, 8 cases checked, 0 failed, 0 improved, 0 new, 1 not evaluated"
    # a failure wins over a lost case
    failing = _judge(lost, RUN, tmp_path, config={"thresholds": [{"max_ulp": 0.5}]})
    assert failing.exit_code is ExitCode.REGRESSION
    assert (
        failing.summary()
        == "check FAILED: 1 rule (1 failed), 8 cases checked, 7 failed, 0 improved, 0 new, 1 not evaluated"
    )


def test_a_case_that_still_raises_passes_with_a_warning(tmp_path: Path):
    raised = {f"k{i}": case(*named(KEYS[i]), error=NASTY) for i in (4, 5)}
    run = _run(**raised)
    v = _judge(run, run, tmp_path)
    assert v.exit_code is ExitCode.OK
    assert [(c.key, c.errors) for c in v.still_raising] == [(KEYS[4], (NASTY, NASTY)), (KEYS[5], (NASTY, NASTY))]
    assert v.warnings == (
        "2 cases raised in the baseline and still raise, so they were not checked: "
        "torch-logsigmoid logits float32 y=0 loss; torch-logsigmoid logits float32 y=0 grad",
    )
    assert v.summary().endswith("0 failed, 0 improved, 0 new, 2 still raise")
    # a case that starts raising fails
    v = _judge(run, RUN, tmp_path)
    assert v.exit_code is ExitCode.REGRESSION and [c.key for c in v.regressed] == [KEYS[4], KEYS[5]]


def test_a_baseline_from_another_environment_only_warns(tmp_path: Path):
    other = dataclasses.replace(
        RUN, provenance_source=lambda: PROVENANCE | {"torch": "1.0.0", "cpu_capability": "NEON", "platform": "x"}
    )
    v = _judge(RUN, other, tmp_path)
    assert v.exit_code is ExitCode.OK
    assert v.warnings == (
        f"baseline {tmp_path / 'b.json'} was made in another environment, so figures may differ: "
        "torch 1.0.0 -> 2.13.0+cpu; cpu_capability NEON -> AVX512",
    )


def test_improved_new_and_missing_cases(tmp_path: Path):
    better = _run(k0=case(*named(KEYS[0]), figures(max_ulp=0.5)))
    baseline = dataclasses.replace(RUN, cases=RUN.cases[:6])
    v = _judge(better, baseline, tmp_path)
    assert ([c.key for c in v.improved], [c.key for c in v.new]) == ([KEYS[0]], KEYS[6:])
    assert v.exit_code is ExitCode.OK
    narrower = dataclasses.replace(better, cases=better.cases[:4])
    v = _judge(narrower, RUN, tmp_path, settings=dataclasses.replace(SETTINGS, formulations=("max-abs",)))
    assert [c.key for c in v.missing] == KEYS[4:] and v.exit_code is ExitCode.REGRESSION
    assert v.summary() == "check FAILED: 0 rules, 4 cases checked, 4 failed, 1 improved, 0 new, 4 missing"
    v = _judge(
        narrower,
        RUN,
        tmp_path,
        allow_missing_flag=True,
        settings=dataclasses.replace(SETTINGS, formulations=("max-abs",)),
    )
    assert v.exit_code is ExitCode.OK and {c.change for c in v.missing} == {Change.MISSING_ALLOWED}


def test_judge_refuses_a_run_the_baseline_shares_nothing_with(tmp_path: Path):
    plan = _plan(baseline_flag=_write(tmp_path / "b.json", RUN))
    elsewhere = result([case("naive", "logits", "float32", 0.0, "loss")], points=50)
    with pytest.raises(UsageError, match=r"^no case of this run is in baseline .* \(1 new, 8 missing\)"):
        judge(plan, elsewhere)


# --------------------------------------------------------------------------- the verdict's exit code


K = key()


@pytest.mark.parametrize(
    "rules_fail, compared, lost, code",
    [
        (False, (), False, ExitCode.OK),
        (True, (), False, ExitCode.REGRESSION),
        (False, (Change.REGRESSED,), False, ExitCode.REGRESSION),
        (False, (Change.MISSING,), False, ExitCode.REGRESSION),
        (False, (Change.MISSING_ALLOWED, Change.NEW, Change.IMPROVED, Change.STILL_RAISES), False, ExitCode.OK),
        (False, (Change.LOST,), True, ExitCode.INCOMPLETE),
        (True, (Change.LOST,), True, ExitCode.REGRESSION),
        (False, (Change.REGRESSED,), True, ExitCode.REGRESSION),
    ],
)
def test_the_exit_code(rules_fail: bool, compared: tuple, lost: bool, code: ExitCode):
    (rule,) = rules({"max_ulp": 1})
    outcome = RuleOutcome(rule, (RuleCaseResult(K, (), "boom" if rules_fail else None, math.nan),))
    v = Verdict(
        rules=(outcome,),
        comparisons=tuple(CaseComparison(key(str(i)), c) for i, c in enumerate(compared)),
        cases_checked=3,
        baseline="b.json" if compared else None,
        lost=((key("z"), "hung"),) if lost else (),
    )
    assert v.exit_code is code
    assert v.passed is (code is ExitCode.OK)


def test_failed_cases_are_distinct_and_in_order():
    (r0, r1) = rules({"max_ulp": 1}, {"nan": 0})
    a, b = key("a"), key("b")
    fail = lambda k: RuleCaseResult(k, (), "boom", math.nan)  # noqa: E731
    v = Verdict(
        rules=(RuleOutcome(r0, (fail(b),)), RuleOutcome(r1, (fail(a), fail(b)))),
        comparisons=(CaseComparison(a, Change.REGRESSED), CaseComparison(key("c"), Change.MISSING)),
        cases_checked=2,
        baseline="b.json",
    )
    assert v.failed_cases == (b, a, key("c"))
    assert v.summary() == "check FAILED: 2 rules (2 failed), 2 cases checked, 3 failed, 0 improved, 0 new, 1 missing"


def test_long_case_lists_name_five_then_count_the_rest():
    keys = [key("f", "logits", "float32", i / 10, "loss") for i in range(7)]
    five = "; ".join(str(k) for k in keys[:5])
    assert five.startswith("f logits float32 y=0 loss; f logits float32 y=0.1 loss")
    assert first_few(keys[:5]) == five
    assert first_few(keys) == five + "; and 2 more"
    assert first_few(keys, shown=1) == f"{keys[0]}; and 6 more"
    many = "7 cases raised in the baseline and still raise, so they were not checked: "
    assert still_raising_warning(keys) == f"{many}{five}; and 2 more"
    one = "1 case raised in the baseline and still raises, so it was not checked: "
    assert still_raising_warning(keys[:1]) == f"{one}{keys[0]}"


# --------------------------------------------------------------------------- --update-baseline


def test_a_run_with_a_lost_case_cannot_become_a_baseline(tmp_path: Path):
    plan = _plan(baseline_flag=tmp_path / "b.json", update=True)
    lost = _run(k3=case(*named(KEYS[3]), lost=LOST), k7=case(*named(KEYS[7]), lost="hung"))
    with pytest.raises(IncompleteRun) as exc:
        render_update_file(plan, lost)
    assert exc.value.exit_code is ExitCode.INCOMPLETE
    assert str(exc.value) == (
        f"not updating baseline {tmp_path / 'b.json'}: 2 cases could not be evaluated ({LOST}): "
        "max-abs logits float32 y=1 grad; torch-logsigmoid logits float32 y=1 grad"
    )


def test_a_new_baseline_holds_the_run_and_says_what_it_holds(tmp_path: Path):
    path = tmp_path / "b.json"
    plan = _plan(
        {"thresholds": [{"formulation": "max-abs", "max_ulp": 0.5}, {"nan": 0}]},
        "c.toml",
        baseline_flag=path,
        update=True,
    )
    run = _run(k6=case(*named(KEYS[6]), error=NASTY))
    text, update = render_update_file(plan, run)
    assert (update.path, update.cases, update.previous, update.unreadable) == (str(path), 8, None, None)
    assert (update.settings_changes, update.comparisons, update.errors) == ((), (), (KEYS[6],))
    assert [r.rule.id for r in update.failed_rules] == ["thresholds[0]", "thresholds[1]"]  # the error fails both
    path.write_text(text, encoding="utf-8")
    b = read_baseline(path)
    assert list(b.figures) == KEYS and b.figures[KEYS[6]].error == NASTY and b.settings == RUN.settings.to_dict()


def test_an_update_compares_with_zero_tolerance_against_the_old_file(tmp_path: Path):
    path = _write(tmp_path / "b.json", RUN)
    plan = _plan(baseline_flag=path, update=True)
    run = _run(k0=case(*named(KEYS[0]), figures(max_ulp=1.5)))
    narrower = dataclasses.replace(run, cases=run.cases[:7])
    _, update = render_update_file(plan, narrower)
    assert (update.previous, update.cases, update.settings_changes) == (8, 7, ())
    assert [(c.key, c.change) for c in update.comparisons if c.change is not Change.UNCHANGED] == [
        (KEYS[0], Change.REGRESSED),  # +0.5 is within check's tolerance, not an update's
        (KEYS[7], Change.MISSING_ALLOWED),
    ]
    other = dataclasses.replace(narrower, settings=dataclasses.replace(SETTINGS, points=40, seed=3))
    _, update = render_update_file(plan, other)
    assert update.settings_changes == ("points 40 (baseline 50)", "seed 3 (baseline 0)")


def test_an_update_of_an_unreadable_file_says_so(tmp_path: Path):
    path = tmp_path / "b.json"
    path.write_text("[]", encoding="utf-8")
    _, update = render_update_file(_plan(baseline_flag=path, update=True), RUN)
    assert update.previous is None
    assert update.unreadable == f"baseline {path}: expected a JSON object: not a bce-audit baseline"


def test_records_of_a_result_keep_errors_and_lost_cases():
    run = _run(k0=case(*named(KEYS[0]), error=NASTY), k1=case(*named(KEYS[1]), lost=LOST))
    records = case_records(run)
    assert list(records) == KEYS
    assert (records[KEYS[0]].error, records[KEYS[0]].lost, records[KEYS[0]].points) == (NASTY, None, 0)
    assert (records[KEYS[1]].error, records[KEYS[1]].lost) == (LOST, LOST)
    assert records[KEYS[2]] == record()
