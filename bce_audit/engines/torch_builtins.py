"""The built-in formulations' code, written exactly as users write them in torch.

``formulations.builtins`` declares each one (name, domain, formula, parameters and their
defaults) and names its function here; the torch engine calls it with every parameter as a
keyword, so the defaults live in that declaration alone.
"""

from __future__ import annotations

import torch
from torch import Tensor


def naive(p: Tensor, y: Tensor) -> Tensor:
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def clipped(p: Tensor, y: Tensor, *, eps: float) -> Tensor:
    p = torch.clamp(p, eps, 1 - eps)
    return naive(p, y)


def softplus_threshold(z: Tensor, y: Tensor, *, threshold: float) -> Tensor:
    return torch.where(z > threshold, z, torch.log1p(torch.exp(z))) - y * z


def max_abs(z: Tensor, y: Tensor) -> Tensor:
    return torch.clamp_min(z, 0) - y * z + torch.log1p(torch.exp(-torch.abs(z)))


def torch_bce(p: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.binary_cross_entropy(p, y, reduction="none")


def torch_bce_with_logits(z: Tensor, y: Tensor, *, pos_weight: float, weight: float) -> Tensor:
    """``pos_weight`` and ``weight`` become tensors of the dtype, as a user's would; at their
    defaults (1) the call is the plain one, so the default sweep's figures do not move."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    pw = None if pos_weight == 1 else torch.tensor(pos_weight, dtype=z.dtype)
    w = None if weight == 1 else torch.tensor(weight, dtype=z.dtype)
    return bce(z, y, weight=w, pos_weight=pw, reduction="none")


def torch_logsigmoid(z: Tensor, y: Tensor) -> Tensor:
    logsigmoid = torch.nn.functional.logsigmoid
    return -(y * logsigmoid(z) + (1 - y) * logsigmoid(-z))


# --- members of the BCE family beyond plain BCE (not in the default set) -------------------------


def torchvision_focal(z: Tensor, y: Tensor, *, gamma: float, alpha: float) -> Tensor:
    """torchvision.ops.sigmoid_focal_loss(reduction="none"), line for line."""
    p = torch.sigmoid(z)
    ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        loss = alpha_t * loss
    return loss


def logspace_focal(z: Tensor, y: Tensor, *, gamma: float, alpha: float) -> Tensor:
    """torchvision's focal loss with (1 - p_t)^γ taken in log space: log(1 - p_t) =
    logaddexp(log y + logsigmoid(-z), log(1-y) + logsigmoid(z)), so neither the factor nor its
    gradient (γ·(1-p_t)^γ·dlog(1-p_t)/dz, never (1-p_t)^(γ-1)) meets 0^(γ-1)."""
    logsigmoid = torch.nn.functional.logsigmoid
    log_one_minus_p_t = torch.logaddexp(torch.log(y) + logsigmoid(-z), torch.log1p(-y) + logsigmoid(z))
    ce_loss = -(y * logsigmoid(z) + (1 - y) * logsigmoid(-z))
    loss = ce_loss * torch.exp(gamma * log_one_minus_p_t)
    if alpha >= 0:
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        loss = alpha_t * loss
    return loss


def label_smoothed_bce(z: Tensor, y: Tensor, *, smoothing: float, convention: str) -> Tensor:
    """BCE-with-logits at the label smoothed in the dtype: Keras's y(1-ε) + ε/2, or
    segmentation_models_pytorch's (1-y)ε + y(1-ε)."""
    if convention == "keras":
        y = y * (1.0 - smoothing) + 0.5 * smoothing
    else:
        y = (1 - y) * smoothing + y * (1 - smoothing)
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
