"""Atomic file writes: a crash or Ctrl-C never leaves a half-written report."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from bce_audit._exit_codes import UsageError


def _is_special(path: Path) -> bool:
    """True for an existing path that is neither a regular file nor a directory: /dev/null,
    /dev/stdout, a FIFO, a shell's >(...). Such a path is written into, never renamed over."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_writable(path: Path, flag: str) -> None:
    """Fail before any work when ``path`` cannot be written (a one-line usage error)."""
    if _is_special(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {path}: permission denied")
        return
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    target = Path(os.path.realpath(path))  # through symlinks: the file they point at is replaced
    parent = target.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: {parent} {what}")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{flag} {path}: permission denied")


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
        if _is_special(path):
            continue  # /dev/null, /dev/stdout, a pipe: written into, never replaced
        for earlier_name, earlier in named[:i]:
            if same_file(path, earlier):
                raise UsageError(
                    f"{name} {path} and {earlier_name} {earlier} are the same file: "
                    "one would overwrite the other; give each its own path"
                )


def atomic_write(path: Path, text: str) -> None:
    """Write text (UTF-8, newlines as given) atomically: see atomic_write_bytes."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    A symlink keeps pointing where it did (its target is replaced); an existing file keeps its
    permissions, a new one gets the umask's; a device or pipe is simply written into.
    """
    if _is_special(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    target = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # not on Windows
                os.fchmod(f.fileno(), mode)  # mkstemp makes it 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
