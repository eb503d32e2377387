"""The verdict of `bce-audit check` as plain text (terminal and CI logs), the report of
`check --update-baseline`, and the phrases every verdict renderer shares."""

from __future__ import annotations

import math
import re

from bce_audit.gate.interface import (
    BaselineUpdate,
    BoundCheck,
    CaseComparison,
    Change,
    DeltaValue,
    Direction,
    FigureDelta,
    RuleCaseResult,
    RuleOutcome,
    Verdict,
    first_few,
)
from bce_audit.report import numbers
from bce_audit.report.interface import VerdictFormat
from bce_audit.report.layout import printable, wrap
from bce_audit.sweep.result import CaseKey
from bce_audit.vocabulary import DType

TAG_WIDTH = 8
_GLUE = "\ue000"


# --------------------------------------------------------------------------- shared phrases


def _largest(dtype: str) -> float:
    try:
        return DType(dtype).format.largest_finite
    except ValueError:
        return math.inf


def fmt_figure(figure: str, value: DeltaValue, dtype: str, exact: bool = False) -> str:
    """A figure's value as a report shows it; ``exact`` writes floats as their repr."""
    if figure == "error":
        return "ran" if value is None else f"raised ({value})"
    if figure == "stable_range":
        assert isinstance(value, tuple)  # (lo, hi)
        lo, hi = value
        if exact and not math.isnan(lo):
            return f"[{numbers.exact(lo)}, {numbers.exact(hi)}]"
        return numbers.interval(lo, hi, _largest(dtype))
    if exact and isinstance(value, float) and math.isfinite(value):
        return numbers.exact(value)
    assert isinstance(value, int | float)  # a count or a float figure
    return numbers.figure(value)


def worst_text(worst_input: float, dtype: str) -> str:
    return "" if math.isnan(worst_input) else f" (worst input {numbers.value(worst_input, _largest(dtype))})"


def check_text(check: BoundCheck, dtype: str) -> str:
    """A failed bound: the figure, its value, the bound."""
    if check.figure == "stable_range":
        assert isinstance(check.bound, tuple)  # (lo, hi)
        lo, hi = (numbers.compact(x) for x in check.bound)
        return f"stable range {fmt_figure('stable_range', check.actual, dtype)} does not contain [{lo}, {hi}]"
    assert not isinstance(check.bound, tuple) and not isinstance(check.actual, tuple)  # numbers
    bound = numbers.compact(check.bound)
    if isinstance(check.actual, float) and math.isnan(check.actual):
        return f"{check.figure} undefined (no point with a finite output and truth), bound {bound}"
    actual = numbers.figure(check.actual)
    if float(actual) <= check.bound:  # rounded onto the bound: show every digit
        actual = numbers.exact(check.actual)
    return f"{check.figure} {actual} > {bound}"


def rule_failure_text(result: RuleCaseResult) -> str:
    """Why one case fails a rule, with its worst input."""
    if result.error is not None:
        return f"{result.key}: the formulation raised: {result.error}"
    checks = "; ".join(check_text(c, result.key.dtype) for c in result.failed_checks)
    return f"{result.key}: {checks}{worst_text(result.worst_input, result.key.dtype)}"


def delta_text(delta: FigureDelta, dtype: str, show_allowed: bool = True) -> str:
    """One figure that moved: `figure OLD -> NEW`, with the tolerance when it was exceeded."""
    if delta.figure == "error":
        if delta.new is not None:
            return f"the formulation now raises: {delta.new}"
        return f"the formulation no longer raises (it raised: {delta.old})"
    if delta.figure == "points":
        return f"points {delta.old} -> {delta.new} (another input grid: the figures are not comparable)"
    old = fmt_figure(delta.figure, delta.old, dtype)
    new = fmt_figure(delta.figure, delta.new, dtype)
    if not _reads_as(old, new, delta.old, delta.new):
        # rounded, the two would read equal or the wrong way round: show them exactly
        old = fmt_figure(delta.figure, delta.old, dtype, exact=True)
        new = fmt_figure(delta.figure, delta.new, dtype, exact=True)
    text = f"{delta.figure} {old} -> {new}"
    if show_allowed and delta.direction is Direction.WORSE and delta.allowed is not None:
        text += f" (allowed +{numbers.figure(delta.allowed)})"
    return text


def _reads_as(old_text: str, new_text: str, old: object, new: object) -> bool:
    """Whether the rounded texts keep the order of the values they stand for (a regression never
    reads as an improvement, nor a change as none)."""
    if old_text == new_text:
        return False
    if isinstance(old, int | float) and isinstance(new, int | float):
        try:
            a, b = float(old_text), float(new_text)
        except ValueError:
            return True  # "undefined", an interval: not numbers to compare
        return (a < b) == (old < new) and (a > b) == (old > new)
    return True


def comparison_text(comparison: CaseComparison, direction: Direction | None = None) -> str:
    """A case against the baseline: the deltas in ``direction`` (all if None), the worst input."""
    key = comparison.key
    if comparison.change is Change.NEW:
        return f"{key}: not in the baseline"
    if comparison.change is Change.MISSING:
        return f"{key}: in the baseline but not in this run (--allow-missing accepts that)"
    if comparison.change is Change.MISSING_ALLOWED:
        return f"{key}: in the baseline but not in this run (allowed)"
    if comparison.change is Change.STILL_RAISES:
        return f"{key}: {still_raises_text(comparison)}"
    deltas = [d for d in comparison.deltas if direction is None or d.direction is direction]
    moves = "; ".join(delta_text(d, key.dtype) for d in deltas)
    worst = worst_text(comparison.worst_input, key.dtype) if comparison.change is Change.REGRESSED else ""
    return f"{key}: {moves}{worst}"


def still_raises_text(comparison: CaseComparison) -> str:
    """A case that raised in the baseline and raises again, with its message (old -> new if it changed)."""
    assert comparison.errors is not None  # set for every case that still raises
    old, new = comparison.errors
    if old == new:
        return f"still raises, as in the baseline: {new}"
    return f"still raises, as in the baseline; note: the message changed: {old} -> {new}"


def rule_heading(outcome: RuleOutcome) -> str:
    """`id "name" (N cases): bounds`, or `(F of N cases fail)`, `(L of N cases not evaluated)`."""
    n = len(outcome.cases)
    cases = f"{n} case{'s' if n != 1 else ''}"
    parts = []
    if outcome.failures:
        parts.append(f"{len(outcome.failures)} of {cases} fail")
    if outcome.lost:
        parts.append(f"{len(outcome.lost)} of {cases} not evaluated")
    count = "; ".join(parts) or cases
    return f"{outcome.rule.id_and_name} ({count}): {outcome.rule.bounds_text}"


def rule_tag(outcome: RuleOutcome) -> str:
    return "FAIL" if outcome.failures else "LOST" if outcome.lost else "ok"


def lost_text(key: CaseKey, why: str | None) -> str:
    return f"{key}: not evaluated: {why}"


LOST_HEADING = "not evaluated (neither a pass nor a failure; the check cannot pass):"


# --------------------------------------------------------------------------- the terminal report


class _Lines:
    def __init__(self, width: int | None):
        self.width = width
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        """A heading or summary line, wrapped with a small indent."""
        self._wrap(text, "", "  ")

    def entry(self, tag: str, text: str) -> None:
        """A tagged line (`  FAIL    text`), wrapped under its text."""
        self._wrap(text, "  " + tag.ljust(TAG_WIDTH), " " * (TAG_WIDTH + 4))

    def detail(self, text: str) -> None:
        """A line under an entry, one step further in."""
        self._wrap(text, " " * (TAG_WIDTH + 4), " " * (TAG_WIDTH + 6))

    def _wrap(self, text: str, first: str, rest: str) -> None:
        # an interval such as [-1e38, 1e38] stays on one line: its spaces are glued with a
        # private-use character until the text is wrapped
        glued = re.sub(r"\[[^\]]*\]", lambda m: m.group(0).replace(" ", _GLUE), printable(text))
        self.lines += [line.replace(_GLUE, " ") for line in wrap(glued, self.width, first, rest)]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class VerdictTextFormat(VerdictFormat):
    """What failed and by how much, then the one-line summary; plain text within `width`
    columns (None: one line per item, as logs and pipes get it)."""

    def __init__(self, width: int | None = None):
        self.width = width

    def render(self, verdict: Verdict) -> str:
        out = _Lines(self.width)
        if verdict.rules:
            out.add(f"thresholds from {verdict.config}:")
            for outcome in verdict.rules:
                out.entry(rule_tag(outcome), rule_heading(outcome))
                for failure in outcome.failures:
                    out.detail(rule_failure_text(failure))
        if verdict.baseline is not None:
            out.add(f"baseline {verdict.baseline} (tolerance {verdict.tolerance}):")
            for c in verdict.regressed:
                out.entry("FAIL", comparison_text(c, Direction.WORSE))
            for c in verdict.missing:
                out.entry("FAIL" if c.failed else "missing", comparison_text(c))
            for c in verdict.improved:
                out.entry("better", comparison_text(c, Direction.BETTER))
            for c in verdict.new:
                out.entry("new", comparison_text(c))
            for c in verdict.still_raising:
                out.entry("raises", comparison_text(c))
            same = sum(c.change is Change.UNCHANGED for c in verdict.comparisons)
            out.entry("ok", f"{same} case{'s' if same != 1 else ''} as in the baseline (within the tolerance)")
        if verdict.lost:
            out.add(LOST_HEADING)
            for key, why in verdict.lost:
                out.entry("LOST", lost_text(key, why))
        out.add(verdict.summary())
        return out.text()


def render_update(update: BaselineUpdate, width: int | None = None) -> str:
    """What `check --update-baseline` wrote, case by case against the file it replaced."""
    out = _Lines(width)
    if update.previous is None:
        how = "replaced an unreadable file" if update.unreadable else "created"
        out.add(f"baseline {update.path}: {how}, {numbers.count(update.cases, 'case')}")
    else:
        out.add(f"baseline {update.path}: updated, {numbers.count(update.cases, 'case')} (it had {update.previous})")
    if update.unreadable:
        out.entry("note", f"the old file could not be read: {update.unreadable}")
    comparable = not update.settings_changes  # figures of other settings say nothing
    if not comparable:
        out.entry("note", "settings changed: " + "; ".join(update.settings_changes) + "; the figures are not compared")
    counts = dict.fromkeys(("worse", "better", "added", "removed"), 0)
    for c in update.comparisons:
        if c.change is Change.NEW:
            tag = "added"
            text = f"{c.key}"
        elif c.change in (Change.MISSING, Change.MISSING_ALLOWED):
            tag = "removed"
            text = f"{c.key}"
        elif c.change is Change.STILL_RAISES:
            assert c.errors is not None  # set for every case that still raises
            if comparable and c.errors[0] != c.errors[1]:
                out.entry("note", f"{c.key}: still raises; the message changed: {c.errors[0]} -> {c.errors[1]}")
            continue
        elif c.change is Change.UNCHANGED or not comparable:
            continue
        else:
            tag = "worse" if c.change is Change.REGRESSED else "better"
            text = f"{c.key}: " + "; ".join(delta_text(d, c.key.dtype, show_allowed=False) for d in c.deltas)
        counts[tag] += 1
        out.entry(tag, text)
    if update.previous is not None and comparable:
        unchanged = sum(c.change in (Change.UNCHANGED, Change.STILL_RAISES) for c in update.comparisons)
        out.add(", ".join(f"{n} {tag}" for tag, n in counts.items()) + f", {unchanged} unchanged")
    elif update.previous is not None:
        out.add(f"{counts['added']} added, {counts['removed']} removed")
    if update.errors:
        n = len(update.errors)
        out.add(
            f"note: {n} of the {update.cases} cases {'are errors' if n != 1 else 'is an error'} "
            f"(the formulation raised; no figures recorded): {first_few(update.errors)}"
        )
    if update.failed_rules:
        ids = ", ".join(r.rule.id for r in update.failed_rules)
        out.add(
            f"note: these figures fail {len(update.failed_rules)} threshold rule(s) ({ids}); "
            "run the check without --update-baseline to see them"
        )
    return out.text()
