"""The built-in formulations: what each computes, in which domain and engine, with which parameters.

Adding one is one entry in ``BUILTINS`` and its function in its engine's built-ins module
(``engines/torch_builtins.py``, ``engines/jax_builtins.py``, ``engines/tensorflow_builtins.py``).
Each takes ``(x, y)`` arrays of its framework in the dtype under test, in its native domain, and
its parameters as keywords (the defaults below are the only ones), and returns the elementwise
loss.

A sweep that selects nothing audits ``DEFAULT``: the built-ins that need no optional framework
(torch is a dependency; JAX, TensorFlow and Keras are extras), so the default sweep's figures do
not depend on which extras are installed.
"""

from __future__ import annotations

from bce_audit.errors import UsageError, did_you_mean
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Domain

# Keras' default epsilon; 1 - eps rounds to 1 in float16 and bfloat16, as it does for users.
CLIP_EPSILON = 1e-7
# The usual softplus threshold (PyTorch's F.softplus uses 20 as well).
SOFTPLUS_THRESHOLD = 20.0

# engine -> the module that holds its built-ins' code
_CODE = {
    "torch": "bce_audit.engines.torch_builtins",
    "jax": "bce_audit.engines.jax_builtins",
    "tensorflow": "bce_audit.engines.tensorflow_builtins",
    "keras": "bce_audit.engines.tensorflow_builtins",
}


def _builtin(
    name: str, domain: Domain, formula: str, function: str, engine: str = "torch", **parameters: float
) -> Formulation:
    return Formulation(
        name,
        domain,
        formula,
        engine=engine,
        implementation=f"{_CODE[engine]}:{function}",
        parameters=tuple(parameters.items()),
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
        _builtin(
            "max-abs",
            Domain.LOGITS,
            "clamp_min(z, 0) - y*z + log1p(exp(-abs(z)))  (differentiated by torch autograd)",
            "max_abs",
        ),
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
        _builtin(
            "optax-sigmoid-bce",
            Domain.LOGITS,
            "optax.sigmoid_binary_cross_entropy(z, y)  (-y*log_sigmoid(z) - (1-y)*log_sigmoid(-z))",
            "optax_sigmoid_bce",
            engine="jax",
        ),
        _builtin(
            "jax-logsigmoid",
            Domain.LOGITS,
            "-(y*jax.nn.log_sigmoid(z) + (1-y)*jax.nn.log_sigmoid(-z))",
            "jax_logsigmoid",
            engine="jax",
        ),
        _builtin(
            "tf-sigmoid-ce",
            Domain.LOGITS,
            "tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)  (max-abs's formula via tf.where)",
            "tf_sigmoid_ce",
            engine="tensorflow",
        ),
        _builtin(
            "keras-bce",
            Domain.PROBABILITIES,
            "keras.losses.binary_crossentropy(y, p)  "
            f"(TF backend: naive after p = clip(p, {CLIP_EPSILON:g}, 1-{CLIP_EPSILON:g}))",
            "keras_bce",
            engine="keras",
        ),
        _builtin(
            "keras-bce-logits",
            Domain.LOGITS,
            "keras.losses.binary_crossentropy(y, z, from_logits=True)  (TF backend: as tf-sigmoid-ce)",
            "keras_bce_logits",
            engine="keras",
        ),
    )
}

# What a sweep that selects nothing audits: the built-ins that need no optional framework.
DEFAULT: tuple[str, ...] = tuple(name for name, f in BUILTINS.items() if f.engine == "torch")


def get_formulation(name: str) -> Formulation:
    try:
        return BUILTINS[name]
    except KeyError:
        names = list(BUILTINS)
        raise UsageError(
            f"unknown formulation {name!r}{did_you_mean(name, names)}; choose from {', '.join(names)}"
        ) from None
