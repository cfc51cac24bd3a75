"""The sandbox's service provider (服务商): its component ticket, component tokens, and the
grants merchants give it (authorizer refresh tokens, authorization codes). Pure state over the
sandbox's clock; the endpoints are in `tp_auth`, the authorizer access tokens in each merchant's
`AppState.authorizer_tokens` (so a request finds its merchant, and its throttle, from the token).

Rules, the platform's where known and the sandbox's choice where the docs are silent:
- One provider per sandbox (`SandboxConfig.component_appid`, its secret from
  `credentials.provider_credentials`). Every app of the sandbox can be its merchant.
- The component ticket rotates every `ticket_period` seconds of the sandbox clock (or at once by
  `rotate_ticket`); the current and the previous one are accepted, older ones refused. When
  several periods pass unseen, only the current one is accepted (no one saw the one before).
- Component tokens follow `TokenStore`: each call issues a new one, the previous stays valid for
  `token_grace`, only the newest two live; life `component_token_lifetime` (3600 s) unless a fault
  shortens every token.
- A refresh token lives `refresh_lifetime` (30 days) while unused. Using it (successfully) gives
  a new one; the used one stays accepted for `refresh_grace` seconds from its first use, then
  dies. A refresh token that is never used stays valid its 30 days, even when its predecessor
  was used again within the grace (sandbox's choice).
- An authorization code (`authorization_code`) works once, within `AUTH_CODE_LIFETIME`.
- `deauthorize` (a merchant withdrawing the grant) kills its refresh tokens, codes and
  authorizer access tokens.
- Everything secret the provider ever issued is kept in `issued_secrets()` for the secrets tests.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sync.sandbox.apps import AppState
from sync.sandbox.config import Clock, SandboxConfig
from sync.sandbox.credentials import ProviderCredentials, provider_credentials
from sync.sandbox.stats import Stats
from sync.sandbox.tokens import TokenStore

AUTH_CODE_LIFETIME = 600.0
"""How long an authorization code can be exchanged (the sandbox's choice)."""

DATA_ANALYSIS = {
    "id": 4,
    "category": "数据分析权限",
    "description": "能够获得小程序相关数据并进行数据分析",
}
TASK_MANAGEMENT = {
    "id": 8,
    "category": "推广计划任务管理权限",
    "description": "帮助小程序管理小程序推广计划的任务与达人",
}
"""Permission 8, the promotion plan's task management (its texts are the sandbox's)."""


def permissions(merchant: AppState) -> list[dict[str, object]]:
    """What `merchant` granted: task management, and data analysis when it holds that capability
    (a merchant without it answers 28001018 to daily data)."""
    return [DATA_ANALYSIS, TASK_MANAGEMENT] if merchant.capability else [TASK_MANAGEMENT]


class Tickets:
    """The component ticket of the moment and the one before, rotating on the clock."""

    def __init__(self, period: float, clock: Clock, on_issue: Callable[[str], None]) -> None:
        self._period = period
        self._clock = clock
        self._on_issue = on_issue
        self._previous: str | None = None
        self._current = self._new()
        self._since = clock()

    def _new(self) -> str:
        value = "tkt." + secrets.token_hex(24)
        self._on_issue(value)
        return value

    def _advance(self) -> None:
        periods = int((self._clock() - self._since) // self._period)
        if periods < 1:
            return
        self._previous = self._current if periods == 1 else None
        self._current = self._new()
        self._since += periods * self._period

    def current(self) -> str:
        self._advance()
        return self._current

    def rotate(self) -> str:
        """A new ticket now; the one it replaces stays accepted until the next rotation."""
        self._advance()
        self._previous = self._current
        self._current = self._new()
        self._since = self._clock()
        return self._current

    def accepts(self, value: str) -> bool:
        self._advance()
        return value == self._current or (self._previous is not None and value == self._previous)


class GrantState(enum.Enum):
    VALID = "valid"
    USED = "used"
    """Used, and past its grace (or a used code)."""
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass
class _Grant:
    merchant: int
    expires_at: float
    used_at: float | None = None
    revoked: bool = False


class Grants:
    """Refresh tokens or authorization codes: value -> merchant number, with their life."""

    def __init__(self, *, prefix: str, lifetime: float, grace: float, clock: Clock) -> None:
        self._prefix = prefix
        self.lifetime = lifetime
        self._grace = grace
        self._clock = clock
        self._grants: dict[str, _Grant] = {}

    def issue(self, merchant: int) -> str:
        value = self._prefix + secrets.token_hex(32)
        self._grants[value] = _Grant(merchant, self._clock() + self.lifetime)
        return value

    def merchant(self, value: str) -> int | None:
        """The merchant a value was issued for (dead or alive), None when never issued."""
        grant = self._grants.get(value)
        return None if grant is None else grant.merchant

    def state(self, value: str) -> GrantState:
        grant = self._grants.get(value)
        now = self._clock()
        if grant is None:
            return GrantState.UNKNOWN
        if grant.revoked:
            return GrantState.REVOKED
        if now >= grant.expires_at:
            return GrantState.EXPIRED
        if grant.used_at is not None and now >= grant.used_at + self._grace:
            return GrantState.USED
        return GrantState.VALID

    def use(self, value: str) -> int | None:
        """Use a valid grant: its merchant, its grace starting at its first use (None: refused)."""
        if self.state(value) is not GrantState.VALID:
            return None
        grant = self._grants[value]
        if grant.used_at is None:
            grant.used_at = self._clock()
        return grant.merchant

    def revoke(self, merchant: int) -> None:
        for grant in self._grants.values():
            if grant.merchant == merchant:
                grant.revoked = True


class Provider:
    """The provider's side of the platform: credentials, tickets, component tokens, grants, and
    the counters of its endpoints (each get_auth_token call counts for its merchant too)."""

    def __init__(self, config: SandboxConfig) -> None:
        self.credentials: ProviderCredentials = provider_credentials(config)
        self._issued: list[str] = []
        self.tickets = Tickets(config.ticket_period, config.clock, self._issued.append)
        self.component_tokens = TokenStore(
            prefix="clt.",
            lifetime=config.component_token_lifetime,
            grace=config.token_grace,
            clock=config.clock,
            app=0,  # names no app: used on daily data it counts against app 1, as a bad token
        )
        self.refresh_tokens = Grants(
            prefix="rft.",
            lifetime=config.refresh_lifetime,
            grace=config.refresh_grace,
            clock=config.clock,
        )
        self.codes = Grants(
            prefix="code.", lifetime=AUTH_CODE_LIFETIME, grace=0.0, clock=config.clock
        )
        self.counters = Stats()

    def issue_component_token(self, lifetime: float | None) -> tuple[str, int]:
        token, expires_in = self.component_tokens.issue(lifetime)
        self._issued.append(token)
        return token, expires_in

    def issue_refresh_token(self, merchant: AppState) -> tuple[str, int]:
        """A new refresh token for `merchant` and its life in whole seconds."""
        value = self.refresh_tokens.issue(merchant.number)
        self._issued.append(value)
        return value, round(self.refresh_tokens.lifetime)

    def issue_code(self, merchant: AppState) -> str:
        value = self.codes.issue(merchant.number)
        self._issued.append(value)
        return value

    def issue_access_token(self, merchant: AppState, lifetime: float | None) -> tuple[str, int]:
        token, expires_in = merchant.authorizer_tokens.issue(lifetime)
        self._issued.append(token)
        return token, expires_in

    def deauthorize(self, merchant: AppState) -> None:
        """`merchant` withdraws its grant: its refresh tokens, codes and access tokens die."""
        self.refresh_tokens.revoke(merchant.number)
        self.codes.revoke(merchant.number)
        merchant.authorizer_tokens.revoke_all()

    def issued_secrets(self) -> list[str]:
        """The component secret, and every ticket, component token, refresh token, code and
        authorizer access token ever issued (what must never leak)."""
        return [self.credentials.component_appsecret, *self._issued]
