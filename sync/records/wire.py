"""The row type of daily data, the API's keys for it, and the typed decode of ordinary pages.

`Row` is the one shape an item of `video_daily_data_list` takes on its way to the mapper,
whichever way it was decoded: IDs and figures as exact ints, texts storable, PublishTime in Unix
seconds, unmapped fields in `extra`. Two values stay as sent, for the mapper to judge against the
page: `date` (the billing date) and `expected_profit` (stored as its exact decimal text).

Ordinary pages (one key casing throughout, the documented fields with their documented types:
ids and figures non-negative int64, texts strings or null, PublishTime in datetime's range)
decode straight into Rows here, validated by msgspec in C: ~2.2 us a row where dicts took
~2.5-3.6, and the mapper is left ~0.5 us a row of work (the date, the profit). Any page this
decode is not sure of returns None and goes the careful way (`sync.records.careful`), which gives
the same Rows for every item this path accepts.

Two repairs keep odd-but-storable pages on this path: the NUL escapes of a page are located
(`TypedPage.nuls`), so the caller repairs just the rows that hold them; a lone surrogate escape
(which msgspec refuses) is rewritten as a NUL escape first, since the careful path makes both
U+FFFD.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from sync.db.schema import FIGURE_COLUMNS, RECORD_COLUMNS, TEXT_COLUMNS

ENDPOINT = "query_task_video_daily_data"

# The API's keys for each mapped column (sync.db.schema.RECORD_COLUMNS without billing_date and
# extra, in that order), in order of preference when an item carries several: the doc samples'
# PascalCase, then the doc tables' and the official SDK's snake_case.
KEYS: dict[str, tuple[str, ...]] = {
    "video_id": ("VideoId", "video_id"),
    "task_id": ("TaskId", "task_id"),
    "douyin_id": ("DouyinID", "douyin_id"),
    "author": ("Author", "author"),
    "client_name": ("ClientName", "client_name"),
    "micro_app_title": ("MicroAppTitle", "micro_app_title"),
    "task_name": ("TaskName", "task_name"),
    "video_title": ("VideoTitle", "video_title"),
    "video_link": ("VideoLink", "video_link"),
    "publish_time": ("PublishTime", "publish_time"),
    "data_date": ("date", "Date"),
    "active_cnt_1d": ("ActiveCnt1d", "active_cnt_1d"),
    "gmv_1d": ("GMV1d", "gmv_1d"),
    "refund_gmv_1d": ("RefundGMV1d", "refund_gmv_1d"),
    "billing_gmv_1d": ("BillingGMV1d", "billing_gmv_1d"),
    "billing_refund_gmv_1d": ("BillingRefundGMV1d", "billing_refund_gmv_1d"),
    "ad_share_cost_1d": ("AdShareCost1d", "ad_share_cost_1d"),
    "feed_ad_share_cost_1d": ("FeedAdShareCost1d", "feed_ad_share_cost_1d"),
    "expected_profit": ("ExpectedProfit", "expected_profit"),
}


@dataclasses.dataclass(slots=True)
class Odd:
    """Why a row needs the mapper's careful look (ordinary rows have none)."""

    # Values that are not of their column's type, as sent (the row holds None there).
    dropped: dict[str, object] = dataclasses.field(default_factory=dict)
    repaired: bool = False  # a text (or `extra`) held NUL or lone surrogates, now U+FFFD


class Row(msgspec.Struct, gc=False):
    """One item of a page, in the mapped columns' order (`date` is data_date).

    video_id, task_id: exact int64, or None when missing or not exact (the mapper rejects the
    row). Texts: str (NUL and lone surrogates made U+FFFD) or None. publish_time: Unix seconds
    within datetime's range, or None. Figures: int64 or None. `date` and `expected_profit`: as
    sent (JSON numbers as int or exact Decimal). `extra`: the JSON text of the fields no column
    takes. `odd` is None only when the ids and figures are non-negative ints, publish_time a
    non-negative int and nothing was dropped or repaired: the mapper then checks just the date
    and the profit.
    """

    video_id: int | None = None
    task_id: int | None = None
    douyin_id: str | None = None
    author: str | None = None
    client_name: str | None = None
    micro_app_title: str | None = None
    task_name: str | None = None
    video_title: str | None = None
    video_link: str | None = None
    publish_time: int | None = None
    date: object = None
    active_cnt_1d: int | None = None
    gmv_1d: int | None = None
    refund_gmv_1d: int | None = None
    billing_gmv_1d: int | None = None
    billing_refund_gmv_1d: int | None = None
    ad_share_cost_1d: int | None = None
    feed_ad_share_cost_1d: int | None = None
    expected_profit: object = None
    extra: str | None = None
    odd: Odd | None = None


# A Row's value fields are the mapped columns (data_date as `date`), in record order.
COLUMNS = RECORD_COLUMNS[1:-1]
if Row.__struct_fields__ != (
    *(("date" if c == "data_date" else c) for c in COLUMNS),
    "extra",
    "odd",
) or set(KEYS) != set(COLUMNS):
    raise ImportError("sync.records.wire is out of step with sync.db.schema.RECORD_COLUMNS")

PASCAL = {("date" if c == "data_date" else c): keys[0] for c, keys in KEYS.items()}
SNAKE = {field: field for field in PASCAL}

_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Seconds = Annotated[int, msgspec.Meta(ge=0, le=253402300799)]  # up to 9999-12-31 23:59:59 UTC
# Our own fields must never be filled from the wire: an item with such a key fails this decode
# and goes the careful way, which keeps the key in `extra`.
_Never = Annotated[int, msgspec.Meta(ge=1, le=0)]

# The typed decode's fields (name, type[, default]), Row's in Row's order, with the checks of
# ordinary items. Texts may be absent or null.
_FIELDS: list[tuple[str, Any] | tuple[str, Any, Any]] = [
    ("video_id", _Count),
    ("task_id", _Count),
    *((name, str | None, None) for name in TEXT_COLUMNS),
    ("publish_time", _Seconds),
    ("date", str),
    *((name, _Count) for name in FIGURE_COLUMNS),
    # Any, so that a number decodes as int or (float_hook) Decimal but a string stays a str:
    # msgspec would read the string "1_000" as a Decimal, where the mapper notes it as odd.
    ("expected_profit", Any),
    ("extra", _Never, None),
    ("odd", _Never, None),
]


def _answer(casing: dict[str, str]) -> msgspec.json.Decoder[Any]:
    """A decoder of successful answers whose rows are keyed as `casing` says, and only so.

    Its rows are Rows (a subclass that only adds the checks and the casing)."""
    row = msgspec.defstruct(
        "TypedRow",
        _FIELDS,
        bases=(Row,),
        kw_only=True,
        forbid_unknown_fields=True,
        gc=False,
        rename=casing,
    )
    # No default for the list or for `data`: an answer without them must not decode here.
    data = msgspec.defstruct("Data", [("video_daily_data_list", list[row] | None)], gc=False)  # type: ignore[valid-type]
    answer = msgspec.defstruct(
        "Answer", [("err_no", int), ("data", data), ("log_id", str | None, None)], gc=False
    )
    return msgspec.json.Decoder(answer, float_hook=Decimal)


_DECODERS = (_answer(PASCAL), _answer(SNAKE))
_NUL = b"\\u0000"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@dataclasses.dataclass(frozen=True, slots=True)
class TypedPage:
    """The rows and log_id of an ordinary page, and where its body holds NUL escapes: `nuls`
    their offsets in a body of `size` bytes (empty: no text holds a NUL), or None when some text
    may hold one and its place is not known."""

    rows: list[Row]
    log_id: str | None
    nuls: tuple[int, ...] | None
    size: int


MAX_PLACED_NULS = 64  # more NUL escapes than this in a page: its rows are all looked into


def nul_escapes(body: bytes) -> tuple[int, ...] | None:
    """The offsets of the NUL escapes (`\\u0000`) in `body`'s JSON strings, in order; None when
    they are too many to place (MAX_PLACED_NULS) or the backslashes too many to walk.

    Walks the backslashes with bytes.find (memchr): a page of raw UTF-8 text holds ~0.3 a row,
    and each escape is stepped over whole, so an escaped backslash followed by `u0000` is text,
    not a NUL. Searching the body for the escape itself took ~0.3 us a row, a two-way search
    over its ~600 bytes a row; the walk ~0.04. A body dense with escapes (all its text \\u
    escaped, say) stops the walk after about what that search costs: the caller then searches.
    """
    offsets: list[int] = []
    steps = len(body) // 512 + 2 * MAX_PLACED_NULS  # backslashes walked at most
    find = body.find
    at = find(b"\\")
    while at != -1:
        if not steps:
            return None
        steps -= 1
        if body.startswith(_NUL, at):
            if len(offsets) == MAX_PLACED_NULS:
                return None
            offsets.append(at)
        at = find(b"\\", at + 2)
    return tuple(offsets)


def _decode(body: bytes) -> TypedPage | None:
    for decoder in _DECODERS:
        try:
            envelope = decoder.decode(body)
        except msgspec.DecodeError:  # ValidationError included: the other casing, or odd rows
            continue
        if envelope.err_no != 0:
            return None
        nuls = nul_escapes(body)
        if nuls is None and _NUL not in body:
            nuls = ()
        rows = envelope.data.video_daily_data_list or []
        return TypedPage(rows, envelope.log_id, nuls, len(body))
    return None


def _lone_surrogates_as_nul(body: bytes) -> bytes | None:
    """`body` with each escaped lone surrogate (which msgspec refuses) written as \\u0000;
    None when there is none.

    Both become U+FFFD in the careful path, which counts the row as repaired either way, so the
    records are the same. Escapes of a backslash (`\\\\ud800` is text) are left alone, and
    a surrogate pair is no lone surrogate.
    """
    out: list[bytes] = []
    done = 0
    pending_high: int | None = None  # where a high surrogate not yet paired starts
    for match in _SURROGATE_ESCAPE.finditer(body):
        start = match.start()
        first = start
        while first and body[first - 1] == 0x5C:  # backslashes before it
            first -= 1
        if (start - first) % 2:  # the backslash is escaped: plain text
            continue
        high = match[0][3:4].lower() in b"89ab"
        if pending_high is not None and not high and pending_high + 6 == start:
            pending_high = None  # a pair
            continue
        if pending_high is not None:
            out += (body[done:pending_high], _NUL)
            done = pending_high + 6
            pending_high = None
        if high:
            pending_high = start
        else:
            out += (body[done:start], _NUL)
            done = start + 6
    if pending_high is not None:
        out += (body[done:pending_high], _NUL)
        done = pending_high + 6
    if not out:
        return None
    out.append(body[done:])
    return b"".join(out)


def decode_typed(body: bytes) -> TypedPage | None:
    """The rows of a successful answer whose items all type-check; else None."""
    decoded = _decode(body)
    if decoded is None and _SURROGATE_ESCAPE.search(body):
        marked = _lone_surrogates_as_nul(body)
        if marked is not None:
            decoded = _decode(marked)
    return decoded
