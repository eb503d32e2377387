"""The built-in formulations: what each computes, in which domain and engine, with which parameters.

Adding one is one entry in ``BUILTINS`` and its function in its engine's built-ins module
(``engines/torch_builtins.py``, ``engines/jax_builtins.py``, ``engines/tensorflow_builtins.py``).
Each takes ``(x, y)`` arrays of its framework in the dtype under test, in its native domain, and
its parameters as keywords (the defaults below are the only ones), and returns the elementwise
loss. Each declares the member of the BCE family it implements (``bce_audit.reference``): its
figures are measured against that member at its parameters.

A sweep that selects nothing audits ``DEFAULT``: plain BCE's torch formulations, whose figures are
the ones every earlier version reported. The family's other members, and the built-ins of the
other engines (JAX, TensorFlow and Keras are extras), are there to be selected, so the default
sweep's figures depend neither on them nor on which extras are installed.
"""

from __future__ import annotations

from bce_audit.errors import UsageError, did_you_mean
from bce_audit.formulations.interface import Formulation, Scalar
from bce_audit.reference import Member
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
    name: str,
    domain: Domain,
    formula: str,
    function: str,
    reference: Member | None = None,
    engine: str = "torch",
    **parameters: Scalar,
) -> Formulation:
    return Formulation(
        name,
        domain,
        formula,
        engine=engine,
        implementation=f"{_CODE[engine]}:{function}",
        parameters=tuple(parameters.items()),
        reference_member=reference,
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
            Member.BCE,
            pos_weight=1.0,
            weight=1.0,
        ),
        _builtin(
            "torch-logsigmoid",
            Domain.LOGITS,
            "-(y*logsigmoid(z) + (1-y)*logsigmoid(-z))  (optax/JAX form)",
            "torch_logsigmoid",
        ),
        # the BCE family beyond plain BCE: each measured against its own reference
        _builtin(
            "torchvision-focal",
            Domain.LOGITS,
            "alpha_t * F.binary_cross_entropy_with_logits(z, y) * (1 - p_t)**gamma  (torchvision)",
            "torchvision_focal",
            Member.FOCAL,
            gamma=2.0,
            alpha=0.25,
        ),
        _builtin(
            "logspace-focal",
            Domain.LOGITS,
            "alpha_t * ce * exp(gamma * logaddexp(log(y) + logsigmoid(-z), log1p(-y) + logsigmoid(z)))",
            "logspace_focal",
            Member.FOCAL,
            gamma=2.0,
            alpha=0.25,
        ),
        _builtin(
            "label-smoothed-bce",
            Domain.LOGITS,
            "F.binary_cross_entropy_with_logits(z, y'), y' = y*(1-eps) + eps/2 (keras) or (1-y)*eps + y*(1-eps) (smp)",
            "label_smoothed_bce",
            Member.LABEL_SMOOTHED,
            smoothing=0.1,
            convention="keras",
        ),
        # the other engines' built-ins (extras), measured against plain BCE
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

# What a sweep that selects nothing audits: plain BCE's torch formulations.
DEFAULT: tuple[str, ...] = (
    "naive",
    "clipped",
    "softplus-threshold",
    "max-abs",
    "torch-bce",
    "torch-bce-with-logits",
    "torch-logsigmoid",
)


def get_formulation(name: str) -> Formulation:
    try:
        return BUILTINS[name]
    except KeyError:
        names = list(BUILTINS)
        raise UsageError(
            f"unknown formulation {name!r}{did_you_mean(name, names)}; choose from {', '.join(names)}"
        ) from None
