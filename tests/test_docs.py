"""The README documents every command and every setting the code reads."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from sync.cli.main import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices) if actions else []


def test_every_command_is_documented() -> None:
    """Each `taskbox-sync` subcommand (and each talents subcommand) appears in the README."""
    parser = build_parser()
    commands = _subcommands(parser)
    assert {"migrate", "nightly", "backfill", "status", "demo", "sandbox", "talents"} <= set(
        commands
    )
    for name in commands:
        assert f"taskbox-sync {name}" in README, name
    talents = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in _subcommands(talents.choices["talents"]):
        assert re.search(rf"talents [a-z|\\\\]*\b{name}\b", README), name


def test_every_top_level_flag_is_documented() -> None:
    """Each flag of `taskbox-sync` itself (before any command), e.g. --version, is in the README."""
    flags = [f for a in build_parser()._actions for f in a.option_strings if f.startswith("--")]
    assert "--version" in flags
    for flag in flags:
        if flag != "--help":
            assert f"taskbox-sync {flag}" in README, flag


def test_every_setting_is_documented() -> None:
    """Each environment variable the settings read is in the README's settings table."""
    source = (Path(__file__).resolve().parent.parent / "sync" / "settings.py").read_text()
    names = set(re.findall(r'"((?:DOUYIN|TASKBOX|DATABASE)_[A-Z_]+)"', source))
    assert "DATABASE_URL" in names and "TASKBOX_QPS" in names
    for name in names:
        assert f"`{name}`" in README, name


def test_every_sync_flag_is_documented() -> None:
    """Each flag of `nightly` and `backfill` appears in the README."""
    parsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    for name in ("nightly", "backfill"):
        for action in parsers[name]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert re.search(rf"{flag}\b", README), f"{name} {flag}"
