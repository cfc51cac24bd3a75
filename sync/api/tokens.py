"""Access tokens: fetched once, cached until shortly before they expire, refreshed single-flight.

A new token invalidates the previous one after a grace period and only the newest two live, so
tokens are never fetched per request: every caller shares one cached value, and when a request
reports the token bad, only the first reporter triggers a refresh; the others get its result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from sync.api.http import post
from sync.errors import ContractError, CredentialsError, SettingsError, TokenError, api_error
from sync.records.decode import decode_json
from sync.settings import Secret, Settings

REFRESH_MARGIN = 300.0  # refresh this many seconds before the platform's expiry


class TokenProvider(Protocol):
    async def get(self) -> str: ...

    async def invalidate(self, token: str) -> None:
        """Report `token` as rejected; the next `get` returns a different one, or raises."""


class StaticToken:
    """A token obtained elsewhere (DOUYIN_ACCESS_TOKEN): used as given, cannot be refreshed."""

    def __init__(self, token: Secret, *, endpoint: str) -> None:
        self._token = token
        self._endpoint = endpoint

    async def get(self) -> str:
        return self._token.reveal()

    async def invalidate(self, token: str) -> None:
        raise CredentialsError(
            "DOUYIN_ACCESS_TOKEN was rejected (expired or invalid) and cannot be refreshed: "
            "set a new token, or unset it and set DOUYIN_CLIENT_KEY/DOUYIN_CLIENT_SECRET",
            endpoint=self._endpoint,
        )


def lenient_int(value: Any, default: int) -> int:
    """Lenient number parsing: some samples send numbers as strings."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class CachedToken:
    """The caching and single-flight part shared by every kind of token that can be renewed:
    a subclass says how to `_fetch` one."""

    endpoint = "token"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _fetch(self) -> tuple[str, int]:
        raise NotImplementedError

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    async def get(self) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():  # someone else may have refreshed while we waited
                token, expires_in = await self._fetch()
                self.fetches += 1
                self._token = token
                margin = min(REFRESH_MARGIN, expires_in / 4)
                self._expires_at = self._clock() + max(expires_in - margin, 1.0)
            assert self._token is not None
            return self._token

    async def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None


class ClientTokenProvider(CachedToken):
    """The open-platform client token: POST {base}/oauth/client_token/."""

    endpoint = "oauth/client_token"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        client_key: str,
        client_secret: Secret,
        *,
        clock: Callable[[], float] = time.monotonic,
        named: str | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self._named = named  # how a refusal names the credentials (default: DOUYIN_*)
        self._session = session
        self._url = base_url + "/oauth/client_token/"
        self._key = client_key
        self._secret = client_secret

    async def _fetch(self) -> tuple[str, int]:
        body = json.dumps(
            {
                "client_key": self._key,
                "client_secret": self._secret.reveal(),
                "grant_type": "client_credential",
            }
        ).encode()
        resp = await post(self._session, self._url, body, endpoint=self.endpoint)
        doc = decode_json(resp.body, endpoint=self.endpoint)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict):
            raise ContractError("token answer has no data object", endpoint=self.endpoint)
        code = lenient_int(data.get("error_code", 0), -1)
        extra = doc.get("extra") if isinstance(doc.get("extra"), dict) else {}
        log_id = str(extra.get("logid") or "") or None
        if code != 0:
            message = str(data.get("description") or doc.get("message") or "token refused")
            raise api_error(
                "oauth",
                code,
                message,
                endpoint=self.endpoint,
                log_id=log_id,
                credentials=self._named,
            )
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise ContractError("token answer has no access_token", endpoint=self.endpoint)
        return token, lenient_int(data.get("expires_in"), 7200)


class AppTokenProvider(CachedToken):
    """The mini-app token for the talent commands: POST {base}/api/apps/v2/token."""

    endpoint = "apps/v2/token"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        app_id: str,
        app_secret: Secret,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self._session = session
        self._url = base_url + "/api/apps/v2/token"
        self._app_id = app_id
        self._secret = app_secret

    async def _fetch(self) -> tuple[str, int]:
        body = json.dumps(
            {
                "appid": self._app_id,
                "secret": self._secret.reveal(),
                "grant_type": "client_credential",
            }
        ).encode()
        resp = await post(self._session, self._url, body, endpoint=self.endpoint)
        doc = decode_json(resp.body, endpoint=self.endpoint)
        if not isinstance(doc, dict):
            raise ContractError("token answer is not an object", endpoint=self.endpoint)
        code = lenient_int(doc.get("err_no", 0), -1)
        log_id = str(doc.get("log_id") or "") or None
        if code != 0:
            message = str(doc.get("err_tips") or "token refused")
            raise api_error("apps", code, message, endpoint=self.endpoint, log_id=log_id)
        data = doc.get("data")
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ContractError("token answer has no access_token", endpoint=self.endpoint)
        assert isinstance(data, dict)
        return token, lenient_int(data.get("expires_in"), 7200)


class CommandTokenProvider(CachedToken):
    """A token printed by a program of the operator's (`token_command` in the apps file): the
    convention of AWS `credential_process` and kubectl's exec plugins. The program prints
    `{"access_token": "…", "expires_in": N}` on stdout; it runs when a token is needed (the
    first request, near expiry, after the platform refused the last one), without a shell,
    within `timeout` seconds. Nothing it prints reaches a log or an error: a provider's own token
    service keeps its refresh tokens, and taskbox-sync stays out of them."""

    endpoint = "token_command"

    def __init__(
        self,
        argv: tuple[str, ...],
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self._argv = argv
        self._timeout = timeout

    def _refused(self, why: str) -> CredentialsError:
        program = self._argv[0].rsplit("/", 1)[-1]
        return CredentialsError(f"token_command ({program}): {why}", endpoint=self.endpoint)

    async def _fetch(self) -> tuple[str, int]:
        try:
            out = await program_output(self._argv, self._timeout)
        except ProgramError as exc:
            hint = " (run it by hand to see why)" if exc.exited else ""
            raise self._refused(f"{exc}{hint}") from None
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise self._refused(
                'expected {"access_token": "…", "expires_in": N} on its standard output'
            )
        assert isinstance(doc, dict)
        return token.strip(), max(lenient_int(doc.get("expires_in"), 7200), 1)


TokenFactory = Callable[[Settings, aiohttp.ClientSession], TokenProvider]
"""Builds an app's token source on a session: `token_provider`, or a run's provider-mode
factory (`sync.api.provider.ProviderTokens`)."""


class ProgramError(Exception):
    """A program of the operator's could not give its output: why, in a few words; `exited`
    when it ran and failed (its own message, unread, would say why)."""

    def __init__(self, why: str, *, exited: bool = False) -> None:
        super().__init__(why)
        self.exited = exited


async def program_output(argv: tuple[str, ...], seconds: float) -> bytes:
    """The standard output of `argv`, run without a shell, with no input, within `seconds`;
    its standard error is never read (it may hold what it used). ProgramError when it cannot
    run, takes too long or exits non-zero."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        raise ProgramError(f"cannot run it: {exc.strerror or type(exc).__name__}") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ProgramError(f"no answer within {seconds:g} s") from None
    if proc.returncode != 0:
        raise ProgramError(f"exited with status {proc.returncode}", exited=True)
    return out


def token_provider(settings: Settings, session: aiohttp.ClientSession) -> TokenProvider:
    """DOUYIN_ACCESS_TOKEN (or an app's access token) as given; else a token command's; else
    client tokens fetched from key and secret."""
    if settings.access_token:
        return StaticToken(settings.access_token, endpoint="query_task_video_daily_data")
    if settings.provider is not None:
        raise SettingsError(
            f"app {settings.recorded_app}: provider mode needs the token vault "
            "(a run with TASKBOX_SECRET_KEY and a database)"
        )
    if settings.token_command:
        return CommandTokenProvider(settings.token_command, timeout=settings.token_timeout)
    settings.require_daily_data_credentials()
    assert settings.client_key is not None and settings.client_secret is not None
    named = f"app {settings.app}'s client_key/client_secret" if settings.app else None
    return ClientTokenProvider(
        session, settings.open_base_url, settings.client_key, settings.client_secret, named=named
    )


__all__ = [
    "AppTokenProvider",
    "ClientTokenProvider",
    "CommandTokenProvider",
    "CredentialsError",
    "StaticToken",
    "TokenError",
    "TokenFactory",
    "TokenProvider",
    "token_provider",
]
