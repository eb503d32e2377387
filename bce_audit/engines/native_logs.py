"""TensorFlow's C++ log lines kept off a bce-audit user's terminal.

Importing TensorFlow (2.18 on) prints lines like these on standard error, before its own log
level is read, and some ops print more when first run (float16 without AVX-512):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796061320.680527    2584 port.cc:153] oneDNN custom operations are on. ...
    E0000 00:00:1796061326.421433    2584 util.cc:131] oneDNN supports DT_HALF only on platforms ...

``quiet_tensorflow`` wraps whatever may import TensorFlow (the engine's own import; a user's
module in the sandbox): unless the caller set ``TF_CPP_MIN_LOG_LEVEL`` (then their level, and
every line, are theirs), it sets it to 3 (fatal only) for the import, where TensorFlow reads and
keeps it, and drops the info, warning and error lines printed before that level applies. Every
other line written to standard error meanwhile (a user's own prints) passes, as it comes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"

# An absl/glog line below fatal (I, W, E; "F" stays), the preamble absl prints before those, and
# the two TensorFlow prints outside that format at the same place.
NOISE = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-/]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|TF-TRT Warning: Could not find TensorRT"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


def is_noise(line: bytes) -> bool:
    """Whether a line of standard error is one of TensorFlow's C++ log lines below fatal."""
    return NOISE.match(line) is not None


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """``TF_CPP_MIN_LOG_LEVEL=3`` for the block (unless the caller set it), and standard error
    filtered of TensorFlow's log lines meanwhile (see the module docstring); the environment is
    the caller's again afterwards."""
    if LOG_LEVEL in os.environ:
        yield
        return
    os.environ[LOG_LEVEL] = "3"
    try:
        with _filtered_stderr():
            yield
    finally:
        os.environ.pop(LOG_LEVEL, None)


def _pump(read_fd: int, write_fd: int) -> None:
    """Copy lines from ``read_fd`` to ``write_fd`` as they come, dropping the noise, until EOF."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not is_noise(line))
        if out:
            with contextlib.suppress(OSError):
                os.write(write_fd, out)
    if pending and not is_noise(pending):
        with contextlib.suppress(OSError):
            os.write(write_fd, pending)
    os.close(read_fd)
    os.close(write_fd)


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """File descriptor 2 through a pipe for the block; a thread passes on all but the noise, so
    a line the block prints shows at once (a user's import that hangs still shows what it printed)."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error at all: nothing to filter
        yield
        return
    read_fd, write_fd = os.pipe()
    # the pump writes into its own copy of standard error, and closes it: a process the block
    # started may keep the pipe open past the block, and the pump with it
    pump = threading.Thread(target=_pump, args=(read_fd, os.dup(saved)), name="bce-audit-stderr", daemon=True)
    pump.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closed: the pump reads EOF and ends
        pump.join(timeout=5)
        os.close(saved)
