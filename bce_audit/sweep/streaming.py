"""A case's figures from chunks of its points, exactly, without holding the points.

``CaseStream`` takes the points of one case in increasing input order, chunk by chunk, and keeps
only running figures: the status counts, the largest ULP error and relative error, the sums
behind the means, the first input with the most bits of error, the ends of the stable range, a
histogram of the ULP errors for the 99th percentile, and optionally the runs of equal statuses.

* Counts, maxima, the worst input and the stable range are exactly what ``metrics.summarize``
  gives on the same points in one array.
* The means: each chunk's errors are summed by numpy (pairwise), the chunk sums by ``math.fsum``,
  divided by the count at the end; the ULP errors are scaled by 2^-64 first, so that billions of
  errors near the largest float64 do not overflow. Equal to summarize's mean up to the order of
  the additions (a few ULPs of float64).
* p99_ulp: the error at rank ceil(0.99 (n-1)) of the sorted finite errors (numpy's "higher"
  percentile), from a histogram keyed by the exact error (its float64 bit pattern). While at
  most ``HISTOGRAM_LIMIT`` distinct errors occur it is exact; beyond, the keys are rounded up to
  fewer significant bits, one at a time, until they fit, and the figure is then an upper bound
  within a relative 2^-(52 - dropped bits) of the exact one (``p99_coarsened_bits`` says how many).
* Status runs [lo, hi, status]: maximal intervals of consecutive inputs with one status, in input
  order, for the failure map (``runs``).
"""

from __future__ import annotations

import math

import numpy as np

from bce_audit.figures import COUNTED_STATUSES, CaseFigures
from bce_audit.sweep.metrics import ERROR_CAP, bits_of_error, status_codes, ulp_error
from bce_audit.vocabulary import Domain, FloatFormat, Status

# Most distinct ULP errors the p99 histogram keeps exactly (16 bytes each).
HISTOGRAM_LIMIT = 1 << 22
_SCALE = 2.0**-64  # applied to ULP errors before summing: no overflow for up to 2^63 points
_STATUSES = list(Status)
_COUNTED = [(s.value, s.severity) for s in COUNTED_STATUSES]


class ErrorHistogram:
    """Counts of nonnegative float64 values by bit pattern, coarsened when too many."""

    def __init__(self, limit: int = HISTOGRAM_LIMIT) -> None:
        self.limit = limit
        self.keys = np.empty(0, dtype=np.int64)
        self.counts = np.empty(0, dtype=np.int64)
        self.dropped_bits = 0
        self.total = 0

    def _coarsen(self, keys: np.ndarray) -> np.ndarray:
        if not self.dropped_bits:
            return keys
        step = np.int64(1 << self.dropped_bits)
        return ((keys + (step - 1)) // step) * step  # round up: an upper bound

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self.total += len(values)
        keys, counts = np.unique(self._coarsen(values.astype(np.float64).view(np.int64)), return_counts=True)
        merged = np.concatenate([self.keys, keys])
        weights = np.concatenate([self.counts, counts])
        self.keys, inverse = np.unique(merged, return_inverse=True)
        self.counts = np.bincount(inverse, weights=weights, minlength=len(self.keys)).astype(np.int64)
        while len(self.keys) > self.limit:
            self.dropped_bits += 1
            self.keys, inverse = np.unique(self._coarsen(self.keys), return_inverse=True)
            self.counts = np.bincount(inverse, weights=self.counts, minlength=len(self.keys)).astype(np.int64)

    def higher_percentile(self, q: float) -> float:
        """numpy's percentile(values, 100q, method="higher") of every value added."""
        if not self.total:
            return math.nan
        rank = math.ceil(q * (self.total - 1))
        at = int(np.searchsorted(np.cumsum(self.counts), rank + 1))
        return float(self.keys[at : at + 1].view(np.float64)[0])


class StatusRuns:
    """Maximal runs of one status over inputs given in increasing order, chunk by chunk.

    runs: [lo, hi, status] per run; worst: (input, ULP error) of each run's largest ULP error
    (the first input of equals; NaN, NaN when no input of the run has one), when the ULP errors
    are given to ``add``."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, Status]] = []
        self.worst: list[tuple[float, float]] = []
        self._open: tuple[float, float, int] | None = None
        self._open_worst = (math.nan, math.nan)

    def add(self, inputs: np.ndarray, codes: np.ndarray, ulp_errors: np.ndarray | None = None) -> None:
        if not len(inputs):
            return
        starts = np.flatnonzero(np.diff(codes)) + 1
        firsts = np.concatenate([[0], starts])
        lasts = np.concatenate([starts - 1, [len(codes) - 1]])
        worst = [(math.nan, math.nan)] * len(firsts)
        if ulp_errors is not None:
            # each run's largest defined error, and the first input that has it
            e = np.where(np.isnan(ulp_errors), -np.inf, ulp_errors)
            top = np.maximum.reduceat(e, firsts)
            index = np.arange(len(e))
            at = np.minimum.reduceat(np.where(e == np.repeat(top, lasts - firsts + 1), index, len(e)), firsts)
            worst = [
                (float(inputs[i]), float(t)) if t > -np.inf else (math.nan, math.nan)
                for i, t in zip(at.tolist(), top.tolist(), strict=True)
            ]
        for a, b, w in zip(firsts.tolist(), lasts.tolist(), worst, strict=True):
            lo, hi, code = float(inputs[a]), float(inputs[b]), int(codes[a])
            if self._open is not None and self._open[2] == code:
                lo = self._open[0]
                if not w[1] > self._open_worst[1] and not math.isnan(self._open_worst[1]):
                    w = self._open_worst  # strictly larger only: the first of equals wins
            elif self._open is not None:
                self._close()
            self._open, self._open_worst = (lo, hi, code), w

    def _close(self) -> None:
        assert self._open is not None
        self.runs.append((self._open[0], self._open[1], _STATUSES[self._open[2]]))
        self.worst.append(self._open_worst)
        self._open, self._open_worst = None, (math.nan, math.nan)

    def finish(self) -> list[tuple[float, float, Status]]:
        if self._open is not None:
            self._close()
        return self.runs


class CaseStream:
    """The running figures of one case (see the module docstring)."""

    def __init__(self, fmt: FloatFormat, domain: Domain, threshold: float, keep_runs: bool = False) -> None:
        self.fmt, self.centre, self.threshold = fmt, domain.centre, threshold
        self.points = 0
        self.counts = dict.fromkeys((s.value for s in COUNTED_STATUSES), 0)
        self.max_ulp = -math.inf
        self.ulp_sums: list[float] = []
        self.ulp_n = 0
        self.bits_sums: list[float] = []
        self.max_rel = -math.inf
        self.worst_bits = 0.0
        self.worst_input = math.nan
        self.histogram = ErrorHistogram()
        self.runs = StatusRuns() if keep_runs else None
        # the stable range: the input after the last failure at or below the centre, the input
        # before the first failure at or above it, and whether the points at the centre are ok
        self.first_input = math.nan
        self.previous_input = math.nan
        self.lo_after_bad = math.nan
        self.lo_pending = False  # the last failure below the centre ended a chunk
        self.hi_before_bad = math.nan
        self.hi_found = False
        self.centre_low_ok: bool | None = None  # ok at the last input <= centre
        self.centre_high_ok: bool | None = None  # ok at the first input >= centre

    def add(self, inputs: np.ndarray, output: np.ndarray, truth: np.ndarray, truth_f64: np.ndarray) -> np.ndarray:
        """One chunk (inputs increasing, after every earlier chunk's); returns its status codes
        (``metrics.status_codes``)."""
        n = len(inputs)
        if not n:
            return np.empty(0, dtype=np.int8)
        errs = ulp_error(output, truth, self.fmt)
        codes = status_codes(output, truth, errs, self.threshold)
        bits = bits_of_error(output, truth, self.fmt)
        self.points += n
        tally = np.bincount(codes, minlength=len(_STATUSES))
        for value, code in _COUNTED:
            self.counts[value] += int(tally[code])
        finite = errs[~np.isnan(errs)]
        if len(finite):
            self.max_ulp = max(self.max_ulp, float(finite.max()))
            self.ulp_sums.append(float(np.sum(finite * _SCALE)))
            self.ulp_n += len(finite)
            self.histogram.add(finite)
        self.bits_sums.append(float(bits.sum()))
        with np.errstate(all="ignore"):
            rel = np.minimum(np.abs(output - truth_f64) / np.abs(truth_f64), ERROR_CAP)
        rel = rel[np.isfinite(output) & np.isfinite(truth_f64) & (truth_f64 != 0)]
        if len(rel):
            self.max_rel = max(self.max_rel, float(rel.max()))
        k = int(np.argmax(bits))
        if bits[k] > self.worst_bits:  # strictly more: the first of equals wins
            self.worst_bits, self.worst_input = float(bits[k]), float(inputs[k])
        self._stable(inputs, codes == Status.OK.severity)
        if self.runs is not None:
            self.runs.add(inputs, codes, errs)
        return codes

    def _stable(self, inputs: np.ndarray, ok: np.ndarray) -> None:
        if math.isnan(self.first_input):
            self.first_input = float(inputs[0])
        if self.lo_pending:
            self.lo_after_bad, self.lo_pending = float(inputs[0]), False
        below = np.flatnonzero(inputs <= self.centre)
        if len(below):
            self.centre_low_ok = bool(ok[below[-1]])
            bad = below[~ok[below]]
            if len(bad):
                if bad[-1] + 1 < len(inputs):
                    self.lo_after_bad = float(inputs[bad[-1] + 1])
                else:
                    self.lo_pending = True
        above = np.flatnonzero(inputs >= self.centre)
        if len(above):
            if self.centre_high_ok is None:
                self.centre_high_ok = bool(ok[above[0]])
            bad = above[~ok[above]]
            if len(bad) and not self.hi_found:
                self.hi_found = True
                self.hi_before_bad = float(inputs[bad[0] - 1]) if bad[0] > 0 else self.previous_input
        self.previous_input = float(inputs[-1])

    def figures(self, nonfinite: int = 0) -> CaseFigures:
        nan = math.nan
        if not self.points:
            return CaseFigures.none(nonfinite)
        lo = hi = nan
        if self.centre_low_ok and self.centre_high_ok:
            lo = self.first_input if math.isnan(self.lo_after_bad) else self.lo_after_bad
            hi = self.hi_before_bad if self.hi_found else self.previous_input
        mean_ulp = math.fsum(self.ulp_sums) / self.ulp_n / _SCALE if self.ulp_n else nan
        return CaseFigures(
            points=self.points,
            **self.counts,
            nonfinite=nonfinite,
            max_ulp=self.max_ulp if self.ulp_n else nan,
            p99_ulp=self.histogram.higher_percentile(0.99),
            mean_ulp=min(mean_ulp, ERROR_CAP) if self.ulp_n else nan,
            mean_bits=math.fsum(self.bits_sums) / self.points,
            max_rel_err=self.max_rel if self.max_rel >= 0 else nan,
            worst_input=self.worst_input,
            stable_lo=lo,
            stable_hi=hi,
        )

    @property
    def p99_coarsened_bits(self) -> int:
        return self.histogram.dropped_bits
