"""The parsers of the commands whose modules load the database and HTTP stacks (talents, demo,
apps, worker, enqueue): built from light modules, so their --help and usage errors answer at
once; each handler imports its command's module when the command runs (`_lazy`)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from sync import planner
from sync.cli import argtypes
from sync.cli.flags import add_apps_file_flag, add_database_flag, add_outage_flag
from sync.pipeline.defaults import (
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_WORKER_JOBS,
    DEMO_APPS,
    MAX_WORKER_JOBS,
)
from sync.settings import Settings
from sync.talents.roster import Operation


def _lazy(module: str, name: str) -> Any:
    """The handler `name` of `sync.cli.<module>`, imported when the command runs."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        command = importlib.import_module(f"sync.cli.{module}")
        result: int = getattr(command, name)(args, settings)
        return result

    return handler


# -- talents ------------------------------------------------------------------------------------


def _talents_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task-id", required=True, help="the exclusive task's id (64-bit integer)")
    add_database_flag(p)
    p.add_argument(
        "--qps", type=argtypes.qps, help="requests per second (default: $TASKBOX_QPS, 10)"
    )
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    add_apps_file_flag(p, "an apps file")
    p.add_argument("--app", metavar="ID", help="the app of the apps file the task belongs to")


def register_talents(sub: argparse._SubParsersAction[Any]) -> None:
    """`talents add|cancel|list`."""
    p = sub.add_parser("talents", help="add, cancel or list the creators of an exclusive task")
    tsub = p.add_subparsers(dest="talents_command", required=True)
    for op, verb in ((Operation.ADD, "invite"), (Operation.CANCEL, "cancel the cooperation of")):
        q = tsub.add_parser(op, help=f"{verb} creators (update_orient_talents)")
        _talents_common(q)
        q.add_argument("douyin_ids", nargs="*", metavar="DOUYIN_ID")
        q.add_argument("--from-file", metavar="FILE", help="one id per line, # comments")
        q.add_argument("--dry-run", action="store_true", help="show the batches, change nothing")
        q.add_argument("--third-appid", help="the mini-app a service provider acts for")
        add_outage_flag(q)
        q.set_defaults(handler=_lazy("talents", "cmd_update"))
    q = tsub.add_parser("list", help="the task's roster beside our audit log")
    _talents_common(q)
    q.set_defaults(handler=_lazy("talents", "cmd_list"))


# -- demo ---------------------------------------------------------------------------------------


def register_demo(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("demo", help="backfill from the built-in sandbox into embedded Postgres")
    p.add_argument("--videos", type=int, default=2000, help="videos per app (default 2000)")
    p.add_argument(
        "--apps", type=int, default=DEMO_APPS, help=f"sandbox apps synced (default {DEMO_APPS})"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database-url", help="use this PostgreSQL instead of the embedded one")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_lazy("demo", "cmd_demo"))


# -- apps ---------------------------------------------------------------------------------------


def register_apps(sub: argparse._SubParsersAction[Any]) -> None:
    """`apps list|authorize|new-key`."""
    p = sub.add_parser("apps", help="the apps of the apps file; provider authorizations")
    asub = p.add_subparsers(dest="apps_command", required=True)
    q = asub.add_parser("list", help="every app of the file: how it authenticates, token times")
    add_apps_file_flag(q, "the apps file")
    add_database_flag(q)
    q.set_defaults(handler=_lazy("apps", "cmd_list"))
    q = asub.add_parser(
        "authorize", help="store a provider merchant's refresh token, read from standard input"
    )
    q.add_argument("app_id", metavar="APP_ID", help="the merchant app's id in the apps file")
    q.add_argument(
        "--authorization-code",
        action="store_true",
        help="standard input holds the authorization code of a new grant, not a refresh token",
    )
    add_apps_file_flag(q, "the apps file")
    add_database_flag(q)
    q.set_defaults(handler=_lazy("apps", "cmd_authorize"))
    q = asub.add_parser("new-key", help="print a new random key for TASKBOX_SECRET_KEY")
    q.set_defaults(handler=_lazy("apps", "cmd_new_key"))


# -- worker and enqueue -------------------------------------------------------------------------


def _queue_common(p: argparse.ArgumentParser) -> None:
    add_apps_file_flag(p, "the apps file (TOML)", otherwise="without one, the app of DOUYIN_*")
    add_database_flag(p)


def register_worker(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "worker", help="run sync jobs from the job queue (as many workers as you like)"
    )
    p.add_argument(
        "--concurrency",
        type=argtypes.int_in(1, MAX_WORKER_JOBS, "a number of jobs"),
        default=DEFAULT_WORKER_JOBS,
        help=f"jobs (apps) run at once by this worker (default {DEFAULT_WORKER_JOBS})",
    )
    p.add_argument(
        "--schedule",
        metavar="CRON",
        help="also enqueue the nightly of every app on this cron, China time (e.g. '30 4 * * *')",
    )
    p.add_argument(
        "--lookback-days",
        type=argtypes.int_in(1, planner.MAX_NIGHTLY_LOOKBACK, "a number of days"),
        default=7,
        help="the nightly's lookback that --schedule enqueues (default 7)",
    )
    p.add_argument(
        "--stall-timeout",
        type=argtypes.seconds_in(2, 3600),
        default=DEFAULT_STALL_TIMEOUT,
        metavar="SECONDS",
        help="a job whose worker sent no heartbeat this long goes back to the queue "
        f"(default {DEFAULT_STALL_TIMEOUT:g})",
    )
    p.add_argument(
        "--db-connections",
        type=argtypes.int_in(2, 1000, "a number of connections"),
        metavar="N",
        help="database connections of the worker's runs (default: one per job + 16 writers; "
        "at least one per job + 1); the pool may open 4 more, and the queue 3",
    )
    p.add_argument("--name", help="the worker's name in status (default: host:pid)")
    p.add_argument(
        "--metrics-file",
        type=argtypes.metrics_path,
        metavar="PATH",
        help="Prometheus metrics of every app's latest job, written again after each job "
        "(node_exporter's textfile collector: a *.prom file in a folder that exists)",
    )
    add_outage_flag(p)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    _queue_common(p)
    p.set_defaults(handler=_lazy("queue", "cmd_worker"))


def register_enqueue(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("enqueue", help="put sync jobs on the job queue: one per app")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=type(p))
    k = kinds.add_parser("nightly", help="re-sync the last N billing dates")
    k.add_argument(
        "--lookback-days",
        type=argtypes.int_in(1, planner.MAX_NIGHTLY_LOOKBACK, "a number of days"),
        default=7,
    )
    k.add_argument("--today", type=argtypes.date, metavar="YYYY-MM-DD")
    k = kinds.add_parser("backfill", help="sync billing dates FROM..TO inclusive")
    k.add_argument(
        "--from", dest="date_from", type=argtypes.date, required=True, metavar="YYYY-MM-DD"
    )
    k.add_argument("--to", dest="date_to", type=argtypes.date, required=True, metavar="YYYY-MM-DD")
    for k in kinds.choices.values():
        k.add_argument("--app", action="append", default=[], metavar="ID", help="only this app")
        _queue_common(k)
        k.set_defaults(handler=_lazy("queue", "cmd_enqueue"))
