"""Losses for the examples of the documentation: one forgets reduction="none"."""

import torch


def mean_bce(z, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y)  # reduction="mean"
