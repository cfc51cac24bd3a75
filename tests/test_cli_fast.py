"""A quick command line (#17): `--help`, a command's `--help` and usage errors answer without
loading the database and HTTP stacks, and the light parser lists what the full one does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sync.cli.main import build_parser
from tests.helpers import REPO

HEAVY = ("sqlalchemy", "asyncpg", "aiohttp", "alembic", "msgspec", "rich", "prometheus_client")

# Runs the CLI's main() in a fresh interpreter, then reports its exit status and which of the
# heavy packages got imported.
_PROBE = """
import json, sys
from sync.cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"status": status, "heavy": heavy}), file=sys.stderr)
"""


def _probe(*args: str) -> tuple[int, list[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return int(report["status"] or 0), list(report["heavy"]), done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["--help"], 0),
        (["--version"], 0),
        (["nightly", "--help"], 0),
        (["backfill", "--help"], 0),
        (["migrate", "--help"], 0),
        (["nightly", "--lookback-days", "100"], 2),
        (["backfill", "--from", "2026-13-01", "--to", "2026-01-02"], 2),
        (["backfill", "--from", "2026-01-01"], 2),
        (["frobnicate"], 2),
        (["status", "--bogus"], 2),
        (["talents", "add", "--help"], 0),
        (["talents", "list"], 2),
        (["demo", "--bogus"], 2),
        (["apps", "authorize", "--help"], 0),
        (["apps", "list", "--bogus"], 2),
        (["worker", "--concurrency", "0"], 2),
        (["enqueue", "nightly", "--lookback-days", "100"], 2),
        ([], 2),
    ],
)
def test_help_and_usage_errors_load_no_heavy_stack(args: list[str], status: int) -> None:
    """Help and usage errors answer with the right status, importing none of SQLAlchemy,
    asyncpg, aiohttp, Alembic, msgspec, rich or prometheus_client."""
    got, heavy, output = _probe(*args)
    assert got == status, output
    assert heavy == [], output
    assert "Traceback" not in output, output


@pytest.mark.parametrize(
    "args",
    [
        ["nightly", "--qps", "0"],
        ["backfill", "--from", "2026-01-01", "--to", "2026-01-02", "--qps", "11"],
        ["talents", "list", "--task-id", "1", "--qps", "0"],
    ],
)
def test_every_commands_qps_refusal_names_the_flag_once(args: list[str]) -> None:
    """The commands share one --qps type: argparse names the flag, the message does not again."""
    got, _, output = _probe(*args)
    assert got == 2, output
    assert "argument --qps: expected a number above 0 and at most 10" in output, output
    assert "--qps: --qps" not in output, output


def test_the_light_listing_is_the_full_one() -> None:
    """`taskbox-sync --help` built from the light parser equals the full parser's help, so the
    commands' help lines kept for the listing never drift from their own parsers'."""
    assert build_parser(["--help"]).format_help() == build_parser().format_help()


def test_only_the_named_command_gets_its_full_parser() -> None:
    """Given arguments, the parser is the full one for the command they name: its flags parse
    as the full parser's do."""
    args = ["nightly", "--lookback-days", "3", "--qps", "4"]
    light = vars(build_parser(args).parse_args(args))
    full = vars(build_parser().parse_args(args))
    assert light == full
    assert light["lookback_days"] == 3 and light["qps"] == 4
