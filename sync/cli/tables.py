"""Plain-text tables for a terminal, measured in display cells so that Chinese text aligns.

The platform's texts (err_msg, TaskName, creators' update_result) are mostly Chinese: a wide
character takes two cells of a terminal, so a table measured with `len()` shifts every column
after such a cell. Widths come from `unicodedata.east_asian_width`: wide (W) and fullwidth (F)
characters take 2 cells, combining marks and other zero-width characters 0, everything else 1
(ambiguous-width characters as 1, as most terminals outside CJK locales draw them).

    table(["creator", "reason"], rows, right={2}, limits={1: 60})

One layout for every table the CLI prints: a header line, a rule of dashes, one line per row;
two spaces between columns; the columns in `right` (numbers) align right; a cell longer than its
column's limit is cut to fit and ends in "…"; no line has trailing blanks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Mapping, Sequence

ELLIPSIS = "…"
_GAP = "  "
_ZERO_WIDTH_CATEGORIES = frozenset({"Mn", "Me", "Cf"})  # combining marks, format chars (ZWJ…)


def char_width(ch: str) -> int:
    """The display cells of one character: 2, 1 or 0."""
    if unicodedata.category(ch) in _ZERO_WIDTH_CATEGORIES:
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def width(text: str) -> int:
    """The display cells of `text` (one line)."""
    return sum(char_width(ch) for ch in text)


def one_line(text: str) -> str:
    """`text` as one line: runs of whitespace (newlines, tabs) become one space, and other
    control characters, which could move the cursor or recolour a terminal, become U+FFFD."""
    flat = " ".join(text.split())
    if flat.isprintable():
        return flat
    return "".join("\ufffd" if unicodedata.category(ch) == "Cc" else ch for ch in flat)


def clip(text: str, cells: int) -> str:
    """`text` on one line in at most `cells` display cells; when cut it ends in "…" and a wide
    character that would not fit whole is left out (the result may then be a cell narrower)."""
    flat = one_line(text)
    if width(flat) <= cells:
        return flat
    room, used, kept = cells - width(ELLIPSIS), 0, []
    for ch in flat:
        w = char_width(ch)
        if used + w > room:
            break
        kept.append(ch)
        used += w
    return "".join(kept) + ELLIPSIS if cells > 0 else ""


def pad(text: str, cells: int, *, right: bool = False) -> str:
    """`text` filled with spaces to `cells` display cells, on the left when `right`."""
    fill = " " * max(cells - width(text), 0)
    return fill + text if right else text + fill


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    right: Collection[int] = (),
    limits: Mapping[int, int] | None = None,
) -> str:
    """A fixed-width text table: header, rule, rows (cells shown with `str`).

    Columns whose index is in `right` align right; `limits` maps a column's index to the most
    display cells its cells may take (cut with "…").
    """
    limits = limits or {}

    def cell(value: object, i: int) -> str:
        text = str(value)
        return clip(text, limits[i]) if i in limits else one_line(text)

    head = [one_line(h) for h in headers]
    cells = [[cell(v, i) for i, v in enumerate(row)] for row in rows]
    for row in cells:
        if len(row) != len(head):
            raise ValueError(f"a row of {len(row)} cells under {len(head)} headers: {row}")
    widths = [max([width(h), *(width(r[i]) for r in cells)]) for i, h in enumerate(head)]

    def line(values: Sequence[str]) -> str:
        parts = [
            pad(v, w, right=i in right) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return _GAP.join(parts).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in cells)])
