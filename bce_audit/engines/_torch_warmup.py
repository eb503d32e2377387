"""torch imported and warmed up, for a process about to evaluate (or to fork evaluators).

torch's first autograd call imports a few hundred modules (sympy and mpmath among them, half a
second to a second). The fork server (``sandbox.forkserver_context``) imports this once, before
any child is forked, so every child starts warm; the CLI imports it while the fork server starts,
when a sweep will run the user's code. The call is a single CPU element: it starts no thread
pool, so forking after it stays safe.
"""

import torch

_x = torch.zeros(1, dtype=torch.float32, requires_grad=True)
_loss = torch.nn.functional.binary_cross_entropy_with_logits(_x, torch.zeros_like(_x), reduction="none")
torch.autograd.grad(_loss, _x, grad_outputs=torch.ones_like(_loss))
del _x, _loss
