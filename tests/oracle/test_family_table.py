"""The truth table and the cache with family members: keyed by reference, plain BCE unchanged."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from bce_audit.oracle import table as truth_table
from bce_audit.oracle.cache import _MAGIC, ORACLE_VERSION, TruthCache
from bce_audit.oracle.family import family_truth
from bce_audit.oracle.table import FORMATS, build_truth_table, evaluate_points
from bce_audit.reference import PLAIN_BCE, Member, Reference
from bce_audit.sweep.grid import build_grid
from bce_audit.vocabulary import Domain, DType, Sampling

FOCAL = Reference(member=Member.FOCAL, gamma=0.5, alpha=0.25)
WEIGHTED = Reference(pos_weight=4.0)


def _grid(domain=Domain.LOGITS, n=120):
    grid = build_grid(DType.FLOAT16, domain, n, Sampling.BITS, 0)
    return np.concatenate([grid.finite, grid.nonfinite])


def test_rows_of_a_member_are_its_family_truth_point_by_point():
    xs = _grid()
    for domain in Domain:
        inputs = _grid(domain)
        rows = evaluate_points(domain, inputs, 0.375, reference=FOCAL)
        for x, row in zip(inputs.tolist(), rows, strict=True):
            t = family_truth(FOCAL, domain, x, 0.375, FORMATS)
            assert np.array([*t.loss, *t.grad]).tobytes() == row.tobytes()
    # the default reference is plain BCE, on its own path
    assert evaluate_points(Domain.LOGITS, xs, 1.0).tobytes() == (
        evaluate_points(Domain.LOGITS, xs, 1.0, reference=PLAIN_BCE).tobytes()
    )


def test_table_keeps_each_reference_apart():
    xs = _grid()
    requests = [
        (Domain.LOGITS, 1.0, xs),
        (Domain.LOGITS, 1.0, xs, FOCAL),
        (Domain.LOGITS, 1.0, xs, WEIGHTED),
        (Domain.LOGITS, 1.0, xs, PLAIN_BCE),  # the same group as the first
    ]
    table, work = build_truth_table(requests)
    distinct = len(np.unique(xs.view(np.int64)))
    assert work.points == work.computed == 3 * distinct
    plain = table.rows(Domain.LOGITS, 1.0, xs)
    focal = table.rows(Domain.LOGITS, 1.0, xs, FOCAL)
    weighted = table.rows(Domain.LOGITS, 1.0, xs, WEIGHTED)
    assert plain.tobytes() == evaluate_points(Domain.LOGITS, xs, 1.0).tobytes()
    assert focal.tobytes() == evaluate_points(Domain.LOGITS, xs, 1.0, reference=FOCAL).tobytes()
    # at y = 1, pos_weight 4 is exactly 4 × plain BCE, away from overflow and subnormals
    finite = np.isfinite(plain[:, 3]) & (np.abs(plain[:, 3]) > 1e-300) & (np.abs(plain[:, 3]) < 1e300)
    assert finite.sum() > 50
    np.testing.assert_array_equal(weighted[finite, 3], 4 * plain[finite, 3])
    assert not np.array_equal(focal[finite, 3], plain[finite, 3])


def test_worker_processes_give_the_same_bytes_for_a_member(monkeypatch):
    xs = _grid(n=400)
    monkeypatch.setattr(truth_table, "PARALLEL_MIN_POINTS", 10)
    requests = [(Domain.LOGITS, 0.25, xs, FOCAL), (Domain.PROBABILITIES, 0.25, _grid(Domain.PROBABILITIES, 400), FOCAL)]
    parallel, work = build_truth_table(requests, jobs=2)
    assert work.jobs == 2
    serial, _ = build_truth_table(requests, jobs=1)
    for domain, _, inputs, ref in requests:
        assert parallel.rows(domain, 0.25, inputs, ref).tobytes() == serial.rows(domain, 0.25, inputs, ref).tobytes()


def test_cache_files_of_a_member_are_its_own_and_plain_files_keep_their_names(tmp_path):
    xs = _grid()
    cache = TruthCache(tmp_path)
    build_truth_table([(Domain.LOGITS, 0.0, xs), (Domain.LOGITS, 0.0, xs, FOCAL)], cache=cache)
    names = sorted(p.name for p in (tmp_path / f"oracle-v{ORACLE_VERSION}").glob("*.truth"))
    tag = hashlib.sha256(FOCAL.key.encode()).hexdigest()[:16]
    assert names == [f"logits-r{tag}-y0000000000000000.truth", "logits-y0000000000000000.truth"]
    # plain BCE's header has no reference field (as before); the member's names its key
    plain_header = json.loads(cache.path(Domain.LOGITS, 0.0).read_bytes()[len(_MAGIC) :].split(b"\n")[0])
    member_header = json.loads(cache.path(Domain.LOGITS, 0.0, FOCAL).read_bytes()[len(_MAGIC) :].split(b"\n")[0])
    assert "reference" not in plain_header and member_header["reference"] == FOCAL.key
    # a warm run computes nothing and serves the same bytes
    warm, work = build_truth_table([(Domain.LOGITS, 0.0, xs, FOCAL)], cache=TruthCache(tmp_path))
    assert work.computed == 0
    assert warm.rows(Domain.LOGITS, 0.0, xs, FOCAL).tobytes() == (
        evaluate_points(Domain.LOGITS, xs, 0.0, reference=FOCAL).tobytes()
    )


def test_a_cache_file_of_another_reference_is_refused(tmp_path):
    xs = _grid()
    cache = TruthCache(tmp_path)
    build_truth_table([(Domain.LOGITS, 0.0, xs, FOCAL)], cache=cache)
    other = Reference(member=Member.FOCAL, gamma=2.0)
    # a file of FOCAL's moved to where gamma=2's would be: its header says otherwise
    cache.path(Domain.LOGITS, 0.0, FOCAL).rename(cache.path(Domain.LOGITS, 0.0, other))
    warnings: list[str] = []
    assert TruthCache(tmp_path, warn=warnings.append).load(Domain.LOGITS, 0.0, other) is None
    assert len(warnings) == 1 and "does not match" in warnings[0]
    # and a member's file where plain BCE's belongs is refused too
    build_truth_table([(Domain.LOGITS, 0.0, xs, FOCAL)], cache=cache)
    cache.path(Domain.LOGITS, 0.0, FOCAL).rename(cache.path(Domain.LOGITS, 0.0))
    assert TruthCache(tmp_path, warn=warnings.append).load(Domain.LOGITS, 0.0) is None
    assert len(warnings) == 2


def test_reference_survives_the_trip_to_a_worker():
    for ref in (FOCAL, WEIGHTED, Reference(member="label-smoothed-bce", smoothing=0.1, convention="smp")):
        assert Reference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
