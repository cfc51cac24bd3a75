"""The careful decode: items decoded exactly into dicts (ints exact, JSON floats as Decimal) become
the same Rows as the typed decode gives (`sync.records.wire`).

It takes what the typed decode refuses: keys in either casing, mixed within a page or a row (the
PascalCase key wins; the other goes to `extra`), unknown fields (kept, as compact JSON, in
`extra`), and values of other types, converted exactly where that is sure (ids and figures sent
as strings of digits or integral decimals, numbers sent for text) and otherwise dropped and kept
aside in `Row.odd` for the mapper to report. Text is made storable for PostgreSQL: NUL and lone
surrogates become U+FFFD, and the row is marked repaired.

Speed still matters (every page goes this way while the platform sends a new field): each item
first tries a quick check that its values are already of their types; any item it is not sure
of is converted value by value, which gives the same Row for every item the check accepts.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from decimal import Decimal
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

from sync.db.schema import FIGURE_COLUMNS, TEXT_COLUMNS
from sync.errors import ContractError
from sync.records.wire import COLUMNS, ENDPOINT, KEYS, Odd, Row

# Every accepted key -> (position among the mapped columns, preference rank).
_KEY_SLOT: dict[str, tuple[int, int]] = {
    key: (COLUMNS.index(column), rank)
    for column, keys in KEYS.items()
    for rank, key in enumerate(keys)
}

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
# Publish times that datetime can hold: 0001-01-01 00:00:00 to 9999-12-31 23:59:59 UTC.
_PUBLISH_MIN, _PUBLISH_MAX = -62135596800, 253402300799
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"-?[0-9]+")

Values = tuple[Any, ...]

# How to read items with one set of keys: its size, a function giving the mapped values in
# column order (KeyError when a key is absent), and the keys stored in `extra`, sorted.
_Layout = tuple[int, Callable[[dict[str, Any]], Values], tuple[str, ...]]


@functools.lru_cache(maxsize=64)
def _layout(keys: frozenset[str]) -> _Layout:
    chosen: dict[int, tuple[int, str]] = {}
    for key in keys:
        slot = _KEY_SLOT.get(key)
        if slot is not None and (slot[0] not in chosen or slot[1] < chosen[slot[0]][0]):
            chosen[slot[0]] = (slot[1], key)
    picked = [chosen[i][1] if i in chosen else None for i in range(len(COLUMNS))]
    extra = tuple(sorted(keys - {k for k in picked if k is not None}))
    if None not in picked:
        values: Callable[[dict[str, Any]], Values] = itemgetter(*picked)
    else:

        def values(item: dict[str, Any]) -> Values:
            return tuple(None if k is None else item[k] for k in picked)

    return len(keys), values, extra


def clean(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD (the same object when clean)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")  # much faster than the regex on clean text
        except UnicodeEncodeError:
            text = _SURROGATE.sub("\ufffd", text)
    return text


def _exact_id(value: object) -> int | None:
    if type(value) is int:
        return value if _I64_MIN <= value <= _I64_MAX else None
    if type(value) is str and len(value) <= 19 and _DIGITS.fullmatch(value):
        number = int(value)
        return number if number <= _I64_MAX else None
    return None  # floats and Decimals may have lost digits; bools are not ids


def _as_text(value: object) -> str | None:
    if type(value) is str:
        return clean(value)
    if type(value) is int or type(value) is Decimal:
        return str(value)  # a number sent for text, such as DouyinID
    return None


def _as_int(value: object) -> int | None:
    """An int, an integral Decimal or a string of digits as an int (beyond 19 digits: None)."""
    if type(value) is int:
        return value
    if type(value) is Decimal and value.is_finite() and value == value.to_integral_value():
        return int(value) if value.adjusted() < 19 else None
    if type(value) is str and len(value) <= 20 and _SIGNED_DIGITS.fullmatch(value):
        return int(value)
    return None


def _as_int64(value: object) -> int | None:
    number = _as_int(value)
    return number if number is not None and _I64_MIN <= number <= _I64_MAX else None


def _as_seconds(value: object) -> int | None:
    seconds = _as_int(value)
    return seconds if seconds is not None and _PUBLISH_MIN <= seconds <= _PUBLISH_MAX else None


def _json(value: object, dirty: list[bool]) -> str:
    """Compact JSON text of a decoded value; Decimals exact, text cleaned (dirty[0] set)."""
    if type(value) is str:
        text = clean(value)
        if text is not value:
            dirty[0] = True
        return encode_basestring(text)
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is Decimal:  # exact; NaN and infinities are not JSON numbers
        return str(value) if value.is_finite() else encode_basestring(str(value))
    if type(value) is float:
        return repr(value) if math.isfinite(value) else encode_basestring(repr(value))
    if isinstance(value, dict):
        pairs = [_json(str(k), dirty) + ":" + _json(v, dirty) for k, v in value.items()]
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(v, dirty) for v in value) + "]"
    return _json(str(value), dirty)


def _extra(item: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, bool]:
    """The JSON text of the fields we do not map, and whether any text in it was repaired."""
    dirty = [False]
    return _json({k: item[k] for k in keys}, dirty), dirty[0]


def _usual_texts(values: Values) -> list[str | None] | None:
    """Texts that are str, null or a number (as its text); None when one is anything else."""
    out: list[str | None] = []
    for value in values:
        if value is None or type(value) is str:
            out.append(value)
        elif type(value) is int or type(value) is Decimal:
            out.append(str(value))
        else:
            return None
    return out


def _usual_row(v: Values, extra: str | None) -> Row | None:
    """The Row when every value is already of its type and clean; None to convert."""
    vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, dd, f0, f1, f2, f3, f4, f5, f6, ep = v
    if not (
        type(vid) is type(tid) is type(pt) is int
        and type(f0) is type(f1) is type(f2) is type(f3) is int
        and type(f4) is type(f5) is type(f6) is int
        and 0 <= pt <= _PUBLISH_MAX
        # ids and figures all within [0, 2**63): their bitwise or has no bit from 63 up
        and not (vid | tid | f0 | f1 | f2 | f3 | f4 | f5 | f6) >> 63
    ):
        return None
    try:
        text = "".join((t0, t1, t2, t3, t4, t5, t6))
    except TypeError:  # a null, or a number sent for text (DouyinID)
        texts = _usual_texts((t0, t1, t2, t3, t4, t5, t6))
        if texts is None:
            return None
        t0, t1, t2, t3, t4, t5, t6 = texts
        text = "".join(filter(None, texts))
    if "\x00" in text:
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return None
    return Row(vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, dd, f0, f1, f2, f3, f4, f5, f6, ep, extra)


def _converted_row(v: Values, extra: str | None, repaired: bool) -> Row:
    """The Row of values of any type: converted exactly where that is sure, else dropped."""
    odd = Odd(repaired=repaired)

    def convert(i: int, column: str, to: Callable[[Any], Any]) -> Any:
        result = to(v[i])
        if result is None and v[i] is not None:
            odd.dropped[column] = v[i]
        return result

    vid, tid = convert(0, "video_id", _exact_id), convert(1, "task_id", _exact_id)
    texts = [convert(i, c, _as_text) for i, c in enumerate(TEXT_COLUMNS, 2)]
    if any(type(v[i]) is str and t is not v[i] for i, t in enumerate(texts, 2)):
        odd.repaired = True
    published = convert(9, "publish_time", _as_seconds)
    figures = [convert(i, c, _as_int64) for i, c in enumerate(FIGURE_COLUMNS, 11)]
    values = (vid, tid, *texts, published, v[10], *figures, v[18], extra, odd)
    return Row(*values)


def rows_from_items(items: list[Any], log_id: str | None) -> list[Row]:
    """The Rows of a page's items, in order (items the mapper will reject included).

    Raises ContractError (with the page's `log_id`) when an item is not an object.
    """
    rows: list[Row] = []
    append = rows.append
    size, values, extra_keys = _layout(frozenset())
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise ContractError(
                f"item {index} of video_daily_data_list is {type(item).__name__}, not an object",
                endpoint=ENDPOINT,
                log_id=log_id,
            )
        try:
            if len(item) != size:
                raise KeyError
            v = values(item)
            extra, dirty = _extra(item, extra_keys) if extra_keys else (None, False)
        except KeyError:  # another set of keys than the previous item's
            size, values, extra_keys = _layout(frozenset(item))
            v = values(item)
            extra, dirty = _extra(item, extra_keys) if extra_keys else (None, False)
        row = None if dirty else _usual_row(v, extra)
        append(row if row is not None else _converted_row(v, extra, dirty))
    return rows
