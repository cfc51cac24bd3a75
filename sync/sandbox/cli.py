"""`taskbox-sync sandbox`: serve the sandbox until SIGINT/SIGTERM.

The first line of stdout is one JSON object for scripts (base_url, credentials, task ids as
strings, every app's under "apps", the service provider's under "provider"); a human summary
with the environment variables follows, and with several apps (`--apps N`) the apps file for
taskbox-sync and the variables of its secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from sync.sandbox.apps_file import render_apps_file, secret_env
from sync.sandbox.config import Faults, SandboxConfig, parse_faults_spec, parse_latency
from sync.sandbox.credentials import AppCredentials, all_credentials
from sync.sandbox.server import SandboxServer

PROG = "taskbox-sync sandbox"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Serve an offline simulation of the Douyin taskbox APIs.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--apps", type=int, default=1, help="how many apps it serves (default: 1)")
    p.add_argument("--videos", type=int, default=2000, help="videos of each app")
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--creators", type=int, default=200)
    p.add_argument("--latency", metavar="MIN:MAX", help="added latency in seconds, uniform")
    p.add_argument(
        "--faults",
        metavar="SPEC",
        help="e.g. busy=0.05,network=0.01,5xx=0.01,hang=0.01@30,malformed=0.01,shape=0.01,"
        "reset=0.01,storm=10,token_lifetime=60,talents=1,seed=7",
    )
    p.add_argument("--snake-case", action="store_true", help="row keys in snake_case")
    p.add_argument("--token-lifetime", type=float, metavar="SECONDS")
    p.add_argument("--token-grace", type=float, metavar="SECONDS")
    p.add_argument(
        "--no-capability", action="store_true", help="answer 28001018 to app 1's daily data"
    )
    p.add_argument(
        "--without-capability",
        metavar="APPS",
        help="apps (1-based numbers, e.g. 2,5-7) answered 28001018 to their daily data",
    )
    p.add_argument(
        "--write-apps-file",
        metavar="PATH",
        type=Path,
        help="write the apps file (TOML) for taskbox-sync to PATH",
    )
    p.add_argument("--full-width-comma", action="store_true", help='"请求成功，已添加" texts')
    p.add_argument("--warm", action="store_true", help="render the last 90 billing dates first")
    return p


def build_config(args: argparse.Namespace) -> SandboxConfig:
    now = time.time()
    faults = Faults()
    if args.faults:
        faults = parse_faults_spec(args.faults, now=now)
    if args.latency:
        try:
            low, high = parse_latency(args.latency)
        except ValueError:
            raise ValueError(f"bad --latency {args.latency!r}: expected MIN:MAX seconds") from None
        faults = replace(faults, latency_min=low, latency_max=high)
    config = SandboxConfig(
        seed=args.seed,
        apps=args.apps,
        apps_without_capability=parse_app_numbers(args.without_capability or ""),
        videos=args.videos,
        tasks=args.tasks,
        creators=args.creators,
        snake_case=args.snake_case,
        capability=not args.no_capability,
        talent_comma="，" if args.full_width_comma else ",",
        faults=faults,
    )
    if args.token_lifetime is not None:
        config = replace(config, token_lifetime=args.token_lifetime)
    if args.token_grace is not None:
        config = replace(config, token_grace=args.token_grace)
    if not 0 <= args.port <= 65535:
        raise ValueError("port must be within 0..65535")
    return config


def parse_app_numbers(spec: str) -> frozenset[int]:
    """`2,5-7` -> {2, 5, 6, 7}: app numbers, single or as inclusive ranges."""
    numbers: set[int] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        low, sep, high = item.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(f"bad app numbers {item!r}: expected N or N-M") from None
        if first < 1 or last < first:
            raise ValueError(f"bad app numbers {item!r}: expected 1 <= N <= M")
        numbers.update(range(first, last + 1))
    return frozenset(numbers)


def _apps_summary(apps: list[AppCredentials], written: Path | None) -> str:
    where = f" (written to {written})" if written is not None else ""
    lines = [
        f"Apps file for taskbox-sync{where}:",
        render_apps_file(apps).rstrip("\n"),
        "Its secrets:",
        *(f"  export {name}={value}" for name, value in secret_env(apps).items()),
    ]
    return "\n".join(lines)


def _summary(info: dict[str, Any]) -> str:
    env = {
        "DOUYIN_OPEN_BASE_URL": info["base_url"],
        "DOUYIN_DEVELOPER_BASE_URL": info["base_url"],
        "DOUYIN_CLIENT_KEY": info["client_key"],
        "DOUYIN_CLIENT_SECRET": info["client_secret"],
        "DOUYIN_APP_ID": info["app_id"],
        "DOUYIN_APP_SECRET": info["app_secret"],
    }
    apps = len(info["apps"])
    provider = info["provider"]
    serving = f"{info['videos']} videos" if apps == 1 else f"{apps} apps of {info['videos']} videos"
    lines = [
        f"taskbox sandbox serving {serving} at {info['base_url']} (Ctrl-C stops)",
        "Point taskbox-sync at it (app 1) with:" if apps > 1 else "Point taskbox-sync at it with:",
        *(f"  export {name}={value}" for name, value in env.items()),
        f"Exclusive tasks: {', '.join(map(str, info['exclusive_task_ids']))}"
        f" (terminated: {', '.join(map(str, info['terminated_task_ids']))})",
        f"Service provider: component_appid {provider['component_appid']},"
        f" component_appsecret {provider['component_appsecret']}",
        f"  its ticket: GET {info['base_url']}/__sandbox/provider",
        f"  a merchant's refresh token: POST {info['base_url']}/__sandbox/provider/authorize"
        ' {"app": CLIENT_KEY}',
        f"Stats: GET {info['base_url']}/__sandbox/stats",
    ]
    return "\n".join(lines)


async def _serve(
    config: SandboxConfig, host: str, port: int, warm: bool, apps_file: Path | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = SandboxServer(config, host=host, port=port)
    try:
        await server.start()
    except OSError as exc:
        print(f"{PROG}: error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    try:
        if warm:
            server.warm()
        info = server.info()
        sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
        sys.stdout.write(_summary(info) + "\n")
        if config.apps > 1:
            sys.stdout.write(_apps_summary(server.apps, apps_file) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def run_cli(argv: list[str] | None = None) -> int:
    """Run `taskbox-sync sandbox` with `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        config = build_config(args)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    apps_file: Path | None = args.write_apps_file
    if apps_file is not None:  # before serving: a script that reads the first line finds it
        try:
            apps_file.write_text(render_apps_file(all_credentials(config)), encoding="utf-8")
        except OSError as exc:
            print(f"{PROG}: error: cannot write {apps_file}: {exc}", file=sys.stderr)
            return 1
    return asyncio.run(_serve(config, args.host, args.port, args.warm, apps_file))
