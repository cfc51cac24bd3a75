"""A sandbox of several apps: credentials, disjoint data, per-app throttles, tokens, capability,
the control surface with `app`, the apps file and the CLI's --apps."""

from __future__ import annotations

import asyncio
import signal
import tomllib
from typing import Any

import pytest

from sync.sandbox import SandboxConfig, SandboxServer
from sync.sandbox.apps_file import render_apps_file, secret_env
from sync.sandbox.credentials import AppCredentials, all_credentials
from sync.sandbox.render import PASCAL_TO_SNAKE
from sync.sandbox.state import Sandbox
from tests.sandbox.conftest import Api
from tests.sandbox.test_sandbox_cli import start_cli, stop

KEY_2 = "tt_sbx_app_0002"
KEY_3 = "tt_sbx_app_0003"


@pytest.fixture
async def fleet(make_sandbox: Any) -> SandboxServer:
    """Three apps of 300 videos; app 3 lacks the data-analysis capability."""
    server: SandboxServer = await make_sandbox(apps=3, apps_without_capability=frozenset({3}))
    return server


@pytest.fixture
def fleet_api(make_api: Any, fleet: SandboxServer) -> Api:
    api: Api = make_api(fleet)
    return api


def creds(server: SandboxServer, number: int) -> AppCredentials:
    return server.apps[number - 1]


async def client_token(api: Api, app: AppCredentials) -> str:
    body = {
        "client_key": app.client_key,
        "client_secret": app.client_secret,
        "grant_type": "client_credential",
    }
    resp = await api.post("/oauth/client_token/", body)
    token: str = resp.json["data"]["access_token"]
    return token


async def app_token(api: Api, app: AppCredentials) -> str:
    body = {"appid": app.app_id, "secret": app.app_secret, "grant_type": "client_credential"}
    token: str = (await api.post("/api/apps/v2/token", body)).json["data"]["access_token"]
    return token


def snake_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {PASCAL_TO_SNAKE[k]: v for k, v in row.items()}
        for row in body["data"]["video_daily_data_list"]
    ]


def catalog_ids(sandbox: Sandbox, number: int) -> set[int]:
    return sandbox.apps[number - 1].dataset.ids()


# -- credentials and the apps file --------------------------------------------------------------


def test_app_one_keeps_the_defaults_and_the_others_derive_theirs():
    """App 1 has the historic credentials; app i >= 2 has client key == app id tt_sbx_app_000i."""
    first, second, third = all_credentials(SandboxConfig(apps=3))
    assert first == AppCredentials(
        1, "sbx_client_key_0001", "sbx_client_secret_0001", "tt_sbx_app_0001", "sbx_app_secret_0001"
    )
    assert second == AppCredentials(
        2, KEY_2, "sbx_client_secret_0002", KEY_2, "sbx_app_secret_0002"
    )
    assert third.client_key == third.app_id == KEY_3


def test_apps_file_is_the_documented_toml_without_secrets():
    """The apps file names app 1's client key (it differs from its id), never a secret, and
    secret_env gives the variables it names."""
    apps = all_credentials(SandboxConfig(apps=2))
    text = render_apps_file(apps)
    assert text == (
        "[[app]]\n"
        'id = "tt_sbx_app_0001"\n'
        'client_key = "sbx_client_key_0001"\n'
        'client_secret_env = "SBX_APP_0001_CLIENT_SECRET"\n'
        'app_secret_env = "SBX_APP_0001_APP_SECRET"\n'
        "\n"
        "[[app]]\n"
        'id = "tt_sbx_app_0002"\n'
        'client_secret_env = "SBX_APP_0002_CLIENT_SECRET"\n'
        'app_secret_env = "SBX_APP_0002_APP_SECRET"\n'
    )
    assert "secret_0" not in text
    assert len(tomllib.loads(text)["app"]) == 2
    assert secret_env(apps) == {
        "SBX_APP_0001_CLIENT_SECRET": "sbx_client_secret_0001",
        "SBX_APP_0001_APP_SECRET": "sbx_app_secret_0001",
        "SBX_APP_0002_CLIENT_SECRET": "sbx_client_secret_0002",
        "SBX_APP_0002_APP_SECRET": "sbx_app_secret_0002",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"apps": 0},
        {"apps": 3, "apps_without_capability": frozenset({4})},
        {"apps": 3, "apps_without_capability": frozenset({0})},
    ],
)
def test_config_refuses_impossible_apps(fields):
    """No apps, or capability taken from an app that does not exist, is a ValueError."""
    with pytest.raises(ValueError):
        SandboxConfig(**fields)


def test_app_one_credentials_may_not_name_another_app():
    """App 1 given app 2's client key is refused (a key must name one app)."""
    with pytest.raises(ValueError, match="client_key"):
        Sandbox(SandboxConfig(apps=2, client_key=KEY_2))


# -- data -----------------------------------------------------------------------------------------


def test_apps_have_disjoint_data_of_the_same_size_and_app_one_is_unchanged(clock):
    """Every app has `videos` videos; no task or video id is shared; app 1's data is exactly a
    one-app sandbox's; other apps' data is built only when first used."""
    config = SandboxConfig(seed=7, apps=4, videos=120, tasks=8, creators=40, clock=clock)
    fleet = Sandbox(config)
    assert [app.built for app in fleet.apps] == [True, False, False, False]
    info = fleet.info("http://x")
    assert [a["videos"] for a in info["apps"]] == [120] * 4
    ids = [catalog_ids(fleet, n) for n in range(1, 5)]
    assert sum(map(len, ids)) == len(set().union(*ids))
    alone = Sandbox(SandboxConfig(seed=7, videos=120, tasks=8, creators=40, clock=clock))
    day = fleet.recent_dates(1)[0]
    assert fleet.truth(day) == alone.truth(day)
    assert fleet.exclusive_task_ids() == alone.exclusive_task_ids()
    assert fleet.truth(day, app=KEY_2) != fleet.truth(day)
    apps = info["apps"]
    assert [int(t) for t in apps[1]["exclusive_task_ids"]] == fleet.exclusive_task_ids(KEY_2)
    assert {k: v for k, v in info.items() if k != "apps"} == {
        k: v for k, v in alone.info("http://x").items() if k != "apps"
    }


def test_rendered_dates_are_bounded_across_apps(clock):
    """cache_dates bounds the rendered dates of all apps together; evicted dates render again
    the same."""
    fleet = Sandbox(SandboxConfig(apps=3, videos=60, cache_dates=4, clock=clock))
    days = fleet.recent_dates(3)
    before = {
        a.credentials.client_key: fleet.truth(days[0], app=a.credentials.client_key)
        for a in fleet.apps
    }
    for app in fleet.apps:
        fleet.warm(days, app=app.credentials.client_key)
    assert len(fleet.rendered) == 4
    assert all(fleet.truth(days[0], app=key) == rows for key, rows in before.items())


# -- over HTTP ------------------------------------------------------------------------------------


async def test_a_token_serves_its_own_app_only(fleet_api, clock):
    """App 2's client token reads app 2's rows (truth(app=...)), sharing none with app 1's."""
    clock.frozen = True
    api, server = fleet_api, fleet_api.server
    day = api.yesterday
    one = snake_rows((await api.daily(await client_token(api, creds(server, 1)))).json)
    two = snake_rows((await api.daily(await client_token(api, creds(server, 2)))).json)
    start, end = api.now - 30 * api.DAY, api.now
    assert one == server.truth(day, start, end)[:100]
    assert two == server.truth(day, start, end, app=KEY_2)[:100]
    assert two and not {r["video_id"] for r in one} & {r["video_id"] for r in two}


async def test_credentials_do_not_cross_apps(fleet_api):
    """App 2's key with app 1's secret is 10013; a mini-app token works only with its own appid
    and its own app's tasks."""
    api, server = fleet_api, fleet_api.server
    first, second = creds(server, 1), creds(server, 2)
    body = {
        "client_key": second.client_key,
        "client_secret": first.client_secret,
        "grant_type": "client_credential",
    }
    assert (await api.post("/oauth/client_token/", body)).json["data"]["error_code"] == 10013
    token = await app_token(api, second)
    own_task = server.exclusive_task_ids_of(KEY_2)[0]
    update = {"task_id": own_task, "op_type": 1, "douyin_ids": ["sbx_new_talent"]}
    mismatch = await api.talents(token, appid=first.app_id, **update)
    assert mismatch.json["error"] == 5503
    foreign = await api.talents(
        token, appid=second.app_id, **{**update, "task_id": server.exclusive_task_ids[0]}
    )
    assert foreign.json["error"] == 5442
    done = await api.talents(token, appid=second.app_id, **update)
    assert done.json["error"] == 0
    assert "sbx_new_talent" in {m.douyin_id for m in server.roster(own_task, app=KEY_2)}
    assert "sbx_new_talent" not in {
        m.douyin_id for t in server.exclusive_task_ids for m in server.roster(t)
    }


async def test_each_app_has_its_own_ten_per_second(fleet_api, clock):
    """Ten requests of each app in one second all pass; each app's eleventh is throttled; stats
    give each app's busiest second, and the sandbox's is the busiest app's."""
    clock.frozen = True
    api, server = fleet_api, fleet_api.server
    tokens = [await client_token(api, creds(server, n)) for n in (1, 2)]
    replies = await asyncio.gather(*(api.daily(t, page_size=1) for t in tokens for _ in range(10)))
    assert {r.json["err_no"] for r in replies} == {0}
    for token in tokens:
        assert (await api.daily(token, page_size=1)).json["err_no"] == 28003018
    stats = server.stats()
    assert stats["daily_data_peak_per_second"] == 11
    assert stats["endpoints"]["daily_data"]["calls"] == 22
    per_app = stats["apps"]
    assert [per_app[k]["daily_data_peak_per_second"] for k in per_app] == [11, 11, 0]
    assert server.stats(KEY_2) == per_app[KEY_2]
    assert per_app[KEY_2]["endpoints"]["daily_data"]["codes"] == {"0": 10, "28003018": 1}
    assert (await api.get(f"/__sandbox/stats?app={KEY_2}")).json == per_app[KEY_2]


async def test_unknown_tokens_count_against_app_one(fleet_api, clock):
    """A token that names no app fills app 1's window, not another app's."""
    clock.frozen = True
    api, server = fleet_api, fleet_api.server
    for _ in range(10):
        assert (await api.daily("clt.made-up")).json["err_no"] == 28001003
    assert (await api.daily(await client_token(api, creds(server, 1)))).json["err_no"] == 28003018
    assert (await api.daily(await client_token(api, creds(server, 2)))).json["err_no"] == 0


async def test_token_rate_limit_is_per_app(make_sandbox, make_api, clock):
    """App 1 at its token rate limit does not stop app 2 getting tokens."""
    clock.frozen = True
    api = make_api(await make_sandbox(apps=2, token_rate_limit=2))
    first, second = creds(api.server, 1), creds(api.server, 2)
    for _ in range(2):
        await client_token(api, first)
    assert (await api.client_token()).json["data"]["error_code"] == 10020
    assert (await client_token(api, second)).startswith("clt.")


async def test_capability_is_per_app(fleet_api):
    """The app named in apps_without_capability answers 28001018; the others serve rows."""
    api, server = fleet_api, fleet_api.server
    assert (await api.daily(await client_token(api, creds(server, 3)))).json["err_no"] == 28001018
    assert (await api.daily(await client_token(api, creds(server, 2)))).json["err_no"] == 0
    info = (await api.get("/__sandbox/info")).json
    assert [a["capability"] for a in info["apps"]] == [True, True, False]
    assert [AppCredentials.from_json(a) for a in info["apps"]] == server.apps


async def test_control_endpoints_take_an_app(fleet_api):
    """truth, mutate and warm over HTTP act on the app named; an unknown app answers 400."""
    api, server = fleet_api, fleet_api.server
    day = api.yesterday
    truth = (await api.get(f"/__sandbox/truth?billing_date={day}&app={KEY_2}")).json["rows"]
    assert truth == server.truth(day, app=KEY_2)
    app_one = server.truth(day)
    body = {"billing_dates": [day], "add": 2, "app": KEY_2}
    report = (await api.post("/__sandbox/mutate", body)).json["billing_dates"][day]
    assert set(report["added"]) <= {r["video_id"] for r in server.truth(day, app=KEY_2)}
    assert server.truth(day) == app_one
    warmed = await api.post("/__sandbox/warm", {"billing_dates": [day], "app": KEY_2})
    assert warmed.json == {"rows": report["rows"]}
    for bad in (
        api.get(f"/__sandbox/truth?billing_date={day}&app=nobody"),
        api.get("/__sandbox/stats?app=nobody"),
        api.post("/__sandbox/mutate", {"app": "nobody"}),
        api.post("/__sandbox/mutate", {"app": 2}),
        api.post("/__sandbox/warm", {"app": "nobody"}),
    ):
        assert (await bad).status == 400


# -- the CLI --------------------------------------------------------------------------------------


async def test_cli_with_apps_prints_and_writes_the_apps_file(tmp_path):
    """--apps 2 prints the apps file and its secrets' export lines, writes it with
    --write-apps-file, and --without-capability marks app 2."""
    path = tmp_path / "apps.toml"
    proc, info = await start_cli(
        "--apps", "2", "--without-capability", "2", "--write-apps-file", str(path)
    )
    code, rest = await stop(proc, signal.SIGTERM)
    assert code == 0
    apps = [AppCredentials.from_json(a) for a in info["apps"]]
    assert [a["capability"] for a in info["apps"]] == [True, False]
    assert path.read_text() == render_apps_file(apps)
    out = rest.decode()
    assert render_apps_file(apps).rstrip("\n") in out
    for name, value in secret_env(apps).items():
        assert f"export {name}={value}\n" in out


@pytest.mark.parametrize(
    "argv",
    [["--apps", "0"], ["--apps", "2", "--without-capability", "3"], ["--without-capability", "x"]],
)
def test_cli_refuses_bad_apps(argv, capsys):
    """Impossible --apps / --without-capability exit 2 with one error line."""
    from sync.sandbox import run_cli

    assert run_cli(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskbox-sync sandbox: error:")
