"""Refinement (sweep/refine.py): the exact float at which a status changes between two samples,
found in the sweep's evaluation context (a batch), with each edge also evaluated alone.

Expected edges come from dense scans of torch here, with the truth from mpmath at 200 bits
rounded once into float32 (independent of bce-audit's oracle).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from bce_audit.engines import get_engine
from bce_audit.floats import from_position, position
from bce_audit.formulations.builtins import BUILTINS, get_formulation
from bce_audit.oracle.table import column, evaluate_points
from bce_audit.sweep import refine as refine_module
from bce_audit.sweep.failure_map import build_map
from bce_audit.sweep.metrics import point_status, ulp_error
from bce_audit.sweep.refine import ALONE_GROUP, Bracket, Probe, refine, transitions
from bce_audit.vocabulary import Domain, DType, Quantity, Status

F32 = DType.FLOAT32.format
THRESHOLD = 4.0


def floats_between(lo: float, hi: float, dtype: DType) -> np.ndarray:
    p = position(np.array([lo, hi]), dtype.format)
    return from_position(np.arange(p[0], p[1] + 1), dtype.format)


def torch_probe(name: str, domain: Domain, dtype: DType, label: float) -> Probe:
    formulation, engine = get_formulation(name), get_engine("torch")

    def evaluate(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        ev = engine.evaluate(formulation, domain, dtype, xs, label)
        return None if ev.error is not None else (ev.loss, ev.grad)

    return Probe(domain, dtype, label, evaluate)


def softplus_float32(z: float) -> float:
    """log(1 + e^z), the loss at y = 0 on logits, correctly rounded into float32 by mpmath."""
    with mpmath.workprec(200):
        exact = mpmath.log1p(mpmath.exp(mpmath.mpf(z)))
    with mpmath.workprec(24):  # float32's precision; no subnormal is near these values
        return float(+exact)


def naive_loss_statuses(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(outputs in one batch, statuses against the mpmath truth) of naive's float32 loss at y = 0."""
    ev = get_engine("torch").evaluate(get_formulation("naive"), Domain.LOGITS, DType.FLOAT32, xs, 0.0)
    truth = np.array([softplus_float32(z) for z in xs.tolist()])
    ulps = np.ldexp(1.0, np.frexp(truth)[1] - 1 - 23)  # float32's ulp at each (normal) truth
    inaccurate = np.abs(ev.loss - truth) / ulps > THRESHOLD
    return ev.loss, np.where(inaccurate, Status.INACCURATE.value, Status.OK.value).astype(object)


def test_refine_finds_the_first_inaccurate_float_of_a_dense_scan():
    """naive float32 at y = 0: a few isolated floats near z = 1.64 are more than 4 ULPs off in a
    batch. Between an ok float and the first failing one, with only ok floats between (the dense
    scan says so), the refinement must land on that failing float and its predecessor."""
    xs = floats_between(1.64, 1.645, DType.FLOAT32)
    _, statuses = naive_loss_statuses(xs)
    bad = np.nonzero(statuses != Status.OK.value)[0]
    assert len(bad) and bad[0] > 1, "the window must start ok and hold a failure"
    first = int(bad[0])
    bracket = Bracket(0, Quantity.LOSS, float(xs[0]), float(xs[first]), "ok", "inaccurate", 0.0, 5.0)
    (edge,) = refine([torch_probe("naive", Domain.LOGITS, DType.FLOAT32, 0.0)], [bracket], THRESHOLD)
    assert (edge.below.input, edge.above.input) == (float(xs[first - 1]), float(xs[first]))
    assert (edge.below.status, edge.above.status) == ("ok", "inaccurate")


def test_refine_finds_a_clean_transition_from_far_apart_samples():
    """naive float32 at y = 0: the gradient is NaN from the float at which sigmoid rounds to 1;
    from samples 1 and 100 apart (2^25 floats), the dense scan of [16.6, 16.7] gives the edge."""
    xs = floats_between(16.6, 16.7, DType.FLOAT32)
    ev = get_engine("torch").evaluate(get_formulation("naive"), Domain.LOGITS, DType.FLOAT32, xs, 0.0)
    first = int(np.nonzero(np.isnan(ev.grad))[0][0])
    bracket = Bracket(0, Quantity.GRAD, 1.0, 100.0, "ok", "nan", 0.0, math.nan)
    (edge,) = refine([torch_probe("naive", Domain.LOGITS, DType.FLOAT32, 0.0)], [bracket], THRESHOLD)
    assert (edge.below.input, edge.above.input) == (float(xs[first - 1]), float(xs[first]))
    assert edge.above.status == "nan" and edge.below.status == "ok"


def test_each_candidate_batch_lies_in_the_vectorized_body(monkeypatch):
    seen: list[int] = []
    probe = torch_probe("naive", Domain.LOGITS, DType.FLOAT32, 0.0)

    def counting(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        seen.append(len(xs))
        return probe.evaluate(xs)

    bracket = Bracket(0, Quantity.GRAD, 1.0, 100.0, "ok", "nan", 0.0, math.nan)
    refine([Probe(probe.domain, probe.dtype, probe.label, counting)], [bracket], THRESHOLD)
    steps = [n for n in seen if n > ALONE_GROUP[DType.FLOAT32]]
    alone = [n for n in seen if n <= ALONE_GROUP[DType.FLOAT32]]
    assert steps and all(n % refine_module.BATCH_MULTIPLE == 0 for n in steps)
    assert alone == [2]  # the edge's two floats, together in one tensor too short to vectorize


@pytest.mark.parametrize("dtype", list(DType))
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_a_group_of_alone_floats_evaluates_as_each_float_alone(name, dtype):
    """The premise of ALONE_GROUP: in a tensor of at most that many elements, each element comes out
    bit for bit as in a tensor of one element (the scalar path), loss and gradient."""
    fmt = dtype.format
    rng = np.random.default_rng(7)
    formulation, engine = get_formulation(name), get_engine("torch")
    for domain, (lo, hi) in ((Domain.LOGITS, (-30.0, 30.0)), (Domain.PROBABILITIES, (0.0, 1.0))):
        p = position(np.array([lo, hi]), fmt)
        size = ALONE_GROUP[dtype]
        inputs = from_position(rng.integers(p[0], p[1], size=5 * size, endpoint=True), fmt)
        for start in range(0, len(inputs), size):
            group = inputs[start : start + size]
            together = engine.evaluate(formulation, domain, dtype, group, 0.0)
            for k, x in enumerate(group.tolist()):
                one = engine.evaluate(formulation, domain, dtype, np.array([x]), 0.0)
                for a, b in ((together.loss[k], one.loss[0]), (together.grad[k], one.grad[0])):
                    assert np.array_equal(np.array([a]), np.array([b]), equal_nan=True), (domain, x)


def test_a_batch_and_alone_disagreement_is_reported():
    """Find, by scanning, a float32 at which naive's loss (y = 0) is inaccurate in a batch but ok
    alone; an edge there carries its status alone, and the map reports it on the interval."""
    xs = floats_between(1.65, 1.655, DType.FLOAT32)
    engine, naive = get_engine("torch"), get_formulation("naive")
    batch = engine.evaluate(naive, Domain.LOGITS, DType.FLOAT32, xs, 0.0).loss
    truth = evaluate_points(Domain.LOGITS, xs, 0.0)[:, column(Quantity.LOSS, F32)]
    status = point_status(batch, truth, ulp_error(batch, truth, F32), THRESHOLD)
    found = None
    for i in np.nonzero(status != Status.OK.value)[0].tolist():
        alone = engine.evaluate(naive, Domain.LOGITS, DType.FLOAT32, xs[i : i + 1], 0.0).loss
        if point_status(alone, truth[i : i + 1], ulp_error(alone, truth[i : i + 1], F32), THRESHOLD)[0] == "ok":
            found = i
            break
    assert found is not None and status[found - 1] == "ok", "no disagreement in the window"
    x, before = float(xs[found]), float(xs[found - 1])
    bracket = Bracket(0, Quantity.LOSS, before, x, "ok", "inaccurate", 0.0, 5.0)
    (edge,) = refine([torch_probe("naive", Domain.LOGITS, DType.FLOAT32, 0.0)], [bracket], THRESHOLD)
    assert (edge.above.input, edge.above.status, edge.above.alone) == (x, "inaccurate", "ok")
    assert edge.below.alone == edge.below.status == "ok"
    ivs = build_map(
        np.array([before, x]),
        np.array(["ok", "inaccurate"], dtype=object),
        np.array([0.0, 5.0]),
        F32,
        None,
        alone={x: Status.OK},
    )
    assert ivs[1].alone == ((x, Status.OK),) and ivs[0].alone == ()


def test_transitions_skip_neighbours_and_equal_statuses():
    xs = np.array([1.0, float(np.nextafter(np.float32(1.0), np.float32(2.0))), 2.0, 3.0])
    st = np.array(["ok", "nan", "nan", "ok"], dtype=object)
    # 1.0 -> its successor: already an exact edge; nan -> nan: none; 2.0 -> 3.0: a bracket
    assert transitions(xs, st, DType.FLOAT32) == [2]


def test_candidates_are_the_exact_integer_spacing_even_across_all_of_float64():
    """The candidates, computed in unsigned 64-bit arithmetic for every bracket at once, are the
    integers exact arithmetic gives (Python ints here): lo + floor(gap·k / 8), or every position
    between when at most 7 lie there; brackets as wide as float64's whole range included, whose
    gap does not fit an int64."""
    fmt = DType.FLOAT64.format
    top = int(position(np.array([fmt.largest_finite]), fmt)[0])
    rng = np.random.default_rng(3)
    ends = [(-top, top), (-top, -top + 2), (0, 9), (5, 13), (5, 14), (-1, 1), (top - 8, top)]
    ends += [tuple(sorted(int(v) for v in rng.integers(-top, top, size=2))) for _ in range(200)]
    ends = [(lo, hi) for lo, hi in ends if hi - lo > 1]
    lo, hi = (np.array(side, dtype=np.int64) for side in zip(*ends, strict=True))
    cands, valid = refine_module._candidate_rows(lo, hi)
    parts = refine_module.CANDIDATES_PER_STEP + 1
    for row, (a, b) in enumerate(ends):
        gap = b - a
        want = list(range(a + 1, b)) if gap - 1 <= parts - 1 else [a + gap * k // parts for k in range(1, parts)]
        assert cands[row][valid[row]].tolist() == want, (a, b)


def test_lookahead_changes_the_number_of_calls_not_the_edges(monkeypatch):
    """Evaluating the next step's candidates ahead (LOOKAHEAD_STEPS) is only a saving: from the
    same brackets (several per probe, both quantities, one far apart), the same edges with one
    step per call as with two steps per call, in fewer batch calls."""
    probe = torch_probe("naive", Domain.LOGITS, DType.FLOAT32, 0.0)
    brackets = [
        Bracket(0, Quantity.GRAD, 1.0, 100.0, "ok", "nan", 0.0, math.nan),
        Bracket(0, Quantity.LOSS, 1.64, 1.645, "ok", "ok", 0.0, 0.0),
        Bracket(0, Quantity.LOSS, -200.0, -1.0, "ok", "ok", 0.0, 0.0),
    ]
    found = {}
    for steps in (1, 2):
        calls: list[int] = []

        def counting(xs: np.ndarray, calls: list[int] = calls) -> tuple[np.ndarray, np.ndarray] | None:
            calls.append(len(xs))
            return probe.evaluate(xs)

        monkeypatch.setattr(refine_module, "LOOKAHEAD_STEPS", steps)
        edges = refine([Probe(probe.domain, probe.dtype, probe.label, counting)], brackets, THRESHOLD)
        found[steps] = (edges, [n for n in calls if n > ALONE_GROUP[DType.FLOAT32]])
    assert repr(found[1][0]) == repr(found[2][0])  # repr: a NaN ULP error equals itself
    assert len(found[2][1]) < len(found[1][1])


@pytest.mark.parametrize("dtype", list(DType))
@pytest.mark.parametrize("name", sorted(n for n, f in BUILTINS.items() if f.engine == "torch"))
def test_labels_sharing_a_batch_give_each_label_its_own_batchs_outputs(name, dtype):
    """The premise of Probe.together: stretches padded as their own batches and laid end to end,
    each with its own label, come out bit for bit as each stretch in a batch of its own."""
    from bce_audit.engines import evaluate_labelled
    from bce_audit.vocabulary import Device, Mode

    fmt = dtype.format
    rng = np.random.default_rng(11)
    formulation, engine = get_formulation(name), get_engine("torch")
    labels = [0.0, 1.0, 0.25, float(np.float64(0.1).astype(np.float32)) if fmt.precision <= 24 else 0.1]
    for domain, (lo, hi) in ((Domain.LOGITS, (-120.0, 120.0)), (Domain.PROBABILITIES, (0.0, 1.0))):
        p = position(np.array([lo, hi]), fmt)
        stretches = [
            refine_module._padded(from_position(np.sort(rng.integers(p[0], p[1], size=n, endpoint=True)), fmt))
            for n in (5, 64, 100, 130)
        ]
        ys = [np.full(len(s), y) for s, y in zip(stretches, labels, strict=True)]
        joint = evaluate_labelled(
            formulation, Mode.EAGER, Device.CPU, domain, dtype, np.concatenate(stretches), np.concatenate(ys)
        )
        assert joint.error is None
        start = 0
        for s, y in zip(stretches, labels, strict=True):
            own = engine.evaluate(formulation, domain, dtype, s, y)
            for a, b in ((joint.loss, own.loss), (joint.grad, own.grad)):
                assert np.array_equal(a[start : start + len(s)], b, equal_nan=True), (domain, y)
            start += len(s)


def test_probes_evaluated_together_find_the_same_edges_in_fewer_calls(monkeypatch):
    """Probes of one built-in at several labels share the refinement's batches: the same edges
    as each probe evaluating alone, in fewer calls."""
    from bce_audit.engines import evaluate_labelled
    from bce_audit.vocabulary import Device, Mode

    formulation = get_formulation("naive")
    labels = [0.0, 1.0, 0.25]
    brackets = [
        Bracket(k, q, lo, hi, "ok", bad, 0.0, math.nan)
        for k in range(len(labels))
        for q, lo, hi, bad in ((Quantity.GRAD, 1.0, 100.0, "nan"), (Quantity.LOSS, -200.0, -1.0, "ok"))
    ]
    calls: list[int] = []

    def evaluate_labels(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        calls.append(len(xs))
        ev = evaluate_labelled(formulation, Mode.EAGER, Device.CPU, Domain.LOGITS, DType.FLOAT32, xs, ys)
        return None if ev.error is not None else (ev.loss, ev.grad)

    found = {}
    for shared in (False, True):
        calls.clear()
        probes = []
        for y in labels:
            own = torch_probe("naive", Domain.LOGITS, DType.FLOAT32, y)

            def counting(xs: np.ndarray, own: Probe = own) -> tuple[np.ndarray, np.ndarray] | None:
                calls.append(len(xs))
                return own.evaluate(xs)

            together = "naive" if shared else None
            probes.append(
                Probe(Domain.LOGITS, DType.FLOAT32, y, counting, together=together, evaluate_labels=evaluate_labels)
            )
        found[shared] = (repr(refine(probes, brackets, THRESHOLD, alone=False)), len(calls))
    assert found[True][0] == found[False][0]
    assert found[True][1] < found[False][1]


def test_only_built_ins_share_batches_between_labels(monkeypatch):
    """A function given to the API (run in this process, like a built-in) may look at its whole
    batch, so its probes never share one; a built-in's probes at every label of a grid do."""
    import bce_audit
    from bce_audit.formulations import user
    from bce_audit.sweep import run as run_module

    @user.formulation(domain="logits")
    def batch_mean_bce(z, y):  # type: ignore[no-untyped-def]
        import torch

        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none") + 0 * z.mean()

    seen: list[Probe] = []
    real = run_module.refine

    def capture(probes, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(probes)
        return real(probes, *args, **kwargs)

    monkeypatch.setattr(run_module, "refine", capture)
    bce_audit.audit([batch_mean_bce, "naive"], dtypes="float32", domain="logits", points=50, labels=[0.0, 1.0])
    assert len(seen) == 4
    together = [p.together for p in seen]
    assert together.count(None) == 2  # the function's two probes
    shared = [t for t in together if t is not None]
    assert len(shared) == 2 and shared[0] == shared[1]  # naive's two labels, one key
