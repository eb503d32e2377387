"""Example loss functions for `bce-audit sweep --config sample_configs/custom-formulation.toml`.

bce-audit calls each as ``fn(input, target, **parameters)`` with two torch tensors of the same dtype
and shape (logits z and labels y here, as @formulation declares) and audits the elementwise loss it
returns, and the autograd gradient of that loss, exactly like a built-in formulation.
"""

import torch

from bce_audit import formulation


@formulation(domain="logits", formula="-(pos_weight*y*logsigmoid(z) + (1-y)*logsigmoid(-z))")
def stable_bce(z, y, pos_weight=1.0):
    """Logits BCE with a weight on the positive class, built on logsigmoid: no overflow, no cancellation."""
    logsigmoid = torch.nn.functional.logsigmoid
    return -(pos_weight * y * logsigmoid(z) + (1 - y) * logsigmoid(-z))


@formulation(domain="logits", formula="clamp_min(z, 0) - y*z + log(1 + exp(-abs(z)))")
def max_abs_log(z, y):
    """max-abs with log1p(t) written as log(1 + t), a deliberate mistake: once e^-|z| is below half
    an ulp of 1, 1 + e^-|z| rounds to 1 and the loss of a confident correct prediction becomes 0."""
    return torch.clamp_min(z, 0) - y * z + torch.log(1 + torch.exp(-torch.abs(z)))
