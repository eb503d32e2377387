"""Every console example in the README and in docs/ is what the tool prints (timings masked).

When the output changes on purpose, `python tests/doc_examples.py --update` rewrites them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from doc_examples import examples, kernel_fingerprint, mask, recorded_fingerprint, run

EXAMPLES = examples()


def test_the_documents_have_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_prints_what_the_document_shows(example):
    for command, output in zip(example.commands, run(example), strict=True):
        expected = mask("\n".join(line.rstrip() for line in command.expected))
        got = mask("\n".join(line.rstrip() for line in output))
        if got != expected and kernel_fingerprint() != recorded_fingerprint():
            pytest.skip(
                f"torch's kernels here round differently from those that printed {example.id} "
                f"(fingerprint {kernel_fingerprint()}, not {recorded_fingerprint()}): $ {command.line}"
            )
        assert got == expected, f"$ {command.line}\n(run `python tests/doc_examples.py --update` if this is on purpose)"


def test_the_kernel_fingerprint_tells_kernels_apart():
    """The fingerprint must see a difference as small as the one between two CPU builds of the
    same kernels: the portable DEFAULT build against the vectorized one this machine picks."""
    probe = "import doc_examples; print(doc_examples.kernel_fingerprint())"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "PYTHONPATH": str(Path(__file__).parent)}
    portable = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert len(kernel_fingerprint()) == 16
    assert portable.stdout.strip() != kernel_fingerprint()
