"""Every way a number is written, in one place.

Files (CSV, JSON, baselines) write ``exact`` text that parses back to the same float; what people
read (terminal, check's text, Markdown) is short. A finite number is never written as ``inf``,
however it is rounded for reading: the text is formatted from the float directly, never parsed
back and re-rounded.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.vocabulary import FloatFormat


def exact(x: float) -> str:
    """The float as text that parses back to the same value (Python's repr)."""
    return repr(float(x))


def csv_cell(x: float) -> str:
    """An exact number, or an empty cell for "not defined" (NaN: no finite point, no range)."""
    return "" if isinstance(x, float) and math.isnan(x) else exact(x)


def _compact_exponent(text: str) -> str:
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def compact(x: float, digits: int = 6) -> str:
    """At most ``digits`` significant digits and a compact exponent: 4, 0.5, 3e38, 1.646e7."""
    return _compact_exponent(f"{x:.{digits}g}")


def short(x: float) -> str:
    """For tables: three significant digits (0.0528, 926, 1.02e3, 1.66e4), two for tiny or huge
    values (0.00049, 9.1e-5, 3.4e38), and values just below 1 as 1-d, so 0.9995 does not read
    as 1."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 0.99 < x < 1:
        return f"1-{short(1 - x)}"
    if 1e-3 <= abs(x) < 1e5:
        return compact(x, 3)
    return compact(x, 2)


def apart(a: float, b: float) -> tuple[str, str]:
    """``short`` texts of two values, with more digits where those would read the same for
    different values (got 0.09999990463256836, want 0.10000002384185791: not 0.1 and 0.1)."""
    ta, tb = short(a), short(b)
    same = a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if ta != tb or same or math.isnan(a) or math.isnan(b):
        return ta, tb
    for digits in range(4, 18):
        ta, tb = compact(a, digits), compact(b, digits)
        if ta != tb:
            return ta, tb
    return repr(a), repr(b)  # -0.0 and 0.0


def stat(x: float) -> str:
    """A figure in a table: `-` when it is not defined (NaN)."""
    return "-" if isinstance(x, float) and math.isnan(x) else short(x)


def value(x: float, largest: float = math.inf) -> str:
    """An input or an end of a range: the dtype's largest finite value is written `max`."""
    if not math.isnan(x) and abs(x) == largest:
        return "-max" if x < 0 else "max"
    return short(x)


def interval(lo: float, hi: float, largest: float = math.inf, but: float | None = None) -> str:
    """A stable range, `[lo, hi]`, or `none` when there is none. but: a value inside that is not
    ok (the centre, when it alone fails): `[lo, hi] but 0`, and `all but 0` for [-max, max]."""
    if math.isnan(lo) or math.isnan(hi):
        return "none"
    if but is not None:
        if lo == -largest and hi == largest:
            return f"all but {short(but)}"
        return f"[{value(lo, largest)}, {value(hi, largest)}] but {short(but)}"
    return f"[{value(lo, largest)}, {value(hi, largest)}]"


def figure(x: float) -> str:
    """A gated figure or a bound in check's reports: counts as integers, floats with 4
    significant digits, NaN as `undefined`."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    x = float(x)
    if math.isnan(x):
        return "undefined"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e7:
        return str(int(x))
    return compact(x, 4)


def json_number(x: float) -> float | str:
    """A float as strict JSON holds it: itself, or "inf", "-inf", "nan" (which float() parses back)."""
    return x if math.isfinite(x) else repr(float(x))


def json_safe(x: Any) -> Any:
    """Every float inside lists and dicts as ``json_number`` has it (reports, settings)."""
    if isinstance(x, float):
        return json_number(x)
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, dict):  # a user formulation's parameters may be inf
        return {k: json_safe(v) for k, v in x.items()}
    return x


def count(n: int, noun: str) -> str:
    """``1 case``, ``2 cases``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def label(y: float) -> str:
    """A label as short as it reads, but never two labels as one text (0.1, 1, 0.30000000000000004)."""
    text = f"{y:g}"
    return text if float(text) == y else repr(y)


def hex_literal(x: float) -> str:
    """Python source that is exactly this float, whatever it is (±0, subnormals, ±inf, NaN):
    ``float.fromhex('0x1.8p-3')``, for files that must hold a value without any rounding."""
    return f'float.fromhex("{float(x).hex()}")'


def in_format(x: float, fmt: FloatFormat) -> str:
    """A value of a dtype in the fewest digits that round back to it in that dtype (0.99999994 in
    float32, 0.5 in float16); NaN, inf and -inf by name."""
    from bce_audit.floats import round_float

    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    for digits in range(1, 18):
        text = f"{x:.{digits}g}"
        if round_float(float(text), fmt) == x:
            if "e" in text and 1e-4 <= abs(x) < 1e7:  # 100, not 1e2
                text = f"{x:.{max(0, digits - 1 - math.floor(math.log10(abs(x))))}f}"
            return _compact_exponent(text)
    return exact(x)


def beside(x: float, other: float, fmt: FloatFormat) -> str:
    """An exact value shown beside a rounded one: the dtype's own decimal digits, and more until
    the text differs from the rounded value (0.99999994 beside 1 in float32)."""
    if math.isnan(x) or math.isinf(x):
        return in_format(x, fmt)
    digits = max(2, math.ceil(fmt.precision * math.log10(2)))
    text = compact(x, digits)
    shown = in_format(other, fmt)
    while digits < 17 and text == shown and x != other:
        digits += 1
        text = compact(x, digits)
    return text
