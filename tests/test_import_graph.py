"""The shape of the package: no import cycle between modules, each framework in its own package,
and a light public API.

Every import counts: at the top of a module, inside a function (a deferred import is still a
dependency) and under ``if TYPE_CHECKING:`` (a type-only cycle is still a tangle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "bce_audit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every module (of this package or not) that ``name`` imports anywhere."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for alias in node.names:
                # `from bce_audit.report import numbers` imports the module bce_audit.report.numbers
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imports(name) if m in MODULES and m != name} for name in MODULES}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    edges = graph()
    # importing a module runs its package's __init__ first, so an edge into a submodule counts as
    # an edge into its subpackage too (the root package's __init__ only re-exports the public API,
    # and runs before anything else of the package, whoever is imported first)
    for name in list(edges):
        for target in list(edges[name]):
            package = target.rpartition(".")[0]
            if package in MODULES and package != "bce_audit" and package != name and not name.startswith(package + "."):
                edges[name].add(package)
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


def _importers(module: str) -> set[str]:
    return {name for name in MODULES if any(m == module or m.startswith(module + ".") for m in imports(name))}


def test_mpmath_only_in_the_oracle():
    assert {n for n in _importers("mpmath") if not n.startswith("bce_audit.oracle")} == set()


def test_torch_only_in_the_engines():
    assert {n for n in _importers("torch") if not n.startswith("bce_audit.engines")} == set()


def test_the_core_knows_nothing_of_the_command_line():
    users = {n for n in _importers("bce_audit.cli") | _importers("click") if not n.startswith("bce_audit.cli")}
    assert users == {"bce_audit.__main__"}  # `python -m bce_audit` is the command line


def test_the_public_api_is_exactly_what_the_package_exports_and_is_light():
    code = (
        "import sys, bce_audit\n"
        "print(sorted(m for m in ('torch', 'mpmath', 'numpy', 'click', 'rich') if m in sys.modules))\n"
        "print(sorted(bce_audit.__all__) == sorted(n for n in vars(bce_audit) if not n.startswith('_') "
        "and not isinstance(vars(bce_audit)[n], type(sys))) or '__version__' in bce_audit.__all__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    heavy, exported = out.splitlines()
    assert heavy == "[]"
    assert exported == "True"


def test_matplotlib_only_in_the_plots():
    """matplotlib is an optional extra (`bce-audit[plot]`): one module draws, and imports it lazily."""
    assert _importers("matplotlib") == {"bce_audit.report.plot"}
    tree = ast.parse(MODULES["bce_audit.report.plot"].read_text(encoding="utf-8"))
    top_level = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top_level |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith("matplotlib") for m in top_level)


# The optional frameworks (extras), and the only modules that may import each.
EXTRA_FRAMEWORKS = {
    "jax": {"bce_audit.engines.jax_engine", "bce_audit.engines.jax_builtins"},
    "jaxlib": set(),
    "optax": {"bce_audit.engines.jax_builtins"},
    "tensorflow": {"bce_audit.engines.tensorflow_engine", "bce_audit.engines.tensorflow_builtins"},
    "keras": {"bce_audit.engines.tensorflow_engine"},
    "ml_dtypes": {"bce_audit.engines.common"},
}


def test_each_extra_framework_only_in_its_own_engine():
    for framework, allowed in EXTRA_FRAMEWORKS.items():
        assert _importers(framework) == allowed, framework


def test_help_and_the_default_sweep_import_no_extra_framework(tmp_path):
    """`bce-audit --help`, then a (small) default sweep, in one fresh process: neither imports JAX,
    TensorFlow, Keras or optax, installed or not."""
    frameworks = sorted(EXTRA_FRAMEWORKS)
    code = (
        "import sys\n"
        "from bce_audit.cli import main\n"
        "def run(args):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
        "run(['--help'])\n"
        f"print('help', sorted(m for m in {frameworks!r} if m in sys.modules))\n"
        f"run(['sweep', '-d', 'float16', '--points', '20', '-y', '0', '--csv', {str(tmp_path / 's.csv')!r}])\n"
        f"print('sweep', sorted(m for m in {frameworks!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600, env=_env(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("help ", "sweep "))]
    assert lines == ["help []", "sweep []"]
    # and the sweep was the default set: every formulation that needs no extra, none that does
    import csv

    from bce_audit.formulations.builtins import DEFAULT

    with open(tmp_path / "s.csv", newline="", encoding="utf-8") as f:
        assert list(dict.fromkeys(row["formulation"] for row in csv.DictReader(f))) == list(DEFAULT)


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "BCE_AUDIT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "100"}
