"""How much worse each gated figure may get: the defaults, the config's [tolerance], --tolerance."""

from __future__ import annotations

import math

import pytest

from bce_audit.errors import UsageError
from bce_audit.gate.interface import TOLERANCE_KEYS, Tolerance
from bce_audit.gate.tolerance import ZERO_TOLERANCE, parse_tolerance


def test_the_defaults_come_from_the_figures():
    assert TOLERANCE_KEYS == ("max_ulp", "p99_ulp", "mean_bits", "inaccurate", "inf", "nan", "zero", "nonfinite")
    assert Tolerance().allowances == (
        ("max_ulp", 1.0),
        ("p99_ulp", 1.0),
        ("mean_bits", 0.1),
        ("inaccurate", 0),
        ("inf", 0),
        ("nan", 0),
        ("zero", 0),
        ("nonfinite", 0),
    )
    assert str(Tolerance()) == "max_ulp +1, p99_ulp +1, mean_bits +0.1, counts +0"
    assert parse_tolerance(None, (), "c.toml") == Tolerance()
    assert [ZERO_TOLERANCE.allowed(k) for k in TOLERANCE_KEYS] == [0] * 8
    assert str(ZERO_TOLERANCE) == "max_ulp +0, p99_ulp +0, mean_bits +0, counts +0"


def test_the_config_goes_on_the_defaults_and_each_flag_on_top():
    t = parse_tolerance({"max_ulp": 3, "zero": 2, "p99_ulp": 0.5}, ("max_ulp:+5", "mean_bits: 0.5", "max_ulp:7"), "c")
    assert [t.allowed(f) for f in ("max_ulp", "zero", "mean_bits", "p99_ulp", "nan")] == [7.0, 2, 0.5, 0.5, 0]
    assert isinstance(t.allowed("max_ulp"), float) and isinstance(t.allowed("zero"), int)
    assert str(t) == "max_ulp +7, p99_ulp +0.5, mean_bits +0.5, inaccurate +0, inf +0, nan +0, zero +2, nonfinite +0"


def test_a_whole_count_given_as_a_float_is_a_count():
    t = parse_tolerance({"nan": 2.0}, ("zero:+1.0", " inf : 3 "), "c")
    assert (t.allowed("nan"), t.allowed("zero"), t.allowed("inf")) == (2, 1, 3)
    assert all(type(t.allowed(k)) is int for k in ("nan", "zero", "inf"))
    assert str(parse_tolerance(None, tuple(f"{k}:+4" for k in TOLERANCE_KEYS[3:]), "c")).endswith("counts +4")


@pytest.mark.parametrize(
    "table, message",
    [
        (1, "c.toml: tolerance must be a table ([tolerance])"),
        ({"max_ulps": 1}, "c.toml: tolerance: unknown figure 'max_ulps'; choose from " + ", ".join(TOLERANCE_KEYS)),
        (
            {"stable_range": 1},
            "c.toml: tolerance: unknown figure 'stable_range' (the stable range may never shrink); choose from "
            + ", ".join(TOLERANCE_KEYS),
        ),
        ({"zero": 0.5}, "c.toml: tolerance: zero must be a whole number of points, got 0.5"),
        ({"max_ulp": -1}, "c.toml: tolerance: max_ulp must be a finite number >= 0, got -1"),
        ({"max_ulp": math.inf}, "c.toml: tolerance: max_ulp must be a finite number >= 0, got inf"),
        ({"max_ulp": math.nan}, "c.toml: tolerance: max_ulp must be a finite number >= 0, got nan"),
        ({"max_ulp": True}, "c.toml: tolerance: max_ulp must be a finite number >= 0, got True"),
        ({"mean_bits": "0.1"}, "c.toml: tolerance: mean_bits must be a finite number >= 0, got '0.1'"),
    ],
)
def test_a_bad_tolerance_table(table, message):
    with pytest.raises(UsageError) as exc:
        parse_tolerance(table, (), "c.toml")
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "flag, message",
    [
        ("max_ulp", "--tolerance 'max_ulp' is not of the form FIGURE:+N (for example max_ulp:+2)"),
        ("max_ulp:x", "--tolerance 'max_ulp:x' is not of the form FIGURE:+N (for example max_ulp:+2)"),
        ("max_ulp:", "--tolerance 'max_ulp:' is not of the form FIGURE:+N (for example max_ulp:+2)"),
        ("bogus:+1", "--tolerance 'bogus:+1': unknown figure 'bogus'; choose from " + ", ".join(TOLERANCE_KEYS)),
        ("zero:+0.5", "--tolerance 'zero:+0.5': zero must be a whole number of points, got 0.5"),
        ("max_ulp:-1", "--tolerance 'max_ulp:-1': max_ulp must be a finite number >= 0, got -1.0"),
        ("max_ulp:+inf", "--tolerance 'max_ulp:+inf': max_ulp must be a finite number >= 0, got inf"),
        ("max_ulp:nan", "--tolerance 'max_ulp:nan': max_ulp must be a finite number >= 0, got nan"),
        (
            "stable_range:+1",
            "--tolerance 'stable_range:+1': unknown figure 'stable_range' (the stable range may never shrink); "
            "choose from " + ", ".join(TOLERANCE_KEYS),
        ),
    ],
)
def test_a_bad_tolerance_flag(flag, message):
    with pytest.raises(UsageError) as exc:
        parse_tolerance({"max_ulp": 2}, ("p99_ulp:+1", flag), "c.toml")
    assert str(exc.value) == message
