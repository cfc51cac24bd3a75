"""The command line: parse arguments, build the settings, run one command, map errors to exits.

Exit statuses: 0 done; 1 some work failed; 2 usage or settings; 69 the database went away and
stayed away past --db-outage-timeout; 75 another run holds the lock; 130/143 interrupted by
SIGINT/SIGTERM. An error ends a command as one line on stderr and the status `exits.EXIT_STATUSES`
gives its class.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sync import __version__
from sync.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exit_status
from sync.db.connect import open_engine
from sync.db.database import migrate, translate
from sync.errors import (
    TaskboxError,
)
from sync.logs import json_configured
from sync.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) with exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _add_database_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> None:
        async with open_engine(settings, check=False) as engine:
            await migrate(engine)
            print(f"taskbox-sync: schema is at head on {engine.url.render_as_string()}")

    asyncio.run(run())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="taskbox-sync",
        description="Mirror Douyin taskbox daily video earnings into PostgreSQL.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("migrate", help="create or upgrade the schema (alembic upgrade head)")
    _add_database_flag(p)
    p.set_defaults(handler=_cmd_migrate)

    # Listed for --help; main() hands `sandbox …` to the sandbox's own parser.
    sub.add_parser("sandbox", help="serve the offline simulation of the platform's API")

    from sync.cli import jobs as commands  # keeps start-up light

    commands.register(sub)
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
    parser = build_parser()
    args = parser.parse_args(args_list)
    handler: Handler = args.handler
    try:
        return handler(args, settings_from(args))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        # Ours as it is. The database edge translates its errors where commands use it; this
        # is the last guard for one that got past it (the same one translation, not another).
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
