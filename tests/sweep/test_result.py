"""The result's keys and records on synthetic cases: the variant dimensions (parameters, mode,
device) appear exactly where a case of the run is in one."""

from __future__ import annotations

import synthetic

from bce_audit.sweep.result import VARIANT_DEFAULTS, CaseKey, key_fields, variants_in


def test_a_key_names_only_the_variants_that_differ_from_the_default():
    plain = CaseKey("naive", "logits", "float16", 0.0, "loss")
    assert plain.variant == {} and plain.subject == "naive" and str(plain) == "naive logits float16 y=0 loss"
    tuned = CaseKey("focal", "logits", "float16", 1.0, "grad", parameters="gamma=2", device="cuda:0")
    assert tuned.variant == {"parameters": "gamma=2", "device": "cuda:0"}
    assert str(tuned) == "focal gamma=2 cuda:0 logits float16 y=1 grad"
    assert list(tuned.fields()) == ["formulation", "parameters", "device", "domain", "dtype", "label", "quantity"]
    assert list(plain.fields(("mode",))) == ["formulation", "mode", "domain", "dtype", "label", "quantity"]
    assert plain != CaseKey("naive", "logits", "float16", 0.0, "loss", mode="compile")
    assert plain == CaseKey("naive", "logits", "float16", 0.0, "loss", *VARIANT_DEFAULTS.values())


def test_a_run_shows_the_union_of_its_cases_variants_in_declaration_order():
    keys = [
        CaseKey("a", "logits", "float32", 0.0, "loss", mode="vmap"),
        CaseKey("b", "logits", "float32", 0.0, "loss", parameters="eps=0.001"),
        CaseKey("c", "logits", "float32", 0.0, "loss"),
    ]
    assert variants_in(keys) == ("parameters", "mode")
    assert key_fields(keys) == ("formulation", "parameters", "mode", "domain", "dtype", "label", "quantity")
    assert key_fields(keys[2:]) == ("formulation", "domain", "dtype", "label", "quantity")


def test_every_record_of_a_run_has_the_same_fields():
    result = synthetic.variants_result()
    records = result.to_records()
    assert {tuple(r) for r in records} == {tuple(records[0])}
    assert list(records[0])[:7] == ["formulation", "parameters", "mode", "domain", "dtype", "label", "quantity"]
    plain = [r for r in records if r["formulation"] == "max-abs"]
    assert [(r["parameters"], r["mode"]) for r in plain] == [("", "eager"), ("", "eager")]
    assert "parameters" not in synthetic.awkward_result().to_records()[0]


def test_a_result_pickles_with_the_provenance_of_the_machine_that_made_it():
    """The provenance is made when first asked for, by a closure over the run; a pickled result
    carries it made (a KnownProvenance), so unpickling elsewhere names this machine, and pickling
    works at all (a closure does not pickle)."""
    import pickle

    import bce_audit
    from bce_audit.sweep.result import KnownProvenance

    result = bce_audit.audit("naive", dtypes="float16", domain="logits", points=20)
    again = pickle.loads(pickle.dumps(result))
    assert isinstance(again.provenance_source, KnownProvenance)
    assert again.provenance == result.provenance and again.provenance["torch"]
    assert again.to_records() == result.to_records()
