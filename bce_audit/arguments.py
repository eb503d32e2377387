"""Checks of the Python API's arguments, at its public functions (``bce_audit.audit``, ``check``,
``explain``, ``formulation``, ``write_repro``, ``write_plots``).

An argument of the wrong kind (``audit(42)``, ``write_repro("x", dir)``) would otherwise surface
deep inside as a raw TypeError or AttributeError that names neither the argument nor what it
takes. Each check here raises ``ArgumentError`` (a ``UsageError``) naming the argument, what it
expects and what it got. The values themselves (a dtype's name, a label's range) are checked
where the command line's are (``settings``), so both give the same messages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from bce_audit.errors import ArgumentError


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"got {type(value).__name__} {text}" if not isinstance(value, str | int | float) else f"got {text}"


def fail(name: str, expects: str, value: Any) -> ArgumentError:
    """The error for ``name`` when ``value`` is not what it ``expects``."""
    return ArgumentError(f"{name}: expected {expects}, {_got(value)}")


def text(value: Any, name: str, optional: bool = True) -> None:
    """A string (or None when ``optional``)."""
    if (value is None and optional) or isinstance(value, str):
        return
    raise fail(name, "a string" + (" or None" if optional else ""), value)


def texts(value: Any, name: str) -> Any:
    """None, a string, or a list (any iterable but a string, bytes or a mapping) of strings;
    returned as given, an iterable as a tuple (a generator is read once, here). An empty list
    is refused: it would quietly mean the default, everything (as the config refuses one)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise fail(name, "a name or a list of names", value)
    items = tuple(value)
    if not items:
        raise empty_list(name)
    for item in items:
        if not isinstance(item, str):
            raise fail(name, "a name or a list of names", item)
    return items


def empty_list(name: str) -> ArgumentError:
    """The error for an empty list where one chooses what to sweep."""
    return ArgumentError(f"{name}: an empty list chooses nothing; leave it out (None) for the default")


def numbers(value: Any, name: str, expects: str) -> Any:
    """None, a number, or a non-empty list of numbers (not bools); a string passes, as the
    command line's text, to be parsed where the flag's is. Returned as given, a list as a tuple."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        number(value, name)
        return value
    if isinstance(value, bool | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise fail(name, expects, value)
    items = tuple(value)
    if not items:
        raise empty_list(name)
    for item in items:
        if not isinstance(item, str):
            number(item, name, optional=False)
    return items


def number(value: Any, name: str, optional: bool = True) -> None:
    """An int or a float, not a bool, that a float holds (or None when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(name, "a number" + (" or None" if optional else ""), value)
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            beyond = "below -1.8e308" if value < 0 else "beyond 1.8e308"
            raise ArgumentError(f"{name}: expected a number a float holds, got an integer {beyond}") from None


def flag(value: Any, name: str, optional: bool = False) -> None:
    """True or False (or None when ``optional``): ``details="no"`` is not quietly true."""
    if isinstance(value, bool) or (value is None and optional):
        return
    raise fail(name, "True, False or None" if optional else "True or False", value)


def path(value: Any, name: str, optional: bool = True) -> None:
    """A path: a string or an os.PathLike (or None when ``optional``)."""
    if (value is None and optional) or isinstance(value, str | os.PathLike):
        return
    raise fail(name, "a path (a string or a pathlib.Path)" + (" or None" if optional else ""), value)


def path_or_mapping(value: Any, name: str) -> None:
    """None, a path, or a dict (a config's keys)."""
    if value is None or isinstance(value, str | os.PathLike | Mapping):
        return
    raise fail(name, "a TOML file's path or a dict of its keys", value)


def mapping(value: Any, name: str, of: str) -> None:
    """None, or a dict with string keys; ``of`` says what its values are."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise fail(name, f"a dict of {of}", value)
    for key in value:
        if not isinstance(key, str):
            raise fail(f"{name} key", "a string", key)


def logit_range(value: Any, name: str) -> Any:
    """None, "LO:HI" or a pair of numbers (their values are checked with --range's)."""
    if value is None or isinstance(value, str):
        return value
    expects = '"LO:HI" or a pair of numbers (lo, hi)'
    if isinstance(value, bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise fail(name, expects, value)
    items = tuple(value)
    if len(items) != 2:
        raise fail(name, expects, value)
    for item in items:
        number(item, name, optional=False)
    return items


def parameter_values(value: Any, name: str) -> tuple[Any, ...]:
    """A swept parameter's values: a number, a string or None, or a non-empty list of them; as a
    tuple. A string that reads as a number (``"2"``) is refused: a number parameter takes numbers."""
    if value is None or isinstance(value, str | int | float):
        return parameter_values((value,), name)
    if isinstance(value, bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise fail(name, "a value or a list of values", value)
    items = tuple(value)
    if not items:
        raise ArgumentError(f"{name}: an empty list sweeps nothing; give at least one value, or leave the name out")
    for item in items:
        if item is not None and not isinstance(item, str | int | float):
            raise fail(name, "numbers, strings or None (a list of them sweeps each one)", item)
        if isinstance(item, str) and _reads_as_number(item):  # "2" is not 2: a string is a string parameter's
            raise ArgumentError(
                f"{name}: {item!r} is a string; give the number {item.strip()} (a string is a string parameter's "
                "value, such as form)"
            )
    return items


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def mappings(value: Any, name: str, of: str) -> tuple[Mapping[str, Any], ...] | None:
    """None, or a list of dicts (``of`` says what each is); as a tuple."""
    if value is None:
        return None
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise fail(name, f"a list of dicts ({of})", value)
    items = tuple(value)
    for item in items:
        if not isinstance(item, Mapping):
            raise fail(name, f"a list of dicts ({of})", item)
    return items


def audit_result(value: Any, name: str) -> None:
    """What ``bce_audit.audit`` returned."""
    from bce_audit.sweep.result import AuditResult

    if not isinstance(value, AuditResult):
        raise fail(name, "the AuditResult that bce_audit.audit returned", value)
