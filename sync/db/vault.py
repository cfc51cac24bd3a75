"""The provider's tokens in PostgreSQL, sealed: what `sync.api.provider.TokenVault` asks for.

Tokens are sealed with Fernet (`cryptography`: AES-128-CBC with HMAC-SHA256, a timestamped,
versioned format) under the key(s) of TASKBOX_SECRET_KEY: comma-separated keys, the first seals,
every one unseals (`MultiFernet`), so a key is rotated by putting the new one first and keeping
the old one until `apps authorize` or a refresh has re-sealed every row.

A token's row is read `FOR UPDATE` in a transaction held open while the caller renews it: a
second process that wants the same merchant waits, then finds the first's access token. What
`renewed…` writes is committed when the context closes without an error, before the caller
uses the new token; an error (a crash) rolls it back and the old refresh token stays stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.db.database import translate_errors
from sync.errors import AuthorizationError, SettingsError
from sync.settings import Secret

KEY_VARIABLE = "TASKBOX_SECRET_KEY"
NEW_KEY_HINT = "make one with: taskbox-sync apps new-key"


class Sealer:
    """Seals and unseals text with the key(s) of TASKBOX_SECRET_KEY; its repr shows no key."""

    def __init__(self, keys: Secret) -> None:
        parts = [part.strip() for part in keys.reveal().split(",") if part.strip()]
        try:
            fernets = [Fernet(part.encode()) for part in parts]
        except (ValueError, TypeError):
            raise SettingsError(
                f"{KEY_VARIABLE}: expected Fernet keys (44 characters of url-safe base64), "
                f"separated by commas; {NEW_KEY_HINT}"
            ) from None
        if not fernets:
            raise SettingsError(f"{KEY_VARIABLE}: empty; {NEW_KEY_HINT}")
        self._box = MultiFernet(fernets)

    @classmethod
    def required(cls, keys: Secret | None, why: str) -> Sealer:
        if not keys:
            raise SettingsError(f"{KEY_VARIABLE}: not set; {why} needs it; {NEW_KEY_HINT}")
        return cls(keys)

    def seal(self, value: str) -> str:
        return self._box.encrypt(value.encode()).decode()

    def unseal(self, sealed: str) -> str | None:
        """The value, or None when no key of TASKBOX_SECRET_KEY opens it."""
        try:
            return self._box.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None

    def __repr__(self) -> str:
        return "Sealer(keys=**********)"


def new_key() -> str:
    """A new random key for TASKBOX_SECRET_KEY."""
    return Fernet.generate_key().decode()


@dataclasses.dataclass(slots=True)
class _Locked:
    """One locked row: its tokens unsealed, and the statement that renews it."""

    conn: AsyncConnection
    sealer: Sealer
    key: str
    access_token: str | None
    access_seconds_left: float
    refresh_token: str | None = None

    async def renewed(self, token: str, expires_in: int) -> None:
        await self.conn.execute(
            text(
                "UPDATE provider_components SET access_token_sealed = :token, "
                "access_expires_at = now() + make_interval(secs => :life), renewed_at = now() "
                "WHERE component_appid = :key"
            ),
            {"token": self.sealer.seal(token), "life": expires_in, "key": self.key},
        )

    async def renewed_authorization(
        self, *, access_token: str, expires_in: int, refresh_token: str, refresh_expires_in: int
    ) -> None:
        await self.conn.execute(
            text(
                "UPDATE provider_authorizations SET refresh_token_sealed = :refresh, "
                "refresh_expires_at = now() + make_interval(secs => :refresh_life), "
                "access_token_sealed = :access, "
                "access_expires_at = now() + make_interval(secs => :life), "
                "renewed_at = now(), renewals = renewals + 1 WHERE app_id = :key"
            ),
            {
                "refresh": self.sealer.seal(refresh_token),
                "refresh_life": refresh_expires_in,
                "access": self.sealer.seal(access_token),
                "life": expires_in,
                "key": self.key,
            },
        )


_SECONDS_LEFT = "coalesce(extract(epoch FROM access_expires_at - now()), 0)::float8"


class PostgresVault:
    """`TokenVault` over the database of `engine`, sealing with `sealer`."""

    def __init__(self, engine: AsyncEngine, sealer: Sealer) -> None:
        self._engine = engine
        self._sealer = sealer

    @asynccontextmanager
    async def component(self, component_appid: str) -> AsyncIterator[_Locked]:
        async with translate_errors(), self._engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO provider_components (component_appid) VALUES (:key) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"key": component_appid},
            )
            row = (
                await conn.execute(
                    text(
                        f"SELECT access_token_sealed, {_SECONDS_LEFT} FROM provider_components "
                        "WHERE component_appid = :key FOR UPDATE"
                    ),
                    {"key": component_appid},
                )
            ).one()
            access = self._sealer.unseal(row[0]) if row[0] else None  # unsealable: renew it
            yield _Locked(conn, self._sealer, component_appid, access, float(row[1]))

    @asynccontextmanager
    async def merchant(self, app_id: str, component_appid: str) -> AsyncIterator[_Locked]:
        async with translate_errors(), self._engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT refresh_token_sealed, access_token_sealed, {_SECONDS_LEFT} "
                        "FROM provider_authorizations WHERE app_id = :key FOR UPDATE"
                    ),
                    {"key": app_id},
                )
            ).one_or_none()
            if row is None:
                yield _Locked(conn, self._sealer, app_id, None, 0.0)
                return
            refresh = self._sealer.unseal(row[0])
            if refresh is None:
                raise AuthorizationError(
                    f"app {app_id}: no key of {KEY_VARIABLE} unseals its stored refresh token "
                    "(was the key replaced? put the new key first and keep the old one after "
                    f"a comma), or authorize it again: taskbox-sync apps authorize {app_id}",
                    endpoint="token vault",
                )
            access = self._sealer.unseal(row[1]) if row[1] else None
            yield _Locked(conn, self._sealer, app_id, access, float(row[2]), refresh)

    async def authorize(
        self,
        app_id: str,
        component_appid: str,
        *,
        access_token: str,
        expires_in: int,
        refresh_token: str,
        refresh_expires_in: int,
    ) -> None:
        """Store a merchant's first grant (or replace what was stored: authorizing again)."""
        async with translate_errors(), self._engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO provider_authorizations (app_id, component_appid, "
                    "refresh_token_sealed, refresh_expires_at, access_token_sealed, "
                    "access_expires_at, authorized_at, renewed_at, renewals) VALUES (:key, "
                    ":component, :refresh, now() + make_interval(secs => :refresh_life), "
                    ":access, now() + make_interval(secs => :life), now(), now(), 0) "
                    "ON CONFLICT (app_id) DO UPDATE SET component_appid = EXCLUDED.component_appid,"
                    " refresh_token_sealed = EXCLUDED.refresh_token_sealed,"
                    " refresh_expires_at = EXCLUDED.refresh_expires_at,"
                    " access_token_sealed = EXCLUDED.access_token_sealed,"
                    " access_expires_at = EXCLUDED.access_expires_at,"
                    " authorized_at = now(), renewed_at = now(), renewals = 0"
                ),
                {
                    "key": app_id,
                    "component": component_appid,
                    "refresh": self._sealer.seal(refresh_token),
                    "refresh_life": refresh_expires_in,
                    "access": self._sealer.seal(access_token),
                    "life": expires_in,
                },
            )


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationState:
    """What `apps list` shows of a merchant's stored authorization: times only, no token."""

    app_id: str
    authorized_at: dt.datetime
    renewed_at: dt.datetime | None
    renewals: int
    access_expires_at: dt.datetime | None
    refresh_expires_at: dt.datetime | None


async def authorization_states(engine: AsyncEngine) -> dict[str, AuthorizationState]:
    """Every stored authorization's times, by app id (readable without the key)."""
    async with translate_errors(), engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT app_id, authorized_at, renewed_at, renewals, access_expires_at, "
                "refresh_expires_at FROM provider_authorizations"
            )
        )
        return {row[0]: AuthorizationState(*row) for row in rows}
