"""Plain-text tables that fit the width they are given, and never drop a column to do it.

A table has *key* columns (what a row is: formulation, domain, ...) and *value* columns. When it
is wider than the width:

1. the value columns are split into groups, and the table is printed once per group, each time
   with the key columns, so every figure keeps its row's name beside it;
2. when the key columns and a single value column are already too wide, each row becomes a block
   of `header: value` lines (a record layout).

With no width (output that is not a terminal, such as a CI log or a pipe, and no COLUMNS), the
table is printed whole, at its natural width: the deliberate layout for machines and logs.
Cells are rich ``Text`` (for colour on a terminal) and may hold several lines.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Set

from rich.cells import cell_len
from rich.text import Text

GAP = 2  # spaces between columns
RULE = "─"

# Line breaks and tabs inside an item become spaces (an item is one line); any other control
# character (a terminal escape sequence in an exception message, say) is written as a visible
# escape, never sent raw to a terminal or a CI log.
_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")


def printable(text: str, keep_breaks: bool = False) -> str:
    """``text`` as one safe line: breaks become spaces (kept with ``keep_breaks``, for formats that
    encode them), other control characters visible escapes such as ``\\x1b``."""
    if not keep_breaks:
        text = _BREAKS.sub(" ", text)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


@dataclasses.dataclass(frozen=True)
class Column:
    """header: the column's title. right: right-justified (numbers). tag: written before a key
    cell's value in the record layout, where the value stands without its header (`y=`)."""

    header: str
    right: bool = False
    tag: str = ""


def _lines(cell: Text | str) -> list[Text]:
    text = cell if isinstance(cell, Text) else Text(str(cell))
    return list(text.split("\n")) if text.plain else [Text("")]


def _width(cells: list[list[Text]], header: str) -> int:
    return max([cell_len(header)] + [cell_len(line.plain) for cell in cells for line in cell])


def _pad(line: Text, width: int, right: bool) -> Text:
    room = width - cell_len(line.plain)
    if room <= 0:
        return line
    return Text(" " * room) + line if right else line + Text(" " * room)


def _table(columns: list[Column], rows: list[list[list[Text]]], breaks: set[int], gap: int) -> list[Text]:
    widths = [_width([row[i] for row in rows], col.header) for i, col in enumerate(columns)]
    sep = Text(" " * gap)

    def join(parts: list[Text]) -> Text:
        line = Text()
        for i, part in enumerate(parts):
            if i:
                line += sep
            line += part
        line.rstrip()
        return line

    out = [join([_pad(Text(c.header), w, c.right) for c, w in zip(columns, widths, strict=True)])]
    out.append(Text(RULE * (sum(widths) + gap * (len(widths) - 1))))
    for r, row in enumerate(rows):
        height = max(len(cell) for cell in row)
        for k in range(height):
            parts = [
                _pad(cell[k] if k < len(cell) else Text(""), w, c.right)
                for cell, c, w in zip(row, columns, widths, strict=True)
            ]
            out.append(join(parts))
        if r in breaks and r != len(rows) - 1:
            out.append(Text(""))
    return out


def table(
    keys: list[Column],
    values: list[Column],
    rows: list[list[Text | str]],
    width: int | None,
    breaks: Set[int] = frozenset(),
    gap: int = GAP,
) -> list[Text]:
    """The lines of the table (or tables) that show ``rows`` within ``width`` columns.

    rows: one list of cells per row, key cells first. breaks: indices of rows after which a
    blank line separates groups of rows. gap: spaces between columns.
    """
    cells = [[_lines(c) for c in row] for row in rows]
    n = len(keys)
    key_width = sum(_width([row[i] for row in cells], c.header) for i, c in enumerate(keys)) + gap * (n - 1)
    value_widths = [_width([row[n + i] for row in cells], c.header) for i, c in enumerate(values)]
    full = key_width + sum(gap + w for w in value_widths)
    if width is None or full <= width or not values:
        return _table(keys + values, cells, set(breaks), gap)
    if any(key_width + gap + w > width for w in value_widths):
        return records(keys, values, cells, width)
    groups: list[list[int]] = [[]]
    used = key_width
    for i, w in enumerate(value_widths):
        if groups[-1] and used + gap + w > width:
            groups.append([])
            used = key_width
        groups[-1].append(i)
        used += gap + w
    out: list[Text] = []
    for g, group in enumerate(groups):
        if g:
            out.append(Text(""))
        sub = [row[:n] + [row[n + i] for i in group] for row in cells]
        out += _table(keys + [values[i] for i in group], sub, set(breaks), gap)
    return out


def records(keys: list[Column], values: list[Column], cells: list[list[list[Text]]], width: int) -> list[Text]:
    """One block per row: the key cells on one line, then `header: value` for each value."""
    n = len(keys)
    out: list[Text] = []
    for r, row in enumerate(cells):
        if r:
            out.append(Text(""))
        title = ", ".join(
            column.tag + line.plain for column, cell in zip(keys, row[:n], strict=True) for line in cell if line.plain
        )
        for piece in textwrap.wrap(title, max(width, 10)) or [""]:
            out.append(Text(piece))
        for column, cell in zip(values, row[n:], strict=True):
            first = Text(f"  {column.header}: ")
            lines = [line for line in cell if line.plain] or [Text("")]
            if cell_len(first.plain) + max(cell_len(line.plain) for line in lines) + 3 * (len(lines) - 1) <= width:
                joined = Text("")
                for i, line in enumerate(lines):
                    joined += (Text("  ") if i else Text("")) + line
                out.append(first + joined)
            else:
                header = first.copy()
                header.rstrip()  # in place
                out.append(header)
                out += [Text("    ") + line for line in lines]
    return out


def wrap(text: str, width: int | None, indent: str = "", rest: str | None = None) -> list[str]:
    """A paragraph within ``width`` columns (one line with no width); words are never split; the
    text is made printable first (see ``printable``)."""
    text = printable(text)
    if width is None:
        return [indent + text]
    return textwrap.wrap(
        text,
        max(width, 20),
        initial_indent=indent,
        subsequent_indent=indent if rest is None else rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]
