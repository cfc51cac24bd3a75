"""Subcommands beyond migrate and sandbox; filled in by the engine, talents and bench."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the job commands to the CLI's subparsers."""
