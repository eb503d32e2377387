"""The torch engine's shortcuts give exactly what the plain way gives, bit for bit.

Two shortcuts keep the everyday sweep fast: the backward pass is seeded through a scalar root
instead of ``grad_outputs`` (which makes torch import sympy), and a built-in's non-finite inputs
go in one call instead of one call each. Both are checked here against the plain way, on every
built-in, dtype, domain and several labels, hard ones included (soft labels, labels that round).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from bce_audit.engines.common import loss_function
from bce_audit.engines.torch_engine import TorchEngine, adapt, elementwise_grad, torch_dtype
from bce_audit.engines.torch_state import pinned
from bce_audit.floats import round_float
from bce_audit.formulations.builtins import BUILTINS
from bce_audit.formulations.interface import Formulation
from bce_audit.settings import Settings
from bce_audit.sweep.run import grids
from bce_audit.vocabulary import Domain, DType

LABELS = (0.0, 1.0, 0.5, 0.3, 1e-3, 0.999)
INT_OF_SIZE = {2: torch.int16, 4: torch.int32, 8: torch.int64}
GRIDS = list(grids(Settings(dtypes=tuple(DType), domains=tuple(Domain))))
# the torch engine runs these (the other engines' built-ins have tests of their own)
TORCH_BUILTINS = [name for name, f in BUILTINS.items() if f.engine == "torch"]


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns (NaN payloads and the sign of zero included)."""
    return t.detach().view(INT_OF_SIZE[t.dtype.itemsize])


def plain_grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, x, grad_outputs=torch.ones_like(loss))
    return grad


@pytest.mark.parametrize("name", TORCH_BUILTINS)
def test_scalar_root_gives_the_plain_gradient_bit_for_bit(name: str) -> None:
    formulation = BUILTINS[name]
    checked = 0
    for grid in GRIDS:
        tdtype = torch_dtype(grid.dtype)
        fn = adapt(loss_function(formulation), formulation.native_domain, grid.domain)
        for label in LABELS:
            y = round_float(label, grid.dtype.format)
            for inputs in (grid.finite, grid.nonfinite):
                with pinned():
                    x = torch.tensor(inputs, dtype=torch.float64).to(tdtype).requires_grad_(True)
                    labels = torch.full_like(x, y)
                    try:
                        expected: torch.Tensor | str = plain_grad(fn(x, labels), x)
                    except RuntimeError as exc:  # torch's BCE rejects NaN: then both must raise alike
                        expected = str(exc)
                    try:
                        got: torch.Tensor | str = elementwise_grad(fn(x, labels), x)
                    except RuntimeError as exc:
                        got = str(exc)
                if isinstance(expected, str):
                    assert got == expected
                else:
                    assert isinstance(got, torch.Tensor)
                    assert got.dtype == expected.dtype and got.shape == expected.shape
                    assert torch.equal(bits(got), bits(expected)), (grid.dtype, grid.domain, label)
                    checked += 1
    assert checked >= len(GRIDS) * len(LABELS)  # the finite batch of every grid at least


def test_scalar_root_raises_what_the_plain_way_raises() -> None:
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    detached = x.detach() * 2  # does not require grad
    unused = torch.tensor([1.0, 1.0], requires_grad=True) * 3  # does not depend on x
    for loss in (detached, unused):
        with pytest.raises(RuntimeError) as plain:
            plain_grad(loss, x)
        with pytest.raises(RuntimeError) as ours:
            elementwise_grad(loss, x)
        assert str(ours.value) == str(plain.value)


def test_the_engine_never_makes_torch_import_sympy() -> None:
    code = (
        "import sys, numpy as np\n"
        "from bce_audit.engines.torch_engine import TorchEngine\n"
        "from bce_audit.formulations.builtins import BUILTINS\n"
        "from bce_audit.vocabulary import Domain, DType\n"
        "assert 'sympy' not in sys.modules\n"
        "f = BUILTINS['torch-bce-with-logits']\n"
        "ev = TorchEngine().evaluate(f, Domain.LOGITS, DType.FLOAT32, np.array([-1.0, 3.0]), 1.0)\n"
        "assert ev.error is None and ev.grad[1] != 0\n"
        "print('sympy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, except that any NaN equals any NaN: a NaN's sign and payload are in no figure
    or report (torchvision-focal's float16 NaN at a NaN input comes back with another sign inside
    a batch than alone)."""
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan].view(np.int64), b[~nan].view(np.int64)))


def evaluations_equal(a, b) -> bool:
    return a.error == b.error and _same_bits(a.loss, b.loss) and _same_bits(a.grad, b.grad)


@pytest.mark.parametrize("name", TORCH_BUILTINS)
def test_a_builtins_nonfinite_inputs_together_give_what_each_gives_alone(name: str) -> None:
    engine = TorchEngine()
    formulation = BUILTINS[name]
    for grid in GRIDS:
        for label in LABELS:
            y = round_float(label, grid.dtype.format)
            # one finite input: the finite batch is not what is checked here
            got = engine.evaluate_grid(formulation, grid.domain, grid.dtype, grid.finite[:1], grid.nonfinite, y)
            assert len(got.nonfinite) == len(grid.nonfinite)
            for x, ev in zip(grid.nonfinite, got.nonfinite, strict=True):
                alone = engine.evaluate(formulation, grid.domain, grid.dtype, np.array([x]), y)
                assert evaluations_equal(ev, alone), (grid.dtype, grid.domain, label, x)


def test_the_error_of_one_nonfinite_input_stays_on_it() -> None:
    """torch's BCE fed logits: sigmoid(NaN) is NaN, which it rejects; ±inf become 0 and 1, fine."""
    engine = TorchEngine()
    nonfinite = np.array([np.inf, -np.inf, np.nan])
    got = engine.evaluate_grid(BUILTINS["torch-bce"], Domain.LOGITS, DType.FLOAT32, np.array([0.0]), nonfinite, 1.0)
    errors = [ev.error for ev in got.nonfinite]
    assert errors[0] is None and errors[1] is None and errors[2] is not None
    assert got.nonfinite[0].loss[0] == 0.0  # -log(sigmoid(inf)) at y = 1
    assert got.nonfinite[1].loss[0] == 100.0  # torch's BCE clamps log(0) at -100


def test_a_users_function_sees_each_nonfinite_input_alone() -> None:
    """A user's function may look at the whole batch: here its size."""

    def batch_size(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z) * 0 + z.numel()

    user = Formulation("batch-size", Domain.LOGITS, "numel", function=batch_size)
    got = TorchEngine().evaluate_grid(
        user, Domain.LOGITS, DType.FLOAT32, np.array([0.0, 1.0, 2.0]), np.array([np.inf, -np.inf]), 0.0
    )
    assert list(got.finite.loss) == [3.0, 3.0, 3.0]
    assert [ev.loss[0] for ev in got.nonfinite] == [1.0, 1.0]


def test_formulations_run_on_one_thread_whatever_the_callers_count() -> None:
    """One intra-op thread (torch_state.canonical): outputs never depend on the core count."""
    seen: list[int] = []

    def records_threads(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")

    user = Formulation("records-threads", Domain.LOGITS, "bce", function=records_threads)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        TorchEngine().evaluate(user, Domain.LOGITS, DType.FLOAT32, np.linspace(-5.0, 5.0, 2000), 0.0)
        assert seen == [1]
        assert torch.get_num_threads() == 3  # the caller's own count, given back
    finally:
        torch.set_num_threads(before)
