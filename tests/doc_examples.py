"""The console examples of the README and of docs/: found, run, and compared (or rewritten).

A fenced ``console`` block whose first line starts with ``$ `` is an example. Each ``$ `` line is
a command; the lines up to the next ``$ `` line are what it prints (standard output and error,
interleaved as a terminal shows them). Only ``bce-audit`` commands are run, with any leading
``NAME=value`` assignments as their environment; ``; echo "exit $?"`` after a command adds its
exit code as a last line. Timings (``1.9 s``) are the only thing masked.

The figures depend on the last bit of torch's CPU kernels (exp, log1p, sigmoid...), and those
differ between machines: between AVX2 and AVX512 builds of a kernel, and between processors. So
``--update`` also records a fingerprint of the kernels that printed the examples
(``kernel_fingerprint``: torch's outputs and gradients for the ops the built-ins use, hashed) in
``KERNELS_FILE``. On a machine with the same fingerprint every example must match exactly; on
another, an example that differs is skipped with the reason and the diff, never passed.

Commands run in the repository's root, or, after an ``<!-- example-dir: PATH -->`` comment, in
a fresh copy of that directory (PATH relative to the repository; ``.`` goes back to the root),
shared by the commands of one block, so that a block can make a file and use it.

    python tests/doc_examples.py --update      # rewrite every example with what the tool prints now
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_DIR_COMMENT = re.compile(r"<!--\s*example-dir:\s*(\S+)\s*-->")
_TIMING = re.compile(r"\b\d+\.\d+ s\b")
_EXIT_SUFFIX = '; echo "exit $?"'
KERNELS_FILE = ROOT / "tests" / "doc_examples_kernels.txt"
ENV = {"NO_COLOR": "1", "CI": "1", "BCE_AUDIT_DEBUG": None, "GITHUB_ACTIONS": None}


@dataclasses.dataclass
class Command:
    line: str  # the text after "$ "
    expected: list[str]


@dataclasses.dataclass
class Example:
    path: Path
    start: int  # index of the first line inside the block
    end: int  # index of the closing fence
    directory: str  # "." or a path relative to the repository
    commands: list[Command]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.start}"


def examples(paths=DOCUMENTS) -> list[Example]:
    found = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        directory, i = ".", 0
        while i < len(lines):
            match = _DIR_COMMENT.search(lines[i])
            if match:
                directory = match.group(1)
            if lines[i].strip() == "```console" and i + 1 < len(lines) and lines[i + 1].startswith("$ "):
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
                commands: list[Command] = []
                for line in lines[i + 1 : end]:
                    if line.startswith("$ "):
                        commands.append(Command(line[2:], []))
                    else:
                        commands[-1].expected.append(line)
                found.append(Example(path, i + 1, end, directory, commands))
                i = end
            i += 1
    return found


def mask(text: str) -> str:
    return _TIMING.sub("<time> s", text)


def run(example: Example) -> list[list[str]]:
    """What each command of the example prints now, line by line."""
    from click.testing import CliRunner

    from bce_audit.cli import main

    work = Path(tempfile.mkdtemp(prefix="bce-audit-example-"))
    cache = Path(tempfile.mkdtemp(prefix="bce-audit-example-cache-"))
    if example.directory == ".":
        cwd = ROOT
    else:
        cwd = work / "example"
        shutil.copytree(ROOT / example.directory, cwd)
    outputs = []
    old = os.getcwd()
    os.chdir(cwd)
    try:
        for command in example.commands:
            line, show_exit = command.line, command.line.endswith(_EXIT_SUFFIX)
            if show_exit:
                line = line[: -len(_EXIT_SUFFIX)]
            words = shlex.split(line)
            env = dict(ENV, BCE_AUDIT_CACHE_DIR=str(cache))
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if not words or words[0] != "bce-audit":
                raise ValueError(f"{example.id}: only bce-audit commands are run, not {command.line!r}")
            result = CliRunner(env=env).invoke(main, words[1:])
            lines = result.output.splitlines()
            if show_exit:
                lines.append(f"exit {result.exit_code}")
            outputs.append(lines)
    finally:
        os.chdir(old)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return outputs


@functools.cache
def kernel_fingerprint() -> str:
    """A hash of torch's outputs and gradients, in all four dtypes, for the ops the built-ins and
    the documented user formulations are made of, on 30,003 inputs in one batch (the vectorized
    body, as in a sweep): two machines with the same fingerprint print the same figures."""
    import numpy as np
    import torch

    functional = torch.nn.functional
    x = np.concatenate([np.linspace(-110, 110, 22001), np.geomspace(1e-4, 1e4, 4001), -np.geomspace(1e-4, 1e4, 4001)])
    digest = hashlib.sha256()
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        z = torch.tensor(x, dtype=dtype, requires_grad=True)
        p = torch.sigmoid(z.detach()).clamp(1e-3, 1 - 1e-3).requires_grad_(True)
        outputs = [
            torch.exp(z),
            torch.log1p(torch.exp(-z.abs())),
            torch.log(torch.sigmoid(z)),
            functional.logsigmoid(z),
            functional.softplus(z),
            torch.log(p),
            torch.log1p(-p),
            torch.log(1 - p),
        ]
        for y in (0.0, 1.0):
            target = torch.full_like(p, y).detach()
            outputs.append(functional.binary_cross_entropy_with_logits(z, target, reduction="none"))
            outputs.append(functional.binary_cross_entropy(p, target, reduction="none"))
        for output in outputs:
            digest.update(output.detach().double().numpy().tobytes())
            leaves = _leaves(output)
            wrt = [v for v in (z, p) if any(v is leaf for leaf in leaves)]
            for grad in torch.autograd.grad(output.sum(), wrt):
                digest.update(grad.double().numpy().tobytes())
    return digest.hexdigest()[:16]


def _leaves(output) -> list:
    """The leaf tensors an output depends on (to differentiate by exactly those)."""
    found, todo = [], [output.grad_fn]
    while todo:
        node = todo.pop()
        if node is None:
            continue
        if hasattr(node, "variable"):
            found.append(node.variable)
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    return found


def recorded_fingerprint() -> str | None:
    """The fingerprint of the kernels that printed the documents' examples."""
    return KERNELS_FILE.read_text(encoding="utf-8").split()[0] if KERNELS_FILE.exists() else None


def update(paths=DOCUMENTS) -> None:
    """Rewrite every example's output with what the tool prints now, and record the kernels."""
    import torch

    KERNELS_FILE.write_text(
        f"{kernel_fingerprint()}  torch {torch.__version__}, cpu_capability "
        f"{torch.backends.cpu.get_cpu_capability()}: the kernels that printed the documents' examples\n",
        encoding="utf-8",
    )
    for path in paths:
        mine = [e for e in examples([path])]
        if not mine:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for example in reversed(mine):  # from the end, so earlier line numbers stay valid
            block = []
            for command, output in zip(example.commands, run(example), strict=True):
                block.append("$ " + command.line)
                now = [line.rstrip() for line in output]
                # an example whose only change is a timing keeps the time it shows (no churn)
                same = mask("\n".join(now)) == mask("\n".join(line.rstrip() for line in command.expected))
                block.extend(command.expected if same else now)
            lines[example.start : example.end] = block
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"updated {len(mine)} examples in {path.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        print(__doc__)
