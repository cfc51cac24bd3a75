"""The CLI: a JSON first line for scripts, serving until SIGTERM/SIGINT, bad flags exit 2."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from sync.sandbox import run_cli

ROOT = Path(__file__).resolve().parents[2]


async def start_cli(*flags: str) -> tuple[asyncio.subprocess.Process, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sync.sandbox",
        "--port",
        "0",
        "--videos",
        "100",
        *flags,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    return proc, json.loads(line)


async def stop(proc: asyncio.subprocess.Process, sig: int) -> tuple[int, bytes]:
    proc.send_signal(sig)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    return proc.returncode or 0, out


async def test_first_line_is_json_and_serves_until_sigterm():
    """The first line gives base_url, credentials and string task ids; the server answers; SIGTERM
    exits 0 after the human summary with the environment variables."""
    proc, info = await start_cli("--snake-case")
    try:
        assert info["base_url"].startswith("http://127.0.0.1:")
        for key in ("client_key", "client_secret", "app_id", "app_secret"):
            assert isinstance(info[key], str) and info[key]
        assert info["exclusive_task_ids"] and all(
            isinstance(t, str) and t.isdigit() for t in info["exclusive_task_ids"]
        )
        body = {
            "client_key": info["client_key"],
            "client_secret": info["client_secret"],
            "grant_type": "client_credential",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(info["base_url"] + "/oauth/client_token/", json=body) as resp,
        ):
            token = (await resp.json())["data"]["access_token"]
        assert token.startswith("clt.")
    finally:
        code, rest = await stop(proc, signal.SIGTERM)
    assert code == 0
    summary = rest.decode()
    for name in (
        "DOUYIN_OPEN_BASE_URL",
        "DOUYIN_DEVELOPER_BASE_URL",
        "DOUYIN_CLIENT_KEY",
        "DOUYIN_CLIENT_SECRET",
        "DOUYIN_APP_ID",
        "DOUYIN_APP_SECRET",
    ):
        assert name in summary
    assert f"DOUYIN_OPEN_BASE_URL={info['base_url']}" in summary


async def test_sigint_exits_zero():
    """SIGINT stops the server cleanly with exit status 0."""
    proc, _ = await start_cli("--faults", "busy=0.1", "--latency", "0:0.01")
    code, _ = await stop(proc, signal.SIGINT)
    assert code == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "nope"],
        ["--bogus"],
        ["--latency", "3:1"],
        ["--faults", "busy=7"],
        ["--port", "70000"],
        ["--tasks", "1"],
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, capsys):
    """Bad flags print one error line on stderr and return 2 without serving."""
    assert run_cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskbox-sync sandbox: error:")


def test_help_exits_zero(capsys):
    """--help prints usage listing every flag and returns 0."""
    assert run_cli(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--seed", "--videos", "--latency", "--faults", "--snake-case"):
        assert flag in out
