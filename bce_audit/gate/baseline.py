"""Baselines: the figures of every case, written by `check --update-baseline`, compared by `check`.

The file is strict JSON (schema below); no pickle. Floats are written as Python's repr, so they
read back exactly; inf and NaN are the strings "inf", "-inf", "nan" (NaN means "undefined": no
finite point for the ULP figures, no worst input, or no stable range).

    {
      "schema_version": 1,
      "provenance": {"bce_audit": ..., "torch": ..., "cpu_capability": ..., ...},
      "settings": {... Settings.to_dict() ...},
      "fingerprint": sha256 hex of the canonical JSON of the settings that affect figures,
      "cases": [
        {"formulation": ..., "domain": ..., "dtype": ..., "label": 0.0, "quantity": ..., "error": null,
         "points": ..., "ok": ..., "inaccurate": ..., "inf": ..., "nan": ..., "zero": ..., "nonfinite": ...,
         "max_ulp": ..., "p99_ulp": ..., "mean_ulp": ..., "mean_bits": ..., "max_rel_err": ...,
         "worst_input": ..., "stable_range": [lo, hi]},
        ...  one line per case, so that a diff shows which cases moved
      ]
    }
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, NoReturn

from bce_audit.errors import UsageError
from bce_audit.figures import COUNTED_STATUSES, FIGURES, CaseFigures, Kind
from bce_audit.files import read_input
from bce_audit.gate.interface import CaseRecord
from bce_audit.report.numbers import json_number, json_safe
from bce_audit.sweep.result import VARIANT_DEFAULTS, CaseKey
from bce_audit.vocabulary import Domain, DType, ParsableEnum, Quantity

SCHEMA_VERSION = 1

# Settings that only choose which cases run: a case's figures do not depend on them (each
# (dtype, domain) grid has its own random stream, each label its own truth), so they stay out of
# the fingerprint; a case the baseline lacks is `new`, one the run lacks is `missing`. Every other
# setting is assumed to affect the figures, including ones added in later versions.
CASE_SELECTING_SETTINGS = ("formulations", "dtypes", "domains", "labels", "user_formulations")
# user_formulations among them: cases are keyed by the formulation's name, and a user function
# whose code, target or parameters changed is exactly what the case-by-case comparison judges.

# Provenance entries that can change figures: a difference is a warning, never an error.
COMPARED_PROVENANCE = ("bce_audit", "torch", "numpy", "mpmath", "mpmath_backend", "cpu_capability", "device")

# A case's line: its key, its error, then every figure in declaration order (figures.FIGURES).
_KEY_FIELDS = ("formulation", "domain", "dtype", "label", "quantity")
_COUNT_FIELDS = tuple(f.name for f in FIGURES if f.kind is Kind.COUNT)
_FLOAT_FIELDS = tuple(f.name for f in FIGURES if f.kind in (Kind.FLOAT, Kind.INPUT))
_RANGE_FIELDS = tuple(f.name for f in FIGURES if f.kind is Kind.RANGE)
_CASE_FIELDS = (*_KEY_FIELDS, "error", *(f.name for f in FIGURES))
_NON_NEGATIVE_FIELDS = tuple(f.name for f in FIGURES if f.kind is Kind.FLOAT)  # an input may be any float


# --------------------------------------------------------------------------- settings fingerprint


def _canonical(value: object) -> object:
    """One JSON form per value: 4 and 4.0 are the same setting; lists and dicts recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        if math.isnan(value) or math.isinf(value):
            return repr(float(value))
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return str(value)


def figure_settings(settings: dict[str, Any]) -> dict[str, object]:
    """The settings that affect a case's figures, canonical; empty values (the defaults of
    settings added later) are left out, so adding a setting does not invalidate old baselines."""
    return {
        k: _canonical(v)
        for k, v in sorted(settings.items())
        if k not in CASE_SELECTING_SETTINGS and v not in (None, [], {}, ())
    }


def fingerprint(settings: dict[str, Any]) -> str:
    text = json.dumps(figure_settings(settings), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def settings_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key NEW (baseline OLD)' for every figure-affecting setting that differs."""
    a, b = figure_settings(old), figure_settings(new)

    def show(d: dict[str, object], k: str) -> str:
        return json.dumps(d[k]) if k in d else "(default)"

    return [f"{k} {show(b, k)} (baseline {show(a, k)})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def provenance_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k} {old.get(k)} -> {new.get(k)}" for k in COMPARED_PROVENANCE if old.get(k) != new.get(k)]


# --------------------------------------------------------------------------- writing


def _case_json(key: CaseKey, record: CaseRecord) -> dict[str, Any]:
    row: dict[str, Any] = key.fields()  # a variant dimension only where it is not the default
    row["error"] = record.error
    fig = record.figures
    for figure in FIGURES:
        if figure.kind is Kind.RANGE:
            row[figure.name] = [json_number(fig.stable_lo), json_number(fig.stable_hi)]
        elif figure.kind is Kind.COUNT:
            row[figure.name] = getattr(fig, figure.name)
        else:
            row[figure.name] = json_number(getattr(fig, figure.name))
    return row


def render_baseline(figures: dict[CaseKey, CaseRecord], settings: dict[str, Any], provenance: dict[str, Any]) -> str:
    """The baseline file's text: strict JSON, one line per case."""
    head = {
        "schema_version": SCHEMA_VERSION,
        "provenance": provenance,
        "settings": json_safe(settings),
        "fingerprint": fingerprint(settings),
    }
    text = json.dumps(head, indent=2, allow_nan=False)
    lines = [json.dumps(_case_json(k, f), allow_nan=False) for k, f in figures.items()]
    return text[: text.rindex("}")].rstrip() + ',\n  "cases": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A baseline file, read and validated.

    path: where it was read from. provenance / settings: as written. fingerprint: of the settings.
    figures: every case's figures, in file order.
    """

    path: Path
    provenance: dict[str, Any]
    settings: dict[str, Any]
    fingerprint: str
    figures: dict[CaseKey, CaseRecord]


class _Invalid(Exception):
    """One problem with the file's content (reported as a UsageError naming the file)."""


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def _float(value: object, what: str) -> float:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f'{what}: expected a number (or "inf", "-inf", "nan"), got {value!r}')
    try:
        return float(value)
    except OverflowError:  # an integer beyond float64: 10**400
        raise _Invalid(f"{what}: {str(value)[:20]}... is beyond the range of a float") from None


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"{what}: expected a whole number >= 0, got {value!r}")
    return value


def _string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{what}: expected a non-empty string, got {value!r}")
    return value


def _parse_case(row: object, what: str) -> tuple[CaseKey, CaseRecord]:
    if not isinstance(row, dict):
        raise _Invalid(f"{what}: expected an object")
    missing = [f for f in _CASE_FIELDS if f not in row]
    if missing:
        raise _Invalid(f"{what}: missing {', '.join(map(repr, missing))}")
    extra = [f for f in row if f not in _CASE_FIELDS and f not in VARIANT_DEFAULTS]
    if extra:
        raise _Invalid(f"{what}: unknown field {extra[0]!r}")
    label = _float(row["label"], f"{what}.label")
    if not 0.0 <= label <= 1.0:
        raise _Invalid(f"{what}.label: {label!r} is outside [0, 1]")
    names = {"formulation": _string(row["formulation"], f"{what}.formulation")}
    for field, enum in (("domain", Domain), ("dtype", DType), ("quantity", Quantity)):
        names[field] = _choice(row[field], enum, f"{what}.{field}")
    for field in VARIANT_DEFAULTS:  # absent: the default (a file written before they existed too)
        if field in row:
            names[field] = _string(row[field], f"{what}.{field}")
    key = CaseKey(label=label, **names)
    error = row["error"]
    if error is not None:
        error = _string(error, f"{what}.error")
    counts = {f: _count(row[f], f"{what}.{f}") for f in _COUNT_FIELDS}
    if sum(counts[s.value] for s in COUNTED_STATUSES) != counts["points"]:
        raise _Invalid(f"{what}: the status counts do not add up to points")
    # float keyword arguments of CaseFigures (Any: mypy checks a **dict against every parameter)
    floats: dict[str, Any] = {f: _float(row[f], f"{what}.{f}") for f in _FLOAT_FIELDS}
    for f in _NON_NEGATIVE_FIELDS:
        if floats[f] < 0:  # False for NaN (undefined), which is allowed
            raise _Invalid(f'{what}.{f}: expected a number >= 0 (or "inf", "nan"), got {row[f]!r}')
    lo, hi = _stable_range(row["stable_range"], f"{what}.stable_range")
    return key, CaseRecord(CaseFigures(**counts, **floats, stable_lo=lo, stable_hi=hi), error=error)


def _choice(value: object, enum: type[ParsableEnum], what: str) -> str:
    names = [m.value for m in enum]
    if not isinstance(value, str) or value not in names:
        raise _Invalid(f"{what}: expected one of {', '.join(names)}, got {value!r}")
    return value


def _stable_range(value: object, what: str) -> tuple[float, float]:
    """[lo, hi] with lo <= hi; ["nan", "nan"] (what bce-audit writes) or null: no stable range."""
    if value is None:
        return math.nan, math.nan
    if not isinstance(value, list) or len(value) != 2:
        raise _Invalid(f"{what}: expected [lo, hi] (or null), got {value!r}")
    lo, hi = (_float(v, what) for v in value)
    if math.isnan(lo) and math.isnan(hi):
        return lo, hi
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise _Invalid(f'{what}: expected [lo, hi] with lo <= hi (or ["nan", "nan"] for none), got {value!r}')
    return lo, hi


def _parse(doc: object) -> tuple[dict[str, Any], dict[str, Any], str, dict[CaseKey, CaseRecord]]:
    if not isinstance(doc, dict):
        raise _Invalid("expected a JSON object: not a bce-audit baseline")
    if "schema_version" not in doc:
        raise _Invalid("no schema_version: not a bce-audit baseline")
    version = doc["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _Invalid(f"schema_version {version!r} is not supported (this bce-audit reads {SCHEMA_VERSION})")
    for field in ("provenance", "settings", "fingerprint", "cases"):
        if field not in doc:
            raise _Invalid(f"missing {field!r}")
    extra = [k for k in doc if k not in ("schema_version", "provenance", "settings", "fingerprint", "cases")]
    if extra:
        raise _Invalid(f"unknown field {extra[0]!r}")
    provenance, settings, fp, cases = doc["provenance"], doc["settings"], doc["fingerprint"], doc["cases"]
    if not isinstance(provenance, dict):
        raise _Invalid("provenance: expected an object")
    if not isinstance(settings, dict):
        raise _Invalid("settings: expected an object")
    if not isinstance(fp, str) or not re.fullmatch(r"[0-9a-f]{64}", fp):
        raise _Invalid(f"fingerprint: expected 64 hex digits, got {fp!r}")
    if fp != fingerprint(settings):
        raise _Invalid("fingerprint does not match its settings (edited by hand? regenerate with --update-baseline)")
    if not isinstance(cases, list) or not cases:
        raise _Invalid("cases: expected a non-empty list")
    figures: dict[CaseKey, CaseRecord] = {}
    for i, row in enumerate(cases):
        key, fig = _parse_case(row, f"cases[{i}]")
        if key in figures:
            raise _Invalid(f"cases[{i}]: {key} appears twice")
        figures[key] = fig
    return provenance, settings, fp, figures


def read_baseline(path: Path) -> Baseline:
    """Read and validate a baseline; any problem is a one-line UsageError naming the file."""
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"baseline {path}: file not found (create it with --update-baseline)")
    data = read_input(path, "baseline")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"baseline {path}: not UTF-8 text, not a bce-audit baseline") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise UsageError(f"baseline {path}: nested too deeply to be a bce-audit baseline") from None
    except ValueError as exc:  # json.JSONDecodeError included
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"baseline {path}: not valid JSON (truncated or corrupt?): {detail}") from None
    try:
        provenance, settings, fp, figures = _parse(doc)
    except _Invalid as exc:
        raise UsageError(f"baseline {path}: {exc}") from None
    return Baseline(path, provenance, settings, fp, figures)
