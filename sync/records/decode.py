"""The one decoding boundary: an answer's body in, its code and Rows out (`decode_daily_data`);
the exact JSON decode every endpoint's answers go through (`decode_json`).

`decode_daily_data` tries the typed decode (`sync.records.wire`), which takes ordinary pages;
anything else (error codes, the other casing mixed in, unknown fields, wrong types, a log_id
that is not text) is decoded exactly into dicts and converted by `sync.records.careful`. Both
give Rows (`wire.Row`) with the same values, so the mapper has one row type to map. Error codes
are handed back, not raised: what they mean is the API layer's to say.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import msgspec

from sync.db.schema import TEXT_COLUMNS
from sync.errors import ContractError, TransportError
from sync.records.careful import clean, rows_from_items
from sync.records.wire import ENDPOINT, Odd, Row, TypedPage, decode_typed

_EXACT = msgspec.json.Decoder(float_hook=Decimal)


def decode_json(body: bytes, *, endpoint: str) -> Any:
    """Any answer's body decoded exactly: integers stay ints (64-bit IDs), floats become Decimal.

    msgspec refuses lone UTF-16 surrogates that the platform may send in titles; the standard
    library accepts them, so it decodes those rare bodies (the careful path then replaces them).
    A body that is not JSON raises TransportError (cut off, or not the platform's answer).
    """
    try:
        return _EXACT.decode(body)
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TransportError(
            f"malformed JSON body ({len(body)} bytes): {str(exc)[:80]}", endpoint=endpoint
        ) from None


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedPage:
    """One answer: `err_no` 0 and its rows (every item, in order), or an error code and message."""

    err_no: int
    err_msg: str
    log_id: str | None
    rows: list[Row]


_texts = operator.attrgetter(*TEXT_COLUMNS)


def _nuls_in(row: Row) -> int:
    """How many NUL characters the row's texts hold."""
    return "".join(filter(None, _texts(row))).count("\x00")


def _rows_holding(page: TypedPage) -> Iterable[int]:
    """The indexes of the rows whose texts may hold a NUL: every row, or where the body's NUL
    escapes lie.

    Rows sit in the body in order and about equally long, so an escape at a tenth of the body
    is in a row near the tenth: the nearest row (looking outwards) that holds a NUL is taken as
    its row. The guess is kept only if the rows taken hold exactly as many NULs as the body has
    escapes (each NUL of a text comes from one escape), else every row is looked into. Looking
    into every row cost ~0.7 us a row, and most pages of a long run hold a NUL somewhere.
    """
    rows, nuls = page.rows, page.nuls
    everyone = range(len(rows))
    if nuls is None or not rows:
        return everyone
    taken: dict[int, int] = {}  # row index: the NULs its texts hold
    looks = len(rows)  # rows looked into before giving up on the guess
    for at in nuls:
        guess = min(at * len(rows) // page.size, len(rows) - 1)
        for index in _outwards(guess, len(rows)):
            looks -= 1
            if looks < 0:
                return everyone
            if index in taken:
                break
            held = _nuls_in(rows[index])
            if held:
                taken[index] = held
                break
    if sum(taken.values()) != len(nuls):
        return everyone
    return taken.keys()


def _outwards(start: int, count: int) -> Iterator[int]:
    """start, start+1, start-1, start+2, ... within range(count)."""
    yield start
    for step in range(1, count):
        if start + step < count:
            yield start + step
        if start - step >= 0:
            yield start - step
        elif start + step >= count:
            return


def _repair_nul(page: TypedPage) -> list[Row]:
    """The page's rows with NUL in texts made U+FFFD, those rows marked repaired."""
    for index in _rows_holding(page):
        row = page.rows[index]
        if _nuls_in(row):
            for name, text in zip(TEXT_COLUMNS, _texts(row), strict=True):
                if text is not None:
                    setattr(row, name, clean(text))
            row.odd = Odd(repaired=True)
    return page.rows


def decode_daily_data(body: bytes) -> DecodedPage:
    """The open-platform envelope {err_no, err_msg, log_id, data: {video_daily_data_list}}.

    Raises TransportError for a body that is not JSON, ContractError for an answer that is not
    of this shape (a null list is an empty page; a missing one is not).
    """
    typed = decode_typed(body)
    if typed is not None:
        rows = _repair_nul(typed) if typed.nuls != () else typed.rows
        return DecodedPage(0, "", typed.log_id, rows)
    doc = decode_json(body, endpoint=ENDPOINT)
    if not isinstance(doc, dict):
        raise ContractError("answer is not a JSON object", endpoint=ENDPOINT)
    err_no = doc.get("err_no")
    log_id = doc.get("log_id")
    log_id = str(log_id) if log_id is not None else None
    if isinstance(err_no, bool) or not isinstance(err_no, int):
        raise ContractError("answer has no integer err_no", endpoint=ENDPOINT, log_id=log_id)
    if err_no != 0:
        return DecodedPage(err_no, str(doc.get("err_msg") or "error"), log_id, [])
    data = doc.get("data")
    if not isinstance(data, dict):
        raise ContractError("answer has no data object", endpoint=ENDPOINT, log_id=log_id)
    if "video_daily_data_list" not in data:  # not an empty page: an answer we cannot read
        raise ContractError("data has no video_daily_data_list", endpoint=ENDPOINT, log_id=log_id)
    items = data["video_daily_data_list"]
    if items is None:  # an empty list sent as null
        items = []
    if not isinstance(items, list):
        raise ContractError(
            "data.video_daily_data_list is not a list", endpoint=ENDPOINT, log_id=log_id
        )
    return DecodedPage(0, "", log_id, rows_from_items(items, log_id))
