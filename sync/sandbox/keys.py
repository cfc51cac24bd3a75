"""Typed keys of the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from sync.sandbox.state import Sandbox

SANDBOX = web.AppKey("sandbox", Sandbox)
