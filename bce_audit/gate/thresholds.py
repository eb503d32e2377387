"""Threshold rules (`[[thresholds]]` in the config): parsing, validation, selection, evaluation.

A rule selects cases (each selector optional; fnmatch globs for the names) and bounds their
figures. A rule that selects no case of the sweep is a configuration error, so that a typo can
never pass silently; a case whose formulation raised fails every rule that selects it.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

from bce_audit.errors import UsageError, did_you_mean
from bce_audit.figures import GATED_COUNTS, GATED_NAMES
from bce_audit.gate.interface import (
    GLOB_SELECTORS,
    SELECTOR_NAMES,
    BoundCheck,
    CaseRecord,
    RuleCaseResult,
    RuleOutcome,
    ThresholdRule,
)
from bce_audit.report.numbers import label as label_text
from bce_audit.sweep.result import CaseKey
from bce_audit.vocabulary import Domain, DType, ParsableEnum, Quantity

# selector -> the enum its non-glob value must name (None: any name; label is a number)
SELECTORS: dict[str, type[ParsableEnum] | None] = {
    "formulation": None,
    "dtype": DType,
    "domain": Domain,
    "label": None,
    "quantity": Quantity,
    "parameters": None,
    "mode": None,
    "device": None,
}
assert tuple(SELECTORS) == SELECTOR_NAMES
RULE_KEYS = ("name", *SELECTORS, *GATED_NAMES)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


# --------------------------------------------------------------------------- parsing


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise UsageError(f"{what} must be a number, got {value!r}")
    return float(value)


def _parse_bound(figure: str, value: object, what: str) -> float | tuple[float, float]:
    if figure == "stable_range":
        if not isinstance(value, list) or len(value) != 2:
            raise UsageError(f"{what} must be two numbers [LO, HI], got {value!r}")
        lo, hi = _number(value[0], what), _number(value[1], what)
        if lo > hi:
            raise UsageError(f"{what} [{lo:g}, {hi:g}] is inverted (LO must be <= HI)")
        return (lo, hi)
    if figure in GATED_COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{what} must be a whole number of points >= 0, got {value!r}")
        return value
    bound = _number(value, what)
    if bound < 0:
        raise UsageError(f"{what} must be >= 0, got {value!r}")
    return bound


def _parse_rule(index: int, table: object, where: str) -> ThresholdRule:
    rid = f"{where}: thresholds[{index}]"
    if not isinstance(table, dict):
        raise UsageError(f"{rid} must be a table")
    for key in table:
        if key not in RULE_KEYS:
            hint = did_you_mean(key, RULE_KEYS, cutoff=0.6)
            raise UsageError(f"{rid}: unknown key {key!r}{hint}; rule keys: {', '.join(RULE_KEYS)}")
    name = table.get("name")
    if name is not None and not isinstance(name, str):
        raise UsageError(f"{rid}.name must be a string, got {name!r}")
    selectors: dict[str, Any] = {}  # keyword arguments of ThresholdRule
    for selector, enum in SELECTORS.items():
        value = table.get(selector)
        if value is None:
            selectors[selector] = None
        elif selector == "label":
            y = _number(value, f"{rid}.label")
            if not 0.0 <= y <= 1.0:
                raise UsageError(f"{rid}.label {y:g} is outside [0, 1]")
            selectors[selector] = y
        elif not isinstance(value, str) or not value:
            raise UsageError(f"{rid}.{selector} must be a name or a glob pattern, got {value!r}")
        else:
            if enum is not None and not _is_glob(value):
                try:
                    enum.parse(value, selector)
                except UsageError as exc:
                    raise UsageError(f"{rid}: {exc}") from None
            selectors[selector] = value
    bounds = tuple(
        (figure, _parse_bound(figure, table[figure], f"{rid}.{figure}")) for figure in GATED_NAMES if figure in table
    )
    if not bounds:
        raise UsageError(f"{rid} sets no bound; give at least one of {', '.join(GATED_NAMES)}")
    return ThresholdRule(index=index, name=name, bounds=bounds, **selectors)


def parse_rules(items: object, where: str) -> tuple[ThresholdRule, ...]:
    """The rules of a `thresholds` list (`where` names the config in error messages)."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise UsageError(f"{where}: thresholds must be a list of tables ([[thresholds]])")
    return tuple(_parse_rule(i, table, where) for i, table in enumerate(items))


def check_selection(rules: tuple[ThresholdRule, ...], keys: list[CaseKey], where: str) -> None:
    """Every rule must select at least one case of the sweep: a typo must not pass silently."""
    for rule in rules:
        if any(rule.selects(k) for k in keys):
            continue
        hint = ""
        for selector in GLOB_SELECTORS:
            pattern = getattr(rule, selector)
            present = list(dict.fromkeys(getattr(k, selector) for k in keys))
            if pattern is not None and not any(fnmatch.fnmatchcase(v, pattern) for v in present):
                suggestion = did_you_mean(pattern, present)
                has = ", ".join(v or "none" for v in present)  # parameters: "" when none was asked for
                hint = f": no {selector} matches {pattern!r}{suggestion}; this sweep has {has}"
                break
        else:
            labels = list(dict.fromkeys(k.label for k in keys))
            if rule.label is not None and rule.label not in labels:
                hint = f": no label {label_text(rule.label)}; this sweep has {', '.join(map(label_text, labels))}"
            else:  # each selector matches some case, but no case matches them all
                hint = ": each of its selectors matches some case, but no case matches all of them"
        raise UsageError(f"{where}: {rule.id} ({rule.selector_text}) selects no case of this sweep{hint}")


# --------------------------------------------------------------------------- evaluation


def _holds(figure: str, bound: float | tuple[float, float], actual: float | tuple[float, float]) -> bool:
    if figure == "stable_range":
        assert isinstance(bound, tuple) and isinstance(actual, tuple)  # (lo, hi) both
        (want_lo, want_hi), (lo, hi) = bound, actual
        return lo <= want_lo and hi >= want_hi  # False when the range is NaN (none)
    assert not isinstance(bound, tuple) and not isinstance(actual, tuple)
    return actual <= bound  # False for an undefined (NaN) figure


def evaluate_rule(rule: ThresholdRule, figures: dict[CaseKey, CaseRecord]) -> RuleOutcome:
    results = []
    for key, fig in figures.items():
        if not rule.selects(key):
            continue
        if fig.lost is not None:
            results.append(RuleCaseResult(key, (), None, math.nan, lost=fig.lost))
            continue
        if fig.error is None and fig.points == 0:  # a case with no point can never pass
            results.append(RuleCaseResult(key, (), "no input was evaluated (an empty grid)", math.nan))
            continue
        if fig.error is not None:
            results.append(RuleCaseResult(key, (), fig.error, fig.worst_input))
            continue
        checks = tuple(
            BoundCheck(figure, bound, fig.value(figure), _holds(figure, bound, fig.value(figure)))
            for figure, bound in rule.bounds
        )
        results.append(RuleCaseResult(key, checks, None, fig.worst_input))
    if not results:  # check_selection runs before the sweep; this guards the evaluation itself
        raise UsageError(f"{rule.id} ({rule.selector_text}) selects no case of this sweep")
    return RuleOutcome(rule, tuple(results))


def evaluate_rules(rules: tuple[ThresholdRule, ...], figures: dict[CaseKey, CaseRecord]) -> tuple[RuleOutcome, ...]:
    return tuple(evaluate_rule(rule, figures) for rule in rules)
