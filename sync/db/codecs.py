"""Binary codecs for timestamptz and numeric that take the mapper's values as they are.

Installed on every connection of the engine (`install`), they replace asyncpg's own for these
two types, so that the bulk path can COPY a page straight into video_daily_earnings: asyncpg's
encoders want a datetime and a Decimal, and spend ~1 us and ~2 us a value on them (measured with
binary COPY of 200,000 values on this project's 2-core box), more than the staging hop they would
save. These take a publish time as Unix seconds (int or float) and a profit as its decimal text or
an int at ~0.1-1 us, and still take datetimes and Decimals exactly as asyncpg does. The answer's
time, one float object for every row of a page, is encoded once a page.

What they decode is what asyncpg decodes: an aware datetime in UTC (its two infinities as asyncpg
has them) and a Decimal with the value's scale. Pure functions; `install` is the only I/O.
"""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal, InvalidOperation
from typing import Any

UNIX_AT_PG_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix seconds
_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_INFINITY_US = 0x7FFF_FFFF_FFFF_FFFF
_NEGATIVE_INFINITY_US = -0x8000_0000_0000_0000
# asyncpg's stand-ins for the infinities (naive, as asyncpg has them).
INFINITY = dt.datetime(dt.MAXYEAR, 12, 31, 23, 59, 59, 999999)
NEGATIVE_INFINITY = dt.datetime(dt.MINYEAR, 1, 1)

# numeric's binary form: ndigits, weight, sign, dscale, then base-10,000 digits (int16 each).
_HEADER = struct.Struct(">hhHH")
_POSITIVE, _NEGATIVE, _NAN, _PLUS_INFINITY, _MINUS_INFINITY = 0, 0x4000, 0xC000, 0xD000, 0xF000
_MAX_DSCALE = 0x3FFF
_ONE_DIGIT = struct.Struct(">hhHHH").pack
_TWO_DIGITS = struct.Struct(">hhHHHH").pack
_THREE_DIGITS = struct.Struct(">hhHHHHH").pack
_FRACTION_SCALE = (1, 1000, 100, 10, 1)  # a fraction of n digits times this: one base-10^4 digit


_last_float: tuple[object, tuple[int]] = (None, (0,))  # the float encoded last, and its encoding


def encode_timestamptz(value: Any) -> tuple[int]:
    """Microseconds since 2000-01-01 UTC, from Unix seconds (int or float) or a date/datetime
    (as asyncpg takes them: a naive one in local time, a date at local midnight)."""
    if type(value) is int:
        return ((value - UNIX_AT_PG_EPOCH) * 1_000_000,)
    if type(value) is float:
        global _last_float
        seen, encoded = _last_float
        if value is seen:  # every row of a page holds the same answer time
            return encoded
        encoded = (round((value - UNIX_AT_PG_EPOCH) * 1_000_000),)
        _last_float = (value, encoded)
        return encoded
    if not isinstance(value, dt.datetime):
        if not isinstance(value, dt.date):
            raise TypeError(
                f"expected Unix seconds or a datetime.datetime, got {type(value).__name__!r}"
            )
        value = dt.datetime(value.year, value.month, value.day).astimezone()
    if value == INFINITY:
        return (_INFINITY_US,)
    if value == NEGATIVE_INFINITY:
        return (_NEGATIVE_INFINITY_US,)
    delta = value.astimezone(dt.UTC) - _PG_EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds,)


def decode_timestamptz(value: tuple[int]) -> dt.datetime:
    """An aware datetime in UTC (asyncpg's naive stand-ins for the infinities)."""
    (us,) = value
    if us == _INFINITY_US:
        return INFINITY
    if us == _NEGATIVE_INFINITY_US:
        return NEGATIVE_INFINITY
    return _PG_EPOCH + dt.timedelta(microseconds=us)


def _numeric(negative: bool, integer: str, fraction: str) -> bytes:
    """The binary numeric of a plain decimal: sign, integer digits, fraction digits."""
    dscale = len(fraction)
    if dscale > _MAX_DSCALE:
        raise ValueError("cannot encode a numeric with more than 16383 fraction digits")
    integer = integer.lstrip("0")
    integer = "0" * (-len(integer) % 4) + integer
    fraction += "0" * (-len(fraction) % 4)
    digits = [int(integer[i : i + 4]) for i in range(0, len(integer), 4)]
    digits += [int(fraction[i : i + 4]) for i in range(0, len(fraction), 4)]
    weight = len(integer) // 4 - 1
    first = 0
    while first < len(digits) and digits[first] == 0:
        first += 1
    weight -= first
    end = len(digits)
    while end > first and digits[end - 1] == 0:
        end -= 1
    if first == end:  # zero: no digits, positive, the scale kept
        return _HEADER.pack(0, 0, _POSITIVE, dscale)
    digits = digits[first:end]
    if len(digits) > 0x7FFF or not -0x8000 <= weight <= 0x7FFF:
        raise ValueError("cannot encode a numeric this large")
    sign = _NEGATIVE if negative else _POSITIVE
    header = _HEADER.pack(len(digits), weight, sign, dscale)
    return header + struct.pack(f">{len(digits)}H", *digits)


def _numeric_of_decimal(value: Decimal) -> bytes:
    if value.is_nan():
        return _HEADER.pack(0, 0, _NAN, 0)
    if value.is_infinite():
        return _HEADER.pack(0, 0, _MINUS_INFINITY if value.is_signed() else _PLUS_INFINITY, 0)
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    digits = "".join(map(str, digit_tuple))
    if exponent >= 0:
        return _numeric(bool(sign), digits + "0" * exponent, "")
    point = len(digits) + exponent
    if point > 0:
        return _numeric(bool(sign), digits[:point], digits[point:])
    return _numeric(bool(sign), "0", "0" * -point + digits)


def _small_numeric(whole: int, part: int, scale: int) -> bytes:
    """0 <= whole < 10**8 and 0 <= part < 10**4 (the fraction as one base-10^4 digit)."""
    high, low = divmod(whole, 10_000)
    if high:
        if part:
            return _THREE_DIGITS(3, 1, _POSITIVE, scale, high, low, part)
        if low:
            return _TWO_DIGITS(2, 1, _POSITIVE, scale, high, low)
        return _ONE_DIGIT(1, 1, _POSITIVE, scale, high)
    if low:
        if part:
            return _TWO_DIGITS(2, 0, _POSITIVE, scale, low, part)
        return _ONE_DIGIT(1, 0, _POSITIVE, scale, low)
    if part:
        return _ONE_DIGIT(1, -1, _POSITIVE, scale, part)
    return _HEADER.pack(0, 0, _POSITIVE, scale)


def encode_numeric(value: Any) -> bytes:
    """numeric's binary form of a decimal text, an int or a Decimal (a float as asyncpg takes
    it: Decimal(value)). The usual profit (non-negative, at most eight digits before the point
    and four after) takes the short way."""
    if type(value) is str:
        if value.isdigit() and value.isascii() and len(value) <= 8:  # the most usual: a whole
            return _small_numeric(int(value), 0, 0)
        integer, point, fraction = value.partition(".")
        scale = len(fraction)
        if (
            len(integer) <= 8
            and scale <= 4
            and integer.isdigit()
            and integer.isascii()
            and (not point or (fraction.isdigit() and fraction.isascii()))
        ):
            part = int(fraction) * _FRACTION_SCALE[scale] if scale else 0
            return _small_numeric(int(integer), part, scale)
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"numeric: {value[:40]!r} is not a number") from None
        return _numeric_of_decimal(number)
    if type(value) is int:
        if 0 <= value < 100_000_000:
            return _small_numeric(value, 0, 0)
        return _numeric(value < 0, str(abs(value)), "")
    if isinstance(value, Decimal):
        return _numeric_of_decimal(value)
    return _numeric_of_decimal(Decimal(value))


def decode_numeric(data: bytes) -> Decimal:
    """The Decimal of numeric's binary form, built as asyncpg builds it (`0.<digits>E<exponent>`,
    so 10000 is Decimal('1E+4') and 1.50 Decimal('1.50'))."""
    ndigits, weight, sign, dscale = _HEADER.unpack_from(data)
    if sign == _NAN:
        return Decimal("NaN")
    if sign == _PLUS_INFINITY:
        return Decimal("Infinity")
    if sign == _MINUS_INFINITY:
        return Decimal("-Infinity")
    if ndigits == 0:
        return Decimal(f"0e-{dscale}")
    groups = struct.unpack_from(f">{ndigits}H", data, 8)
    digits = "".join(f"{g:04d}" for g in groups)
    front = 4 - len(str(groups[0])) if weight >= 0 else 0  # the first group's leading zeros
    digits = digits[front:]
    if dscale:  # exactly dscale digits after the point
        extra = dscale - (ndigits - weight - 1) * 4
        digits = digits + "0" * extra if extra > 0 else digits[: len(digits) + extra]
    exponent = (weight + 1) * 4 - front
    text = ("-" if sign == _NEGATIVE else "") + "0." + digits
    return Decimal(f"{text}E{exponent:+d}" if exponent else text)


async def install(connection: Any) -> None:
    """Use these codecs on an asyncpg connection (for every statement and COPY on it)."""
    await connection.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=encode_timestamptz,
        decoder=decode_timestamptz,
        format="tuple",
    )
    await connection.set_type_codec(
        "numeric",
        schema="pg_catalog",
        encoder=encode_numeric,
        decoder=decode_numeric,
        format="binary",
    )
