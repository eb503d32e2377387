"""The baseline file: written by render_baseline, read back exactly by read_baseline, and every kind of
invalid file refused with one line that names the file and the field."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from synthetic import (
    F16_GRAD_1,
    F16_GRAD_1_FIGURES,
    F16_TINY,
    F64_MAX,
    F64_TINY,
    GRAD_0,
    GRAD_0_FIGURES,
    INF,
    LOSS_0,
    LOSS_LABEL,
    LOSS_LABEL_FIGURES,
    NAIVE_GRAD,
    NAIVE_GRAD_FIGURES,
    NAIVE_LOSS,
    NAIVE_LOSS_FIGURES,
    NASTY,
    NASTY_LINES,
    ODD_GRAD,
    ODD_LOSS,
    PROVENANCE,
    case,
    key,
    named,
    record,
    settings,
    variants_result,
)

from bce_audit.errors import UsageError
from bce_audit.gate.baseline import (
    SCHEMA_VERSION,
    fingerprint,
    provenance_differences,
    read_baseline,
    render_baseline,
    settings_differences,
)
from bce_audit.gate.interface import CaseRecord

F64_CASE = key("torch-bce-with-logits", "logits", "float64", 1.0, "grad")
FIGURES = {
    LOSS_0: record(),
    GRAD_0: record(**GRAD_0_FIGURES),  # NaN stable range, worst input -0.0
    LOSS_LABEL: record(**LOSS_LABEL_FIGURES),  # label 0.1 + 0.2, a subnormal worst input
    F16_GRAD_1: record(**F16_GRAD_1_FIGURES),  # the largest float64 as an error figure
    NAIVE_LOSS: record(**NAIVE_LOSS_FIGURES),  # NaN figures
    NAIVE_GRAD: record(**NAIVE_GRAD_FIGURES),  # no worst input, a subnormal end of the stable range
    F64_CASE: record(
        max_ulp=INF, mean_ulp=F64_TINY, max_rel_err=F64_MAX, worst_input=-F64_MAX, stable_lo=-INF, stable_hi=F64_MAX
    ),
    ODD_LOSS: record(error=NASTY),
    ODD_GRAD: record(error=NASTY_LINES),
}
SETTINGS = settings([case(*named(k)) for k in FIGURES], logit_range=(-INF, 20.0), ulp_threshold=0.5, seed=7).to_dict()


def _same(a: CaseRecord, b: CaseRecord) -> bool:
    """Equal figure by figure as floats are written: NaN equals NaN, -0.0 differs from 0.0."""
    return (a.error, a.lost) == (b.error, b.lost) and all(
        repr(x) == repr(y) for x, y in zip(dataclasses.astuple(a.figures), dataclasses.astuple(b.figures), strict=True)
    )


@pytest.fixture
def text() -> str:
    return render_baseline(FIGURES, SETTINGS, PROVENANCE)


@pytest.fixture
def path(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "base line.json"
    p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------- writing and reading back


def test_round_trip_is_exact(path: Path, text: str):
    b = read_baseline(path)
    assert b.path == path
    assert list(b.figures) == list(FIGURES)  # file order
    for k, written in FIGURES.items():
        assert _same(b.figures[k], written), k
    assert b.provenance == PROVENANCE
    assert b.fingerprint == fingerprint(SETTINGS) == fingerprint(b.settings)
    assert b.settings["range"] == ["-inf", 20.0] and b.settings["labels"] == [0.0, 0.30000000000000004, 1.0]
    assert render_baseline(b.figures, b.settings, b.provenance) == text  # the same bytes again
    grad = b.figures[GRAD_0].figures
    assert math.copysign(1.0, grad.worst_input) == -1.0 and math.isnan(grad.stable_lo)
    assert b.figures[F16_GRAD_1].figures.max_ulp == F64_MAX
    assert b.figures[NAIVE_GRAD].figures.stable_lo == F16_TINY
    assert b.figures[F64_CASE].figures.mean_ulp == F64_TINY and b.figures[F64_CASE].figures.max_ulp == INF
    assert b.figures[ODD_GRAD].error == NASTY_LINES and b.figures[ODD_LOSS].error == NASTY


def test_the_file_is_strict_json_with_one_line_per_case(text: str):
    def refuse(name):
        raise AssertionError(f"non-standard constant {name}")

    doc = json.loads(text, parse_constant=refuse)
    assert list(doc) == ["schema_version", "provenance", "settings", "fingerprint", "cases"]
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    lines = text.splitlines()
    case_lines = [line for line in lines if line.lstrip().startswith('{"formulation"')]
    assert len(case_lines) == len(FIGURES) and text.endswith("\n  ]\n}\n")
    assert json.loads(case_lines[2].strip().rstrip(",")) == {
        "formulation": "max-abs",
        "domain": "logits",
        "dtype": "float32",
        "label": 0.30000000000000004,
        "quantity": "loss",
        "error": None,
        "points": 1010,
        "ok": 1009,
        "inaccurate": 0,
        "inf": 0,
        "nan": 0,
        "zero": 1,
        "nonfinite": 0,
        "max_ulp": 4.5,
        "p99_ulp": 0.99951171875,
        "mean_ulp": 0.5,
        "mean_bits": 0.125,
        "max_rel_err": 5.960464477539063e-08,
        "worst_input": 1.401298464324817e-45,
        "stable_range": [-3.4028234663852886e38, 88.72283935546875],
    }
    naive = json.loads(case_lines[4].strip().rstrip(","))
    assert [naive[k] for k in ("max_ulp", "mean_bits", "worst_input", "stable_range")] == [
        "nan",
        16.0,
        0.5,
        ["nan"] * 2,
    ]
    assert '"worst_input": -0.0' in case_lines[1] and '"max_ulp": 1.7976931348623157e+308' in case_lines[3]
    assert '"max_ulp": "inf"' in case_lines[6] and '"stable_range": ["-inf", 1.7976931348623157e+308]' in case_lines[6]
    assert '"mean_ulp": 5e-324' in case_lines[6]
    odd = json.loads(case_lines[8].strip())
    assert odd["error"] == NASTY_LINES and odd["points"] == 0 and odd["max_ulp"] == "nan"


# --------------------------------------------------------------------------- the fingerprint


BASE = {"formulations": ["a"], "dtypes": ["float32"], "domains": ["logits"], "labels": [0.0], "range": None}
BASE |= {"points": 50, "sampling": "bits", "seed": 0, "ulp_threshold": 4.0, "user_formulations": []}


def test_settings_that_only_choose_cases_do_not_change_the_fingerprint():
    other = {"formulations": ["b", "c"], "dtypes": ["float16"], "labels": [0.5], "domains": ["probabilities"]}
    other["user_formulations"] = [{"name": "c", "target": "x.py:c", "domain": "logits", "parameters": {}}]
    assert fingerprint(BASE) == fingerprint(BASE | other)
    assert fingerprint(BASE) == fingerprint(BASE | {"ulp_threshold": 4, "future_setting": []})  # 4 is 4.0
    assert fingerprint(BASE) != fingerprint(BASE | {"ulp_threshold": 4.5})
    assert fingerprint(BASE) != fingerprint(BASE | {"range": [-5.0, 5.0]})
    assert fingerprint(BASE) != fingerprint(BASE | {"future_setting": ["value"]})
    assert fingerprint(BASE | {"range": [-math.inf, 20.0]}) == fingerprint(BASE | {"range": ["-inf", 20]})
    # pinned: a fingerprint that changed would make every baseline written before unreadable
    assert fingerprint(BASE) == "eaad9a81bad2f1b9ec432dfd2c15072dfc46f87c7efc874b1994514ef41d5143"


def test_settings_differences_name_each_setting_with_both_values():
    new = BASE | {"points": 60, "range": [-5.0, 5.0], "sampling": "exhaustive", "formulations": ["z"]}
    assert settings_differences(BASE, new) == [
        "points 60 (baseline 50)",
        "range [-5, 5] (baseline (default))",
        'sampling "exhaustive" (baseline "bits")',
    ]
    assert settings_differences(BASE, BASE | {"seed": 0.0}) == []


def test_provenance_differences_name_what_can_change_figures():
    new = PROVENANCE | {"torch": "2.14.0", "cpu_capability": "NEON", "platform": "elsewhere", "python": "3.12.0"}
    assert provenance_differences(PROVENANCE, new) == ["torch 2.13.0+cpu -> 2.14.0", "cpu_capability AVX512 -> NEON"]
    assert provenance_differences({}, {"device": "cuda"}) == ["device None -> cuda"]


# --------------------------------------------------------------------------- invalid files


def _doc(text: str) -> dict:
    return json.loads(text)


def _set(field, value):
    def edit(text: str) -> str:
        doc = _doc(text)
        doc[field] = value
        return json.dumps(doc)

    return edit


def _drop(field):
    def edit(text: str) -> str:
        return json.dumps({k: v for k, v in _doc(text).items() if k != field})

    return edit


def _case0(**changes):
    """An edit of the first case: each field set, or deleted when the value is `...`."""

    def edit(text: str) -> str:
        doc = _doc(text)
        for k, v in changes.items():
            if v is ...:
                del doc["cases"][0][k]
            else:
                doc["cases"][0][k] = v
        return json.dumps(doc)

    return edit


def _settings(**changes):
    def edit(text: str) -> str:
        doc = _doc(text)
        doc["settings"].update(changes)
        return json.dumps(doc)

    return edit


NOT_JSON = "not valid JSON (truncated or corrupt?): "
FIRST = "cases[0]"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t[: len(t) // 2], NOT_JSON + "Unterminated string starting at"),
        (lambda t: t[:-3], NOT_JSON + "Expecting ',' delimiter"),
        (lambda t: "", NOT_JSON + "Expecting value: line 1 column 1 (char 0)"),
        (lambda t: "hello", NOT_JSON + "Expecting value: line 1 column 1 (char 0)"),
        (lambda t: t.replace('"max_ulp": 1.0', '"max_ulp": NaN', 1), NOT_JSON + "non-standard JSON constant NaN"),
        (lambda t: t.replace('"max_ulp": 1.0', '"max_ulp": Infinity', 1), NOT_JSON + "non-standard JSON constant"),
        (lambda t: t.replace('"max_ulp": 1.0', '"max_ulp": -Infinity', 1), NOT_JSON + "non-standard JSON constant"),
        (
            lambda t: t.replace('"schema_version": 1,', '"schema_version": 1, "schema_version": 1,'),
            NOT_JSON + "duplicate key 'schema_version'",
        ),
        (lambda t: t.replace('"zero": 0,', '"zero": 0, "zero": 0,', 1), NOT_JSON + "duplicate key 'zero'"),
        (lambda t: "[1, 2]", "expected a JSON object: not a bce-audit baseline"),
        (lambda t: '"baseline"', "expected a JSON object: not a bce-audit baseline"),
        (_drop("schema_version"), "no schema_version: not a bce-audit baseline"),
        (_set("schema_version", 2), "schema_version 2 is not supported (this bce-audit reads 1)"),
        (_set("schema_version", "1"), "schema_version '1' is not supported (this bce-audit reads 1)"),
        (_set("schema_version", True), "schema_version True is not supported (this bce-audit reads 1)"),
        (_drop("cases"), "missing 'cases'"),
        (_drop("provenance"), "missing 'provenance'"),
        (_drop("settings"), "missing 'settings'"),
        (_drop("fingerprint"), "missing 'fingerprint'"),
        (_set("extra", 1), "unknown field 'extra'"),
        (_set("provenance", ["torch"]), "provenance: expected an object"),
        (_set("settings", None), "settings: expected an object"),
        (_set("fingerprint", "abc"), "fingerprint: expected 64 hex digits, got 'abc'"),
        (_set("fingerprint", 5), "fingerprint: expected 64 hex digits, got 5"),
        (_set("fingerprint", "A" * 64), f"fingerprint: expected 64 hex digits, got '{'A' * 64}'"),
        (
            _set("fingerprint", "0" * 64),
            "fingerprint does not match its settings (edited by hand? regenerate with --update-baseline)",
        ),
        (
            _settings(points=2000),
            "fingerprint does not match its settings (edited by hand? regenerate with --update-baseline)",
        ),
        (_set("cases", []), "cases: expected a non-empty list"),
        (_set("cases", {}), "cases: expected a non-empty list"),
        (_set("cases", [5]), "cases[0]: expected an object"),
        (_case0(max_ulp=...), "cases[0]: missing 'max_ulp'"),
        (_case0(error=..., label=...), "cases[0]: missing 'label', 'error'"),
        (_case0(colour="red"), "cases[0]: unknown field 'colour'"),
        (_case0(mode=3), "cases[0].mode: expected a non-empty string, got 3"),
        (_case0(parameters=""), "cases[0].parameters: expected a non-empty string, got ''"),
        (_case0(max_ulp="big"), 'cases[0].max_ulp: expected a number (or "inf", "-inf", "nan"), got \'big\''),
        (_case0(max_ulp=True), 'cases[0].max_ulp: expected a number (or "inf", "-inf", "nan"), got True'),
        (_case0(max_ulp=None), 'cases[0].max_ulp: expected a number (or "inf", "-inf", "nan"), got None'),
        (_case0(worst_input="Infinity"), "cases[0].worst_input: expected a number"),
        (_case0(zero=-1), "cases[0].zero: expected a whole number >= 0, got -1"),
        (_case0(zero=1.0), "cases[0].zero: expected a whole number >= 0, got 1.0"),
        (_case0(points=True), "cases[0].points: expected a whole number >= 0, got True"),
        (_case0(nonfinite="0"), "cases[0].nonfinite: expected a whole number >= 0, got '0'"),
        (_case0(zero=7), "cases[0]: the status counts do not add up to points"),
        (_case0(points=1011), "cases[0]: the status counts do not add up to points"),
        (_case0(label=3.0), "cases[0].label: 3.0 is outside [0, 1]"),
        (_case0(label=-0.5), "cases[0].label: -0.5 is outside [0, 1]"),
        (_case0(label="nan"), "cases[0].label: nan is outside [0, 1]"),
        (_case0(label=True), "cases[0].label: expected a number"),
        (_case0(formulation=""), "cases[0].formulation: expected a non-empty string, got ''"),
        (_case0(formulation=5), "cases[0].formulation: expected a non-empty string, got 5"),
        (_case0(error=""), "cases[0].error: expected a non-empty string, got ''"),
        (_case0(error=["boom"]), "cases[0].error: expected a non-empty string, got ['boom']"),
        (_case0(domain="logit"), "cases[0].domain: expected one of logits, probabilities, got 'logit'"),
        (_case0(dtype="float8"), "cases[0].dtype: expected one of float16, bfloat16, float32, float64, got 'float8'"),
        (_case0(quantity="gradient"), "cases[0].quantity: expected one of loss, grad, got 'gradient'"),
        (_case0(quantity=["loss"]), "cases[0].quantity: expected one of loss, grad, got ['loss']"),
        (_case0(stable_range=[1]), "cases[0].stable_range: expected [lo, hi] (or null), got [1]"),
        (_case0(stable_range="none"), "cases[0].stable_range: expected [lo, hi] (or null), got 'none'"),
        (_case0(stable_range=[0, "x"]), "cases[0].stable_range: expected a number"),
        (
            _case0(stable_range=[5.0, -5.0]),
            'cases[0].stable_range: expected [lo, hi] with lo <= hi (or ["nan", "nan"] for none), got [5.0, -5.0]',
        ),
        (_case0(stable_range=["nan", 1.0]), "cases[0].stable_range: expected [lo, hi] with lo <= hi"),
        (_case0(stable_range=[-1.0, "nan"]), "cases[0].stable_range: expected [lo, hi] with lo <= hi"),
        (_case0(max_ulp=-1.0), 'cases[0].max_ulp: expected a number >= 0 (or "inf", "nan"), got -1.0'),
        (_case0(p99_ulp="-inf"), 'cases[0].p99_ulp: expected a number >= 0 (or "inf", "nan"), got \'-inf\''),
        (_case0(mean_ulp=-0.5), 'cases[0].mean_ulp: expected a number >= 0 (or "inf", "nan"), got -0.5'),
        (_case0(mean_bits=-0.1), 'cases[0].mean_bits: expected a number >= 0 (or "inf", "nan"), got -0.1'),
        (_case0(max_rel_err=-1), 'cases[0].max_rel_err: expected a number >= 0 (or "inf", "nan"), got -1'),
        (
            lambda t: json.dumps({**_doc(t), "cases": _doc(t)["cases"] + _doc(t)["cases"][:1]}),
            f"cases[{len(FIGURES)}]: max-abs logits float32 y=0 loss appears twice",
        ),
        (  # 0 and 0.0 are one label
            lambda t: json.dumps({**_doc(t), "cases": _doc(t)["cases"] + [dict(_doc(t)["cases"][0], label=0)]}),
            f"cases[{len(FIGURES)}]: max-abs logits float32 y=0 loss appears twice",
        ),
    ],
)
def test_an_invalid_file_is_a_one_line_error_naming_the_file_and_the_field(path: Path, edit, message: str):
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(UsageError) as exc:
        read_baseline(path)
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"baseline {path}: {message}"), text


@pytest.mark.parametrize(
    "changes, check",
    [
        ({"stable_range": None}, lambda f: math.isnan(f.stable_lo) and math.isnan(f.stable_hi)),
        ({"stable_range": ["nan", "nan"]}, lambda f: math.isnan(f.stable_lo) and math.isnan(f.stable_hi)),
        ({"stable_range": [0.0, 0.0]}, lambda f: (f.stable_lo, f.stable_hi) == (0.0, 0.0)),
        ({"stable_range": ["-inf", "inf"]}, lambda f: (f.stable_lo, f.stable_hi) == (-INF, INF)),
        ({"stable_range": [-1, 2]}, lambda f: (f.stable_lo, f.stable_hi) == (-1.0, 2.0)),
        (
            {"max_ulp": "nan", "p99_ulp": "nan", "mean_ulp": "nan", "mean_bits": "nan", "max_rel_err": "nan"},
            lambda f: all(math.isnan(x) for x in (f.max_ulp, f.p99_ulp, f.mean_ulp, f.mean_bits, f.max_rel_err)),
        ),
        ({"max_ulp": "inf", "max_rel_err": "inf"}, lambda f: f.max_ulp == INF == f.max_rel_err),
        ({"max_ulp": 3}, lambda f: f.max_ulp == 3.0 and isinstance(f.max_ulp, float)),
        ({"worst_input": "-inf"}, lambda f: f.worst_input == -INF),
        ({"worst_input": -3.5}, lambda f: f.worst_input == -3.5),
        ({"label": 1, "error": "E: x"}, lambda f: f.points == 1010),  # an error with figures is read as written
    ],
)
def test_valid_hand_edits_are_read(path: Path, changes: dict, check):
    path.write_text(_case0(**changes)(path.read_text(encoding="utf-8")), encoding="utf-8")
    b = read_baseline(path)
    assert len(b.figures) == len(FIGURES)
    first = next(iter(b.figures.values()))
    assert check(first.figures)


def test_a_missing_file_a_directory_and_binary_data(tmp_path: Path):
    missing = tmp_path / "nope.json"
    with pytest.raises(UsageError) as exc:
        read_baseline(missing)
    assert str(exc.value) == f"baseline {missing}: file not found (create it with --update-baseline)"
    with pytest.raises(UsageError) as exc:
        read_baseline(tmp_path)
    assert str(exc.value) == f"baseline {tmp_path}: is a directory"
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 10)
    with pytest.raises(UsageError) as exc:
        read_baseline(binary)
    assert str(exc.value) == f"baseline {binary}: not UTF-8 text, not a bce-audit baseline"


@pytest.mark.parametrize("field", ["max_ulp", "label"])
def test_an_integer_too_large_for_a_float_is_a_usage_error(path: Path, field: str):
    text = path.read_text(encoding="utf-8")
    path.write_text(_case0(**{field: 10**400})(text), encoding="utf-8")
    with pytest.raises(UsageError, match=rf"^baseline .*: cases\[0\]\.{field}"):
        read_baseline(path)


# --------------------------------------------------------------------------- variant dimensions


def test_variant_dimensions_are_keys_written_only_where_not_the_default(tmp_path: Path):
    run = variants_result()
    figures = {c.key: CaseRecord.of(c) for c in run.cases}
    text = render_baseline(figures, run.settings.to_dict(), PROVENANCE)
    lines = [json.loads(line.rstrip(",")) for line in text.splitlines() if line.lstrip().startswith('{"formulation"')]
    assert [(r.get("parameters"), r.get("mode")) for r in lines[::2]] == [
        ("gamma=0", None),  # eager is the default: not written
        ("gamma=2", None),
        ("gamma=2", "compile"),
        (None, None),  # max-abs: in no variant
    ]
    assert all("device" not in r for r in lines)
    path = tmp_path / "b.json"
    path.write_text(text, encoding="utf-8")
    read = read_baseline(path).figures
    assert list(read) == list(figures)  # the same keys: parameters and mode read back, defaults filled in
    assert sum(k.mode == "compile" for k in read) == 2 and sum(k.parameters == "gamma=2" for k in read) == 4
