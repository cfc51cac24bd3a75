"""`taskbox-sync status`: what ran, what is stored, what needs attention (read-only).

The flags and the dispatch: sync.db.status reads the data objects (sync.db.status_types), and
one of two renderings draws them, text (sync.cli.status_text) or one JSON document
(sync.cli.status_json, `--format json`). Modes: the status screen (a line per app, then the
runs, dates and failures of those apps), one run's detail (`--run ID`), the monitoring line
(`--check`, naming each app that needs attention) and the measured lateness (`--lateness`,
sync.cli.lateness). `--app ID` narrows all of it to those apps.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from sync import planner
from sync.apps import load_apps_file
from sync.cli.flags import add_apps_file_flag, add_database_flag
from sync.errors import SettingsError
from sync.settings import Settings


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="recent runs, per-date sync state, problems")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--run", type=int, metavar="ID", help="one run and its partitions")
    mode.add_argument(
        "--check",
        action="store_true",
        help="one line for monitoring; exit 1 when an app's date nears the end of the 90-day "
        "reach or its last nightly run failed (the line names the app)",
    )
    mode.add_argument(
        "--lateness",
        action="store_true",
        help="per app, how many days after its billing date rows still changed, and the "
        "lookback that would have caught 99.9 %% of the changes",
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default) or one JSON document on stdout (keys in the README)",
    )
    p.add_argument(
        "--app",
        action="append",
        dest="apps",
        metavar="ID",
        help="only this app (as the runs record it; repeatable); an unknown app is exit 2",
    )
    add_apps_file_flag(p, "also list this apps file's apps that never ran")
    add_database_flag(p)
    p.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.apps_file
    known = [a.id for a in load_apps_file(path, secrets=False).apps] if path else None
    mode = "run" if args.run is not None else "check" if args.check else None
    mode = mode or ("lateness" if args.lateness else "status")
    return asyncio.run(
        _status(
            settings,
            mode=mode,
            run_id=args.run,
            as_json=args.format == "json",
            only=args.apps,
            apps=known,
        )
    )


async def _status(
    settings: Settings,
    *,
    mode: str,
    run_id: int | None = None,
    as_json: bool = False,
    only: Sequence[str] | None = None,
    apps: Sequence[str] | None = None,
) -> int:
    """Read what `mode` (status, check, run, lateness) shows and print it; the exit status.
    `apps`: the ids of apps that may never have run (an apps file's); `only`: --app."""
    from sync.cli import lateness, status_json, status_text
    from sync.db import database, status
    from sync.db.connect import open_engine

    today = planner.shanghai_today(time.time())
    async with open_engine(settings) as db, database.connection(db) as conn:
        if mode == "run":
            assert run_id is not None
            detail = await status.run_detail(conn, run_id)
            if detail is None:
                raise SettingsError(f"--run {run_id}: no such run")
            if only and detail[0].app_id not in only:
                named = ", ".join(dict.fromkeys(only))
                raise SettingsError(
                    f"--run {run_id} is a run of app {detail[0].app_id}, not {named}"
                )
            doc = status_json.run_detail_document(*detail) if as_json else None
            print(status_json.dumps(doc) if doc else status_text.render_run_detail(*detail))
            return 0
        if mode == "check":
            checked = await status.check_report(conn, today, apps=apps, only=only)
            if as_json:
                print(status_json.dumps(status_json.check_document(checked)))
            else:
                print(status_text.render_check(checked.ok, checked.problems))
            return 0 if checked.ok else 1
        if mode == "lateness":
            chosen = await status.chosen_apps(conn, apps, only)
            measured = await lateness.collect_lateness(conn, today, chosen)
            if as_json:
                print(status_json.dumps(lateness.lateness_document(measured)))
            else:
                print(lateness.render_lateness(measured), end="")
            return 0
        report = await status.collect_status(conn, today, apps=apps, only=only)
        from sync.cli.queue import render_queue  # the job queue (#16)
        from sync.queue.status import queue_status

        queue = await queue_status(conn, dt.datetime.now(dt.UTC), only=only)
        if as_json:
            document = status_json.status_document(report)
            document["queue"] = status_json.queue_document(queue)
            print(status_json.dumps(document))
        else:
            print(status_text.render_status(report))
            print(render_queue(queue, dt.datetime.now(dt.UTC)))
        return 0
