"""Settings from a TOML file (--config, or [tool.bce-audit] in pyproject.toml); flags win."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bce_audit.errors import UsageError, did_you_mean
from bce_audit.files import read_input
from bce_audit.formulations.interface import PARAMETER_TYPES

# key -> the Python types it may hold
KEYS: dict[str, type | tuple[type, ...]] = {
    "formulations": list,
    "dtypes": list,
    "domain": str,
    "labels": list,
    "range": (str, list),
    "points": int,
    "sampling": str,
    "seed": int,
    "ulp_threshold": (int, float),
    "csv": str,
    "json": str,
    "details": str,
    "failures": str,
    "verbose": bool,
    "jobs": int,
    "cache": bool,
    "cache_dir": str,
    "timeout": (int, float),  # seconds for each import and call of a user's function
    "modes": (list, str),  # the torch engine's execution modes (--mode)
    "device": str,  # where the torch engine runs (--device)
    # bce-audit check (the CI gate); thresholds.py and baseline.py validate what is inside
    "thresholds": list,  # [[thresholds]] tables: selectors and bounds
    "baseline": str,  # the baseline file, relative to the config file's directory
    "tolerance": dict,  # [tolerance]: how much worse each figure may get against the baseline
    "allow_missing": bool,  # a baseline case missing from the run passes
    "junit": str,
    "markdown": str,
}

# A table in the `formulations` list ([[formulations]]): the user's own function (see
# bce_audit.formulations.user). key -> the Python types it may hold; `target` is required.
FORMULATION_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "target": str,
    "domain": str,
    "engine": str,
    "parameters": dict,
    # the member of the BCE family it implements (bce_audit.reference): its name, or a table
    # { loss = "focal", gamma = 2.0, ... } with the member's parameters
    "reference": (str, dict),
    "init": dict,  # the target is a class: its constructor's keyword arguments
    "arguments": str,  # the loss's argument order: "input, target" (default) or "target, input"
    "shape": str,  # the shape the loss is called with: "(N,)" (default), "(N, 1)" or "(1, N)"
}


def _load(path: Path) -> dict[str, Any]:
    data = read_input(path, "config")
    if data.startswith(b"\xef\xbb\xbf"):  # tomllib's own message: "Invalid statement (at line 1, column 1)"
        raise UsageError(
            f"config {path}: starts with a UTF-8 byte-order mark, which TOML does not allow; save it as UTF-8 "
            "without one"
        )
    try:
        return tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"config {path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except RecursionError:
        raise UsageError(f"config {path}: nested too deeply to be a bce-audit config") from None


def _check_key(key: str, value: object, allowed: dict[str, type | tuple[type, ...]], where: str) -> None:
    """An unknown key (with the closest known one) or a value of the wrong type: one line."""
    if key not in allowed:
        raise UsageError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed, cutoff=0.6)}")
    expected = allowed[key]
    # TOML booleans are Python ints: `points = true` must not pass as a number
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise UsageError(f"{where}.{key}: wrong type {type(value).__name__}; expected {_expected(expected)}")


# What a key's type is called in a message: the TOML user's words, not Python's.
_TYPE_WORDS: dict[type, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
}


def _expected(expected: type | tuple[type, ...]) -> str:
    """``(str, dict)`` as "a string or a table"; an integer-or-float as "a number"."""
    kinds = list(expected) if isinstance(expected, tuple) else [expected]
    if int in kinds and float in kinds:
        kinds.remove(int)
    return " or ".join(_TYPE_WORDS.get(kind, kind.__name__) for kind in kinds)


# Keys that name a file or a directory: an empty string names none (and would quietly be `.`).
PATH_KEYS = ("csv", "json", "details", "failures", "cache_dir", "baseline", "junit", "markdown")

# Lists that choose what to sweep: empty, they would quietly mean the default (everything).
CHOICE_KEYS = ("formulations", "dtypes", "labels", "modes")


def validate(table: dict[str, Any], where: str) -> dict[str, Any]:
    for key, value in table.items():
        _check_key(key, value, KEYS, where)
        if key in PATH_KEYS and not value.strip():
            what = "a directory" if key == "cache_dir" else "a file"
            raise UsageError(f"{where}.{key}: empty path; name {what}, or leave the key out")
        if key in CHOICE_KEYS and not value:
            raise UsageError(f"{where}.{key}: empty list; name at least one, or leave the key out for the default")
        if isinstance(value, list):
            want = (int, float) if key in ("labels", "range") else dict if key == "thresholds" else str
            for i, item in enumerate(value):
                if key == "formulations" and isinstance(item, dict):
                    _validate_formulation(item, f"{where}.{key}[{i}]")
                    continue
                if isinstance(item, bool) or not isinstance(item, want):
                    raise UsageError(f"{where}.{key}: wrong item {item!r}")
    return table


def _validate_formulation(table: dict[str, Any], where: str) -> None:
    for key, value in table.items():
        _check_key(key, value, FORMULATION_KEYS, where)
    if "target" not in table:
        raise UsageError(f"{where}: missing key 'target' (MODULE:FUNCTION or FILE.py:FUNCTION)")
    for group in ("parameters", "init"):
        for key, value in table.get(group, {}).items():
            _check_value(value, f"{where}.{group}.{key}")
    reference = table.get("reference")
    if isinstance(reference, dict):
        if not isinstance(reference.get("loss"), str):
            raise UsageError(f'{where}.reference: a reference table names its loss: {{ loss = "focal", gamma = 2.0 }}')
        for key, value in reference.items():
            if key != "loss":
                _check_value(value, f"{where}.reference.{key}")


def _check_value(value: object, where: str) -> None:
    """A keyword argument's value: a scalar, { none = true } (TOML has no null), or a list of scalars."""
    if isinstance(value, dict):
        if value != {"none": True}:
            raise UsageError(f"{where}: a table here can only be {{ none = true }} (the value None)")
        return
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(value, list) and isinstance(item, list | dict):
            what = "list" if isinstance(item, list) else "table"
            raise UsageError(
                f"{where}: a {what} inside a list; a list's items are numbers, bools or strings (lists do not nest)"
            )
        if not isinstance(item, PARAMETER_TYPES):  # keyword arguments of the function: data only
            raise UsageError(
                f"{where}: wrong type {type(item).__name__} (a number, bool, string, list or {{ none = true }})"
            )


def load_config(path: Path | None, search_pyproject: bool = True) -> tuple[dict[str, Any], str | None]:
    """The settings table and where it came from (None when there is no config)."""
    if path is not None:
        doc = _load(path)
        # a dedicated file may also nest its settings under [tool.bce-audit]
        tool = doc.get("tool")
        table = tool.get("bce-audit", doc) if isinstance(tool, dict) else doc
        where = f"{path}" + (" [tool.bce-audit]" if table is not doc else "")
        if not isinstance(table, dict):
            raise UsageError(f"{where} must be a table")
        return validate(table, where), str(path)
    if search_pyproject:
        pyproject = Path("pyproject.toml")
        if pyproject.is_file():
            doc = _load(pyproject)
            tool = doc.get("tool")
            table = tool.get("bce-audit") if isinstance(tool, dict) else None
            if table is not None:
                if not isinstance(table, dict):
                    raise UsageError("pyproject.toml: [tool.bce-audit] must be a table")
                return validate(table, "pyproject.toml tool.bce-audit"), str(pyproject)
    return {}, None
