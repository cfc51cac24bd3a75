"""The aiohttp application: every endpoint on one app, the sandbox state under one typed key."""

from __future__ import annotations

from aiohttp import web

from sync.sandbox import control, daily_data, oauth, talents, tp_auth
from sync.sandbox.config import SandboxConfig
from sync.sandbox.keys import SANDBOX
from sync.sandbox.state import Sandbox

DAILY_DATA_PATH = "/api/match/v2/taskbox/query_task_video_daily_data/"
TASK_INFO_PATH = "/api/match/v2/taskbox/query_task_info/"
TALENTS_PATH = "/api/apps/taskbox/update_orient_talents/"


def create_app(
    config: SandboxConfig | None = None, *, sandbox: Sandbox | None = None
) -> web.Application:
    """An application serving the sandbox (built from `config` unless `sandbox` is given)."""
    if sandbox is None:
        sandbox = Sandbox(config or SandboxConfig())
    app = web.Application()
    app[SANDBOX] = sandbox
    router = app.router
    router.add_post("/oauth/client_token/", oauth.client_token)
    router.add_post("/oauth/stable_client_token/", oauth.stable_client_token)
    router.add_post("/api/apps/v2/token", oauth.app_token)
    router.add_get(tp_auth.COMPONENT_TOKEN_PATH, tp_auth.component_token)
    router.add_get(tp_auth.GET_AUTH_TOKEN_PATH, tp_auth.get_auth_token)
    router.add_post(DAILY_DATA_PATH, daily_data.query_task_video_daily_data)
    router.add_post(TASK_INFO_PATH, daily_data.query_task_info)
    router.add_post(TALENTS_PATH, talents.update_orient_talents)
    router.add_get("/__sandbox/stats", control.stats)
    router.add_get("/__sandbox/info", control.info)
    router.add_get("/__sandbox/truth", control.truth)
    router.add_post("/__sandbox/mutate", control.mutate)
    router.add_post("/__sandbox/warm", control.warm)
    router.add_post("/__sandbox/reset", control.reset)
    router.add_post("/__sandbox/faults", control.faults)
    router.add_get("/__sandbox/provider", control.provider)
    router.add_post("/__sandbox/provider/rotate", control.rotate_ticket)
    router.add_post("/__sandbox/provider/authorize", control.authorize)
    router.add_post("/__sandbox/provider/deauthorize", control.deauthorize)
    return app
