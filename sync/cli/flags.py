"""Flags several commands share, declared once. Light: the parsers that use it load nothing of
the database or HTTP stacks."""

from __future__ import annotations

import argparse
from pathlib import Path

from sync.cli.argtypes import seconds_in
from sync.pipeline.outage import DEFAULT_OUTAGE_TIMEOUT

DATABASE_HELP = "PostgreSQL URL (default: $DATABASE_URL, else embedded)"


def add_database_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help=DATABASE_HELP)


def add_apps_file_flag(p: argparse.ArgumentParser, what: str, *, otherwise: str = "") -> None:
    """`--apps FILE` (into `apps_file`: `main.settings_from` lays it over TASKBOX_APPS_FILE);
    `what` says what the command does with it, `otherwise` what it does without one."""
    default = "default: $TASKBOX_APPS_FILE" + (f"; {otherwise}" if otherwise else "")
    p.add_argument(
        "--apps", dest="apps_file", type=Path, metavar="FILE", help=f"{what} ({default})"
    )


def add_outage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db-outage-timeout",
        type=seconds_in(0, 86_400),
        default=DEFAULT_OUTAGE_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for a lost database before stopping "
        f"(default {DEFAULT_OUTAGE_TIMEOUT:g})",
    )
