"""Provider mode (服务商): a merchant's daily-data token from the provider's component token.

Two calls of the platform's, and the rules that keep a refresh-token chain alive:

- the component token (`GET /openapi/v2/auth/tp/token/`) from the component app id, its secret
  and the current ticket, which the platform pushes to the provider every 10 minutes
  (`read_ticket`: a file the provider's receiver rewrites, a program, or a value as given);
- the merchant's authorizer token (`GET /api/tpapp/v2/auth/get_auth_token/`) from the component
  token and the merchant's authorizer refresh token. Every refresh answers a NEW refresh token
  and retires the old one after a short grace, so the new one is stored (and committed) before
  the new access token is used, and the stored row is locked while a refresh is in flight: two
  processes never refresh one merchant at once, and the second finds the first's access token.

The storage is a part passed in (`TokenVault`, implemented over PostgreSQL by
`sync.db.vault`): this module does HTTP and bookkeeping only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import aiohttp

from sync.api.http import get
from sync.api.tokens import (
    REFRESH_MARGIN,
    CachedToken,
    ProgramError,
    TokenProvider,
    lenient_int,
    program_output,
    token_provider,
)
from sync.errors import (
    AuthorizationError,
    ContractError,
    CredentialsError,
    TokenRejectedError,
    api_error,
)
from sync.records.decode import decode_json
from sync.settings import ProviderSettings, Settings

T = TypeVar("T")
COMPONENT_ENDPOINT = "tp/token"
AUTH_ENDPOINT = "get_auth_token"


def _authorize_again(app_id: str) -> str:
    return f"authorize it again: taskbox-sync apps authorize {app_id} (the token on stdin)"


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizerGrant:
    """What get_auth_token answers for one merchant (its repr hides both tokens)."""

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)
    expires_in: int
    refresh_expires_in: int
    authorizer_appid: str | None

    def stored(self) -> dict[str, Any]:
        """What the vault keeps of it."""
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        }


# -- storage, passed in -----------------------------------------------------------------------


class StoredToken(Protocol):
    """A row of the vault, locked for as long as its context is open; what `renewed` writes is
    committed when the context closes without an error."""

    @property
    def access_token(self) -> str | None: ...

    @property
    def access_seconds_left(self) -> float: ...

    async def renewed(self, token: str, expires_in: int) -> None: ...


class StoredAuthorization(StoredToken, Protocol):
    @property
    def refresh_token(self) -> str | None: ...

    async def renewed_authorization(
        self, *, access_token: str, expires_in: int, refresh_token: str, refresh_expires_in: int
    ) -> None: ...


class TokenVault(Protocol):
    def component(self, component_appid: str) -> AbstractAsyncContextManager[StoredToken]: ...

    def merchant(
        self, app_id: str, component_appid: str
    ) -> AbstractAsyncContextManager[StoredAuthorization]: ...


# -- the platform's two calls -----------------------------------------------------------------


async def read_ticket(provider: ProviderSettings) -> str:
    """The current component ticket: the file's content, the program's output, or as given."""
    if provider.ticket is not None:
        return provider.ticket.reveal()
    if provider.ticket_file is not None:
        try:
            text = provider.ticket_file.read_text(encoding="utf-8-sig").strip()
        except OSError as exc:
            raise CredentialsError(
                f"component ticket file {provider.ticket_file}: cannot read it "
                f"({exc.strerror or type(exc).__name__})",
                endpoint=COMPONENT_ENDPOINT,
            ) from None
        if not text:
            raise CredentialsError(
                f"component ticket file {provider.ticket_file} is empty",
                endpoint=COMPONENT_ENDPOINT,
            )
        return text
    assert provider.ticket_command is not None
    return await _ticket_from_command(provider.ticket_command, provider.ticket_timeout)


async def _ticket_from_command(argv: tuple[str, ...], seconds: float) -> str:
    program = argv[0].rsplit("/", 1)[-1]

    def refused(why: str) -> CredentialsError:
        return CredentialsError(
            f"component_ticket_command ({program}): {why}", endpoint=COMPONENT_ENDPOINT
        )

    try:
        out = await program_output(argv, seconds)
    except ProgramError as exc:
        raise refused(str(exc)) from None
    ticket = out.decode("utf-8", "replace").strip()
    if not ticket or "\n" in ticket:
        raise refused("expected the ticket alone on its standard output")
    return ticket


async def fetch_component_token(
    session: aiohttp.ClientSession, base_url: str, provider: ProviderSettings, ticket: str
) -> tuple[str, int]:
    """A new component access token and its lifetime in seconds."""
    params = {
        "component_appid": provider.component_appid,
        "component_appsecret": provider.component_secret.reveal(),
        "component_ticket": ticket,
    }
    resp = await get(
        session, base_url + "/openapi/v2/auth/tp/token/", params=params, endpoint=COMPONENT_ENDPOINT
    )
    doc = decode_json(resp.body, endpoint=COMPONENT_ENDPOINT)
    if not isinstance(doc, dict):
        raise ContractError("component token answer is not an object", endpoint=COMPONENT_ENDPOINT)
    code = lenient_int(doc.get("errno", 0), -1)
    if code != 0:
        message = str(doc.get("message") or "refused")
        raise api_error(
            "component",
            code,
            f"provider {provider.component_appid}: component token refused ({message}); check "
            "component_appid, its secret and the ticket source",
            endpoint=COMPONENT_ENDPOINT,
            log_id=str(doc.get("log_id") or "") or None,
        )
    token = doc.get("component_access_token")
    if not isinstance(token, str) or not token:
        raise ContractError("component token answer has no token", endpoint=COMPONENT_ENDPOINT)
    return token, max(lenient_int(doc.get("expires_in"), 3600), 1)


async def fetch_authorizer_token(
    session: aiohttp.ClientSession,
    base_url: str,
    component_token: str,
    *,
    refresh_token: str | None = None,
    authorization_code: str | None = None,
) -> AuthorizerGrant:
    """A merchant's new authorizer tokens, from its refresh token (or a fresh authorization
    code). Errors: TokenRejectedError (the component token), AuthorizationError (the refresh
    token or code refused), ServerBusyError, TransportError."""
    if refresh_token is not None:
        params = {
            "grant_type": "app_to_tp_refresh_token",
            "authorizer_refresh_token": refresh_token,
        }
    else:
        assert authorization_code is not None
        params = {
            "grant_type": "app_to_tp_authorization_code",
            "authorization_code": authorization_code,
        }
    resp = await get(
        session,
        base_url + "/api/tpapp/v2/auth/get_auth_token/",
        params=params,
        headers={"access-token": component_token},
        endpoint=AUTH_ENDPOINT,
    )
    doc = decode_json(resp.body, endpoint=AUTH_ENDPOINT)
    if not isinstance(doc, dict):
        raise ContractError("get_auth_token answer is not an object", endpoint=AUTH_ENDPOINT)
    code = lenient_int(doc.get("err_no", 0), -1)
    log_id = str(doc.get("log_id") or "") or None
    if code != 0:
        message = str(doc.get("err_msg") or "refused")
        raise api_error("tpapp", code, message, endpoint=AUTH_ENDPOINT, log_id=log_id)
    data: Any = doc.get("data")
    access = data.get("authorizer_access_token") if isinstance(data, dict) else None
    refresh = data.get("authorizer_refresh_token") if isinstance(data, dict) else None
    if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
        raise ContractError("get_auth_token answer lacks a token", endpoint=AUTH_ENDPOINT)
    appid = data.get("authorizer_appid")
    return AuthorizerGrant(
        access_token=access,
        refresh_token=refresh,
        expires_in=max(lenient_int(data.get("expires_in"), 7200), 1),
        refresh_expires_in=max(lenient_int(data.get("refresh_expires_in"), 2_592_000), 1),
        authorizer_appid=appid if isinstance(appid, str) and appid else None,
    )


# -- keeping tokens -----------------------------------------------------------------------------


class ComponentTokens:
    """One provider's component token for a process: the vault's while it is valid (another
    process may have renewed it: fetching a new one retires the others' after 5 minutes), else
    a new one from the current ticket, stored for the others."""

    def __init__(self, provider: ProviderSettings, vault: TokenVault, base_url: str) -> None:
        self.provider = provider
        self._vault = vault
        self.base_url = base_url
        self._lock = asyncio.Lock()
        self._rejected: set[str] = set()
        self.fetches = 0

    async def get(self, session: aiohttp.ClientSession) -> str:
        async with self._lock, self._vault.component(self.provider.component_appid) as stored:
            token = stored.access_token
            if token and token not in self._rejected and stored.access_seconds_left > 60:
                return token
            ticket = await read_ticket(self.provider)
            token, expires_in = await fetch_component_token(
                session, self.base_url, self.provider, ticket
            )
            self.fetches += 1
            await stored.renewed(token, expires_in)
        return token

    async def using(self, session: aiohttp.ClientSession, call: Callable[[str], Awaitable[T]]) -> T:
        """`call(component_token)`; once more with a new token if the platform refuses it (a
        newer one fetched elsewhere retires it)."""
        token = await self.get(session)
        try:
            return await call(token)
        except TokenRejectedError:
            self.reject(token)
        return await call(await self.get(session))

    def reject(self, token: str) -> None:
        """The platform called `token` invalid or expired: the next `get` fetches anew."""
        self._rejected.add(token)


class AuthorizerTokenProvider(CachedToken):
    """The daily-data (and talents) token of a provider's merchant `app_id`."""

    endpoint = AUTH_ENDPOINT

    def __init__(
        self,
        app_id: str,
        component: ComponentTokens,
        vault: TokenVault,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.app_id = app_id
        self._component = component
        self._vault = vault
        self._session = session
        self._rejected: str | None = None
        self.refreshes = 0

    async def _fetch(self) -> tuple[str, int]:
        appid = self._component.provider.component_appid
        async with self._vault.merchant(self.app_id, appid) as stored:
            token = stored.access_token
            left = stored.access_seconds_left
            if token and token != self._rejected and left > REFRESH_MARGIN:
                return token, int(left)  # another process (or run) renewed it
            if stored.refresh_token is None:
                raise AuthorizationError(
                    f"app {self.app_id}: no authorizer refresh token is stored; "
                    + _authorize_again(self.app_id),
                    endpoint=AUTH_ENDPOINT,
                )
            grant = await self._refresh(stored.refresh_token)
            # Committed as the context closes, before anyone uses the new access token.
            await stored.renewed_authorization(**grant.stored())
            self.refreshes += 1
        return grant.access_token, grant.expires_in

    async def _refresh(self, refresh_token: str) -> AuthorizerGrant:
        base = self._component.base_url

        async def refresh(component: str) -> AuthorizerGrant:
            return await fetch_authorizer_token(
                self._session, base, component, refresh_token=refresh_token
            )

        try:
            grant = await self._component.using(self._session, refresh)
        except AuthorizationError as exc:
            raise AuthorizationError(
                f"app {self.app_id}: the platform refused its authorizer refresh token "
                f"({exc.message}); " + _authorize_again(self.app_id),
                endpoint=AUTH_ENDPOINT,
                err_no=exc.err_no,
                log_id=exc.log_id,
            ) from None
        if grant.authorizer_appid not in (None, self.app_id):
            raise AuthorizationError(
                f"app {self.app_id}: the stored authorization is app "
                f"{grant.authorizer_appid}'s; " + _authorize_again(self.app_id),
                endpoint=AUTH_ENDPOINT,
            )
        return grant

    async def invalidate(self, token: str) -> None:
        self._rejected = token
        await super().invalidate(token)


class ProviderTokens:
    """The token factory of a run that has provider apps: each provider app's authorizer
    tokens through the vault (one component token per provider, shared by its apps); any other
    app's as `token_provider` gives them."""

    def __init__(self, vault: TokenVault) -> None:
        self._vault = vault
        self._components: dict[str, ComponentTokens] = {}

    def component(self, settings: Settings) -> ComponentTokens:
        provider = settings.provider
        assert provider is not None
        known = self._components.get(provider.component_appid)
        if known is None:
            known = ComponentTokens(provider, self._vault, settings.open_base_url)
            self._components[provider.component_appid] = known
        return known

    def __call__(self, settings: Settings, session: aiohttp.ClientSession) -> TokenProvider:
        if settings.provider is None:
            return token_provider(settings, session)
        return AuthorizerTokenProvider(
            settings.recorded_app, self.component(settings), self._vault, session
        )
