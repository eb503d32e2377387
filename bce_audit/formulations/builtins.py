"""The built-in formulations: what each computes, in which domain, with which parameters.

Adding one is one entry in ``BUILTINS`` and its function in ``engines/torch_builtins.py``. Each
takes ``(x, y)`` tensors of the dtype under test in its native domain, and its parameters as
keywords (the defaults below are the only ones), and returns the elementwise loss.
"""

from __future__ import annotations

from bce_audit.errors import UsageError, did_you_mean
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Domain

# Keras' default epsilon; 1 - eps rounds to 1 in float16 and bfloat16, as it does for users.
CLIP_EPSILON = 1e-7
# The usual softplus threshold (PyTorch's F.softplus uses 20 as well).
SOFTPLUS_THRESHOLD = 20.0

_CODE = "bce_audit.engines.torch_builtins"


def _builtin(name: str, domain: Domain, formula: str, function: str, **parameters: float) -> Formulation:
    return Formulation(
        name, domain, formula, implementation=f"{_CODE}:{function}", parameters=tuple(parameters.items())
    )


BUILTINS: dict[str, Formulation] = {
    f.name: f
    for f in (
        _builtin("naive", Domain.PROBABILITIES, "-(y*log(p) + (1-y)*log(1-p))", "naive"),
        _builtin(
            "clipped",
            Domain.PROBABILITIES,
            f"naive after p = clamp(p, {CLIP_EPSILON:g}, 1-{CLIP_EPSILON:g})",
            "clipped",
            eps=CLIP_EPSILON,
        ),
        _builtin(
            "softplus-threshold",
            Domain.LOGITS,
            f"where(z > {SOFTPLUS_THRESHOLD:g}, z, log1p(exp(z))) - y*z",
            "softplus_threshold",
            threshold=SOFTPLUS_THRESHOLD,
        ),
        _builtin("max-abs", Domain.LOGITS, "clamp_min(z, 0) - y*z + log1p(exp(-abs(z)))", "max_abs"),
        _builtin(
            "torch-bce",
            Domain.PROBABILITIES,
            'F.binary_cross_entropy(p, y, reduction="none")  (log clamped at -100)',
            "torch_bce",
        ),
        _builtin(
            "torch-bce-with-logits",
            Domain.LOGITS,
            'F.binary_cross_entropy_with_logits(z, y, reduction="none")',
            "torch_bce_with_logits",
        ),
        _builtin(
            "torch-logsigmoid",
            Domain.LOGITS,
            "-(y*logsigmoid(z) + (1-y)*logsigmoid(-z))  (optax/JAX form)",
            "torch_logsigmoid",
        ),
    )
}


def get_formulation(name: str) -> Formulation:
    try:
        return BUILTINS[name]
    except KeyError:
        names = list(BUILTINS)
        raise UsageError(
            f"unknown formulation {name!r}{did_you_mean(name, names)}; choose from {', '.join(names)}"
        ) from None
