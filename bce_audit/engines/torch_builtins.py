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


def torch_bce_with_logits(z: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


def torch_logsigmoid(z: Tensor, y: Tensor) -> Tensor:
    logsigmoid = torch.nn.functional.logsigmoid
    return -(y * logsigmoid(z) + (1 - y) * logsigmoid(-z))
