"""The flags' value types: a flag's text in, its value out, or ArgumentTypeError saying what was
expected (argparse puts the flag's name in front). Light, like every parser's module."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from sync import planner
from sync.errors import SettingsError
from sync.settings import parse_qps

AUTO = "auto"


def int_in(lo: int, hi: int, what: str) -> Callable[[str], int]:
    """A whole number from `lo` to `hi`; `what` names it in the message ("a page size")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} from {lo} to {hi}, got {value}")
        return value

    return parse


def seconds_in(lo: float, hi: float) -> Callable[[str], float]:
    """Seconds from `lo` to `hi` (nan and the infinities refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not lo <= value <= hi:  # also refuses nan
            raise argparse.ArgumentTypeError(
                f"expected seconds from {lo:g} to {hi:g}, got {text!r}"
            )
        return value

    return parse


def lookback_days(text: str) -> int | str:
    """--lookback-days: a number of days from 1 to 89, or `auto` (measured from the ledger)."""
    if text == AUTO:
        return AUTO
    top = planner.MAX_NIGHTLY_LOOKBACK
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= top:
        raise argparse.ArgumentTypeError(f"expected days from 1 to {top} or 'auto', got {text!r}")
    return value


def date(text: str) -> dt.date:
    """--from, --to, --today: a strict YYYY-MM-DD date."""
    try:
        return planner.parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def qps(text: str) -> float:
    """--qps: requests per second, above 0 and at most the platform's 10."""
    try:
        return parse_qps(text, "--qps")
    except SettingsError as exc:
        # argparse names the flag itself: "argument --qps: expected ..."
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--qps: ")) from None


def metrics_path(text: str) -> Path:
    """--metrics-file: a *.prom file in a folder that exists (checked before the run)."""
    path = Path(text)
    if path.suffix != ".prom":
        raise argparse.ArgumentTypeError(
            f"expected a file ending in .prom (node_exporter reads only those), got {text!r}"
        )
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {str(path.parent)!r}")
    return path
