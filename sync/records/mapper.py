"""Rows to database records for one billing date: exact IDs and money, nothing guessed.

A page's items arrive as `wire.Row`s (`sync.records.decode`), with every value already of its
type or dropped. A record is a tuple in the order of `sync.db.schema.RECORD_COLUMNS`, in the form
the bulk path stages it: publish_time as Unix seconds (int) and expected_profit as the int it was
sent as or its exact decimal text (str), which the connection's codecs (`sync.db.codecs`) encode
at a third of the cost of a datetime and a Decimal.

Rows whose video or task id is missing or not an exact 64-bit integer are rejected; a value the
decode dropped is stored as NULL, a negative figure or profit as given, a data date other than
the billing date as sent; each is noted as an anomaly. Rejections and dropped values are
`warnings` (the run logs the page); negative amounts and other dates are legitimate (refunds
exceed a day's GMV) and only counted by kind as `notes`, with a few examples, for the run's
summary.

Speed matters (the product targets 100,000 rows/s end to end): an ordinary row (`Row.odd` is
None) needs only its date and profit checked; any other row takes the careful way, which gives
the same record for every row the quick check accepts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from sync.db.schema import FIGURE_COLUMNS, RECORD_COLUMNS, TEXT_COLUMNS
from sync.records.wire import Row

MAX_ANOMALY_TEXTS = 20
NOTE_EXAMPLES = 3  # texts kept of each kind of note, and of warnings, per page

# The kinds of notes: what is stored as sent and needs no one's attention.
NEGATIVE_AMOUNT = "negative amounts"
OTHER_DATE = "dates other than the billing date"

_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A record is the billing date, a Row's values (data_date for `date`) and `extra`.
if RECORD_COLUMNS[0] != "billing_date" or RECORD_COLUMNS[-1] != "extra":
    raise ImportError("sync.records.mapper is out of step with sync.db.schema.RECORD_COLUMNS")


@dataclass
class MappedPage:
    """The records of one page, and what did not fit."""

    records: list[tuple[object, ...]]
    rejected: int  # rows not stored: video or task id missing or not exact
    sanitized: int  # rows stored with at least one text repaired (NUL, lone surrogate)
    anomalies: list[str]  # short texts, the first MAX_ANOMALY_TEXTS of them
    anomaly_count: int = 0  # every anomaly, including those whose text was not kept
    # The anomalies apart: warnings (rejections, values dropped) to log with the page, their
    # first NOTE_EXAMPLES texts; notes (NEGATIVE_AMOUNT, OTHER_DATE) counted by kind, with the
    # first NOTE_EXAMPLES texts of each kind.
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    notes: dict[str, int] = field(default_factory=dict)
    note_texts: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Notes:
    texts: list[str] = field(default_factory=list)
    count: int = 0
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    kind_texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, text: str, kind: str | None = None) -> None:
        """An anomaly: a warning, or a note of `kind`."""
        self.count += 1
        if len(self.texts) < MAX_ANOMALY_TEXTS:
            self.texts.append(text)
        if kind is None:
            self.warning_count += 1
            if len(self.warnings) < NOTE_EXAMPLES:
                self.warnings.append(text)
            return
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        kept = self.kind_texts.setdefault(kind, [])
        if len(kept) < NOTE_EXAMPLES:
            kept.append(text)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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


def _as_date(value: object) -> dt.date | None:
    if type(value) is str and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _careful_record(
    row: Row, index: int, billing_date: dt.date, dates: dict[str, dt.date], notes: _Notes
) -> tuple[Any, ...] | None:
    """The record of any row (None when rejected), noting its anomalies in column order."""
    v = msgspec.structs.astuple(row)
    dropped = row.odd.dropped if row.odd is not None else {}
    if v[0] is None or v[1] is None:
        why = [
            f"{column} "
            + (f"not an exact int64: {_show(dropped[column])}" if column in dropped else "missing")
            for i, column in ((0, "video_id"), (1, "task_id"))
            if v[i] is None
        ]
        notes.add(f"item {index} rejected: {', '.join(why)}")
        return None
    where = f"video {v[0]} task {v[1]}"

    def check(i: int, column: str, what: str, money: bool) -> None:
        if column in dropped:
            notes.add(f"{where}: {column} is not {what}: {_show(dropped[column])}")
        elif money and v[i] is not None and v[i] < 0:
            notes.add(f"{where}: {column} is negative: {v[i]}", NEGATIVE_AMOUNT)

    for i, column in enumerate(TEXT_COLUMNS, 2):
        check(i, column, "text", False)
    check(9, "publish_time", "Unix seconds", False)
    sent = v[10]
    data_date = dates.get(sent) if type(sent) is str else None
    if data_date is None:
        data_date = _as_date(sent)
        if data_date is None:
            if sent is not None:
                notes.add(f"{where}: date is not YYYY-MM-DD: {_show(sent)}")
        elif type(sent) is str:
            dates[sent] = data_date
    if data_date is not None and data_date != billing_date:
        notes.add(f"{where}: date {data_date} differs from billing date {billing_date}", OTHER_DATE)
    for i, column in enumerate(FIGURE_COLUMNS, 11):
        check(i, column, "an int64", True)
    profit = _as_decimal(v[18])
    if profit is None and v[18] is not None:
        notes.add(f"{where}: expected_profit is not a number: {_show(v[18])}")
    elif profit is not None and profit < 0:
        notes.add(f"{where}: expected_profit is negative: {profit}", NEGATIVE_AMOUNT)
    # An int stays an int (the codec's quickest way), any other number its exact text.
    if type(v[18]) is int:
        stored: int | str | None = v[18]
    else:
        stored = None if profit is None else str(profit)
    return (billing_date, *v[:10], data_date, *v[11:18], stored, v[19])


def map_page(
    rows: Sequence[Row], billing_date: dt.date, tail: tuple[object, ...] = ()
) -> MappedPage:
    """Map the rows of one page (`video_daily_data_list`) for `billing_date` to records, each
    followed by `tail` (the writer's app, answer time and run). Built here, once, the records
    need no copy into longer tuples before their COPY: 0.7-2 us a row less on a slow VM, the
    cyclic collector's share included."""
    records: list[tuple[object, ...]] = []
    append = records.append
    astuple = msgspec.structs.astuple
    iso = billing_date.isoformat()
    notes = _Notes()
    dates = {iso: billing_date}
    rejected = sanitized = 0
    # One object for each text a page repeats (a task's client, app title and name; a
    # creator's id and name): the COPY encodes a str to UTF-8 once per object, and most of these
    # are Chinese (~0.8 us a row less for the three task texts, measured), and held pages are
    # smaller.
    texts: dict[object, object] = {}
    shared = texts.setdefault
    for index, row in enumerate(rows):
        vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, dd, f0, f1, f2, f3, f4, f5, f6, ep, extra, odd = (
            astuple(row)
        )
        t0, t1, t2, t3, t4 = (
            shared(t0, t0),
            shared(t1, t1),
            shared(t2, t2),
            shared(t3, t3),
            shared(t4, t4),
        )
        if odd is None and dd == iso:
            # A non-negative int or finite Decimal goes as it is or as its exact text; anything
            # else (a negative profit, text, null) the careful way.
            if type(ep) is int:
                profit: int | str | None = ep if ep >= 0 else None
            elif type(ep) is Decimal:
                profit = str(ep) if ep.is_finite() and not ep.is_signed() else None
            else:
                profit = None
            if profit is not None:
                mapped = (billing_date, vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, billing_date,
                          f0, f1, f2, f3, f4, f5, f6, profit, extra)  # fmt: skip
                append(mapped + tail)
                continue
        record = _careful_record(row, index, billing_date, dates, notes)
        if record is None:
            rejected += 1
            continue
        append(record + tail)
        if odd is not None and odd.repaired:
            sanitized += 1
    return MappedPage(
        records,
        rejected,
        sanitized,
        notes.texts,
        notes.count,
        notes.warnings,
        notes.warning_count,
        notes.kinds,
        notes.kind_texts,
    )
