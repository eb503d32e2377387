"""What every engine shares: calling someone else's function safely, finding a built-in's code,
telling a formulation's failure from the user's Ctrl-C, the exact numpy array of a dtype, and
whether an optional framework is installed.

No framework is imported here (``ml_dtypes`` only where bfloat16 is asked for), so the
registry can check for a missing extra before any work.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from bce_audit.engines.interface import Evaluation, GridEvaluation
from bce_audit.engines.torch_state import NUMPY_ERRORS
from bce_audit.errors import MissingExtra, describe, stops_the_run
from bce_audit.formulations.interface import DEFAULT_CALLING, ArgumentOrder, Calling, CallShape, Formulation
from bce_audit.vocabulary import DType


def contained(
    fn: Callable[..., Any],
    parameters: dict[str, Any],
    calling: Calling = DEFAULT_CALLING,
    reshape: Callable[[Any, tuple[int, ...]], Any] = lambda array, shape: array.reshape(shape),
) -> Callable[[Any, Any], Any]:
    """``loss(x, y)`` calling someone else's function: its prints go to stderr (never into a
    report on stdout), and sys.exit() is an error of that function, not the end of the audit.

    ``calling`` is the function's own convention: its arguments in its order, reshaped (with the
    framework's ``reshape``) to the shape it wants, its output flattened back when it has that
    shape (any other shape is left for the engine to refuse). Parameters that are tuples (a
    config's lists) are passed as lists.
    """
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in parameters.items()}
    swap = calling.order is ArgumentOrder.TARGET_INPUT

    def loss(x: Any, y: Any) -> Any:
        flat = tuple(x.shape)
        if calling.shape is not CallShape.FLAT:
            x, y = reshape(x, calling.shape.of(flat[0])), reshape(y, calling.shape.of(flat[0]))
        with contextlib.redirect_stdout(sys.stderr):
            try:
                out = fn(y, x, **kwargs) if swap else fn(x, y, **kwargs)
            except SystemExit as exc:  # not an Exception: it would end the whole audit
                raise RuntimeError(f"the function called sys.exit({exc.code!r})") from None
        if calling.shape is not CallShape.FLAT and tuple(getattr(out, "shape", ())) == tuple(x.shape):
            out = reshape(out, flat)
        return out

    return loss


@functools.cache
def implementation(reference: str) -> Callable[..., Any]:
    """The function a built-in's ``module:function`` names."""
    module, _, name = reference.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def its_own_failure(exc: BaseException) -> bool:
    """Whether an exception out of a formulation's forward or backward pass is its failure (error
    rows) rather than the end of the run (``errors.stops_the_run``)."""
    return not stops_the_run(exc)


def loss_function(
    formulation: Formulation, reshape: Callable[[Any, tuple[int, ...]], Any] | None = None
) -> Callable[[Any, Any], Any]:
    """``loss(x, y)`` for a formulation that runs in this process, its parameters bound, in any
    engine's arrays (``reshape``: the framework's, for a user function's calling shape)."""
    parameters = dict(formulation.parameters)
    if formulation.implementation is not None:  # a built-in: our own code
        return functools.partial(implementation(formulation.implementation), **parameters)
    if formulation.function is not None:
        if reshape is None:
            return contained(formulation.function, parameters, formulation.calling)
        return contained(formulation.function, parameters, formulation.calling, reshape)
    raise ValueError(f"{formulation.name}: a user's target runs in the sandbox, not here")


def failed_evaluation(exc: BaseException, n: int) -> Evaluation:
    """The error rows of a formulation that raised on n inputs (its own failure, a finding), or
    ``exc`` again where it is the run being stopped (``errors.stops_the_run``)."""
    if not its_own_failure(exc):
        raise exc
    nan = np.full(n, np.nan)
    return Evaluation(nan, nan.copy(), error=describe(exc))


def each_nonfinite_alone(
    evaluate: Callable[[np.ndarray], Evaluation], finite: np.ndarray, nonfinite: np.ndarray
) -> GridEvaluation:
    """The finite inputs in one batch, then each non-finite input alone (see GridEvaluation)."""
    return GridEvaluation(evaluate(finite), tuple(evaluate(np.array([x])) for x in nonfinite))


def numpy_dtype(dtype: DType) -> np.dtype[Any]:
    """The numpy dtype of a bce-audit dtype (bfloat16: ``ml_dtypes``', which JAX and TF share)."""
    if dtype is DType.BFLOAT16:
        import ml_dtypes

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(dtype.value)


@contextlib.contextmanager
def numpy_errors() -> Iterator[None]:
    """numpy's floating-point error handling at its defaults (as torch_state pins it), the
    caller's given back on exit: the engines convert arrays with numpy."""
    saved = np.seterr(**NUMPY_ERRORS)
    try:
        yield
    finally:
        np.seterr(**saved)


def exact_array(values: np.ndarray, dtype: DType) -> np.ndarray:
    """``values`` (float64, each a value of ``dtype``) as an array of ``dtype``: checked exact,
    because a rounding here would audit another input than the one reported."""
    converted = np.asarray(values, dtype=np.float64).astype(numpy_dtype(dtype))
    back = converted.astype(np.float64)
    same = (back == values) | (np.isnan(back) & np.isnan(values))
    if not np.all(same) or not np.array_equal(np.signbit(back), np.signbit(values)):
        raise ValueError(f"an input is not a {dtype} value: the grid must hold values of its dtype")
    return converted


# engine -> (the modules it needs, the extra that installs them)
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": (("torch",), ""),
    "jax": (("jax", "jaxlib", "optax", "ml_dtypes"), "jax"),
    "tensorflow": (("tensorflow", "ml_dtypes"), "tensorflow"),
    "keras": (("keras", "tensorflow", "ml_dtypes"), "keras"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent missing, or sys.modules[module] set to None
        return False


def require(engine: str, who: str) -> None:
    """A MissingExtra (exit 2, one line, the pip command) when ``engine``'s framework is not
    installed; ``who`` names what needs it. Looks without importing anything."""
    modules, extra = REQUIREMENTS[engine]
    missing = [m for m in modules if not _installed(m)]
    if missing and extra:
        raise MissingExtra(
            f"{who} runs in {engine}, which is not installed (no {', '.join(missing)}): "
            f"pip install 'bce-audit[{extra}]'"
        )
