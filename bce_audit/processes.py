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

# What the fork server imports once, before forking any child: a warm torch (its first autograd
# call imports a few hundred modules), the engine, the sandbox and the oracle's table.
FORKSERVER_PRELOAD = [
    "bce_audit.engines._torch_warmup",
    "bce_audit.engines.torch_engine",
    "bce_audit.engines.sandbox",
    "bce_audit.oracle.table",
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


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (PR_SET_PDEATHSIG), so that no
    child outlives bce-audit, not even one whose parent was killed with SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
