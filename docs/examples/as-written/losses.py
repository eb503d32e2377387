"""Losses as training code writes them: audited without a wrapper (see docs/user-formulations.md)."""

import torch
import torch.nn.functional as F


class FocalLoss(torch.nn.Module):
    """Sigmoid focal loss (torchvision's formula) as an nn.Module; reduces unless told not to."""

    def __init__(self, gamma=2.0, alpha=0.25, reduction="mean"):
        super().__init__()
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction

    def forward(self, inputs, targets):
        p = torch.sigmoid(inputs)
        ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * ((1 - p_t) ** self.gamma)
        if self.alpha is not None:
            loss = (self.alpha * targets + (1 - self.alpha) * (1 - targets)) * loss
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


def keras_smoothed_bce(y_true, y_pred, label_smoothing=0.0):
    """Keras' order (target first), smoothing the label itself."""
    y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")


def column_bce(logits, targets):
    """Wants a (N, 1) batch, as a model's head gives it."""
    if logits.ndim != 2 or logits.shape[1] != 1:
        raise ValueError(f"expects (N, 1) logits, got {tuple(logits.shape)}")
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def float32_bce(logits, targets):
    """Computes in float32 whatever it is given."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
