"""The command line: parse arguments, build the settings, run one command, map errors to exits.

Start-up is light: the parser is built from modules that import neither the database nor the
HTTP stack (SQLAlchemy, asyncpg, aiohttp, Alembic, msgspec, rich), so `--help` and usage errors
answer at once. Only the command named on the line is given its full parser (its module may be
heavy: status, demo, talents); the others are listed by name and help (`COMMANDS`). Handlers
import what they need.

Exit statuses: 0 done; 1 some work failed; 2 usage or settings; 69 the database went away and
stayed away past --db-outage-timeout; 75 another run holds the lock; 130/143 interrupted by
SIGINT/SIGTERM. An error ends a command as one line on stderr and the status `exits.EXIT_STATUSES`
gives its class.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from sync import __version__, heap
from sync.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exit_status
from sync.cli.flags import add_database_flag
from sync.errors import TaskboxError
from sync.logs import json_configured
from sync.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) with exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from sync.db.connect import open_engine
    from sync.db.database import migrate

    async def run() -> None:
        async with open_engine(settings, check=False) as engine:
            await migrate(engine)
            print(f"taskbox-sync: schema is at head on {engine.url.render_as_string()}")

    asyncio.run(run())
    return EXIT_OK


# Every command and the help line `taskbox-sync --help` lists for it, in the listing's order.
COMMANDS: dict[str, str] = {
    "migrate": "create or upgrade the schema (alembic upgrade head)",
    "sandbox": "serve the offline simulation of the platform's API",
    "nightly": "re-sync the last N billing dates (for cron)",
    "backfill": "sync billing dates FROM..TO inclusive",
    "status": "recent runs, per-date sync state, problems",
    "demo": "backfill from the built-in sandbox into embedded Postgres",
    "talents": "add, cancel or list the creators of an exclusive task",
    "apps": "the apps of the apps file; provider authorizations",
    "worker": "run sync jobs from the job queue (as many workers as you like)",
    "enqueue": "put sync jobs on the job queue: one per app",
}


def _register_migrate(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("migrate", help=COMMANDS["migrate"])
    add_database_flag(p)
    p.set_defaults(handler=_cmd_migrate)


def _register_sandbox(sub: argparse._SubParsersAction[Any]) -> None:
    # Listed for --help; main() hands `sandbox …` to the sandbox's own parser.
    sub.add_parser("sandbox", help=COMMANDS["sandbox"])


def _register_nightly(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import jobs

    jobs.register_nightly(sub)


def _register_backfill(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import jobs

    jobs.register_backfill(sub)


def _register_status(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import status  # loads the database stack: only for `status`

    status.register(sub)


def _register_demo(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import parsers  # light: the command's module loads when it runs

    parsers.register_demo(sub)


def _register_talents(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import parsers  # light: the command's module loads when it runs

    parsers.register_talents(sub)


def _register_apps(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import parsers  # light: the command's module loads when it runs

    parsers.register_apps(sub)


def _register_worker(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import parsers  # light: the command's module loads when it runs

    parsers.register_worker(sub)


def _register_enqueue(sub: argparse._SubParsersAction[Any]) -> None:
    from sync.cli import parsers  # light: the command's module loads when it runs

    parsers.register_enqueue(sub)


_REGISTER: dict[str, Callable[[argparse._SubParsersAction[Any]], None]] = {
    "migrate": _register_migrate,
    "sandbox": _register_sandbox,
    "nightly": _register_nightly,
    "backfill": _register_backfill,
    "status": _register_status,
    "demo": _register_demo,
    "talents": _register_talents,
    "apps": _register_apps,
    "worker": _register_worker,
    "enqueue": _register_enqueue,
}


def command_in(argv: Sequence[str]) -> str | None:
    """The command an argument list names: its first word that is not an option (the program
    itself takes no option with a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every command's in full, or, given the arguments to parse,
    only the named command's in full and the others as their name and help line."""
    parser = _Parser(
        prog="taskbox-sync",
        description="Mirror Douyin taskbox daily video earnings into PostgreSQL.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chosen = None if argv is None else command_in(argv)
    for name, help_line in COMMANDS.items():
        if argv is None or name == chosen:
            _REGISTER[name](sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command's flags laid over them."""
    settings = Settings.from_env()
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "qps", None) is not None:
        overrides["qps"] = args.qps
    if getattr(args, "apps_file", None) is not None:  # --apps FILE over TASKBOX_APPS_FILE
        overrides["apps_file"] = args.apps_file
    return settings.replace(**overrides) if overrides else settings


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["sandbox"]:  # the sandbox parses its own flags
        from sync.sandbox import run_cli

        return int(run_cli(args_list[1:]))
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    handler: Handler = args.handler
    heap.keep_freed_memory()  # pages' buffers reused, not faulted in afresh (sync.heap)
    try:
        return handler(args, settings_from(args))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        # Ours as it is. The database edge translates its errors where commands use it; this
        # is the last guard for one that got past it (the same one translation, not another).
        from sync.db.database import translate

        error = exc if isinstance(exc, TaskboxError) else translate(exc)
        if error is None:  # a bug: its traceback shows
            raise
        return _fail(str(error), exit_status(error))


def _fail(message: str, status: int) -> int:
    if json_configured():  # --log-format json: every stderr line stays a JSON object
        logging.getLogger("sync.cli.main").error(message)
    else:
        print(f"taskbox-sync: {message}", file=sys.stderr)
    return status
