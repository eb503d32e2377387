"""The steps of `bce-audit check`: plan it before the sweep, then judge the result or update the baseline.

plan_check finds everything that can be wrong with the rules, the tolerance, the baseline file
and its settings before minutes of sweeping; judge turns a sweep result into a Verdict;
update_baseline writes the result as the new baseline (atomically) and says what changed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

from bce_audit.errors import IncompleteRun, UsageError
from bce_audit.files import Output, check_distinct, check_outputs
from bce_audit.gate.baseline import (
    Baseline,
    fingerprint,
    provenance_differences,
    read_baseline,
    render_baseline,
    settings_differences,
)
from bce_audit.gate.compare import compare
from bce_audit.gate.interface import (
    BaselineUpdate,
    CaseComparison,
    CaseRecord,
    Change,
    ThresholdRule,
    Tolerance,
    Verdict,
    first_few,
    planned_keys,
)
from bce_audit.gate.thresholds import check_selection, evaluate_rules, parse_rules
from bce_audit.gate.tolerance import ZERO_TOLERANCE, parse_tolerance
from bce_audit.settings import Settings
from bce_audit.sweep.result import AuditResult, CaseKey


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """A check, validated before the sweep.

    rules: the threshold rules, each known to select a case of the sweep.
    baseline_path: the baseline file (--baseline, or `baseline` in the config, relative to the
        config file's directory), or None.
    baseline: the baseline read and validated; None without one, or when --update-baseline
        creates it (or replaces an unreadable one: `unreadable` says why).
    tolerance, allow_missing: how the baseline is compared.
    update: --update-baseline: write the run as the new baseline instead of gating on it.
    config: where the config came from (None: no config).
    baseline_name: how the user named the baseline file (``--baseline`` or ``baseline (from CONFIG)``).
    """

    rules: tuple[ThresholdRule, ...]
    baseline_path: Path | None
    baseline: Baseline | None
    tolerance: Tolerance
    allow_missing: bool
    update: bool
    config: str | None
    unreadable: str | None = None
    baseline_name: str = "--baseline"

    @property
    def baseline_output(self) -> Output:
        return Output(self.baseline_name, self.baseline_path)


class _PlanFields(TypedDict):
    """The fields of a CheckPlan that an update and a check share."""

    rules: tuple[ThresholdRule, ...]
    baseline_path: Path | None
    tolerance: Tolerance
    allow_missing: bool
    config: str | None
    baseline_name: str


def _baseline_output(
    flag: str | os.PathLike[str] | None, config: dict[str, Any], config_source: str | None
) -> Output | None:
    """The baseline as the flag or the config names it (a config's path is relative to the
    config file), checked as any output is: a file, never standard output or a directory."""
    if flag is not None:
        name, text = "--baseline", os.fspath(flag)
    else:
        value: str | None = config.get("baseline")  # a string: config.validate checked it
        if value is None:
            return None
        name = f"baseline (from {config_source})" if config_source else "baseline"
        text = os.path.join(os.path.dirname(config_source), value) if config_source and value.strip() else value
    if text == "-":
        raise UsageError(f"{name} -: the baseline is a file, not standard output")
    return Output.parse(name, text)


def plan_check(
    config: dict[str, Any],
    config_source: str | None,
    settings: Settings,
    *,
    baseline_flag: str | os.PathLike[str] | None,
    update: bool,
    tolerance_flags: tuple[str, ...],
    allow_missing_flag: bool | None,
    paths: Sequence[Output] = (),
    inputs: Sequence[Output] = (),
) -> CheckPlan:
    """Validate everything a check needs; any problem is a UsageError (exit 2).

    paths / inputs: the outputs, and the files the run reads (the config, a user's source file),
    each with the flag or key that named it; no output may be the baseline file, an input or
    another output.
    """
    where = config_source or "config"
    rules = parse_rules(config.get("thresholds"), where)
    keys = planned_keys(settings)
    check_selection(rules, keys, where)
    tolerance = parse_tolerance(config.get("tolerance"), tolerance_flags, where)
    allow_missing = allow_missing_flag if allow_missing_flag is not None else bool(config.get("allow_missing", False))
    output = _baseline_output(baseline_flag, config, config_source)
    path = output.path if output is not None else None
    name = output.name if output is not None else "baseline"
    if output is not None:
        paths = [output, *paths]
    check_distinct(list(paths), inputs)  # before reading the baseline: an output must not overwrite it
    common = _PlanFields(
        rules=rules,
        baseline_path=path,
        tolerance=tolerance,
        allow_missing=allow_missing,
        config=config_source,
        baseline_name=name,
    )
    if update:
        if output is None or path is None:
            raise UsageError(
                '--update-baseline needs a baseline file: --baseline FILE, or baseline = "FILE" in the config'
            )
        check_outputs([output])  # as every output is (its distinctness checked above)
        if path.exists() and not path.is_file():  # a baseline is a file: never a device or a pipe
            raise UsageError(f"{name} {path}: not a regular file (a device, a pipe or a socket)")
        baseline, unreadable = None, None
        if path.exists():
            try:
                baseline = read_baseline(path)
            except UsageError as exc:
                unreadable = str(exc)
        return CheckPlan(baseline=baseline, update=True, unreadable=unreadable, **common)
    if not rules and path is None:
        raise UsageError(
            "nothing to check: no [[thresholds]] in the config and no baseline "
            '(--baseline FILE, or baseline = "FILE" in the config); see `bce-audit check --help`'
        )
    baseline = read_baseline(path) if path is not None else None
    if baseline is not None:
        current = settings.to_dict()
        if baseline.fingerprint != fingerprint(current):
            differences = "; ".join(settings_differences(baseline.settings, current))
            raise UsageError(
                f"baseline {path}: made with other settings, so its figures are not comparable: {differences}; "
                "run with the baseline's settings, or regenerate it with --update-baseline"
            )
        _check_overlap(baseline, keys)
    return CheckPlan(baseline=baseline, update=False, **common)


def _check_overlap(baseline: Baseline, keys: list[CaseKey]) -> None:
    """A baseline that holds no case of the run compares nothing: it is the wrong file, or made
    for other formulations, dtypes, domains or labels. Refused (exit 2) even with --allow-missing
    and even with threshold rules, which would otherwise pass with the baseline silently unused."""
    if any(k in baseline.figures for k in keys):
        return
    held = ", ".join(dict.fromkeys(k.formulation for k in baseline.figures))
    raise UsageError(
        f"no case of this run is in baseline {baseline.path} ({len(keys)} new, {len(baseline.figures)} missing): "
        f"nothing was compared; the baseline holds {held}; run its formulations, dtypes, domains and labels, "
        "or regenerate it with --update-baseline"
    )


def case_records(result: AuditResult) -> dict[CaseKey, CaseRecord]:
    return {c.key: CaseRecord.of(c) for c in result.cases}


def judge(plan: CheckPlan, result: AuditResult) -> Verdict:
    """Evaluate the rules and compare with the baseline: the verdict of the check."""
    figures = case_records(result)
    outcomes = evaluate_rules(plan.rules, figures)
    comparisons: tuple[CaseComparison, ...] = ()
    warnings: list[str] = []
    if plan.baseline is not None:
        _check_overlap(plan.baseline, list(figures))  # planned before the sweep; this guards the run itself
        comparisons = compare(plan.baseline.figures, figures, plan.tolerance, plan.allow_missing)
        raising = [c.key for c in comparisons if c.change is Change.STILL_RAISES]
        if raising:
            warnings.append(still_raising_warning(raising))
        moved = provenance_differences(plan.baseline.provenance, result.provenance)
        if moved:
            warnings.append(
                f"baseline {plan.baseline_path} was made in another environment, so figures may differ: "
                + "; ".join(moved)
            )
    lost = tuple((key, fig.lost) for key, fig in figures.items() if fig.lost is not None)
    return Verdict(
        rules=outcomes,
        comparisons=comparisons,
        cases_checked=len(result.cases),
        lost=lost,
        config=plan.config,
        baseline=None if plan.baseline is None else str(plan.baseline_path),
        tolerance=None if plan.baseline is None else plan.tolerance,
        warnings=tuple(warnings),
    )


def still_raising_warning(keys: list[CaseKey]) -> str:
    """One line: the cases that raised in the baseline and still raise (the first few by name)."""
    n = len(keys)
    return (
        f"{n} case{'s' if n != 1 else ''} raised in the baseline and still raise{'s' if n == 1 else ''}, "
        f"so {'they were' if n != 1 else 'it was'} not checked: {first_few(keys)}"
    )


def render_update_file(plan: CheckPlan, result: AuditResult) -> tuple[str, BaselineUpdate]:
    """The new baseline's text and what it changes against the file it replaces; the caller
    writes it with the run's other outputs. A run with lost cases (a user's function died or
    hung) cannot become a baseline: a UsageError-like refusal, exit 4."""
    lost = [c for c in result.cases if c.lost is not None]
    if lost:
        keys = [c.key for c in lost]
        raise IncompleteRun(
            f"not updating baseline {plan.baseline_path}: {len(keys)} case{'s' if len(keys) != 1 else ''} "
            f"could not be evaluated ({lost[0].lost}): {first_few(keys)}"
        )
    figures = case_records(result)
    settings = result.settings.to_dict()
    text = render_baseline(figures, settings, result.provenance)
    old = plan.baseline
    comparisons = () if old is None else compare(old.figures, figures, ZERO_TOLERANCE, allow_missing=True)
    return text, BaselineUpdate(
        path=str(plan.baseline_path),
        cases=len(figures),
        previous=None if old is None else len(old.figures),
        unreadable=plan.unreadable,
        settings_changes=() if old is None else tuple(settings_differences(old.settings, settings)),
        comparisons=comparisons,
        failed_rules=tuple(r for r in evaluate_rules(plan.rules, figures) if not r.passed),
        errors=tuple(k for k, f in figures.items() if f.error is not None),
    )
