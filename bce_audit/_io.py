"""Atomic file writes: a crash or Ctrl-C never leaves a half-written report."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bce_audit._exit_codes import UsageError


def check_writable(path: Path, flag: str) -> None:
    """Fail before any work when ``path`` cannot be written (a one-line usage error)."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {path}: permission denied")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: equal once resolved, or the same file (a hard link) when both exist."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a symlink loop, a vanished file: not provably the same
        return False


def check_distinct(named: list[tuple[str, Path]]) -> None:
    """Fail before any work when two of the (name, path) pairs are one file: writing an output
    would overwrite the config, the baseline or another output. ``name`` is the flag or the
    config key the path came from; the error names both."""
    for i, (name, path) in enumerate(named):
        for earlier_name, earlier in named[:i]:
            if same_file(path, earlier):
                raise UsageError(
                    f"{name} {path} and {earlier_name} {earlier} are the same file: "
                    "one would overwrite the other; give each its own path"
                )


def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
