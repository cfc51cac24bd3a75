"""Access tokens with the platform's life cycle: lifetime, grace after renewal, newest two live.

Pure state over an injected clock. A new token leaves the previous one valid for `grace` seconds
(never past its own expiry); only the newest two are live, so a third invalidates the first.
A token's last four hex digits are its app's number: a request finds the app (and the throttle
window) it counts against from its token alone.
"""

from __future__ import annotations

import enum
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from sync.sandbox.config import Clock

_REMEMBERED = 10_000
"""How many dead tokens are remembered (to tell "expired" from "never issued")."""
_TAG_DIGITS = 4


def token_app(value: str) -> int | None:
    """The app number a token's value carries (None when it carries none)."""
    tag = value[-_TAG_DIGITS:]
    if len(tag) != _TAG_DIGITS or not all(c in "0123456789abcdef" for c in tag):
        return None
    return int(tag, 16)


class TokenState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    """Its time ran out: the lifetime, or the grace after a newer token."""
    INVALID = "invalid"
    """Never issued, pushed out by newer tokens, or revoked."""


@dataclass
class _Token:
    value: str
    expires_at: float
    superseded_at: float | None = None


class TokenStore:
    """Tokens of one credential (one client key, or one mini-app) of app number `app`."""

    def __init__(
        self, *, prefix: str, lifetime: float, grace: float, clock: Clock, app: int = 1
    ) -> None:
        if not 0 <= app < 16**_TAG_DIGITS:
            raise ValueError(f"app number {app} does not fit a token")
        self._prefix = prefix
        self._tag = f"{app:0{_TAG_DIGITS}x}"
        self.lifetime = lifetime
        self._grace = grace
        self._clock = clock
        self._live: list[_Token] = []
        """Newest last; at most two."""
        self._dead: OrderedDict[str, TokenState] = OrderedDict()

    def _valid_until(self, token: _Token) -> float:
        if token.superseded_at is None:
            return token.expires_at
        return min(token.expires_at, token.superseded_at + self._grace)

    def _bury(self, token: _Token, state: TokenState) -> None:
        self._dead[token.value] = state
        while len(self._dead) > _REMEMBERED:
            self._dead.popitem(last=False)

    def issue(self, lifetime: float | None = None) -> tuple[str, int]:
        """A new token and its lifetime in whole seconds."""
        now = self._clock()
        life = self.lifetime if lifetime is None else lifetime
        if self._live:
            newest = self._live[-1]
            if newest.superseded_at is None:
                newest.superseded_at = now
        value = self._prefix + secrets.token_hex(20 - _TAG_DIGITS // 2) + self._tag
        token = _Token(value=value, expires_at=now + life)
        self._live.append(token)
        while len(self._live) > 2:
            old = self._live.pop(0)
            ended = now >= self._valid_until(old)
            self._bury(old, TokenState.EXPIRED if ended else TokenState.INVALID)
        return token.value, max(1, round(life))

    def current(self) -> tuple[str, int] | None:
        """The newest token and its remaining whole seconds, if it is still valid."""
        if not self._live:
            return None
        newest = self._live[-1]
        if self.check(newest.value) is not TokenState.VALID:
            return None
        return newest.value, max(1, int(newest.expires_at - self._clock()))

    def check(self, value: str) -> TokenState:
        now = self._clock()
        for token in self._live:
            if token.value == value:
                return TokenState.VALID if now < self._valid_until(token) else TokenState.EXPIRED
        return self._dead.get(value, TokenState.INVALID)

    def remembered(self) -> list[str]:
        """Every token value it still knows, live, expired or revoked (what must never leak)."""
        return [t.value for t in self._live] + list(self._dead)

    def revoke_all(self) -> None:
        """Invalidate every token now."""
        for token in self._live:
            self._bury(token, TokenState.INVALID)
        self._live.clear()
