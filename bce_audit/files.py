"""Every file bce-audit writes goes through here.

Two kinds of file, two rules:

* **Outputs the user names** (``--csv``, ``--json``, ``--details``, ``--failures``, ``--junit``, ``--markdown``,
  the baseline): a symlink there is the user's choice and is followed (its target is replaced,
  the link kept); a device or pipe (``/dev/stdout``, ``>(jq .)``) is written into; ``-`` is
  standard output. One run's outputs are written as one transaction (``write_outputs``): each
  is rendered into an exclusive temporary file beside its target first, and only when all of
  them are written are they renamed into place, with SIGINT and SIGTERM held back, so a failure
  or Ctrl-C never leaves a new CSV beside an old JSON. When something does go wrong the error
  says exactly which outputs were written.
* **Files the tool names itself** (the truth cache and its temporary files): they live in a
  ``PrivateDir``, where every operation is relative to a descriptor of the directory and never
  follows a symbolic link. A link found there is not the tool's: it is reported, never read
  through, and a write replaces the link itself, never its target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import secrets
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bce_audit.errors import LinkRefused, OutputsNotWritten, UsageError

# The path that means standard output, as Unix tools have it.
STDOUT = "-"


@dataclasses.dataclass(frozen=True)
class Output:
    """One output the user asked for.

    name: how the user named it, for messages: ``--csv`` or ``csv (from ci.toml)``.
    path: where it goes; None for standard output (``-``).
    member: a file bce-audit names itself inside a directory the user named (``OutputDir``):
        the directory is created if missing, and a link or anything else found at the file's
        own name is not the tool's: the rename replaces it, never following it.
    """

    name: str
    path: Path | None
    member: bool = False

    @classmethod
    def parse(cls, name: str, value: str | os.PathLike[str]) -> Output:
        """``-`` is standard output; anything else a file path, which a trailing slash (``out/``)
        or an empty string cannot be (Path would quietly drop the one, read the other as ``.``)."""
        text = os.fspath(value)
        if text == STDOUT:
            return cls(name, None)
        if not text.strip():
            raise UsageError(f"{name}: empty path; name a file")
        if text.endswith((os.sep, "/")) or os.path.basename(text) in (".", ".."):
            raise UsageError(f"{name} {shown(text)}: names a directory; name a file in it")
        return cls(name, Path(text))

    @property
    def is_stdout(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return f"{self.name} {STDOUT if self.path is None else shown(self.path)}"


@dataclasses.dataclass(frozen=True)
class OutputDir:
    """A directory the user names for files that bce-audit names (``--repro``, ``--plot``).

    name: how the user named it, for messages: ``--repro``.
    path: the directory: created if missing (its parent must exist); a link to a directory is
        the user's choice and is followed, but nothing inside it is (see ``Output.member``).
    """

    name: str
    path: Path

    @classmethod
    def parse(cls, name: str, value: str | os.PathLike[str]) -> OutputDir:
        text = os.fspath(value)
        if not text.strip():
            raise UsageError(f"{name}: empty path; name a directory")
        if text == STDOUT:
            raise UsageError(f"{name} -: several files cannot go to standard output; name a directory")
        return cls(name, Path(text))

    def file(self, filename: str) -> Output:
        """The output of one file in this directory."""
        return Output(self.name, self.path / filename, member=True)

    def as_output(self) -> Output:
        """The directory as an output path, for ``check_distinct``."""
        return Output(self.name, self.path)

    def __str__(self) -> str:
        return f"{self.name} {shown(self.path)}"


# What every file bce-audit names inside a user's directory carries near its start, by suffix:
# a repro file's docstring (report/repro.py), a figure's PNG and SVG metadata (report/plot.py). A
# file there without its mark is the user's, and is never replaced.
OUR_MARKS = {".py": b'"""bce-audit repro:', ".png": b"tEXtSoftware\x00bce-audit ", ".svg": b"<dc:title>bce-audit "}
_MARK_WITHIN = 4096


def check_ours_to_replace(members: Sequence[Output]) -> None:
    """Fail before anything is written when a file bce-audit would write in a user's directory
    already exists there and is not one bce-audit wrote (``OUR_MARKS`` near its start): the user's
    own file of that name is never replaced. A link there is replaced, never followed, as
    ``Output.member`` says."""
    for output in members:
        if output.path is None:
            continue
        try:
            mode = os.lstat(output.path).st_mode
            if stat.S_ISDIR(mode):  # a rename never replaces a directory with a file
                raise UsageError(
                    f"{output.name} {shown(output.path)} is a directory, where bce-audit writes a file; "
                    "move it, or name another directory"
                )
            if not stat.S_ISREG(mode):
                continue
            with open(output.path, "rb") as f:
                head = f.read(_MARK_WITHIN)
        except OSError:
            continue  # missing, or unreadable: writing it says what is wrong
        if OUR_MARKS.get(output.path.suffix, b"\0no mark\0") not in head:
            raise UsageError(
                f"{output.name} {shown(output.path)} exists and bce-audit did not write it; "
                "move it, or name another directory"
            )


def _probe(directory: Path, make_directory: bool = False) -> str | None:
    """Why nothing can be created in ``directory``, or None: an exclusive temporary file (or
    directory) made there and removed at once. ``os.access`` is not enough: it says yes to root
    in /proc and /sys, and on a read-only mount."""
    try:
        if make_directory:
            os.rmdir(tempfile.mkdtemp(prefix=".bce-audit-probe.", dir=directory))
        else:
            fd, name = tempfile.mkstemp(prefix=".bce-audit-probe.", dir=directory)
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def dangling_target(path: Path) -> str | None:
    """Where ``path`` points when it is a symbolic link to nothing, else None."""
    try:
        return os.readlink(path) if os.path.islink(path) and not os.path.exists(path) else None
    except (OSError, ValueError):
        return None


def check_writable_dir(output: OutputDir) -> None:
    """Fail before any work when a directory output cannot be written: it exists and is not a
    directory (a file is never replaced by one), it is a link to nothing (what it names is not
    created through it), or it is missing and its parent is, or nothing can be created in it (or
    in its parent, to make it)."""
    path = output.path
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise UsageError(f"{output}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte
        raise UsageError(f"{output}: not a valid path") from None
    if info is not None:
        if not stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{output}: exists and is not a directory; name a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{output}: permission denied")
        reason = _probe(path)
        if reason is not None:
            raise UsageError(f"{output}: cannot write in it: {reason}")
        return
    dangling = dangling_target(path)
    if dangling is not None:
        raise UsageError(
            f"{output}: a symbolic link to {shown(dangling)}, which does not exist; "
            "create that directory, or name another"
        )
    parent = Path(os.path.realpath(path)).parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"{output}: {shown(parent)} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{output}: permission denied")
    reason = _probe(parent, make_directory=True)
    if reason is not None:
        raise UsageError(f"{output}: cannot create it in {shown(parent)}: {reason}")


def shown(path: str | Path) -> str:
    """A path for a message: as given, or quoted with escapes when it holds a character that does
    not print (a newline would split a one-line error, an escape sequence drive the terminal)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _is_special(path: Path) -> bool:
    """True for an existing path that is neither a regular file nor a directory: /dev/null,
    /dev/stdout, a FIFO, a shell's >(...). Such a path is written into, never renamed over."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_writable(output: Output) -> None:
    """Fail before any work when an output cannot be written (a one-line usage error)."""
    path = output.path
    if path is None:
        return
    if _is_special(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{output}: permission denied")
        return
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):
            raise UsageError(f"{output}: {exc.strerror}") from None
    except ValueError:  # a NUL byte
        raise UsageError(f"{output}: not a valid path") from None
    if path.is_dir():
        raise UsageError(f"{output}: is a directory")
    target = Path(os.path.realpath(path))  # through symlinks: the file they point at is replaced
    parent = target.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"{output}: {shown(parent)} {what}")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{output}: permission denied")
    reason = _probe(parent)  # where the temporary file that replaces it is made
    if reason is not None:
        raise UsageError(f"{output}: cannot write in {shown(parent)}: {reason}")


def check_outputs(outputs: Sequence[Output | OutputDir], inputs: Sequence[Output] = ()) -> None:
    """The one check every output the user names goes through, before any work: each can be
    written (``check_writable`` for a file, ``check_writable_dir`` for a directory), and none is
    another or an input (``check_distinct``; two directories may be one: --repro and --plot
    share a directory, their files' names differ). A failure is one UsageError naming the option
    and the path; nothing is written (a probe file is made and removed at once)."""
    files = [o for o in outputs if isinstance(o, Output)]
    directories = [o for o in outputs if isinstance(o, OutputDir)]
    for output in outputs:
        if isinstance(output, OutputDir):
            check_writable_dir(output)
        else:
            check_writable(output)
    check_distinct(files, inputs)
    for directory in directories:
        check_distinct([*files, directory.as_output()], inputs)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: equal once resolved, or the same file (a hard link) when both exist."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a symlink loop, a vanished file: not provably the same
        return False


def check_distinct(outputs: Sequence[Output], inputs: Sequence[Output] = ()) -> None:
    """Fail before any work when two outputs, or an output and an input (the config, the baseline,
    the source of a user's loss), are one file, or when two outputs are standard output: one would
    overwrite, or interleave with, the other. The error names both. Inputs may share a file."""
    named = [*inputs, *outputs]
    for i in range(len(inputs), len(named)):
        out = named[i]
        for earlier in named[:i]:
            if out.path is None and earlier.path is None:
                clash = True
            elif out.path is None or earlier.path is None or _is_special(out.path):
                clash = False  # /dev/null, /dev/stdout, a pipe: written into, never replaced
            else:
                clash = same_file(out.path, earlier.path)
            if clash:
                raise UsageError(
                    f"{out} and {earlier} are the same file: one would overwrite the other; give each its own path"
                )


# --------------------------------------------------------------------------- inputs

# No config or baseline is anywhere near this big; a file that is, is not one (and is not read).
MAX_INPUT_BYTES = 256 << 20


def read_input(path: Path, name: str) -> bytes:
    """The bytes of a file the user names as an input (a config, a baseline). Only a regular file
    is read: a FIFO would block forever, a device (/dev/zero) never end. Missing, a directory, not a
    regular file, too big, unreadable: a one-line UsageError naming it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{name} {path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{name} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{name} {path}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{name} {path}: not a regular file (a device, a pipe or a socket)")
    if info.st_size > MAX_INPUT_BYTES:
        raise UsageError(f"{name} {path}: {info.st_size} bytes, more than a {name} can be")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{name} {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- signals


_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, for the few renames that must happen
    all together or not at all; a signal that arrives meanwhile is delivered right after.

    The handlers are swapped for ones that only take note (a signal mask would not do: the
    kernel may hand the signal to another thread, whose C handler still trips the Python one).
    Python runs handlers in the main thread only, so elsewhere the block is not protected.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _HELD_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


# --------------------------------------------------------------------------- outputs


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


class _Staged:
    """An output rendered into an exclusive temporary file beside its target, waiting to be
    renamed into place (or, for standard output and devices, the bytes still to write)."""

    def __init__(self, output: Output, data: bytes):
        self.output = output
        self.data = data
        self.tmp: str | None = None
        self.target: Path | None = None
        self.created: Path | None = None  # the directory this made for it (a member's)
        # what the target held before the rename, as a hard link beside it (None: nothing, or a
        # directory, which no rename replaces); kept until every output is in place
        self.backup: str | None = None
        self.no_backup: str | None = None  # why no backup could be made, when one was needed

    @property
    def direct(self) -> bool:
        """Written into (standard output, a device, a pipe), not renamed over."""
        if self.output.member:
            return False
        return self.output.path is None or _is_special(self.output.path)

    def _member_target(self) -> tuple[Path, int]:
        """A member's target, its directory created if missing, and the mode to give it. The
        name itself is never resolved: whatever is there is replaced by the rename."""
        assert self.output.path is not None
        directory = self.output.path.parent
        try:
            os.mkdir(directory)
            self.created = directory
        except FileExistsError:
            pass
        target = Path(os.path.realpath(directory)) / self.output.path.name
        try:
            info = os.lstat(target)
            mode = stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else _new_file_mode()
        except FileNotFoundError:
            mode = _new_file_mode()
        return target, mode

    def stage(self) -> None:
        if self.direct:
            return
        assert self.output.path is not None  # not direct: a file path
        if self.output.member:
            target, mode = self._member_target()
        else:
            target = Path(os.path.realpath(self.output.path))  # the user's symlink is followed on purpose
            try:
                mode = stat.S_IMODE(os.stat(target).st_mode)
            except FileNotFoundError:
                mode = _new_file_mode()
        # mkstemp: O_CREAT | O_EXCL, so nothing that already exists (a planted link) is opened
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        self.tmp, self.target = tmp, target
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # not on Windows
                os.fchmod(f.fileno(), mode)  # mkstemp makes it 0600; keep the file's own mode
            f.write(self.data)
            f.flush()
            os.fsync(f.fileno())

    def write_direct(self) -> None:
        if self.output.path is None:
            stream = sys.stdout
            if stream is None:  # standard output closed: there is nowhere to write
                raise OSError(errno.EBADF, "standard output is closed")
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                stream.flush()
                buffer.write(self.data)
                buffer.flush()
            else:  # a text stream with no bytes underneath (click's test runner, say)
                stream.write(self.data.decode("utf-8"))
                stream.flush()
            return
        with open(self.output.path, "wb") as f:
            f.write(self.data)

    def commit(self) -> None:
        """Rename the temporary file over the target, first keeping what the target held as a
        hard link beside it (``backup``), so that ``rollback`` can put it back."""
        assert self.tmp is not None and self.target is not None, "commit() before stage()"
        try:
            info = os.lstat(self.target)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISDIR(info.st_mode):
            backup = str(self.target.parent / f".{self.target.name}.{secrets.token_hex(8)}.bak")
            try:
                os.link(self.target, backup, follow_symlinks=False)  # exclusive: fails if the name exists
                self.backup = backup
            except OSError as exc:  # a file system without hard links: written, but not undoable
                self.no_backup = _reason(exc)
        os.replace(self.tmp, self.target)
        self.tmp = None

    def rollback(self) -> None:
        """Undo ``commit``: the old file renamed back over the target, or the new one removed
        where there was none."""
        assert self.target is not None
        if self.no_backup is not None:
            raise OSError(errno.ENOTSUP, f"its old file could not be kept: {self.no_backup}")
        if self.backup is not None:
            os.replace(self.backup, self.target)
            self.backup = None
        else:
            os.unlink(self.target)

    def drop_backup(self) -> None:
        if self.backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.backup)
            self.backup = None

    def discard(self) -> None:
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


def _written_text(done: list[Output]) -> str:
    return "written: " + ", ".join(str(o) for o in done) if done else "nothing was written"


def _rolled_back(renamed: list[_Staged]) -> tuple[list[Output], list[Output], list[str]]:
    """Undo the renames already made, last first: the outputs put back as they were, those that
    could not be (still the new file), and for each of these why, and where its old file is."""
    restored: list[Output] = []
    stuck: list[Output] = []
    why: list[str] = []
    for staged in reversed(renamed):
        try:
            staged.rollback()
            restored.append(staged.output)
        except OSError as exc:
            kept = f", its old file is {shown(staged.backup)}" if staged.backup is not None else ""
            why.append(f"{staged.output} could not be put back ({_reason(exc)}{kept})")
            staged.backup = None  # named in the message: left for the user, not removed
            stuck.append(staged.output)
    return restored[::-1], stuck[::-1], why


def write_outputs(
    items: Sequence[tuple[Output, bytes | str]], announce: Callable[[Output], None] | None = None
) -> None:
    """Write one run's outputs together: all of them replaced, or none, or a message that says
    exactly which were written.

    1. Each file output is written to an exclusive temporary file beside its target and
       fsynced. A failure here (a full disk, say) removes the temporary files and replaces nothing.
    2. Standard output, devices and pipes are written into (they cannot be replaced atomically,
       nor taken back).
    3. The temporary files are renamed over their targets with SIGINT and SIGTERM held back, so
       an interrupt lands before or after all the renames, never between two of them. Each
       target's old file is kept as a hard link beside it until all are in place: when a rename
       fails (the target became a directory since the check), the renames already made are
       undone, the old files put back, and the error says so (and names any that could not be).

    ``announce(output)`` is called for each output once it is in place. Errors are
    ``OutputsNotWritten`` (exit 2) naming the output, the reason and what was written;
    an interrupt (Ctrl-C, SIGTERM) is re-raised after the temporary files are removed.
    """
    staged = [_Staged(o, d.encode("utf-8") if isinstance(d, str) else d) for o, d in items]
    done: list[Output] = []
    renamed: list[_Staged] = []
    current: _Staged | None = None
    try:
        for current in staged:
            current.stage()
        for current in staged:
            if current.direct:
                current.write_direct()
                done.append(current.output)
        current = None
        with signals_held():
            try:
                for current in staged:
                    if not current.direct:
                        current.commit()
                        renamed.append(current)
            except OSError as exc:
                failed = current
                restored, stuck, why = _rolled_back(renamed)
                renamed, current = [], None
                done += stuck
                what = f"{failed.output}: cannot write: {_reason(exc)}" if failed is not None else _reason(exc)
                parts = [_written_text(done)]
                if restored:
                    parts.append("put back as they were: " + ", ".join(str(o) for o in restored))
                raise OutputsNotWritten(f"{what}; {'; '.join(parts + why)}") from None
            done += [r.output for r in renamed]
            current = None
    except OSError as exc:
        what = f"{current.output}: cannot write: {_reason(exc)}" if current is not None else _reason(exc)
        raise OutputsNotWritten(f"{what}; {_written_text(done)}") from None
    except (KeyboardInterrupt, SystemExit) as exc:
        # an interrupt (SIGTERM arrives as SystemExit): say what is in place, then let it end the run
        if sys.stderr is not None:
            with contextlib.suppress(Exception):
                print(f"bce-audit: interrupted while writing the outputs; {_written_text(done)}", file=sys.stderr)
        raise exc
    finally:
        for s in staged:
            s.discard()
            s.drop_backup()
        if not done:  # a directory made for members that never came: leave none behind
            for s in staged:
                if s.created is not None:
                    with contextlib.suppress(OSError):
                        os.rmdir(s.created)
        if announce is not None:
            for output in done:
                announce(output)


def atomic_write(path: Path, text: str) -> None:
    """Write one user-named file atomically (see write_outputs)."""
    write_outputs([(Output("file", Path(path)), text)])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    write_outputs([(Output("file", Path(path)), data)])


# --------------------------------------------------------------------------- the tool's own files


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# os.replace takes the same dir_fd arguments as os.rename (one system call), but is not listed itself
_DIR_FD = {os.open, os.rename, os.mkdir, os.unlink} <= os.supports_dir_fd


class PrivateDir:
    """A directory that bce-audit names and fills itself (``root / name``), where no symbolic
    link is ever followed.

    ``root`` is the user's (``--cache-dir``, ``$BCE_AUDIT_CACHE_DIR``, the platform's cache
    directory): it is created if missing, and links in it are the user's business. ``name`` is
    the tool's: it is created here, opened with O_NOFOLLOW, and every file below it is opened,
    created and renamed relative to that descriptor (openat, renameat), with O_NOFOLLOW, so a
    link planted there, or a directory swapped for a link halfway through, cannot send a read
    or a write anywhere else. Temporary files are created exclusively (O_EXCL) in this directory.
    Where the platform has no such calls, each path is checked with lstat instead.
    """

    def __init__(self, root: Path, name: str):
        self.root = Path(root)
        self.name = name
        self.path = self.root / name

    @contextlib.contextmanager
    def _dir_fd(self, create: bool) -> Iterator[int | None]:
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        if not _DIR_FD:
            if self.path.is_symlink():
                raise LinkRefused(errno.ELOOP, f"{self.path} is a symbolic link, not a directory bce-audit made")
            if create:
                self.path.mkdir(exist_ok=True)
            yield None
            return
        root_fd = os.open(self.root, os.O_RDONLY | _DIRECTORY)
        try:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.name, 0o755, dir_fd=root_fd)
            try:
                fd = os.open(self.name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=root_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(self.path):
                    raise LinkRefused(
                        errno.ELOOP, f"{self.path} is a symbolic link, not a directory bce-audit made"
                    ) from None
                raise
        finally:
            os.close(root_fd)
        try:
            yield fd
        finally:
            os.close(fd)

    def read(self, filename: str) -> bytes | None:
        """The bytes of a regular file here; None if there is none. LinkRefused for a link or
        anything else that is not a regular file (a FIFO is never opened for reading)."""
        try:
            with self._dir_fd(create=False) as dfd:
                if dfd is None:
                    p = self.path / filename
                    if p.is_symlink() or (p.exists() and not p.is_file()):
                        raise LinkRefused(errno.ELOOP, f"{p} is not a regular file")
                    return p.read_bytes()
                try:
                    fd = os.open(filename, os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise LinkRefused(errno.ELOOP, f"{self.path / filename} is a symbolic link") from None
                    raise
                with os.fdopen(fd, "rb") as f:
                    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                        raise LinkRefused(errno.EINVAL, f"{self.path / filename} is not a regular file")
                    return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, filename: str, data: bytes) -> None:
        """Replace ``filename`` here with ``data``, atomically: an exclusive temporary file in
        this directory, fsync, then a rename that replaces whatever the name held (a link
        included, never its target)."""
        with self._dir_fd(create=True) as dfd:
            tmp = f".{filename}.{secrets.token_hex(8)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            if dfd is None:
                fd = os.open(self.path / tmp, flags, 0o644)
            else:
                fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
            leftover: str | None = tmp  # to remove on the way out, until it is renamed
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                with signals_held():
                    if dfd is None:
                        os.replace(self.path / tmp, self.path / filename)
                    else:
                        os.replace(tmp, filename, src_dir_fd=dfd, dst_dir_fd=dfd)
                    leftover = None
            finally:
                if leftover is not None:
                    with contextlib.suppress(OSError):
                        if dfd is None:
                            os.unlink(self.path / leftover)
                        else:
                            os.unlink(leftover, dir_fd=dfd)
