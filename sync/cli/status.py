"""`taskbox-sync status`: what ran, what is stored, what needs attention (read-only)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from sync import planner
from sync.db import status
from sync.db.connect import open_engine
from sync.errors import SettingsError
from sync.settings import Settings


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="recent runs, per-date sync state, problems")
    p.add_argument("--run", type=int, metavar="ID", help="one run and its partitions")
    p.add_argument(
        "--check",
        action="store_true",
        help="one line for monitoring; exit 1 when a date nears the end of the 90-day reach "
        "or the last nightly run failed",
    )
    p.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")
    p.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_status(settings, run_id=args.run, check_only=args.check))


async def _status(settings: Settings, *, run_id: int | None, check_only: bool) -> int:
    today = planner.shanghai_today(time.time())
    async with open_engine(settings) as db, db.connect() as conn:
        if run_id is not None:
            detail = await status.run_detail(conn, run_id)
            if detail is None:
                raise SettingsError(f"--run {run_id}: no such run")
            print(status.render_run_detail(*detail))
            return 0
        if check_only:
            ok, problems = await status.check(conn, today)
            print("OK" if ok else "PROBLEM: " + "; ".join(problems))
            return 0 if ok else 1
        report = await status.collect_status(conn, today)
        print(status.render_status(report))
        return 0
