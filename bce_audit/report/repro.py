"""Standalone pytest files that reproduce a failing case (``--repro DIR``, ``bce_audit.write_repro``).

One file per failing case (``sweep.reproduce.FailingCase``), one test per chosen point. Each file
needs torch and pytest only: it holds the input, the label and the expected value as exact hex
floats, the formulation's code (a built-in's torch code inlined from ``engines/torch_builtins.py``;
a user's function imported from its target), the domain adapter the audit applies, and the same
judgement of a point as the audit (``sweep.metrics.point_status``), so that the test fails, with
the status and the ULP error in its message, exactly where the audit says the point fails.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import math
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bce_audit.formulations.interface import Formulation
from bce_audit.report import numbers
from bce_audit.sweep.reproduce import FailingCase, FailingPoint
from bce_audit.sweep.result import CaseKey
from bce_audit.vocabulary import Domain, Quantity

# A file name is at most this long (most file systems allow 255 bytes).
_MAX_NAME = 120
# Inputs per line when a file holds the audit's whole batch.
_PER_LINE = 3


def file_stem(key: CaseKey) -> str:
    """``test_`` and the case key in lowercase letters, digits and underscores: a valid module
    name for pytest, and a safe file name anywhere. Too long a key is cut and given a hash."""
    parts = [
        key.formulation,
        *key.variant.values(),
        key.domain,
        key.dtype,
        f"y{numbers.label(key.label)}",
        key.quantity,
    ]
    stem = "test_" + "_".join(re.sub(r"[^a-z0-9]+", "_", p.lower()).strip("_") for p in parts)
    if len(stem) > _MAX_NAME:
        stem = stem[: _MAX_NAME - 9] + "_" + _digest(key)
    return stem


def _digest(key: CaseKey) -> str:
    return hashlib.sha256(str(key).encode("utf-8")).hexdigest()[:8]


def file_names(cases: list[FailingCase]) -> list[str]:
    """A distinct file name for each case, in order: ``file_stem`` plus, for a stem two keys
    share (``a-b`` and ``a_b``), a hash of the key."""
    stems = [file_stem(c.case.key) for c in cases]
    shared = {s for s in stems if stems.count(s) > 1}
    return [f"{s}_{_digest(c.case.key)}.py" if s in shared else f"{s}.py" for s, c in zip(stems, cases, strict=True)]


# --------------------------------------------------------------------------- the formulation's code


def _builtin_code(implementation: str) -> tuple[str, str]:
    """(source of the function and of every function of its module it calls, its name), read
    from the module's file (not imported: the source is the contract)."""
    module, _, name = implementation.partition(":")
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    text = Path(spec.origin).read_text(encoding="utf-8")
    tree = ast.parse(text)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    needed: set[str] = set()

    def need(fn: str) -> None:
        needed.add(fn)
        for node in ast.walk(functions[fn]):
            if isinstance(node, ast.Name) and node.id in functions and node.id not in needed:
                need(node.id)

    need(name)
    sources = [
        ast.get_source_segment(text, f) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in needed
    ]
    return "\n\n\n".join(s for s in sources if s), name


def _call(function: str, parameters: tuple[tuple[str, Any], ...]) -> str:
    args = ["x", "y", *(f"{k}={v!r}" for k, v in parameters)]
    return f"{function}({', '.join(args)})"


def _code(formulation: Formulation) -> tuple[str, str, str]:
    """(what the code is, the code defining it, the expression that calls it on x, y)."""
    parameters = formulation.parameters
    if formulation.implementation is not None:
        source, name = _builtin_code(formulation.implementation)
        what = f"bce-audit's built-in {formulation.name!r}: its torch code, as the audit runs it"
        return what, source, _call(name, parameters)
    spec = formulation.spec
    if spec is not None:
        location, _, attr = spec.target.rpartition(":")
        from bce_audit.formulations.user import source_file

        file = source_file(spec)
        if file is not None:
            path = str(file.resolve())
            load = (
                f"_SOURCE = {path!r}\n"
                "sys.path.insert(0, os.path.dirname(_SOURCE))\n"
                "_spec = importlib.util.spec_from_file_location(os.path.basename(_SOURCE)[:-3], _SOURCE)\n"
                "assert _spec is not None and _spec.loader is not None\n"
                "_module = importlib.util.module_from_spec(_spec)\n"
                "_spec.loader.exec_module(_module)\n"
            )
        else:
            where = "" if spec.base_dir is None else f"sys.path.insert(0, {spec.base_dir!r})\n"
            load = f"{where}_module = importlib.import_module({location!r})\n"
        load += (
            "user_function = _module\n"
            f"for _part in {attr!r}.split('.'):\n"
            "    user_function = getattr(user_function, _part)\n"
        )
        what = f"your function, imported from its target {spec.target!r} as the audit imports it"
        return (
            what,
            "import importlib\nimport importlib.util\nimport os\nimport sys\n\n" + load,
            _call("user_function", parameters),
        )
    assert formulation.function is not None
    return _callable_code(formulation.function, parameters)


def _callable_code(fn: Callable[..., Any], parameters: tuple[tuple[str, Any], ...]) -> tuple[str, str, str]:
    """A Python callable given to the API: imported from its module when it can be, else its
    source inlined (decorators dropped: they only named it for the audit)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if module and module != "__main__" and "<" not in qualname:
        load = f"import importlib\n\nuser_function: Any = importlib.import_module({module!r})\n"
        load += f"for _part in {qualname!r}.split('.'):\n    user_function = getattr(user_function, _part)\n"
        return (
            f"your function {module}.{qualname}, imported",
            "from typing import Any\n\n" + load,
            _call("user_function", parameters),
        )
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        source = (
            "# its source could not be found: paste the function here\n"
            "def user_function(x, y, **kw):\n"
            "    raise NotImplementedError\n"
        )
        return "your function (source not found)", source, _call("user_function", parameters)
    tree = ast.parse(source)
    node = tree.body[0]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
        source = "\n".join(source.splitlines()[node.lineno - 1 :]) + "\n"
    name = node.name if isinstance(node, ast.FunctionDef) else "user_function"
    what = f"your function {qualname}, its source inlined (it lives in {module})"
    return what, "import torch.nn.functional as F\n\n" + source.rstrip(), _call(name, parameters)


def _adapter(formulation: Formulation, domain: Domain, call: str) -> tuple[str, str]:
    """(the body of loss(x, y), why) for x in the audit's domain."""
    native = formulation.native_domain
    if native is domain:
        return f"return {call}", f"{formulation.name} takes {native} itself"
    convert = "torch.sigmoid(x)" if domain is Domain.LOGITS else "torch.logit(x)"
    why = f"{formulation.name} takes {native}: the audit feeds it {convert} (part of what is audited)"
    return f"x = {convert}\n    return {call}", why


# --------------------------------------------------------------------------- the file


_CHECK = '''

def ulp_error(got: float, expected: float) -> float:
    """|got - expected| in units in the last place of the expected value in DTYPE (ulp(0) is the
    smallest subnormal), as bce-audit measures it."""
    mantissa, exponent = math.frexp(abs(expected))  # |expected| = m * 2**e, m in [0.5, 1)
    ulp = 2.0 ** ((max(exponent - 1, EMIN) if expected != 0 else EMIN) - PRECISION + 1)
    difference = abs(got - expected)
    if math.isinf(difference):  # opposite signs near the top of float64
        return min(2 * (abs(got * 0.5 - expected * 0.5) / ulp), sys.float_info.max)
    return min(difference / ulp, sys.float_info.max)


def failure(got: float, expected: float) -> str | None:
    """Why ``got`` fails against the exact ``expected``, as bce-audit judges a point (status:
    nan, inf, zero, inaccurate); None when it is within ULP_THRESHOLD."""
    shown = f"got {got!r} ({got.hex()}), expected {expected!r} ({expected.hex()})"
    if math.isnan(expected):
        return None if math.isnan(got) else f"inaccurate: {shown}: the exact value is undefined"
    if math.isnan(got):
        return f"nan: ULP error undefined: {shown}"
    if math.isinf(got) and math.isfinite(expected):
        return f"inf: ULP error undefined: {shown}"
    if math.isinf(expected):
        if got == expected:
            return None
        status = "zero" if got == 0 else "inaccurate"
        return f"{status}: ULP error undefined (the exact value is {expected!r}): {shown}"
    error = ulp_error(got, expected)
    if got == 0 and expected != 0:
        return f"zero: ULP error {error:.4g} (threshold {ULP_THRESHOLD:g}): {shown}"
    if error > ULP_THRESHOLD:
        return f"inaccurate: ULP error {error:.4g} > threshold {ULP_THRESHOLD:g}: {shown}"
    return None
'''


def _evaluate_code(quantity: Quantity) -> str:
    if quantity is Quantity.LOSS:
        result = "float(out.detach()[index])"
        what = "the loss"
    else:
        result = "float(grad[index])"
        what = "the derivative of the loss by x (autograd, seeded with ones as the audit does)"
    backward = (
        "    (grad,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out))\n"
        if quantity is Quantity.GRAD
        else ""
    )
    return (
        "def evaluate(inputs: list[float], index: int) -> float:\n"
        f'    """{what} at inputs[index];\n    every input evaluated in one call, as the audit does."""\n'
        "    # each input is a value of DTYPE: the conversion is exact\n"
        "    x = torch.tensor(inputs, dtype=torch.float64).to(DTYPE).requires_grad_(True)\n"
        "    y = torch.full_like(x, LABEL)\n"
        "    out = loss(x, y)\n"
        f"{backward}"
        f"    return {result}\n"
    )


def _point_comment(case: FailingCase, point: FailingPoint) -> str:
    dtype = str(case.case.dtype)
    if point.error is not None:
        saw = f"error: the formulation raised {point.error.rstrip('.')}."
    else:
        off = "" if math.isnan(point.ulp_error) else f" ({numbers.figure(point.ulp_error)} ULP off)"
        exact = numbers.exact(point.expected)
        saw = f"{point.status}: {numbers.exact(point.output)} where the exact value is {exact}{off}."
    lines = [f"Chosen as: {', '.join(point.reasons)}. The audit saw {saw}"]
    if point.in_batch and _copies(point):
        lines.append(
            f"This point fails only inside a batch: alone it gives {numbers.exact(point.alone_output)}, "
            "which is within the threshold. torch's vectorized loop body and its scalar tail round "
            f"differently; in a batch of {len(point.batch)} copies of it (the vectorized body, as in "
            "the audit's batch) it fails, so this test evaluates those copies."
        )
    elif point.in_batch:
        lines.append(
            f"This point fails only inside the batch the audit evaluated ({len(point.batch)} {dtype} inputs, "
            f"this one at index {point.index}): alone it gives {numbers.exact(point.alone_output)}, which is "
            "within the threshold. torch's vectorized loop body and its scalar tail round differently, "
            "so the batch is reproduced whole (BATCH below)."
        )
    elif point.alone_output != point.output and point.alone_output == point.alone_output:
        lines.append(
            f"Alone it gives {numbers.exact(point.alone_output)} (the audit's batch gave "
            f"{numbers.exact(point.output)}): it fails either way; this test evaluates it alone."
        )
    else:
        lines.append("It fails evaluated alone, so this test evaluates that one input.")
    return "\n".join(textwrap.wrap(" ".join(lines), 96))


def _copies(point: FailingPoint) -> bool:
    """Whether the point's batch is copies of the point itself (not the audit's batch)."""
    return point.in_batch and all(x == point.input for x in point.batch)


def _test_name(point: FailingPoint) -> str:
    return "test_" + "_and_".join(re.sub(r"[^a-z0-9]+", "_", r.lower()).strip("_") for r in point.reasons)


def render(case: FailingCase, provenance: dict[str, str], file_name: str) -> str:
    """The text of the pytest file for one failing case."""
    key = case.case.key
    dtype = str(case.case.dtype)
    fmt = case.case.dtype.format
    what, code, call = _code(case.formulation)
    body, adapter_why = _adapter(case.formulation, case.case.domain, call)
    variable = "z" if case.case.domain is Domain.LOGITS else "p"
    worst = case.points[0]
    statuses = sorted({str(p.status) for p in case.points})
    header = textwrap.fill(
        f"bce-audit repro: {key}. {len(case.points)} failing point(s) ({', '.join(statuses)}) of this case, "
        f"each a test that fails while the bug is there and passes once the {key.quantity} is within "
        f"{numbers.figure(case.ulp_threshold)} ULP of the exact value.",
        96,
    )
    about = textwrap.fill(
        "Standalone: it needs torch and pytest only. The expected values are bce-audit's exact oracle "
        f"(mpmath, correctly rounded into {dtype}); the input is {variable} in the {key.domain} domain; "
        f"{adapter_why}.",
        96,
    )
    written = ", ".join(f"{k} {provenance[k]}" for k in ("bce_audit", "torch", "cpu_capability") if k in provenance)
    parts = [
        f'"""{header}\n\n{about}\n\nRun: pytest {file_name}\nWritten by {written}.\n"""\n',
        "\nfrom __future__ import annotations\n\nimport math\nimport sys\n\nimport torch\nfrom torch import Tensor\n",
        f"\n\n# The formulation: {what}.\n{code.rstrip()}\n",
        f"\n\ndef loss(x: Tensor, y: Tensor) -> Tensor:\n"
        f'    """The elementwise loss of x, {variable} in the {key.domain} domain."""\n'
        f"    {body}\n",
        f"\n\nDTYPE = torch.{dtype}\n"
        f"PRECISION, EMIN = {fmt.precision}, {fmt.emin}  # {dtype}: significand bits, exponent of the smallest normal\n"
        f"LABEL = {numbers.hex_literal(worst.label)}  # y = {numbers.label(key.label)}, rounded into {dtype}\n"
        f"ULP_THRESHOLD = {case.ulp_threshold!r}  # bce-audit's --ulp-threshold\n",
        _CHECK,
        "\n\n" + _evaluate_code(case.case.quantity),
    ]
    batch = next((p.batch for p in case.points if p.in_batch and not _copies(p)), None)
    for point in case.points:
        doc = _point_comment(case, point)
        inputs = f"[{numbers.hex_literal(point.input)}]"
        if _copies(point):
            inputs += f" * {len(point.batch)}"
        elif point.in_batch:
            inputs = "BATCH"
        parts.append(
            f"\n\ndef {_test_name(point)}() -> None:\n"
            f'    """{variable} = {numbers.exact(point.input)} ({point.input.hex()}).\n\n'
            f"{textwrap.indent(doc, '    ')}\n"
            '    """\n'
            f"    got = evaluate({inputs}, {point.index})\n"
            f"    expected = {numbers.hex_literal(point.expected)}\n"
            "    message = failure(got, expected)\n"
            f'    assert message is None, message + " at {variable} = {point.input.hex()}"\n'
        )
    if batch is not None:
        rows = [
            ", ".join(numbers.hex_literal(x) for x in batch[i : i + _PER_LINE]) for i in range(0, len(batch), _PER_LINE)
        ]
        parts.append(
            f"\n\n# The audit's batch: every finite {dtype} input of the case, in the order evaluated.\n"
            "BATCH = [\n" + "".join(f"    {row},\n" for row in rows) + "]\n"
        )
    return "".join(parts)


def repro_files(cases: list[FailingCase], provenance: dict[str, str]) -> list[tuple[str, str]]:
    """(file name, text) for each failing case."""
    names = file_names(cases)
    return [(name, render(case, provenance, name)) for case, name in zip(cases, names, strict=True)]
