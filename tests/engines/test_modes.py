"""Execution modes of the torch engine (--mode) and its device (--device) as case dimensions.

Every expected value is derived from torch itself in the test: what the engine reports in a mode
must be what torch gives when the same function is run that way directly.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import bce_audit
from bce_audit.engines.common import loss_function
from bce_audit.engines.torch_engine import TorchEngine, adapt
from bce_audit.engines.torch_state import pinned
from bce_audit.errors import UsageError
from bce_audit.formulations.builtins import DEFAULT, get_formulation
from bce_audit.gate.baseline import render_baseline
from bce_audit.gate.plan import case_records
from bce_audit.report.csv_format import SummaryCsvFormat
from bce_audit.report.terminal import mode_lines
from bce_audit.vocabulary import Device, Domain, DType, Mode

ROOT = Path(__file__).resolve().parents[2]

# float32 logits across every regime: subnormals, ±0, the underflow and overflow of exp, and a
# dense stretch around the centre
LOGITS = np.unique(
    np.concatenate(
        [
            np.linspace(-120.0, 120.0, 2401),
            [-1e-45, -1e-40, -0.0, 0.0, 1e-40, 1e-45, 88.72, 103.97, -103.97, 3e38, -3e38],
        ]
    )
    .astype(np.float32)
    .astype(np.float64)
)
NONFINITE = np.array([np.inf, -np.inf, np.nan])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, any NaN equal to any NaN (a NaN's sign is in no figure)."""
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan].view(np.int64), b[~nan].view(np.int64)))


def _torch_eager_and_vmap(
    name: str, label: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(loss, grad) of a built-in on LOGITS run by torch directly: eagerly with autograd, and as
    vmap(grad_and_value(f)) of the one-element loss."""
    f = get_formulation(name)
    with pinned():
        fn = adapt(loss_function(f), f.native_domain, Domain.LOGITS)
        x = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
        y = torch.full_like(x, label)
        loss = fn(x, y)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        vgrad, vloss = torch.func.vmap(torch.func.grad_and_value(fn))(x.detach(), y)
    as64 = [t.detach().double().numpy() for t in (loss, grad, vloss, vgrad)]
    return (as64[0], as64[1]), (as64[2], as64[3])


@pytest.mark.parametrize("label", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("name", DEFAULT)
def test_vmap_gives_what_torch_vmap_gives_and_eager_where_torch_agrees(name: str, label: float) -> None:
    """Every default built-in on float32 logits: the engine's vmap mode is torch's vmap bit for
    bit, and it equals eager exactly where torch's own two ways agree (where they do not, that
    difference is the finding the report shows, not an artefact of the engine)."""
    f = get_formulation(name)
    engine = TorchEngine()
    eager = engine.evaluate_grid(f, Domain.LOGITS, DType.FLOAT32, LOGITS, NONFINITE, label, Mode.EAGER)
    vmap = engine.evaluate_grid(f, Domain.LOGITS, DType.FLOAT32, LOGITS, NONFINITE, label, Mode.VMAP)
    (t_loss, t_grad), (v_loss, v_grad) = _torch_eager_and_vmap(name, label)
    assert eager.finite.error is None and vmap.finite.error is None
    assert _same(eager.finite.loss, t_loss) and _same(eager.finite.grad, t_grad)
    assert _same(vmap.finite.loss, v_loss) and _same(vmap.finite.grad, v_grad)
    assert _same(vmap.finite.loss, eager.finite.loss) == _same(v_loss, t_loss)
    assert _same(vmap.finite.grad, eager.finite.grad) == _same(v_grad, t_grad)


def test_vmap_of_bce_with_logits_differs_from_eager_in_torch_itself() -> None:
    """The finding the modes sweep reports (docs/findings.md, Modes): torch's own
    binary_cross_entropy_with_logits gives other losses under vmap than eagerly at y = 1 for
    large logits. Derived here from torch, so the test follows torch if a release changes it."""
    (t_loss, _), (v_loss, _) = _torch_eager_and_vmap("torch-bce-with-logits", 1.0)
    differ = ~((t_loss == v_loss) | (np.isnan(t_loss) & np.isnan(v_loss)))
    result = bce_audit.audit(
        "torch-bce-with-logits", dtypes="float32", domain="logits", labels=1, points=200, modes=["eager", "vmap"]
    )
    worse = mode_lines(result)
    if not differ.any():
        pytest.skip("this torch gives the same losses under vmap as eagerly")
    # where vmap differs, it flushes losses eager keeps: the loss case has more non-ok points
    assert (v_loss[differ] == 0).sum() > 0 and (t_loss[differ] > 0).all()
    assert any(line.startswith("torch-bce-with-logits vmap logits float32 y=1 loss:") for line in worse)


def _under_autocast(fn, *args: torch.Tensor) -> torch.Tensor | BaseException:  # type: ignore[no-untyped-def]
    with pinned(), torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            out: torch.Tensor = fn(*args)
            return out
        except Exception as exc:  # noqa: BLE001 - what torch raises is the expected value
            return exc


def test_autocast_torch_bce_is_what_torch_says() -> None:
    """torch's BCELoss under autocast: where torch refuses it (CUDA autocast raises "unsafe to
    autocast"), every case of that mode is an error with torch's message; where torch runs it
    (the CPU's autocast in this torch), the figures are torch's, not an error."""
    p = torch.tensor([0.25, 0.5], dtype=torch.float32)
    direct = _under_autocast(torch.nn.functional.binary_cross_entropy, p, torch.ones_like(p))
    result = bce_audit.audit(
        "torch-bce", dtypes="float32", domain="probabilities", points=50, modes=["eager", "autocast"]
    )
    by_mode = {m: [c for c in result.cases if c.mode == m] for m in ("eager", "autocast")}
    assert all(c.error is None for c in by_mode["eager"])
    if isinstance(direct, BaseException):
        assert all(c.error is not None and str(direct).splitlines()[0] in c.error for c in by_mode["autocast"])
    else:
        assert all(c.error is None and c.output_dtype is None for c in by_mode["autocast"])


def test_a_formulation_that_refuses_autocast_is_error_rows_for_that_mode_only() -> None:
    @bce_audit.formulation(domain="logits")
    def picky(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("picky is unsafe to autocast")
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")

    result = bce_audit.audit(picky, dtypes="float16", domain="logits", points=20, modes="eager,autocast")
    assert {c.mode for c in result.cases} == {"eager", "autocast"}
    for c in result.cases:
        if c.mode == "autocast":
            assert c.error == "RuntimeError: picky is unsafe to autocast" and c.figures is None
        else:
            assert c.error is None and c.figures is not None and c.figures.points > 0
    worse = mode_lines(result)  # each autocast case: raised where eager ran
    assert len(worse) == sum(c.mode == "autocast" for c in result.cases)
    assert all(" autocast " in line and ": raised, eager " in line for line in worse)


def test_autocast_records_the_dtype_the_loss_comes_back_in() -> None:
    """naive under CPU autocast, and a loss through a matmul (an op autocast does cast to
    bfloat16): the recorded output dtype is the one torch returns for the same call."""

    @bce_audit.formulation(domain="probabilities")
    def through_matmul(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
        return (loss[:, None] @ torch.ones(1, 1, dtype=loss.dtype)).squeeze(1)

    p = torch.tensor([0.25, 0.5], dtype=torch.float32)
    naive = get_formulation("naive")
    with pinned():
        fn = loss_function(naive)
    for f, direct_fn in ((naive, fn), (None, through_matmul)):
        direct = _under_autocast(direct_fn, p, torch.ones_like(p))
        assert isinstance(direct, torch.Tensor)
        expected = None if direct.dtype == torch.float32 else str(direct.dtype).removeprefix("torch.")
        which = "naive" if f is not None else through_matmul
        result = bce_audit.audit(which, dtypes="float32", domain="probabilities", points=20, modes="autocast")
        assert {c.output_dtype for c in result.cases} == {expected}
        if f is None:  # the matmul is one autocast casts: the loss comes back in bfloat16
            assert expected == "bfloat16"
            # and its figures are those of a bfloat16 loss against the float32 truth: inaccurate
            assert all(c.figures is not None and c.figures.max_ulp > 4 for c in result.cases if c.quantity == "loss")


def test_the_mode_is_a_column_and_a_baseline_field_only_where_a_run_varies_it() -> None:
    kw = {"dtypes": "float16", "domain": "logits", "points": 20}
    plain = bce_audit.audit("max-abs", **kw)
    modes = bce_audit.audit("max-abs", modes=["eager", "vmap"], **kw)
    head = SummaryCsvFormat().render(plain).splitlines()[0].split(",")
    varied = SummaryCsvFormat().render(modes).splitlines()[0].split(",")
    assert "mode" not in head and varied[:2] == ["formulation", "mode"] and varied[2:] == head[1:]
    assert [c.mode for c in modes.cases].count("vmap") == len(plain.cases)
    settings = plain.settings.to_dict()
    assert '"mode"' not in render_baseline(case_records(plain), settings, plain.provenance)
    text = render_baseline(case_records(modes), modes.settings.to_dict(), modes.provenance)
    # a baseline line names a variant only where it is not the default: eager lines read as before
    assert text.count('"mode": "vmap"') == text.count('"mode"') == len(plain.cases)
    assert "modes" not in settings and modes.settings.to_dict()["modes"] == ["eager", "vmap"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_device_cuda_is_refused_in_one_line_where_torch_has_none() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bce_audit",
            "sweep",
            "-f",
            "naive",
            "-d",
            "float16",
            "--points",
            "10",
            "--device",
            "cuda",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["bce-audit: error: no CUDA device: torch.cuda.is_available() is False"]
    assert done.stdout == ""
    with pytest.raises(UsageError, match=r"^no CUDA device: torch.cuda.is_available\(\) is False$"):
        bce_audit.audit("naive", dtypes="float16", points=10, device="cuda")


def test_compile_gives_eager_figures_with_one_graph_for_every_label_and_size() -> None:
    """The one compile test: one formulation, one dtype, a tiny grid. Skipped where inductor
    cannot compile here (no C++ compiler), with torch's message."""
    import torch._dynamo.utils

    f = get_formulation("max-abs")
    xs = LOGITS[:: len(LOGITS) // 12]
    engine = TorchEngine()
    start = time.perf_counter()
    first = engine.evaluate_grid(f, Domain.LOGITS, DType.FLOAT32, xs, NONFINITE, 0.0, Mode.COMPILE)
    if first.finite.error is not None:
        pytest.skip(f"torch.compile cannot run here: {first.finite.error}")
    compiled_in = time.perf_counter() - start
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for label in (0.0, 1.0):
        for n in (len(xs), len(xs) - 3):
            c = engine.evaluate_grid(f, Domain.LOGITS, DType.FLOAT32, xs[:n], NONFINITE, label, Mode.COMPILE)
            e = engine.evaluate_grid(f, Domain.LOGITS, DType.FLOAT32, xs[:n], NONFINITE, label, Mode.EAGER)
            assert c.finite.error is None
            # inductor's exp and log1p may round otherwise than eager's: within 1 ULP of float32
            for ours, theirs in ((c.finite.loss, e.finite.loss), (c.finite.grad, e.finite.grad)):
                ulps = np.abs(
                    ours.astype(np.float32).view(np.int32).astype(np.int64)
                    - theirs.astype(np.float32).view(np.int32).astype(np.int64)
                )
                assert np.all(ulps <= 1), (label, n, xs[:n][ulps > 1])
    # one graph serves every label (a tensor input) and every batch size (dynamic) after the first
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs <= 1, compiled_in


def test_modes_parse_from_comma_lists_and_refuse_unknown_names() -> None:
    from bce_audit.settings import parse_modes

    assert parse_modes(("eager,vmap", "autocast", "vmap")) == (Mode.EAGER, Mode.VMAP, Mode.AUTOCAST)
    assert parse_modes("compile") == (Mode.COMPILE,)
    with pytest.raises(UsageError, match=r"unknown mode 'vamp' \(did you mean 'vmap'\?\)"):
        parse_modes(["vamp"])
    assert Device.parse("cuda", "device") is Device.CUDA


def test_a_users_torch_function_runs_vmap_and_autocast_in_the_sandbox_and_not_compile(tmp_path: Path) -> None:
    """A --impl target runs in the sandbox: vmap and autocast there give what the same code gives
    in this process (the engine's own modes), compile is error rows saying it is not supported."""
    (tmp_path / "mine.py").write_text(
        "import torch\n\n"
        "def mine(z, y):\n"
        "    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction='none')\n",
        encoding="utf-8",
    )
    kw = {"dtypes": "float16", "domain": "logits", "points": 30}
    boxed = bce_audit.audit(f"{tmp_path / 'mine.py'}:mine@logits", modes=["vmap", "autocast", "compile"], **kw)
    here = bce_audit.audit("torch-bce-with-logits", modes=["vmap", "autocast"], **kw)
    ours = {(c.mode, c.label, c.quantity): c for c in here.cases}
    for c in boxed.cases:
        if c.mode == "compile":
            assert c.error == "mode compile on cpu is not supported for user code (run in the sandbox) yet"
            continue
        twin = ours[(c.mode, c.label, c.quantity)]
        assert c.error is None and c.figures == twin.figures


def test_modes_are_refused_with_exhaustive_float32() -> None:
    with pytest.raises(UsageError, match="not supported with exhaustive float32"):
        bce_audit.audit("max-abs", dtypes="float32", sampling="exhaustive", range="1:1.001", modes="vmap")
