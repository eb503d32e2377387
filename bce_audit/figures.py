"""The figures of a case, each declared once: its name, kind, CSV columns, table header, and
whether and how much the gate lets it get worse.

Everything that shows, stores or judges a figure derives from ``FIGURES``: the summary CSV's
columns, the --verbose table, the JSON report, the baseline file, threshold rules and the
default tolerance.
"""

from __future__ import annotations

import dataclasses
import enum
import math

from bce_audit.vocabulary import Status


class Kind(enum.StrEnum):
    """COUNT: points (an int, lower is better unless it is a total). FLOAT: an error figure
    (lower is better; NaN: undefined). INPUT: an input value. RANGE: an interval (lo, hi)."""

    COUNT = "count"
    FLOAT = "float"
    INPUT = "input"
    RANGE = "range"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of a case.

    name: how rules, tolerances, baselines and the JSON report name it.
    kind: what its value is (see Kind).
    csv: its columns in the summary CSV, in order (none: not in that file).
    header: its column header in the --verbose table (None: not shown there).
    gated: threshold rules may bound it, and the baseline comparison judges it.
    tolerance: how much worse it may get against a baseline by default (None: not at all; for
        stable_range, which may never shrink).
    meaning: one line for the docs and --help.
    decimals: tables show it with this many decimals (None: three significant digits).
    """

    name: str
    kind: Kind
    csv: tuple[str, ...]
    header: str | None
    gated: bool
    tolerance: float | None
    meaning: str
    decimals: int | None = None


def _count(name: str, header: str | None, gated: bool, meaning: str, csv: bool = True) -> Figure:
    return Figure(name, Kind.COUNT, (name,) if csv else (), header, gated, 0 if gated else None, meaning)


FIGURES: tuple[Figure, ...] = (
    _count("points", None, False, "finite inputs evaluated (the special inputs included)"),
    _count("ok", "ok", False, "points within the ULP threshold of the exact value"),
    _count("inaccurate", "inacc", True, "points more than the ULP threshold off"),
    _count("inf", "inf", True, "points where the output is ±inf and the exact value finite"),
    _count("nan", "nan", True, "points where the output is NaN and the exact value a number"),
    _count("zero", "zero", True, "points where the output is 0 and the exact value not"),
    _count("nonfinite", None, True, "±inf and NaN inputs whose result is not the exact limit", csv=False),
    Figure("max_ulp", Kind.FLOAT, ("max_ulp",), "max ulp", True, 1.0, "largest ULP error"),
    Figure("p99_ulp", Kind.FLOAT, ("p99_ulp",), "p99 ulp", True, 1.0, "99th percentile of the ULP errors"),
    Figure("mean_ulp", Kind.FLOAT, ("mean_ulp",), "mean ulp", False, None, "mean ULP error"),
    Figure("mean_bits", Kind.FLOAT, ("mean_bits",), "bits", True, 0.1, "mean bits of error (Herbie's measure)", 2),
    Figure("max_rel_err", Kind.FLOAT, ("max_rel_err",), None, False, None, "largest relative error"),
    Figure(
        "worst_input", Kind.INPUT, ("worst_input",), "worst input", False, None, "the input with the most bits of error"
    ),
    Figure(
        "stable_range",
        Kind.RANGE,
        ("stable_lo", "stable_hi"),
        None,
        True,
        None,
        "the widest interval around the centre where every evaluated input is ok (ends refined to exact edges)",
    ),
)
BY_NAME = {f.name: f for f in FIGURES}

# The order in which rules, tolerances and reports list the gated figures: error figures first,
# then the counts, then the stable range.
_KIND_ORDER = (Kind.FLOAT, Kind.COUNT, Kind.RANGE)
GATED: tuple[Figure, ...] = tuple(sorted((f for f in FIGURES if f.gated), key=lambda f: _KIND_ORDER.index(f.kind)))
GATED_NAMES = tuple(f.name for f in GATED)
GATED_FLOATS = tuple(f.name for f in GATED if f.kind is Kind.FLOAT)
GATED_COUNTS = tuple(f.name for f in GATED if f.kind is Kind.COUNT)
# the statuses a point can have in the statistics, in the order of their count figures
COUNTED_STATUSES = (Status.OK, Status.INACCURATE, Status.INF, Status.NAN, Status.ZERO)


@dataclasses.dataclass(frozen=True)
class CaseFigures:
    """The figures of one case, one field per entry of FIGURES (stable_range as two fields).

    A count is a number of finite inputs; ``nonfinite`` counts the ±inf and NaN inputs whose result
    is not the exact limit. The ULP figures are over the points where output and exact value are
    both finite (NaN when there is none), at most the largest float64. ``worst_input`` is NaN when
    every point is exact; the stable range is read from the failure map (its ends are exact edges where
    refined) and is NaN when the centre itself is not ok, unless the centre's own value alone fails
    (``CaseResult.stable_but_centre``).
    """

    points: int
    ok: int
    inaccurate: int
    inf: int
    nan: int
    zero: int
    nonfinite: int
    max_ulp: float
    p99_ulp: float
    mean_ulp: float
    mean_bits: float
    max_rel_err: float
    worst_input: float
    stable_lo: float
    stable_hi: float

    @classmethod
    def none(cls, nonfinite: int = 0) -> CaseFigures:
        """The figures of a case that has none (its formulation raised): no points, all undefined."""
        nan = math.nan
        return cls(0, 0, 0, 0, 0, 0, nonfinite, nan, nan, nan, nan, nan, nan, nan, nan)

    def value(self, figure: str) -> int | float | tuple[float, float]:
        """A figure by name: an int, a float, or (lo, hi) for stable_range."""
        if figure == "stable_range":
            return (self.stable_lo, self.stable_hi)
        value: int | float = getattr(self, figure)
        return value

    @property
    def counts(self) -> dict[str, int]:
        """Points per status, in status order."""
        return {s.value: getattr(self, s.value) for s in COUNTED_STATUSES}

    @property
    def worst_status(self) -> Status:
        present = [Status(s) for s, n in self.counts.items() if n]
        return max(present, key=lambda s: s.severity, default=Status.OK)

    def csv_values(self) -> list[int | float]:
        """The values of the summary CSV's figure columns, in order."""
        values: list[int | float] = []
        for figure in FIGURES:
            if figure.kind is Kind.RANGE:
                values += [self.stable_lo, self.stable_hi]
            elif figure.csv:
                values.append(getattr(self, figure.name))
        return values
