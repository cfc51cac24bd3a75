"""Sending a reply through the injected faults: latency, hangs, resets, 5xx, broken bodies."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from aiohttp import web

from sync.sandbox.apps import AppState
from sync.sandbox.codes import Reply, html_error
from sync.sandbox.faults import NO_FAULT, Decision, malformed_body, wrong_shape_body
from sync.sandbox.state import Sandbox

JSON = "application/json"


def json_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=JSON, charset="utf-8")


def _abort(request: web.Request) -> None:
    """Reset the connection: RST instead of FIN (SO_LINGER 0), then drop the transport."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def deliver(
    request: web.Request,
    sandbox: Sandbox,
    app: AppState | None,
    endpoint: str,
    reply: Reply,
    *,
    decision: Decision = NO_FAULT,
    fault_error: Callable[[int], Reply] | None = None,
    log_id: str = "",
    provider: bool = False,
) -> web.StreamResponse:
    """Answer `reply`, unless the decision injects a fault; record what was sent (as `app`'s,
    and with `provider` as the provider's too)."""
    sandbox.counters.started()
    try:
        return await _deliver(
            request,
            sandbox,
            app,
            endpoint,
            reply,
            decision,
            fault_error=fault_error,
            log_id=log_id,
            provider=provider,
        )
    finally:
        sandbox.counters.answered()


async def _deliver(
    request: web.Request,
    sandbox: Sandbox,
    app: AppState | None,
    endpoint: str,
    reply: Reply,
    decision: Decision,
    *,
    fault_error: Callable[[int], Reply] | None,
    log_id: str,
    provider: bool,
) -> web.StreamResponse:
    if decision.reset:
        sandbox.record(app, endpoint, "reset", provider=provider)
        await sandbox.sleep(decision.latency)
        _abort(request)
        return web.Response()
    if decision.http_status is not None:
        body = html_error(decision.http_status)
        failed = f"http_{decision.http_status}"
        sandbox.record(app, endpoint, failed, nbytes=len(body), provider=provider)
        await sandbox.sleep(decision.latency + decision.hang)
        return web.Response(body=body, status=decision.http_status, content_type="text/html")
    code = str(reply.code)
    body = reply.body
    rows = reply.rows
    if reply.ok:
        if decision.err_no is not None and fault_error is not None:
            injected = fault_error(decision.err_no)
            code, body, rows = str(injected.code), injected.body, 0
        elif decision.malformed:
            code, body, rows = "malformed", malformed_body(body, decision.variant), 0
        elif decision.wrong_shape:
            code, body, rows = "wrong_shape", wrong_shape_body(log_id, decision.variant), 0
    sandbox.record(app, endpoint, code, nbytes=len(body), rows=rows, provider=provider)
    await sandbox.sleep(decision.latency + decision.hang)
    return json_response(body)
