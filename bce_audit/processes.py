"""Child processes that start fast, never re-run the parent's script, and never outlive it.

Used by the oracle's worker pool and by the sandbox that runs user code.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from multiprocessing.context import ForkServerContext, SpawnContext  # ForkServerContext: not on Windows

# The time limit of each request to a user's code in the sandbox (an import, one grid's call):
# the default, and the most one may set (a day: beyond it a limit means none, and the clocks it
# feeds overflow).
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 86400.0

# What the fork server imports once, before forking any child: torch, warmed up by one backward
# pass, the engine, the sandbox, and the oracle's table and its fast path (which imports mpmath:
# the oracle's workers need it, and in the sandbox an mpmath.py beside a user's file can then
# never replace it; torch's first backward pass no longer imports mpmath, by way of sympy).
FORKSERVER_PRELOAD = [
    "bce_audit.engines._torch_warmup",
    "bce_audit.engines.torch_engine",
    "bce_audit.engines.sandbox",
    "bce_audit.oracle.table",
    "bce_audit.oracle.fast",
]


def forkserver_context() -> ForkServerContext | SpawnContext:
    """multiprocessing's fork server (spawn on Windows), preloading FORKSERVER_PRELOAD: every child
    forked from it starts with torch imported, in milliseconds. Start its processes inside
    ``no_main()``."""
    if sys.platform == "win32":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return context


@contextlib.contextmanager
def no_main() -> Iterator[None]:
    """Start processes without re-running the parent's ``__main__`` in them.

    multiprocessing re-imports the parent's main module in every child it spawns or forks from
    its fork server, so that pickled functions defined there resolve. bce-audit's children need
    nothing from it, and re-running it is harmful: a user's script that calls
    ``bce_audit.audit()`` without an ``if __name__ == "__main__"`` guard would start the audit
    again in each child (and pytest's main module costs a second per child)."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
        return data

    spawn.get_preparation_data = preparation_data
    try:
        yield
    finally:
        spawn.get_preparation_data = original


def die_with_parent(main_pid: int | None = None) -> None:
    """Linux: the kernel kills this process when its parent dies (PR_SET_PDEATHSIG), so that no
    child outlives bce-audit, not even one whose parent was killed with SIGKILL.

    The parent may already have died before this call (a SIGKILL while workers start): then this
    process ends at once. ``main_pid`` is bce-audit's own process, which a worker forked from the
    fork server outlives by a moment otherwise (its parent is the fork server)."""
    import os

    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1 or (main_pid is not None and not _alive(main_pid)):
        os._exit(1)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def become_subreaper() -> None:
    """Linux: this process adopts its orphaned descendants (PR_SET_CHILD_SUBREAPER), so that a
    process its code starts in a new session, or behind a parent that exits, stays below it and
    is found by ``kill_tree``."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux: from /proc; elsewhere none)."""
    import os

    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        here = frontier.pop()
        children = [p for p, parent in parents.items() if parent == here]
        found += children
        frontier += children
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process, its process group and every descendant it has."""
    import os

    below = descendants(pid)
    for target in (pid, *below):
        with contextlib.suppress(OSError):
            os.kill(target, signal.SIGSTOP)  # nobody forks again while the tree is being killed
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    for target in (*below, pid):
        with contextlib.suppress(OSError):
            os.kill(target, signal.SIGKILL)
