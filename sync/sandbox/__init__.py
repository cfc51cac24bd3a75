"""An offline simulation of the Douyin taskbox APIs, limits and errors included."""

from sync.sandbox.app import create_app
from sync.sandbox.cli import run_cli
from sync.sandbox.config import Faults, SandboxConfig
from sync.sandbox.server import SandboxServer
from sync.sandbox.state import Sandbox

__all__ = ["Faults", "Sandbox", "SandboxConfig", "SandboxServer", "create_app", "run_cli"]
