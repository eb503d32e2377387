"""TensorFlow's C++ log lines are kept off a bce-audit user's standard error (engines/native_logs),
in the sweep's process and in the sandbox, unless the user set TF_CPP_MIN_LOG_LEVEL."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bce_audit.engines.native_logs import LOG_LEVEL, is_noise, quiet_tensorflow

ROOT = Path(__file__).resolve().parents[2]
needs_tensorflow = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="the tensorflow extra is not installed"
)

# as TensorFlow 2.21 printed them here, importing itself and running float16 ops
TF_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796061437.113201    3457 port.cc:153] oneDNN custom operations are on. You may see "
    b"slightly different numerical results due to floating-point round-off errors.",
    b"I0000 00:00:1796061437.164936    3457 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow "
    b"with the appropriate compiler flags.",
    b"E0000 00:00:1796061440.433270    3457 util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512.",
    b"W1130 17:51:02.123456   12345 cuda_executor.cc:1309] could not find cuda drivers",
]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", CI="1", PYTHONPATH=str(ROOT))
    for name in (LOG_LEVEL, "BCE_AUDIT_DEBUG"):
        env.pop(name, None)
    env.update(extra)
    return env


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bce_audit", *args]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300, cwd=cwd)


def test_the_noise_is_tensorflows_log_lines_below_fatal_and_nothing_else():
    assert all(is_noise(line) for line in TF_LINES)
    kept = [
        b"F0000 00:00:1796061440.433270    3457 util.cc:131] a fatal error",  # fatal stays
        b"bce-audit: warning: something",
        b"I think therefore I am",
        b"Traceback (most recent call last):",
        b"",
    ]
    assert not any(is_noise(line) for line in kept)


def test_quiet_tensorflow_drops_the_noise_passes_the_rest_in_order_and_restores_the_environment(capfd):
    os.environ.pop(LOG_LEVEL, None)
    with quiet_tensorflow():
        assert os.environ[LOG_LEVEL] == "3"
        os.write(2, b"\n".join([TF_LINES[0], b"first", TF_LINES[1], b"second", TF_LINES[4]]) + b"\nlast, unended")
    assert LOG_LEVEL not in os.environ
    assert capfd.readouterr().err == "first\nsecond\nlast, unended"


def test_a_level_the_user_set_is_theirs_and_so_is_every_line(capfd, monkeypatch):
    monkeypatch.setenv(LOG_LEVEL, "0")
    with quiet_tensorflow():
        assert os.environ[LOG_LEVEL] == "0"
        os.write(2, TF_LINES[1] + b"\n")
    assert os.environ[LOG_LEVEL] == "0"
    assert capfd.readouterr().err == TF_LINES[1].decode() + "\n"


@needs_tensorflow
def test_a_sweep_on_tensorflow_prints_only_its_own_lines(tmp_path):
    args = ["sweep", "-f", "tf-sigmoid-ce", "-d", "float16", "-d", "float32", "--points", "50"]
    if importlib.util.find_spec("keras") is not None:
        args += ["-f", "keras-bce"]
    proc = subprocess.run(
        [sys.executable, "-m", "bce_audit", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "tf-sigmoid-ce" in proc.stdout


@needs_tensorflow
def test_a_users_tensorflow_module_in_the_sandbox_prints_only_its_own_lines(tmp_path):
    (tmp_path / "tfloss.py").write_text(
        "import sys\n"
        "import tensorflow as tf\n"
        "import bce_audit\n"
        "print('the user print at import', file=sys.stderr)\n\n"
        "@bce_audit.formulation(domain='logits', engine='tensorflow')\n"
        "def tfbce(z, y):\n"
        "    return tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)\n"
    )
    args = ["sweep", "--impl", "tfloss.py:tfbce", "-d", "float16", "--points", "50"]
    proc = subprocess.run(
        [sys.executable, "-m", "bce_audit", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    # printed once per process that loads it (the sandbox's children), and nothing else
    assert set(proc.stderr.splitlines()) == {"the user print at import"}, proc.stderr


@needs_tensorflow
def test_the_engine_leaves_a_level_the_user_set(tmp_path):
    code = "import os\nimport bce_audit.engines.tensorflow_engine\nprint(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
    for given, want in ((None, "None"), ("1", "1")):
        env = _env() if given is None else _env(TF_CPP_MIN_LOG_LEVEL=given)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == want
