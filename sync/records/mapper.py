"""API items to database records: exact IDs and money, storable text, nothing guessed.

A page's items come either as `wire.TypedRows` (the typed decode already checked every type)
or as dicts decoded from JSON with exact ints and with JSON floats as `Decimal`, whose keys come in
PascalCase (the doc samples) or snake_case (the doc tables and the official SDK). A record is a
tuple in the order of `sync.db.schema.RECORD_COLUMNS`, in the form the bulk path stages it:
publish_time as Unix seconds (int) and expected_profit as its exact decimal text (str), which
asyncpg's binary COPY encodes at a third of the cost of a datetime and a Decimal.

Rows whose video or task id is missing or not an exact 64-bit integer are rejected; any other
doubtful value is stored as NULL (or as given, for negative figures) and noted as an anomaly.
Text is made storable for PostgreSQL: NUL and lone surrogates become U+FFFD.

Speed matters (the product targets 100,000 rows/s end to end): each row first tries a fast path
that only checks types and ranges; any row it is not sure of goes through the careful slow path,
which gives the same record for every row the fast path accepts. Typed rows need only the date and
the profit's sign checked.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

import msgspec

from sync.db.schema import FIGURE_COLUMNS, RECORD_COLUMNS, TEXT_COLUMNS
from sync.errors import ContractError
from sync.records.wire import KEYS, TypedRows

ENDPOINT = "query_task_video_daily_data"
MAX_ANOMALY_TEXTS = 20

# The mapped columns in record order (the record adds billing_date first and extra last).
_COLUMNS = RECORD_COLUMNS[1:-1]
_EXPECTED = ("video_id", "task_id", *TEXT_COLUMNS, "publish_time", "data_date")
if (
    RECORD_COLUMNS[0] != "billing_date"
    or RECORD_COLUMNS[-1] != "extra"
    or (*_EXPECTED, *FIGURE_COLUMNS, "expected_profit") != _COLUMNS
    or set(KEYS) != set(_COLUMNS)
):
    raise ImportError("sync.records.mapper is out of step with sync.db.schema.RECORD_COLUMNS")
# Every accepted key -> (position among the mapped columns, preference rank).
_KEY_SLOT: dict[str, tuple[int, int]] = {
    key: (_COLUMNS.index(column), rank)
    for column, keys in KEYS.items()
    for rank, key in enumerate(keys)
}

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
# Publish times that datetime can hold: 0001-01-01 00:00:00 to 9999-12-31 23:59:59 UTC.
_PUBLISH_MIN, _PUBLISH_MAX = -62135596800, 253402300799
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

Values = tuple[Any, ...]


@dataclass
class MappedPage:
    """The records of one page, and what did not fit."""

    records: list[tuple[object, ...]]
    rejected: int  # rows not stored: video or task id missing or not exact
    sanitized: int  # rows stored with at least one text repaired (NUL, lone surrogate)
    anomalies: list[str]  # short texts, the first MAX_ANOMALY_TEXTS of them
    anomaly_count: int = 0  # every anomaly, including those whose text was not kept


@dataclass
class _Notes:
    texts: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.texts) < MAX_ANOMALY_TEXTS:
            self.texts.append(text)


# How to read items with one set of keys: its size, a function giving the mapped values in
# record order (KeyError when a key is absent), and the keys stored in `extra`, sorted.
_Layout = tuple[int, Callable[[dict[str, Any]], Values], tuple[str, ...]]


@functools.lru_cache(maxsize=64)
def _layout(keys: frozenset[str]) -> _Layout:
    chosen: dict[int, tuple[int, str]] = {}
    for key in keys:
        slot = _KEY_SLOT.get(key)
        if slot is not None and (slot[0] not in chosen or slot[1] < chosen[slot[0]][0]):
            chosen[slot[0]] = (slot[1], key)
    picked = [chosen[i][1] if i in chosen else None for i in range(len(_COLUMNS))]
    extra = tuple(sorted(keys - {k for k in picked if k is not None}))
    if None not in picked:
        values: Callable[[dict[str, Any]], Values] = itemgetter(*picked)
    else:

        def values(item: dict[str, Any]) -> Values:
            return tuple(None if k is None else item[k] for k in picked)

    return len(keys), values, extra


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _clean(text: str) -> str:
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
        return _clean(value)
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


def _as_decimal(value: object) -> Decimal | None:
    if type(value) is int:
        return Decimal(value)
    if type(value) is Decimal:
        return value if value.is_finite() else None
    if type(value) is str and _DECIMAL.fullmatch(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # an exponent beyond what Decimal holds
            return None
    return None


def _as_seconds(value: object) -> int | None:
    seconds = _as_int(value)
    return seconds if seconds is not None and _PUBLISH_MIN <= seconds <= _PUBLISH_MAX else None


def _as_date(value: object) -> dt.date | None:
    if type(value) is str and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _json(value: object, dirty: list[bool]) -> str:
    """Compact JSON text of a decoded value; Decimals exact, text cleaned (dirty[0] set)."""
    if type(value) is str:
        text = _clean(value)
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


def _plain_profit(ep: object) -> str | None:
    """The text of a profit sent as a non-negative int or finite Decimal; None to go slow."""
    if type(ep) is int and ep >= 0:
        return int.__repr__(ep)
    if type(ep) is Decimal and ep.is_finite() and not ep.is_signed():
        return str(ep)
    return None


def _fast_row(
    v: Values, billing_date: dt.date, billing_iso: str, extra: str | None
) -> tuple[Any, ...] | None:
    """The record when every value is of the usual type and clean text; None to go slow."""
    vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, dd, f0, f1, f2, f3, f4, f5, f6, ep = v
    if not (
        type(vid) is type(tid) is type(pt) is int
        and type(f0) is type(f1) is type(f2) is type(f3) is int
        and type(f4) is type(f5) is type(f6) is int
        and dd == billing_iso
        and 0 <= pt <= _PUBLISH_MAX
        # ids and figures all within [0, 2**63): their bitwise or has no bit from 63 up
        and not (vid | tid | f0 | f1 | f2 | f3 | f4 | f5 | f6) >> 63
    ):
        return None
    profit = _plain_profit(ep)
    if profit is None:
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
    return (billing_date, vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, billing_date,
            f0, f1, f2, f3, f4, f5, f6, profit, extra)  # fmt: skip


def _slow_row(
    v: Values,
    index: int,
    billing_date: dt.date,
    extra: str | None,
    dates: dict[str, dt.date],
    notes: _Notes,
) -> tuple[tuple[Any, ...] | None, bool]:
    """The record (None when rejected) and whether any text was repaired, noting anomalies."""
    vid, tid = _exact_id(v[0]), _exact_id(v[1])
    if vid is None or tid is None:
        why = [
            f"{column} " + ("missing" if v[i] is None else f"not an exact int64: {_show(v[i])}")
            for i, column in ((0, "video_id"), (1, "task_id"))
            if _exact_id(v[i]) is None
        ]
        notes.add(f"item {index} rejected: {', '.join(why)}")
        return None, False
    where = f"video {vid} task {tid}"

    def convert(i: int, column: str, to: Callable[[Any], Any], what: str, money: bool) -> Any:
        result = to(v[i])
        if result is None and v[i] is not None:
            notes.add(f"{where}: {column} is not {what}: {_show(v[i])}")
        elif money and result is not None and result < 0:
            notes.add(f"{where}: {column} is negative: {result}")
        return result

    texts = [convert(i, c, _as_text, "text", False) for i, c in enumerate(TEXT_COLUMNS, 2)]
    repaired = any(type(v[i]) is str and t is not v[i] for i, t in enumerate(texts, 2))
    published = convert(9, "publish_time", _as_seconds, "Unix seconds", False)
    data_date = dates.get(v[10]) if type(v[10]) is str else None
    if data_date is None:
        data_date = convert(10, "date", _as_date, "YYYY-MM-DD", False)
        if data_date is not None:
            dates[v[10]] = data_date
    if data_date is not None and data_date != billing_date:
        notes.add(f"{where}: date {data_date} differs from billing date {billing_date}")
    figures = [convert(i, c, _as_int64, "an int64", True) for i, c in enumerate(FIGURE_COLUMNS, 11)]
    profit = convert(18, "expected_profit", _as_decimal, "a number", True)
    profit_text = None if profit is None else str(profit)
    record = (billing_date, vid, tid, *texts, published, data_date, *figures, profit_text, extra)
    return record, repaired


def _map_typed(rows: TypedRows, billing_date: dt.date) -> MappedPage:
    """Records of typed rows; a row with another date or an odd profit takes the dict path.

    The typed decode checked every other value. Texts hold no lone surrogate (`wire` wrote
    those as NUL) and, unless `rows.has_nul`, no NUL.
    """
    records: list[tuple[object, ...]] = []
    append = records.append
    astuple = msgspec.structs.astuple
    iso = billing_date.isoformat()
    nul = rows.has_nul
    odd: list[int] = []
    for index, row in enumerate(rows):
        vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, dd, f0, f1, f2, f3, f4, f5, f6, ep = astuple(row)
        profit = _plain_profit(ep)
        if (
            profit is None
            or dd != iso
            or (nul and "\x00" in "".join(filter(None, (t0, t1, t2, t3, t4, t5, t6))))
        ):
            odd.append(index)
            continue
        append((billing_date, vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, billing_date,
                f0, f1, f2, f3, f4, f5, f6, profit, None))  # fmt: skip
    if not odd:
        return MappedPage(records, 0, 0, [], 0)
    # Rare: map those rows as the dicts they were (snake_case keys), keeping the page's order.
    slow = map_page([msgspec.structs.asdict(rows[i]) for i in odd], billing_date)
    for position, record in zip(odd, slow.records, strict=True):  # none rejected: ids are typed
        records.insert(position, record)
    return MappedPage(records, 0, slow.sanitized, slow.anomalies, slow.anomaly_count)


def map_page(items: object, billing_date: dt.date) -> MappedPage:
    """Map the items of one page (`video_daily_data_list`) for `billing_date` to records.

    Raises ContractError when `items` is not a list or an item is not an object.
    """
    if type(items) is TypedRows:
        return _map_typed(items, billing_date)
    if type(items) is not list:
        raise ContractError(
            f"video_daily_data_list is {type(items).__name__}, not a list", endpoint=ENDPOINT
        )
    records: list[tuple[object, ...]] = []
    append = records.append
    notes = _Notes()
    billing_iso = billing_date.isoformat()
    dates = {billing_iso: billing_date}
    rejected = sanitized = 0
    size, values, extra_keys = _layout(frozenset())
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise ContractError(
                f"item {index} of video_daily_data_list is {type(item).__name__}, not an object",
                endpoint=ENDPOINT,
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
        record = _fast_row(v, billing_date, billing_iso, extra)
        if record is None:
            record, repaired = _slow_row(v, index, billing_date, extra, dates, notes)
            if record is None:
                rejected += 1
                continue
            dirty = dirty or repaired
        append(record)
        if dirty:
            sanitized += 1
    return MappedPage(records, rejected, sanitized, notes.texts, notes.count)
