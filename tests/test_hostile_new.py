"""A hostile QA pass over the new capabilities (explain, the failure map, repro files, the BCE
family's parameters, other engines, exhaustive float32, the Python API).

Every test here reproduces a fault found in that pass and is a strict xfail: it passes (and so
fails the suite) once the fault is fixed, and the marker must then be removed. Each states the
behaviour the tool should have. Inputs are tiny; everything is written under tmp_path.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import assert_exit, assert_usage_error, read_csv, runner

from bce_audit.cli import main
from bce_audit.oracle.cache import ORACLE_VERSION

HERE = Path(__file__).resolve().parent


def _focal_torchvision(z: float, y: float, gamma: float, alpha: float) -> float:
    """torchvision's sigmoid focal loss at one point, in float64 (accurate enough at z = 5)."""
    p = 1.0 / (1.0 + math.exp(-z))
    ce = -(y * math.log(p) + (1 - y) * math.log1p(-p))
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return alpha_t * ce * (1 - p_t) ** gamma


def test_explain_uses_the_formulations_own_reference() -> None:
    import bce_audit

    (explanation,) = bce_audit.explain("torchvision-focal", at=5.0, labels=1.0, quantity="loss", dtypes="float32")
    want = _focal_torchvision(5.0, 1.0, gamma=2.0, alpha=0.25)  # 7.5202e-8
    # measured against the focal loss (7.52e-8), not plain BCE's softplus(-5) = 0.0067
    assert math.isclose(explanation.truth, want, rel_tol=1e-6), explanation.truth
    # torch's float32 1 - p_t already lost 3.6e-6 of itself: the output is that far off, squared
    assert abs(explanation.output / want - 1) > 1e-6


def test_failure_map_of_an_exhaustive_float32_sweep_is_not_empty(tmp_path: Path) -> None:
    failures = tmp_path / "f.csv"
    args = ["sweep", "-f", "naive", "-d", "float32", "--domain", "logits", "-y", "0"]
    args += ["--sampling", "exhaustive", "--range", "16.6:16.7", "--failures", str(failures)]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    _, rows = read_csv(failures.read_text())
    # -log(1 - sigmoid(z)) with y = 0: sigmoid rounds to 1 from z ~ 16.6355 on (inf after it)
    assert {r["status"] for r in rows} >= {"inf"}, rows


def test_sigterm_inside_a_formulation_ends_the_run() -> None:
    import bce_audit
    from bce_audit.errors import Terminated

    @bce_audit.formulation(domain="logits")
    def terminated_meanwhile(z, y):  # SIGTERM's handler raises this wherever the main thread is
        raise Terminated()

    with pytest.raises(Terminated):
        bce_audit.audit([terminated_meanwhile], dtypes="float16", points=20, labels=0.0)


def test_explain_on_a_jax_builtin_is_a_usage_error() -> None:
    pytest.importorskip("jax")
    result = runner().invoke(main, ["explain", "optax-sigmoid-bce", "--at", "1", "-y", "1"])
    assert_usage_error(result, "optax-sigmoid-bce")


def test_repro_does_not_overwrite_a_users_file(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    out.mkdir()
    mine = out / "test_naive_logits_float16_y1_loss.py"
    mine.write_text("# my own test, not bce-audit's\n")
    args = ["sweep", "-f", "naive", "-d", "float16", "--domain", "logits", "-y", "1"]
    result = runner().invoke(main, [*args, "--points", "50", "--repro", str(out)])
    # the names come from the cases that fail, so this is known after the sweep (its scoreboard is
    # printed), before anything is written: one line, exit 2, the user's file untouched
    assert_exit(result, 2)
    (line,) = result.stderr.splitlines()
    assert "--repro" in line and mine.name in line and "did not write it" in line
    assert mine.read_text() == "# my own test, not bce-audit's\n"
    assert sorted(p.name for p in out.iterdir()) == [mine.name]


def test_a_second_run_replaces_the_files_bce_audit_wrote(tmp_path: Path) -> None:
    args = ["sweep", "-f", "naive", "-d", "float16", "--domain", "logits", "-y", "1", "--points", "50"]
    args += ["--repro", str(tmp_path / "r"), "--plot", str(tmp_path / "p")]
    assert_exit(runner().invoke(main, args), 0)
    first = sorted(p.name for p in (tmp_path / "r").iterdir()) + sorted(p.name for p in (tmp_path / "p").iterdir())
    assert any(n.endswith(".png") for n in first) and any(n.endswith(".py") for n in first)
    assert_exit(runner().invoke(main, args), 0)  # its own files (repro, PNG, SVG) carry its mark


def test_baseline_keys_parameters_on_their_value(tmp_path: Path) -> None:
    baseline = tmp_path / "b.json"
    args = ["check", "-f", "torchvision-focal", "-d", "float16", "--domain", "logits", "-y", "1"]
    args += ["--points", "50", "--baseline", str(baseline)]
    assert_exit(runner().invoke(main, [*args, "--param", "gamma=0.5", "--update-baseline"]), 0)
    assert_exit(runner().invoke(main, [*args, "--param", "gamma=0.50"]), 0)


def test_repro_on_exhaustive_float32_names_repro(tmp_path: Path) -> None:
    args = ["sweep", "-f", "naive", "-d", "float32", "--domain", "logits", "-y", "0"]
    # every float32 in [-20, 20]: 2.1e9 inputs, far more rows than per-point data can hold
    args += ["--sampling", "exhaustive", "--range", "-20:20", "--repro", str(tmp_path / "r")]
    line = assert_usage_error(runner().invoke(main, args), "--repro")
    assert "drop --details" not in line  # it names what needs the points, not an option never given


def test_details_of_a_small_exhaustive_float32_range(tmp_path: Path) -> None:
    details = tmp_path / "d.csv"
    args = ["sweep", "-f", "naive", "-d", "float32", "--domain", "logits", "-y", "0"]
    args += ["--sampling", "exhaustive", "--range", "1:1.0001", "--details", str(details)]
    assert_exit(runner().invoke(main, args), 0)
    _, rows = read_csv(details.read_text())
    # every float32 in [1, 1.0001]: 1 + floor(0.0001 / 2^-23) = 839 inputs, plus ±inf and NaN, twice
    assert len(rows) == 2 * (839 + 3)
    assert float(rows[0]["input"]) == 1.0 and float(rows[838]["input"]) == 1.0000998973846436


def test_details_of_a_large_exhaustive_float32_range_give_the_count_and_the_limit(tmp_path: Path) -> None:
    from bce_audit.sweep.exhaustive import MAX_DETAIL_ROWS

    args = ["sweep", "-f", "naive", "-d", "float32", "--domain", "logits", "-y", "0"]
    args += ["--sampling", "exhaustive", "--range", "1:2", "--details", str(tmp_path / "d.csv")]
    line = assert_usage_error(runner().invoke(main, args), "--details")
    # [1, 2]: 2^23 + 1 inputs, plus ±inf and NaN, for the loss and the gradient
    assert f"{2 * (2**23 + 4):,} rows" in line and f"{MAX_DETAIL_ROWS:,}" in line
    assert not (tmp_path / "d.csv").exists()


def test_repro_dangling_symlink_checked_before_the_run(tmp_path: Path) -> None:
    link = tmp_path / "r"
    link.symlink_to(tmp_path / "missing")
    args = ["sweep", "-f", "naive", "-d", "float16", "--domain", "logits", "-y", "1"]
    result = runner().invoke(main, [*args, "--points", "50", "--repro", str(link)])
    assert_usage_error(result, "--repro")
    assert "cases," not in result.output  # no sweep was run


def test_api_nonsense_arguments_are_usage_errors() -> None:
    import bce_audit
    from bce_audit.errors import UsageError

    with pytest.raises(UsageError):
        bce_audit.audit(42, dtypes="float16", points=20)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        bce_audit.write_repro("not a result", HERE)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- a second hostile pass


def test_a_range_with_no_float16_probability_is_a_usage_error_not_a_crash() -> None:
    # logits 10:20 are probabilities in [0.99995, 1 - 2e-9]: float16 has none strictly inside
    # (its largest below 1 is 1 - 2^-11 = 0.99951, logit 7.62), so there is nothing to sample from
    args = ["sweep", "-f", "naive", "-d", "float16", "--domain", "probabilities", "--points", "50"]
    line = assert_usage_error(runner().invoke(main, [*args, "--range", "10:20"]), "range 10:20")
    assert "holds no float16 input on probabilities" in line and "7.62" in line


def test_a_range_narrower_than_the_spacing_says_so() -> None:
    # float16's smallest subnormal is 2^-24 = 6e-8: no float16 lies in [1e-8, 2e-8]
    args = ["sweep", "-f", "naive", "-d", "float16", "--domain", "logits", "--points", "50"]
    line = assert_usage_error(runner().invoke(main, [*args, "--range", "1e-8:2e-8"]), "range 1e-8:2e-8")
    assert "no float16 value lies between its ends" in line and "largest finite" not in line
    line = assert_usage_error(runner().invoke(main, [*args, "--range", "7e4:8e4"]), "range 70000:80000")
    assert "float16's largest finite value is 65504" in line


@pytest.mark.parametrize("command", ["sweep", "list", "explain"])
def test_an_empty_config_path_is_refused_not_read_as_the_current_directory(command: str) -> None:
    args = [command, "--config", ""] + (["naive"] if command == "explain" else [])
    assert_usage_error(runner().invoke(main, args), "--config", "empty path")


def test_an_empty_cache_dir_is_refused_not_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["sweep", "-f", "naive", "-d", "float16", "--points", "50"]
    assert_usage_error(runner().invoke(main, [*args, "--cache-dir", ""]), "--cache-dir", "empty path")
    (tmp_path / "c.toml").write_text('cache_dir = " "\n')
    line = assert_usage_error(runner().invoke(main, [*args, "--config", "c.toml"]), "c.toml.cache_dir", "empty path")
    assert "name a directory" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "c.toml"]  # no oracle-v* made here


def test_a_cache_dir_that_is_a_dangling_link_is_refused_before_the_run(tmp_path: Path) -> None:
    link = tmp_path / "cache"
    link.symlink_to(tmp_path / "nowhere")
    args = ["sweep", "-f", "naive", "-d", "float16", "--points", "50", "--cache-dir", str(link)]
    line = assert_usage_error(runner().invoke(main, args), f"--cache-dir {link}", str(tmp_path / "nowhere"))
    assert "does not exist" in line and not (tmp_path / "nowhere").exists()


def test_a_cache_directory_that_is_a_link_is_reported_once(tmp_path: Path) -> None:
    own = tmp_path / f"oracle-v{ORACLE_VERSION}"
    own.symlink_to(own)  # a link to itself, where bce-audit's directory goes
    args = ["sweep", "-f", "naive", "-d", "float16", "--points", "50", "--cache-dir", str(tmp_path)]
    result = runner().invoke(main, args)  # two domains, two labels: four files it would read and write
    assert_exit(result, 0)
    (line,) = result.stderr.splitlines()
    assert f"oracle-v{ORACLE_VERSION} is a symbolic link, not a directory bce-audit made" in line


def test_a_config_saved_with_a_byte_order_mark_says_so(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(b"\xef\xbb\xbfpoints = 50\n")  # as some Windows editors save UTF-8
    args = ["sweep", "-f", "naive", "-d", "float16", "--config", str(config)]
    line = assert_usage_error(runner().invoke(main, args), str(config), "byte-order mark")
    assert "Invalid statement" not in line  # tomllib's message, which names nothing
