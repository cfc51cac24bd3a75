"""The provider's token vault: tokens sealed at rest under TASKBOX_SECRET_KEY (rotatable), a row
locked while it is renewed, a renewal committed only when its context ends well."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.vault import PostgresVault, Sealer, authorization_states, new_key
from sync.errors import AuthorizationError, SettingsError
from sync.settings import Secret

REFRESH = "rt-s3cr3t-refresh-0001"
ACCESS = "at-s3cr3t-access-0001"


def _grant(n: int, life: int = 7200) -> dict[str, Any]:
    return {
        "access_token": f"at-s3cr3t-access-{n:04d}",
        "expires_in": life,
        "refresh_token": f"rt-s3cr3t-refresh-{n:04d}",
        "refresh_expires_in": 2_592_000,
    }


def test_sealing_round_trips_and_a_new_key_first_still_opens_the_old() -> None:
    """The first key seals; every key listed unseals (rotation); a foreign key opens nothing."""
    old, new = new_key(), new_key()
    sealed = Sealer(Secret(old)).seal(REFRESH)
    assert REFRESH not in sealed
    assert Sealer(Secret(old)).unseal(sealed) == REFRESH
    assert Sealer(Secret(f"{new}, {old}")).unseal(sealed) == REFRESH
    assert Sealer(Secret(new)).unseal(sealed) is None
    assert "Secret" not in repr(Sealer(Secret(old))) and old not in repr(Sealer(Secret(old)))


@pytest.mark.parametrize(
    "keys",
    ["not-a-key", "", " , ", new_key()[:-2]],
    ids=["not-a-key", "empty", "commas", "cut-short"],  # the same in every process
)
def test_a_malformed_or_missing_key_is_one_line(keys: str) -> None:
    """TASKBOX_SECRET_KEY malformed or unset: one SettingsError line saying how to make one,
    never echoing the value."""
    with pytest.raises(SettingsError) as info:
        Sealer.required(Secret(keys) if keys else None, "provider mode")
    message = str(info.value)
    assert message.startswith("TASKBOX_SECRET_KEY: ") and "apps new-key" in message
    assert "\n" not in message and (not keys.strip(" ,") or keys not in message)


async def test_tokens_are_stored_sealed_and_renewed_in_one_commit(engine: AsyncEngine) -> None:
    """authorize stores the grant sealed (no token in clear anywhere in the row); a renewal
    inside the locked context is committed as it closes, with the renewal counted."""
    vault = PostgresVault(engine, Sealer(Secret(new_key())))
    await vault.authorize("tt_m", "tt_comp", **_grant(1))
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM provider_authorizations"))).one()
    assert not any("s3cr3t" in str(value) for value in row)
    async with vault.merchant("tt_m", "tt_comp") as stored:
        assert stored.refresh_token == "rt-s3cr3t-refresh-0001"
        assert stored.access_token == "at-s3cr3t-access-0001"
        assert 7100 < stored.access_seconds_left <= 7200
        await stored.renewed_authorization(**_grant(2, life=60))
    async with vault.merchant("tt_m", "tt_comp") as stored:
        assert stored.refresh_token == "rt-s3cr3t-refresh-0002"
        assert stored.access_seconds_left <= 60
    state = (await authorization_states(engine))["tt_m"]
    assert state.renewals == 1 and state.renewed_at is not None


async def test_an_error_inside_the_lock_keeps_the_stored_refresh_token(engine: AsyncEngine) -> None:
    """A crash between the platform's answer and the commit rolls the renewal back: the old
    refresh token stays stored (the platform keeps it valid for a grace period)."""
    vault = PostgresVault(engine, Sealer(Secret(new_key())))
    await vault.authorize("tt_m", "tt_comp", **_grant(1))
    with pytest.raises(RuntimeError):
        async with vault.merchant("tt_m", "tt_comp") as stored:
            await stored.renewed_authorization(**_grant(2))
            raise RuntimeError("killed before the commit")
    async with vault.merchant("tt_m", "tt_comp") as stored:
        assert stored.refresh_token == "rt-s3cr3t-refresh-0001"


async def test_a_second_holder_waits_for_the_first_and_sees_its_renewal(
    engine: AsyncEngine,
) -> None:
    """The row is locked while one holder renews: another (another process) waits, then reads
    the renewed tokens instead of renewing again."""
    vault = PostgresVault(engine, Sealer(Secret(new_key())))
    await vault.authorize("tt_m", "tt_comp", **_grant(1, life=1))
    first_in = asyncio.Event()
    seen: list[str | None] = []

    async def first() -> None:
        async with vault.merchant("tt_m", "tt_comp") as stored:
            first_in.set()
            await asyncio.sleep(0.3)  # the platform's answer takes a while
            await stored.renewed_authorization(**_grant(2))

    async def second() -> None:
        await first_in.wait()
        async with vault.merchant("tt_m", "tt_comp") as stored:
            seen.append(stored.refresh_token)

    await asyncio.gather(first(), second())
    assert seen == ["rt-s3cr3t-refresh-0002"]


async def test_a_replaced_key_names_the_way_out(engine: AsyncEngine) -> None:
    """Tokens sealed under a key no longer given: AuthorizationError naming the key variable and
    `apps authorize`, without a token in the message."""
    await PostgresVault(engine, Sealer(Secret(new_key()))).authorize(
        "tt_m",
        "tt_comp",
        **_grant(1),
    )
    other = PostgresVault(engine, Sealer(Secret(new_key())))
    with pytest.raises(AuthorizationError) as info:
        async with other.merchant("tt_m", "tt_comp"):
            pass
    assert "TASKBOX_SECRET_KEY" in str(info.value) and "apps authorize tt_m" in str(info.value)
    assert "s3cr3t" not in str(info.value)


async def test_the_component_token_row_is_created_then_shared(engine: AsyncEngine) -> None:
    """The first holder finds no component token and stores one; the next finds it."""
    vault = PostgresVault(engine, Sealer(Secret(new_key())))
    async with vault.component("tt_comp") as stored:
        assert stored.access_token is None and stored.access_seconds_left == 0
        await stored.renewed("ct-s3cr3t-component", 3600)
    async with vault.component("tt_comp") as stored:
        assert stored.access_token == "ct-s3cr3t-component"
        assert stored.access_seconds_left > 3500
