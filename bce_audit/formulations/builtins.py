"""The BCE formulations under audit, written exactly as a user would write them in torch.

Adding a formulation is one entry in ``BUILTINS``. Each function takes ``(x, y)`` tensors of
the dtype under test in its native domain (and its parameters as keywords, with the defaults of
DESIGN) and returns the elementwise loss; the domain adapters
(``sigmoid`` for a probability-native formulation fed logits, ``logit`` for a logit-native one
fed probabilities) are part of what is audited, because that is what users do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bce_audit.errors import UsageError
from bce_audit.vocabulary import Domain, _closest

# Keras' default epsilon; 1 - eps rounds to 1 in float16 and bfloat16, as it does for users.
CLIP_EPSILON = 1e-7
# The softplus threshold of seed 000.
SOFTPLUS_THRESHOLD = 20.0


@dataclasses.dataclass(frozen=True)
class Formulation:
    """One way to compute the elementwise BCE loss.

    name: the name users select it by.
    native_domain: what its first argument is (logits or probabilities).
    formula: the definition, for `bce-audit list` and the reports.
    loss: ``loss(x, y) -> tensor``, torch code in the dtype of its inputs; None for a user's
        function, which runs only in the sandbox process (see ``spec``).
    parameters: the names of its numeric keyword parameters (a config table may set them).
    spec: for a user's function, the completed ``UserFormulationSpec`` the sandbox loads it from.
    """

    name: str
    native_domain: Domain
    formula: str
    loss: Callable | None
    parameters: tuple[str, ...] = ()
    spec: object = None


def _naive(p, y):
    import torch

    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def _clipped(p, y, eps=CLIP_EPSILON):
    import torch

    p = torch.clamp(p, eps, 1 - eps)
    return _naive(p, y)


def _softplus_threshold(z, y, threshold=SOFTPLUS_THRESHOLD):
    import torch

    return torch.where(z > threshold, z, torch.log1p(torch.exp(z))) - y * z


def _max_abs(z, y):
    import torch

    return torch.clamp_min(z, 0) - y * z + torch.log1p(torch.exp(-torch.abs(z)))


def _torch_bce(p, y):
    import torch

    return torch.nn.functional.binary_cross_entropy(p, y, reduction="none")


def _torch_bce_with_logits(z, y):
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


def _torch_logsigmoid(z, y):
    import torch

    logsigmoid = torch.nn.functional.logsigmoid
    return -(y * logsigmoid(z) + (1 - y) * logsigmoid(-z))


BUILTINS: dict[str, Formulation] = {
    f.name: f
    for f in (
        Formulation("naive", Domain.PROBABILITIES, "-(y*log(p) + (1-y)*log(1-p))", _naive),
        Formulation(
            "clipped",
            Domain.PROBABILITIES,
            f"naive after p = clamp(p, {CLIP_EPSILON:g}, 1-{CLIP_EPSILON:g})",
            _clipped,
            ("eps",),
        ),
        Formulation(
            "softplus-threshold",
            Domain.LOGITS,
            f"where(z > {SOFTPLUS_THRESHOLD:g}, z, log1p(exp(z))) - y*z",
            _softplus_threshold,
            ("threshold",),
        ),
        Formulation("max-abs", Domain.LOGITS, "clamp_min(z, 0) - y*z + log1p(exp(-abs(z)))", _max_abs),
        Formulation(
            "torch-bce",
            Domain.PROBABILITIES,
            'F.binary_cross_entropy(p, y, reduction="none")  (log clamped at -100)',
            _torch_bce,
        ),
        Formulation(
            "torch-bce-with-logits",
            Domain.LOGITS,
            'F.binary_cross_entropy_with_logits(z, y, reduction="none")',
            _torch_bce_with_logits,
        ),
        Formulation(
            "torch-logsigmoid",
            Domain.LOGITS,
            "-(y*logsigmoid(z) + (1-y)*logsigmoid(-z))  (optax/JAX form)",
            _torch_logsigmoid,
        ),
    )
}


def get_formulation(name: str) -> Formulation:
    try:
        return BUILTINS[name]
    except KeyError:
        names = list(BUILTINS)
        raise UsageError(
            f"unknown formulation {name!r}{_closest(name, names)}; choose from {', '.join(names)}"
        ) from None


def resolve(settings) -> list[Formulation]:
    """The formulations of a sweep, in report order: the one place the pipeline gets them.

    Built-ins come from ``BUILTINS``; the others (--impl, config tables, entry points) are loaded
    from the settings' user formulations by ``bce_audit.formulations.user``.
    """
    from bce_audit.formulations.user import load

    user = {spec.name: spec for spec in settings.user_formulations}
    return [load(user[name]) if name in user else get_formulation(name) for name in settings.formulations]


def adapt(formulation: Formulation, domain: Domain) -> Callable:
    """``loss(x, y)`` with x in ``domain``: the conversion users write is part of the audit."""
    import torch

    if domain is formulation.native_domain:
        return formulation.loss
    if domain is Domain.LOGITS:
        return lambda z, y: formulation.loss(torch.sigmoid(z), y)
    return lambda p, y: formulation.loss(torch.logit(p), y)
