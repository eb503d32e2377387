"""torch imported and warmed up, for a process about to evaluate (or to fork evaluators).

Importing torch is most of a second; its first backward pass, through the torch engine's own
``elementwise_grad``, then costs under a millisecond (``torch.autograd.grad`` with
``grad_outputs`` would import sympy, a third of a second: the engine avoids it). The fork server
(``sandbox.forkserver_context``) imports this once, before any child is forked, so every child
starts warm; the CLI imports it while the fork server starts, when a sweep will run the user's
code. The call is a single CPU element: it starts no thread pool, so forking after it stays safe.
"""

import torch

from bce_audit.engines.torch_engine import elementwise_grad

_x = torch.zeros(1, dtype=torch.float32, requires_grad=True)
_loss = torch.nn.functional.binary_cross_entropy_with_logits(_x, torch.zeros_like(_x), reduction="none")
elementwise_grad(_loss, _x)
del _x, _loss
