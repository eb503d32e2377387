"""Every console example in the README and in docs/ is what the tool prints (timings masked).

When the output changes on purpose, `python tests/doc_examples.py --update` rewrites them.
"""

from __future__ import annotations

import pytest
from doc_examples import examples, mask, run

EXAMPLES = examples()


def test_the_documents_have_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_prints_what_the_document_shows(example):
    for command, output in zip(example.commands, run(example), strict=True):
        expected = mask("\n".join(line.rstrip() for line in command.expected))
        got = mask("\n".join(line.rstrip() for line in output))
        assert got == expected, f"$ {command.line}\n(run `python tests/doc_examples.py --update` if this is on purpose)"
