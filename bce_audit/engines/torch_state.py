"""The global torch and numpy state the audit runs in, pinned around everything it evaluates.

torch's switches are process-wide, and user code can flip them: at import (a module that calls
``torch.set_flush_denormal(True)`` or ``np.seterr(all="raise")`` at its top level) or inside a
loss function. Any of them changes results: flushed denormals turn subnormal inputs and outputs
into zeros (and flush the very conversion of the grid into the dtype), anomaly mode raises on a
NaN gradient, another default dtype changes what ``torch.tensor(0.5)`` is inside a formula,
autocast changes the precision partway through, another thread count moves the boundary
between torch's vectorized body and its scalar tail. So every evaluation runs in one canonical
state, set on entry, and the caller's state is given back on exit, whatever the code in between
did. User modules are imported inside the same pin, so nothing they set at import survives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Literal, TypeAlias, cast

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

# How numpy handles a floating-point error of one kind (np.seterr).
NumpyErrorMode: TypeAlias = Literal["ignore", "warn", "raise", "call", "print", "log"]

# The smallest float32 subnormal: multiplied by 1 it is itself, unless denormals are flushed.
_TINY = 1.401298464324817e-45

# numpy's own defaults: the audit's array code is written for them.
NUMPY_ERRORS: dict[str, NumpyErrorMode] = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}


@dataclasses.dataclass(frozen=True)
class TorchState:
    """The process-wide switches that can change an evaluation's numbers.

    grad: autograd on. anomaly: (mode, check_nan) of anomaly detection. flush_denormal: whether
    denormals are flushed to zero. default_dtype / default_device: what factory functions make.
    threads: intra-op threads (they split elementwise kernels into chunks). autocast: CPU
    autocast on. matmul_precision: float32 matmul precision. deterministic: deterministic
    algorithms (mode, warn_only). numpy_errors: numpy's floating-point error handling.
    """

    grad: bool
    anomaly: tuple[bool, bool]
    flush_denormal: bool
    default_dtype: torch.dtype
    default_device: torch.device | None
    threads: int
    autocast: bool
    matmul_precision: str
    deterministic: tuple[bool, bool]
    numpy_errors: tuple[tuple[str, NumpyErrorMode], ...]


@functools.cache
def _subnormal() -> torch.Tensor:
    """A CPU tensor holding _TINY, made once (flush-denormal is a CPU switch; any default device).
    Made from its bit pattern: converting the float would give 0 if denormals were being flushed
    at that moment, and every later probe would then say they are."""
    import torch

    return torch.tensor([1], dtype=torch.int32, device="cpu").view(torch.float32)[0]


def _flushing_denormals() -> bool:
    """Whether denormals are flushed to zero (torch.set_flush_denormal(True)); torch has no getter."""
    return _subnormal().mul(1).item() == 0


def _autocast_enabled(torch: ModuleType) -> bool:
    try:
        return bool(torch.is_autocast_enabled("cpu"))
    except TypeError:  # older torch: no device argument
        return bool(torch.is_autocast_cpu_enabled())


def _set_autocast(torch: ModuleType, on: bool) -> None:
    try:
        torch.set_autocast_enabled("cpu", on)
    except TypeError:
        torch.set_autocast_cpu_enabled(on)


def capture() -> TorchState:
    """The current state."""
    import torch

    check_nan = torch.is_anomaly_check_nan_enabled() if hasattr(torch, "is_anomaly_check_nan_enabled") else True
    return TorchState(
        grad=torch.is_grad_enabled(),
        anomaly=(torch.is_anomaly_enabled(), check_nan),
        flush_denormal=_flushing_denormals(),
        default_dtype=torch.get_default_dtype(),
        default_device=torch.get_default_device() if hasattr(torch, "get_default_device") else None,
        threads=torch.get_num_threads(),
        autocast=_autocast_enabled(torch),
        matmul_precision=torch.get_float32_matmul_precision(),
        deterministic=(
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        # a TypedDict of NumpyErrorMode values, one per kind
        numpy_errors=tuple(sorted(cast(dict[str, NumpyErrorMode], np.geterr()).items())),
    )


def apply(state: TorchState, now: TorchState | None = None) -> None:
    """Set every switch to ``state`` (``now``, when known, skips the ones already right)."""
    import torch

    def differs(field: str) -> bool:
        return now is None or getattr(now, field) != getattr(state, field)

    if differs("default_device") and state.default_device is not None:
        torch.set_default_device(state.default_device)
    if differs("default_dtype"):
        torch.set_default_dtype(state.default_dtype)
    torch.set_grad_enabled(state.grad)
    if differs("anomaly"):
        torch.autograd.set_detect_anomaly(*state.anomaly)
    torch.set_flush_denormal(state.flush_denormal)  # a setter is cheaper than probing it
    if differs("threads"):
        torch.set_num_threads(state.threads)
    if differs("autocast"):
        _set_autocast(torch, state.autocast)
    if differs("matmul_precision"):
        torch.set_float32_matmul_precision(state.matmul_precision)
    if differs("deterministic"):
        torch.use_deterministic_algorithms(state.deterministic[0], warn_only=state.deterministic[1])
    np.seterr(**dict(state.numpy_errors))


@functools.cache
def canonical() -> TorchState:
    """The audit's state: autograd on, anomaly detection off, IEEE subnormals, float32 default
    dtype on the CPU, no autocast, the highest matmul precision, torch's default algorithms,
    numpy's default error handling, and one intra-op thread.

    One thread, whatever the machine: with N threads torch splits a batch into N chunks, each
    with its own vectorized body and scalar tail, so a point's output could depend on the core
    count, and a baseline recorded on one machine could fail a gate on another. And a sweep's
    batches are small: a kernel that hands each thread a share (logit, logsigmoid, BCE with
    logits) then waits for the pool's threads to wake, which on a busy machine takes longer
    than the whole call (benchmarks/bench_everyday.py, docs/performance.md)."""
    import torch

    return TorchState(
        grad=True,
        anomaly=(False, True),
        flush_denormal=False,
        default_dtype=torch.float32,
        default_device=torch.device("cpu") if hasattr(torch, "get_default_device") else None,
        threads=1,
        autocast=False,
        matmul_precision="highest",
        deterministic=(False, False),
        numpy_errors=tuple(sorted(NUMPY_ERRORS.items())),
    )


# How many pinned blocks the current thread is in. Inside one, the state is the canonical one
# between evaluations: each block that runs code which may switch something (a user's function)
# gives back, on exit, the state it found, which was canonical.
_nesting = threading.local()


def repin() -> None:
    """Inside a pinned block, set the canonical state again (after code that may have switched
    it ran outside any pin of its own: a user's function in another engine); elsewhere nothing."""
    if getattr(_nesting, "depth", 0):
        apply(canonical(), capture())


@contextlib.contextmanager
def pinned(trusted: bool = False) -> Iterator[None]:
    """Run the block in the canonical state; give the caller its own state (and its warning
    filters) back afterwards, whatever the block did.

    trusted: the block runs only bce-audit's own code (a built-in), which switches nothing: inside
    another pinned block, where the state is already canonical, it then costs nothing (a sweep
    pins once around all its evaluations; ``engines.pinned_run``)."""
    depth = getattr(_nesting, "depth", 0)
    if trusted and depth:
        yield
        return
    target = canonical()
    before = capture()
    _nesting.depth = depth + 1
    with warnings.catch_warnings():
        apply(target, before)
        try:
            yield
        finally:
            apply(before, capture())
            _nesting.depth = depth
