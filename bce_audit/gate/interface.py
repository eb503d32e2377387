"""The verdict of `bce-audit check`: what each threshold rule and each baseline comparison found.

Plain frozen dataclasses, nothing else: ``thresholds`` and ``compare`` fill them, the renderers in
``report`` read them, and ``Verdict.exit_code`` is the one place that turns them into an exit code.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import math
from typing import TYPE_CHECKING, TypeAlias

from bce_audit.errors import ExitCode
from bce_audit.figures import BY_NAME, GATED_COUNTS, GATED_FLOATS, CaseFigures
from bce_audit.report import numbers
from bce_audit.report.numbers import compact
from bce_audit.report.numbers import label as label_text
from bce_audit.sweep.result import CaseKey, CaseResult
from bce_audit.vocabulary import Quantity

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.settings import Settings


# What a FigureDelta holds: a count or a float, (lo, hi) for stable_range, and for `error` the
# formulation's message (None: it ran).
DeltaValue: TypeAlias = int | float | tuple[float, float] | str | None


def first_few(keys: list[CaseKey] | tuple[CaseKey, ...], shown: int = 5) -> str:
    """The first ``shown`` cases by name, then how many more: `a; b; and 3 more`."""
    names = "; ".join(str(k) for k in keys[:shown])
    return names + (f"; and {len(keys) - shown} more" if len(keys) > shown else "")


def planned_keys(settings: Settings) -> list[CaseKey]:
    """The cases a sweep with these settings produces, known before it runs (a parameter sweep:
    each formulation once per combination of the values of the parameters it takes)."""
    runs: list[tuple[str, str]] = [(f, "") for f in settings.formulations]
    if settings.parameter_sweep:
        from bce_audit.formulations.selection import parameter_variants, resolve

        variants = parameter_variants(resolve(settings.selection, settings.functions), settings.parameter_sweep)
        runs = [(f.name, parameters) for f, parameters in variants]
    return [
        CaseKey(f, str(domain), str(dtype), float(y), str(q), parameters=parameters)
        for f, parameters in runs
        for domain in settings.domains
        for dtype in settings.dtypes
        for y in settings.labels
        for q in Quantity
    ]


@dataclasses.dataclass(frozen=True)
class CaseRecord:
    """What the gate knows of one case: its figures, or why it has none.

    figures: the case's figures; ``CaseFigures.none()`` when the formulation raised (``error``
        holds the message) or could not be evaluated at all (``lost`` says why).
    A lost case is never judged and never stored in a baseline.
    """

    figures: CaseFigures
    error: str | None = None
    lost: str | None = None

    @classmethod
    def of(cls, case: CaseResult) -> CaseRecord:
        if case.figures is None:
            return cls(CaseFigures.none(), case.error or "raised", case.lost)
        return cls(case.figures)

    def value(self, figure: str) -> int | float | tuple[float, float]:
        """One gated figure: a float, a count, or (lo, hi) for stable_range."""
        return self.figures.value(figure)

    @property
    def points(self) -> int:
        return self.figures.points

    @property
    def worst_input(self) -> float:
        return self.figures.worst_input


# --------------------------------------------------------------------------- thresholds


# the selectors of a threshold rule, in the order reports name them; all but label are globs
SELECTOR_NAMES = ("formulation", "dtype", "domain", "label", "quantity", "parameters", "mode", "device")
GLOB_SELECTORS = tuple(name for name in SELECTOR_NAMES if name != "label")


@dataclasses.dataclass(frozen=True)
class ThresholdRule:
    """One `[[thresholds]]` table.

    index: its position in the list; the rule's id is `thresholds[index]`.
    name: an optional name the reports show.
    formulation, dtype, domain, quantity: fnmatch patterns, or None for any.
    label: the label it selects, or None for any.
    parameters, mode, device: fnmatch patterns over a case's variant dimensions (see
        ``sweep.result.VARIANT_DEFAULTS``), or None for any.
    bounds: (figure, bound) pairs in GATED_NAMES order: max_ulp, p99_ulp, mean_bits are upper
        bounds on the figure, the counts upper bounds on the number of points, and stable_range
        (lo, hi) an interval the case's stable range must contain.
    """

    index: int
    name: str | None
    formulation: str | None
    dtype: str | None
    domain: str | None
    label: float | None
    quantity: str | None
    bounds: tuple[tuple[str, float | tuple[float, float]], ...]
    parameters: str | None = None
    mode: str | None = None
    device: str | None = None

    @property
    def id(self) -> str:
        return f"thresholds[{self.index}]"

    @property
    def selector_text(self) -> str:
        parts = [
            f"{k}={label_text(v) if k == 'label' else v}" for k in SELECTOR_NAMES if (v := getattr(self, k)) is not None
        ]
        return " ".join(parts) if parts else "every case"

    @property
    def bounds_text(self) -> str:
        return ", ".join(bound_text(figure, bound) for figure, bound in self.bounds)

    @property
    def id_and_name(self) -> str:
        """The id and the name (or the selectors)."""
        return f"{self.id} " + (f'"{self.name}"' if self.name else self.selector_text)

    @property
    def title(self) -> str:
        """The id, the name (or the selectors) and the bounds: what a report calls the rule."""
        return f"{self.id_and_name}: {self.bounds_text}"

    def selects(self, key: CaseKey) -> bool:
        for selector in GLOB_SELECTORS:
            pattern = getattr(self, selector)
            if pattern is not None and not fnmatch.fnmatchcase(getattr(key, selector), pattern):
                return False
        return self.label is None or key.label == self.label


def bound_text(figure: str, bound: float | tuple[float, float]) -> str:
    if figure == "stable_range":
        assert isinstance(bound, tuple)  # stable_range's bound is (lo, hi)
        return f"stable_range contains [{numbers.compact(bound[0])}, {numbers.compact(bound[1])}]"
    assert not isinstance(bound, tuple)
    return f"{figure} <= {numbers.compact(bound)}"


@dataclasses.dataclass(frozen=True)
class BoundCheck:
    """One bound of a rule at one case.

    figure: the name of a gated figure (``figures.GATED``). bound: the rule's limit ((lo, hi) for stable_range, which
    the case's stable range must contain). actual: the case's figure. passed: whether it holds
    (an undefined figure, NaN, never holds).
    """

    figure: str
    bound: float | tuple[float, float]
    actual: float | tuple[float, float]
    passed: bool


@dataclasses.dataclass(frozen=True)
class RuleCaseResult:
    """A rule applied to one case it selects.

    checks: one per bound of the rule (empty when the formulation raised).
    error: the formulation's error message; such a case fails every rule that selects it.
    worst_input: the case's input with the most bits of error (NaN: none).
    lost: why the case could not be evaluated; such a case neither passes nor fails the rule.
    A case with no point at all fails every rule (there is nothing that could have passed).
    """

    key: CaseKey
    checks: tuple[BoundCheck, ...]
    error: str | None
    worst_input: float
    lost: str | None = None

    @property
    def passed(self) -> bool:
        return self.lost is None and self.error is None and all(c.passed for c in self.checks)

    @property
    def failed(self) -> bool:
        return self.lost is None and not self.passed

    @property
    def failed_checks(self) -> tuple[BoundCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)


@dataclasses.dataclass(frozen=True)
class RuleOutcome:
    """A threshold rule and its result at every case it selects (at least one)."""

    rule: ThresholdRule
    cases: tuple[RuleCaseResult, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def failures(self) -> tuple[RuleCaseResult, ...]:
        return tuple(c for c in self.cases if c.failed)

    @property
    def lost(self) -> tuple[RuleCaseResult, ...]:
        return tuple(c for c in self.cases if c.lost is not None)


# --------------------------------------------------------------------------- baseline


# the figures a tolerance may be set for: every gated figure but the stable range
TOLERANCE_KEYS = (*GATED_FLOATS, *GATED_COUNTS)


def _defaults() -> tuple[tuple[str, float], ...]:
    return tuple((name, BY_NAME[name].tolerance or 0) for name in TOLERANCE_KEYS)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """allowances: (figure, how much worse it may get) for every figure of TOLERANCE_KEYS:
    ULPs for max_ulp and p99_ulp, bits for mean_bits, points for the counts."""

    allowances: tuple[tuple[str, float], ...] = dataclasses.field(default_factory=_defaults)

    def allowed(self, figure: str) -> float:
        return dict(self.allowances)[figure]

    def __str__(self) -> str:
        parts = [f"{f} +{compact(self.allowed(f))}" for f in GATED_FLOATS]
        counts = {self.allowed(f) for f in GATED_COUNTS}
        if len(counts) == 1:
            parts.append(f"counts +{compact(counts.pop())}")
        else:
            parts += [f"{f} +{compact(self.allowed(f))}" for f in GATED_COUNTS]
        return ", ".join(parts)  # the stable range may never shrink


class Direction(enum.StrEnum):
    """How a figure moved against the baseline."""

    WORSE = "worse"  # beyond the tolerance: the case fails
    TOLERATED = "tolerated"  # worse, but within the tolerance
    BETTER = "better"


@dataclasses.dataclass(frozen=True)
class FigureDelta:
    """One figure that differs from the baseline.

    figure: the name of a gated figure, or `points` (the input grid changed) or `error` (old / new
        are the error messages, None when the formulation ran).
    allowed: how much worse it may get (None: not at all / not applicable).
    """

    figure: str
    old: DeltaValue
    new: DeltaValue
    allowed: float | None
    direction: Direction


class Change(enum.StrEnum):
    """What happened to one case against the baseline."""

    UNCHANGED = "unchanged"  # no gated figure moved, or only within the tolerance
    IMPROVED = "improved"  # some figure got better, none worse beyond the tolerance
    REGRESSED = "regressed"  # some figure got worse beyond the tolerance: fails
    STILL_RAISES = "still-raises"  # the formulation raised in the baseline and raises again: reported, passes
    NEW = "new"  # in this run, not in the baseline: reported, passes
    MISSING = "missing"  # in the baseline, not in this run: fails
    MISSING_ALLOWED = "missing-allowed"  # the same, with --allow-missing: reported, passes
    LOST = "lost"  # could not be evaluated in this run (a user's function died or hung): not judged


@dataclasses.dataclass(frozen=True)
class CaseComparison:
    """One case against the baseline.

    deltas: the figures that moved (empty for new and missing cases, and for a case that still
        raises: it has no figures to compare).
    worst_input: the input with the most bits of error in this run (NaN: none, or not run).
    errors: (the baseline's message, this run's) for a case that still raises; else None.
    lost: why a lost case could not be evaluated.
    """

    key: CaseKey
    change: Change
    deltas: tuple[FigureDelta, ...] = ()
    worst_input: float = math.nan
    errors: tuple[str, str] | None = None
    lost: str | None = None

    @property
    def failed(self) -> bool:
        return self.change in (Change.REGRESSED, Change.MISSING)


@dataclasses.dataclass(frozen=True)
class BaselineUpdate:
    """What `check --update-baseline` wrote, against the file it replaced (glibc's ulps update).

    path: the baseline written. cases: how many cases it holds.
    previous: None when there was no file before; else how many cases the old file held.
    unreadable: why the old file could not be read (it was replaced all the same), or None.
    settings_changes: the figure-affecting settings that differ from the old file's, as text.
    comparisons: every case against the old file with zero tolerance.
    failed_rules: the threshold rules these figures fail (an update exits 0 all the same).
    errors: the cases whose formulation raised: recorded as errors (no figures).
    """

    path: str
    cases: int
    previous: int | None
    unreadable: str | None
    settings_changes: tuple[str, ...]
    comparisons: tuple[CaseComparison, ...]
    failed_rules: tuple[RuleOutcome, ...] = ()
    errors: tuple[CaseKey, ...] = ()


# --------------------------------------------------------------------------- the verdict


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Everything `bce-audit check` decided, rendered by report/ and turned into the exit code.

    rules: every threshold rule with its outcome, in config order.
    comparisons: every case against the baseline (run order, then the missing ones); empty
        without a baseline.
    cases_checked: cases in this run.
    lost: (case, why) for every case of the run that could not be evaluated: never a pass.
    config: the config file the rules came from (None: none). baseline: the baseline file.
    tolerance: the tolerance the baseline was compared with (None without a baseline).
    warnings: one line each (a baseline from another environment, ...): never a failure.
    """

    rules: tuple[RuleOutcome, ...]
    comparisons: tuple[CaseComparison, ...]
    cases_checked: int
    config: str | None = None
    baseline: str | None = None
    tolerance: Tolerance | None = None
    warnings: tuple[str, ...] = ()
    lost: tuple[tuple[CaseKey, str], ...] = ()

    @property
    def failed_rules(self) -> tuple[RuleOutcome, ...]:
        return tuple(r for r in self.rules if r.failures)

    def _with(self, *changes: Change) -> tuple[CaseComparison, ...]:
        return tuple(c for c in self.comparisons if c.change in changes)

    @property
    def regressed(self) -> tuple[CaseComparison, ...]:
        return self._with(Change.REGRESSED)

    @property
    def improved(self) -> tuple[CaseComparison, ...]:
        return self._with(Change.IMPROVED)

    @property
    def new(self) -> tuple[CaseComparison, ...]:
        return self._with(Change.NEW)

    @property
    def missing(self) -> tuple[CaseComparison, ...]:
        return self._with(Change.MISSING, Change.MISSING_ALLOWED)

    @property
    def still_raising(self) -> tuple[CaseComparison, ...]:
        """Cases whose formulation raised in the baseline and raises again: not a failure, but
        nothing about them was checked, so every report says so."""
        return self._with(Change.STILL_RAISES)

    @property
    def failed_cases(self) -> tuple[CaseKey, ...]:
        """Distinct cases that fail a rule or the baseline (missing ones included), in order."""
        keys = [f.key for r in self.rules for f in r.failures]
        keys += [c.key for c in self.comparisons if c.failed]
        return tuple(dict.fromkeys(keys))

    @property
    def failed(self) -> bool:
        """A rule or the baseline failed on a case that was evaluated."""
        return bool(self.failed_rules) or any(c.failed for c in self.comparisons)

    @property
    def passed(self) -> bool:
        """Every planned case was evaluated and judged, and nothing failed."""
        return not self.failed and not self.lost

    @property
    def exit_code(self) -> ExitCode:
        if self.failed:
            return ExitCode.REGRESSION
        return ExitCode.INCOMPLETE if self.lost else ExitCode.OK

    def summary(self) -> str:
        """The one-line summary every renderer ends (or starts) with."""
        rules = f"{len(self.rules)} rule{'s' if len(self.rules) != 1 else ''}"
        if self.failed_rules:
            rules += f" ({len(self.failed_rules)} failed)"
        parts = [rules, f"{numbers.count(self.cases_checked, 'case')} checked", f"{len(self.failed_cases)} failed"]
        if self.baseline is not None:
            parts += [f"{len(self.improved)} improved", f"{len(self.new)} new"]
            if self.missing:
                parts.append(f"{len(self.missing)} missing")
            if self.still_raising:
                parts.append(f"{len(self.still_raising)} still raise{'s' if len(self.still_raising) == 1 else ''}")
        if self.lost:
            parts.append(f"{len(self.lost)} not evaluated")
        word = "passed" if self.passed else "FAILED" if self.failed else "INCOMPLETE"
        return f"check {word}: " + ", ".join(parts)
