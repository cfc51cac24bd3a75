"""China-time day arithmetic and log ids: the platform's days are Asia/Shanghai days."""

from __future__ import annotations

import datetime as dt
import secrets
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = 86400


def day_of(ts: float) -> dt.date:
    """The Shanghai calendar day containing epoch second `ts`."""
    return dt.datetime.fromtimestamp(ts, SHANGHAI).date()


def day_start(day: dt.date) -> int:
    """Epoch seconds of 00:00 Shanghai on `day`."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).timestamp())


def day_end(day: dt.date) -> int:
    """Last epoch second of `day` (Shanghai)."""
    return day_start(day + dt.timedelta(days=1)) - 1


def yesterday(now: float) -> dt.date:
    """The newest billing date with data (T+1)."""
    return day_of(now) - dt.timedelta(days=1)


def parse_day(text: str) -> dt.date | None:
    """Parse a strict `YYYY-MM-DD`; None when it is anything else."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def log_id(now: float) -> str:
    """A log id like the docs': `YYYYMMDDHHMMSS` (Shanghai) + 20 upper-case hex digits."""
    stamp = dt.datetime.fromtimestamp(now, SHANGHAI).strftime("%Y%m%d%H%M%S")
    return stamp + secrets.token_hex(10).upper()
