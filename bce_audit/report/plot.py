"""Figures of an audit (``--plot DIR``, ``bce_audit.write_plots``): one per (formulation, quantity).

Each figure has a panel per (domain, label): the ULP error against the input, one colour per
dtype, on a log axis (an exact point sits on the floor marked ``0``; a NaN or ±inf output, which
has no ULP error, is a marker in its own row above the plot), and under it the status bands of
each dtype (``report.bands``) with its stable range. The input axis shows every binade: symlog for
logits, a logit scale for probabilities.

matplotlib is an optional dependency (``pip install 'bce-audit[plot]'``), imported only here and
only when a plot is asked for; it draws with the Agg backend, and the files are deterministic:
no date, a fixed SVG hash salt, fixed metadata.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from bce_audit.errors import UsageError
from bce_audit.report import numbers
from bce_audit.report.bands import bands
from bce_audit.sweep.result import AuditResult, CaseResult
from bce_audit.version import __version__
from bce_audit.vocabulary import Domain, DType, Status

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

INSTALL = "pip install 'bce-audit[plot]'"
# Where an exact result (0 ULP) is drawn on the log axis.
FLOOR = 1e-2
DTYPE_COLOURS = {
    DType.FLOAT16: "#1f77b4",
    DType.BFLOAT16: "#ff7f0e",
    DType.FLOAT32: "#2ca02c",
    DType.FLOAT64: "#9467bd",
}
DTYPE_MARKERS = {DType.FLOAT16: "o", DType.BFLOAT16: "s", DType.FLOAT32: "^", DType.FLOAT64: "D"}
STATUS_COLOURS = {
    Status.INACCURATE: "#f2a33a",
    Status.ZERO: "#e377c2",
    Status.INF: "#d62728",
    Status.NAN: "#444444",
    Status.ERROR: "#8c564b",
}
_NONFINITE_ROWS = {Status.INF: 0.95, Status.NAN: 0.985}  # axes fraction of the rows of inf and NaN outputs
_DPI = 110
_OUTSIDE = "#ececec"  # the band rows beyond a dtype's values
_CREATOR = f"bce-audit {__version__}"


def require_matplotlib() -> None:
    """A UsageError (exit 2) naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"--plot needs matplotlib, which is not installed: {INSTALL}") from None


def _pyplot() -> Any:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["svg.hashsalt"] = "bce-audit"  # fixed ids: the same SVG every time
    import matplotlib.pyplot as plt

    return plt


def _stem(*parts: str) -> str:
    return "_".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts if p)


def _groups(result: AuditResult) -> Iterator[tuple[str, str, list[CaseResult]]]:
    """(subject, quantity, cases) per figure, in report order."""
    seen: dict[tuple[str, str], list[CaseResult]] = {}
    for case in result.cases:
        seen.setdefault((case.key.subject, str(case.quantity)), []).append(case)
    for (subject, quantity), cases in seen.items():
        yield subject, quantity, cases


def figures(result: AuditResult) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every figure, PNG then SVG, in report order."""
    plt = _pyplot()
    files: list[tuple[str, bytes]] = []
    with np.errstate(all="ignore"):  # the axis transforms overflow float64 at the ends of the range, harmlessly
        files += _draw(plt, result)
    return files


def _draw(plt: Any, result: AuditResult) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    for subject, quantity, cases in _groups(result):
        fig = _figure(plt, subject, quantity, cases, result.settings.ulp_threshold)
        stem = _stem(subject, quantity)
        for fmt, metadata in (
            ("png", {"Software": _CREATOR}),
            ("svg", {"Date": None, "Creator": _CREATOR}),
        ):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=_DPI, metadata=metadata)
            files.append((f"{stem}.{fmt}", buffer.getvalue()))
        plt.close(fig)
    return files


def _figure(plt: Any, subject: str, quantity: str, cases: list[CaseResult], threshold: float) -> Any:
    domains = list(dict.fromkeys(c.domain for c in cases))
    labels = list(dict.fromkeys(c.label for c in cases))
    dtypes = list(dict.fromkeys(c.dtype for c in cases))
    band_ratio = 0.12 * len(dtypes) + 0.1
    fig = plt.figure(figsize=(6.4 * len(labels), (4.2 + 1.1 * band_ratio * 4) * len(domains)), layout="constrained")
    grid = fig.add_gridspec(2 * len(domains), len(labels), height_ratios=[1.0, band_ratio] * len(domains))
    for row, domain in enumerate(domains):
        for col, label in enumerate(labels):
            top = fig.add_subplot(grid[2 * row, col])
            bottom = fig.add_subplot(grid[2 * row + 1, col], sharex=top)
            chosen = [c for c in cases if c.domain is domain and c.label == label]
            _panel(top, bottom, chosen, domain, dtypes, threshold)
            top.set_title(f"{domain}, y = {numbers.label(label)}", fontsize=10)
    fig.suptitle(f"{subject}: {quantity}, ULP error against the exact value", fontsize=12)
    handles = [
        plt.Line2D([], [], color=DTYPE_COLOURS[d], marker=DTYPE_MARKERS[d], linestyle="", label=str(d)) for d in dtypes
    ]
    handles += [
        plt.Line2D([], [], color="black", marker="v", markerfacecolor="none", linestyle="", label="output 0 (zero)"),
        plt.Line2D([], [], color="black", marker="x", linestyle="", label="NaN or ±inf output (top rows)"),
    ]
    handles += [plt.Rectangle((0, 0), 1, 1, color=STATUS_COLOURS[s], label=str(s)) for s in STATUS_COLOURS]
    handles.append(plt.Rectangle((0, 0), 1, 1, color=_OUTSIDE, label="outside the dtype"))
    handles.append(plt.Line2D([], [], color="black", linewidth=2.5, label="stable range"))
    handles.append(
        plt.Line2D([], [], color="#888888", linestyle="--", label=f"threshold {numbers.figure(threshold)} ULP")
    )
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    return fig


# How much the binades far from 1 (for logits) or from 1/2 (for probabilities) are narrowed: the
# input axis places a binade at asinh(distance in binades / _SPREAD), so every binade of every dtype
# shows, and those where losses break down (|z| of a few to a few hundred) are the widest.
_SPREAD = 2.0


def _logit_axis(tiny: float) -> tuple[Any, Any]:
    """(forward, inverse) for logits: sign(z) * (1 + asinh(log2|z| / S) - asinh(log2(tiny) / S)),
    linear on [-tiny, tiny]. In log2, never dividing by a subnormal (matplotlib's symlog does, and
    overflows float64)."""
    base = math.asinh(math.log2(tiny) / _SPREAD)

    def forward(x: Any) -> Any:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            a = np.abs(x)
            far = np.sign(x) * (1 + np.arcsinh(np.log2(a) / _SPREAD) - base)
            return np.where(a >= tiny, far, x / tiny)

    def inverse(t: Any) -> Any:
        t = np.asarray(t, dtype=np.float64)
        with np.errstate(all="ignore"):
            a = np.abs(t)
            far = np.sign(t) * np.exp2(_SPREAD * np.sinh(a - 1 + base))
            return np.where(a >= 1, far, t * tiny)

    return forward, inverse


def _probability_axis() -> tuple[Any, Any]:
    """(forward, inverse) for probabilities, a logit scale in binades: p <= 1/2 at
    -asinh((-log2(p) - 1) / S), p > 1/2 at +asinh((-log2(1 - p) - 1) / S) (1 - p is exact in
    float64 there). 0 and 1 lie at -inf and inf and are not drawn."""

    def forward(x: Any) -> Any:
        p = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            low = -np.arcsinh((-np.log2(p) - 1) / _SPREAD)
            high = np.arcsinh((-np.log2(1 - p) - 1) / _SPREAD)
            return np.where(p <= 0.5, low, high)

    def inverse(t: Any) -> Any:
        t = np.asarray(t, dtype=np.float64)
        with np.errstate(all="ignore"):
            d = np.exp2(-(_SPREAD * np.sinh(np.abs(t)) + 1))
            return np.where(t <= 0, d, 1 - d)

    return forward, inverse


def _x_limits(domain: Domain, dtypes: list[DType]) -> tuple[float, float]:
    """The ends of the input axis: ±(the largest finite value) for logits; for probabilities the
    smallest subnormal and 1 minus the smallest distance below 1 (0 and 1 themselves, at -inf and
    inf on the axis, are drawn at these ends)."""
    if domain is Domain.LOGITS:
        big = max(d.format.largest_finite for d in dtypes)
        return -big, big
    closest = min(2.0**-d.format.precision for d in dtypes)
    return min(d.format.smallest_subnormal for d in dtypes), 1 - closest


def _x_scale(ax: Axes, domain: Domain, dtypes: list[DType]) -> None:
    from matplotlib.ticker import NullLocator

    tiny = min(d.format.smallest_subnormal for d in dtypes)
    if domain is Domain.LOGITS:
        big = max(d.format.largest_finite for d in dtypes)
        ax.set_xscale("function", functions=_logit_axis(tiny))
        exponents = (-30, -3, 0, 2, 30, 300)
        decades = [10.0**e for e in exponents if tiny <= 10.0**e <= big]
        ticks = [-d for d in reversed(decades)] + [0.0] + decades
    else:
        closest = min(2.0**-d.format.precision for d in dtypes)  # the smallest distance below 1
        ax.set_xscale("function", functions=_probability_axis())
        low = [10.0**e for e in (-300, -30, -10, -3, -1) if tiny <= 10.0**e]
        high = [1 - 10.0**e for e in (-1, -3, -10) if 10.0**e >= closest]
        ticks = low + [0.5] + high
    ax.set_xlim(*_x_limits(domain, dtypes))
    ax.set_xticks(ticks, [numbers.short(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())


def _panel(
    top: Axes, bottom: Axes, cases: list[CaseResult], domain: Domain, dtypes: list[DType], threshold: float
) -> None:
    import matplotlib.transforms as transforms

    _x_scale(top, domain, dtypes)
    limits = _x_limits(domain, dtypes)
    top.set_yscale("log")
    top.axhline(threshold, color="#888888", linestyle="--", linewidth=0.8)
    nonfinite_row = transforms.blended_transform_factory(top.transData, top.transAxes)
    highest = threshold
    for case in cases:
        d = case.details
        if d is None or case.figures is None:
            continue
        n = case.figures.points
        x, err, status = np.clip(d.inputs[:n], *limits), d.ulp_errors[:n], d.statuses[:n]
        colour, marker = DTYPE_COLOURS[case.dtype], DTYPE_MARKERS[case.dtype]
        defined = ~np.isnan(err)
        shown = np.maximum(err[defined], FLOOR)
        if len(shown):
            highest = max(highest, float(shown.max()))
        # the points are rasterized in the SVG too (thousands of paths would make it megabytes)
        top.scatter(x[defined], shown, s=6, color=colour, marker=marker, alpha=0.6, linewidths=0, rasterized=True)
        zero = status == Status.ZERO.value
        top.scatter(
            x[zero],
            np.maximum(err[zero], FLOOR),
            s=22,
            facecolors="none",
            edgecolors=colour,
            marker="v",
            linewidths=0.8,
            rasterized=True,
        )
        for st, y in _NONFINITE_ROWS.items():
            hit = status == st.value
            if hit.any():
                top.scatter(
                    x[hit],
                    np.full(int(hit.sum()), y),
                    s=14,
                    color=colour,
                    marker="x",
                    transform=nonfinite_row,
                    clip_on=False,
                    linewidths=0.9,
                    rasterized=True,
                )
    # room above the largest error for the rows of NaN and ±inf outputs; an error figure can be
    # the largest float64 (ERROR_CAP), and the axis must stay finite
    top.set_ylim(FLOOR / 2, highest * 1e3 if highest < 1e300 else np.finfo(np.float64).max)
    for st, y in _NONFINITE_ROWS.items():
        top.text(1.005, y, st.value, transform=top.transAxes, fontsize=7, va="center", color=STATUS_COLOURS[st])
    ticks = _error_ticks(top.get_ylim()[1])
    top.set_yticks(ticks, ["0", *(numbers.short(t) for t in ticks[1:])])
    top.set_ylabel("ULP error", fontsize=9)
    top.tick_params(labelbottom=False, labelsize=8)
    top.grid(True, which="major", linewidth=0.3, alpha=0.5)
    _bands(bottom, cases, dtypes, limits)
    bottom.set_xlabel(
        ("z (logit)" if domain is Domain.LOGITS else "p (probability)")
        + ", every binade shown, the widest near the centre",
        fontsize=8,
    )
    bottom.tick_params(axis="x", labelsize=7, labelrotation=45)


def _error_ticks(top: float) -> list[float]:
    """The floor (``0``) and powers of ten up to ``top``, no two closer than a twelfth of the axis
    (in decades), so that their labels never overlap, however large the errors."""
    span = math.log10(top) - math.log10(FLOOR)
    ticks = [FLOOR]
    for t in (1.0, 1e3, 1e6, 1e12, 1e24, 1e48, 1e96, 1e192, 1e300):
        if t <= top and math.log10(t) - math.log10(ticks[-1]) >= span / 12:
            ticks.append(t)
    return ticks


def _bands(ax: Axes, cases: list[CaseResult], dtypes: list[DType], limits: tuple[float, float]) -> None:
    """One row per dtype: its status bands, and its stable range as a black bar, each within the
    dtype's own values (p = 0 and 1 at their ends); beyond them the row is shaded."""
    ax.set_ylim(-0.5, len(dtypes) - 0.5)
    ax.set_yticks(range(len(dtypes)), [str(d) for d in dtypes], fontsize=7)
    ax.invert_yaxis()
    for case in cases:
        row = dtypes.index(case.dtype)
        own = _x_limits(case.domain, [case.dtype])
        for lo, hi in ((limits[0], own[0]), (own[1], limits[1])):
            if lo < hi:
                ax.fill_between([lo, hi], row - 0.45, row + 0.45, color=_OUTSIDE, linewidth=0)
        for band in bands(case):
            lo, hi = (min(max(v, own[0]), own[1]) for v in (band.lo, band.hi))
            if lo == hi:  # one sampled input: a thin mark that still shows
                ax.plot(
                    [lo, hi],
                    [row, row],
                    color=STATUS_COLOURS[band.status],
                    linewidth=7,
                    solid_capstyle="butt",
                    marker="|",
                    markersize=9,
                )
            else:
                ax.fill_between([lo, hi], row - 0.35, row + 0.35, color=STATUS_COLOURS[band.status], linewidth=0)
        figures = case.figures
        if figures is not None and not math.isnan(figures.stable_lo):
            lo, hi = (min(max(v, own[0]), own[1]) for v in (figures.stable_lo, figures.stable_hi))
            ax.plot([lo, hi], [row + 0.38, row + 0.38], color="black", linewidth=2.5)
