"""The loss of the tutorial: BCE on logits, written the textbook way."""

import torch

from bce_audit import formulation


@formulation(domain="logits")
def textbook_bce(z, y):
    p = torch.sigmoid(z)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


@formulation(domain="logits")
def stable_bce(z, y):
    return torch.nn.functional.softplus(z) - y * z
