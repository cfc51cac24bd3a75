"""`taskbox-sync talents …` end to end: the CLI against the sandbox (or a scripted stub for the
whole-call codes the sandbox cannot produce) and a real database holding the audit rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.api.retry import RetryPolicy
from sync.cli import talents as talents_cmd
from sync.cli.main import main
from sync.db.schema import talent_operations
from sync.sandbox import Faults, SandboxConfig, SandboxServer
from sync.sandbox.apps_file import render_apps_file, secret_env
from sync.sandbox.rosters import Cooperation, Member
from tests.helpers import MakeSandbox, api_calls, cli_env, use_env

UPDATE = "update_orient_talents"
CAP = 200


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    """Fast retries (the command's RETRY_POLICY), and the logging set-up it changes restored."""
    monkeypatch.setattr(talents_cmd, "RETRY_POLICY", RetryPolicy(attempts=3, base=0.001))


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """A sandbox with the default rosters (a running, a terminated and open tasks)."""
    return await make_sandbox(videos=50)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, database_url: str) -> None:
    """The talents command (run in process) pointed at `sandbox` and the test's database."""
    use_env(monkeypatch, cli_env(sandbox, database_url))


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, ["talents", *argv])


def calls(sandbox: SandboxServer, endpoint: str = UPDATE) -> int:
    return api_calls(sandbox, endpoint)


async def audit(engine: AsyncEngine) -> list[dict[str, Any]]:
    query = select(talent_operations).order_by(talent_operations.c.id)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


def ids_in(sandbox: SandboxServer, task_id: int, state: Cooperation) -> list[str]:
    return [m.douyin_id for m in sandbox.roster(task_id) if m.state is state]


def fill_roster(sandbox: SandboxServer, task_id: int, size: int) -> None:
    """Pad a roster with cancelled creators up to `size` (cancelled ones count toward 200)."""
    members = sandbox.sandbox.rosters.members[task_id]
    n = 0
    while len(members) < size:
        members[f"pad{n}"] = Member(f"pad{n}", Cooperation.CANCELLED)
        n += 1


@pytest.mark.usefixtures("env")
async def test_25_ids_make_three_calls_all_audited(
    sandbox: SandboxServer, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """25 new ids go out in 3 requests, all succeed (exit 0), and 25 audit rows hold each log_id."""
    task = sandbox.exclusive_task_ids[0]
    ids = [f"new{i:02d}" for i in range(25)]
    assert await cli("add", "--task-id", str(task), *ids) == 0
    assert calls(sandbox) == 3
    assert calls(sandbox, "app_token") == 1  # one token, cached for all three requests
    assert set(ids) <= set(ids_in(sandbox, task, Cooperation.WAITING))
    rows = await audit(engine)
    assert [r["douyin_id"] for r in rows] == ids
    assert all(r["ok"] and r["operation"] == "add" and r["task_id"] == task for r in rows)
    assert all(r["outcome"] == "请求成功,已添加" and r["error_code"] is None for r in rows)
    assert len({r["log_id"] for r in rows}) == 3 and None not in {r["log_id"] for r in rows}
    out = capsys.readouterr().out
    assert "new24" in out and "请求成功,已添加" in out


@pytest.mark.usefixtures("env")
async def test_duplicates_comments_and_blanks_are_handled(
    sandbox: SandboxServer, engine: AsyncEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """File blanks and comments are skipped, duplicates sent once and reported as dropped."""
    task = sandbox.exclusive_task_ids[0]
    file = tmp_path / "ids.txt"
    file.write_text("# March invitations\nf1\n\n  f2  # agency list\nf1\n a1\n", encoding="utf-8")
    status = await cli("add", "--task-id", str(task), " a1 ", "a2", "a1", "--from-file", str(file))
    assert status == 0
    assert calls(sandbox) == 1
    assert [r["douyin_id"] for r in await audit(engine)] == ["a1", "a2", "f1", "f2"]
    err = capsys.readouterr().err
    assert "dropped duplicate id a1" in err and "dropped duplicate id f1" in err


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    "argv",
    [
        ["add", "--task-id", "{task}", "a1", ""],
        ["add", "--task-id", "{task}"],
        ["add", "--task-id", "7.2e18", "a1"],
        ["add", "--task-id", "-1", "a1"],
        ["add", "--task-id", str(2**63), "a1"],
        ["cancel", "--task-id", "{task}", "--from-file", "/nonexistent/ids.txt"],
    ],
)
async def test_bad_input_exits_2_before_any_call(
    sandbox: SandboxServer, engine: AsyncEngine, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Blank ids, no ids, a non-integer or out-of-range task id, an unreadable file: exit 2."""
    task = str(sandbox.exclusive_task_ids[0])
    assert await cli(*[a.replace("{task}", task) for a in argv]) == 2
    assert sandbox.stats()["endpoints"] == {}
    assert await audit(engine) == []
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskbox-sync: ") and "\n" not in err


@pytest.mark.usefixtures("env")
async def test_mixed_cancel_results_are_classified(
    sandbox: SandboxServer, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """One call: waiting → ok, cancelled/unknown → the platform's reason; published refused."""
    task = sandbox.exclusive_task_ids[0]
    waiting = ids_in(sandbox, task, Cooperation.WAITING)[0]
    cancelled = ids_in(sandbox, task, Cooperation.CANCELLED)[0]
    published = ids_in(sandbox, task, Cooperation.PUBLISHED)[0]
    argv = ["cancel", "--task-id", str(task), waiting, cancelled, "nobody", published]
    assert await cli(*argv) == 1
    assert calls(sandbox) == 1
    assert published in ids_in(sandbox, task, Cooperation.PUBLISHED)
    rows = {r["douyin_id"]: r for r in await audit(engine)}
    assert rows[waiting]["ok"] and rows[waiting]["outcome"] == "请求成功,已取消"
    assert not rows[cancelled]["ok"] and "已取消,无法重复取消" in rows[cancelled]["outcome"]
    assert not rows["nobody"]["ok"] and "不在专属任务中" in rows["nobody"]["outcome"]
    assert not rows[published]["ok"] and "already published" in rows[published]["outcome"]
    assert rows[published]["log_id"] is None and rows[waiting]["log_id"]
    out = capsys.readouterr().out
    assert "refused" in out and "failed" in out


@pytest.mark.usefixtures("env")
async def test_full_width_comma_success_text_counts(
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: MakeSandbox,
    engine: AsyncEngine,
    database_url: str,
) -> None:
    """A platform answering "请求成功，已添加" (full-width comma) is a success, and so exit 0."""
    wide = await make_sandbox(videos=50, talent_comma="，")
    use_env(monkeypatch, cli_env(wide, database_url))
    task = wide.exclusive_task_ids[0]
    assert await cli("add", "--task-id", str(task), "w1", "w2") == 0
    assert await cli("add", "--task-id", str(task), "w1") == 1  # already there: a failure
    rows = await audit(engine)
    assert [(r["ok"], r["outcome"]) for r in rows[:2]] == [(True, "请求成功，已添加")] * 2
    assert rows[2]["ok"] is False


@pytest.mark.usefixtures("env")
async def test_cap_of_200_refuses_before_calling(
    sandbox: SandboxServer, engine: AsyncEngine
) -> None:
    """At 195 (cancelled padding counts), 6 new ids are refused unsent; 5 new + 1 known pass."""
    task = sandbox.exclusive_task_ids[0]
    fill_roster(sandbox, task, CAP - 5)
    known = ids_in(sandbox, task, Cooperation.WAITING)[0]
    new = [f"cap{i}" for i in range(6)]
    assert await cli("add", "--task-id", str(task), *new) == 1
    assert calls(sandbox) == 0
    rows = await audit(engine)
    assert [r["douyin_id"] for r in rows] == new
    assert all(not r["ok"] and "201 creators" in r["outcome"] for r in rows)
    status = await cli("add", "--task-id", str(task), *new[:5], known)
    assert status == 1  # the known one fails on the platform (already on the roster)
    assert calls(sandbox) == 1
    assert len(sandbox.roster(task)) == CAP


@pytest.mark.usefixtures("env")
async def test_without_client_token_the_precheck_is_skipped_with_a_warning(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No DOUYIN_CLIENT_KEY: no roster read, a warning, and the platform's own verdict."""
    monkeypatch.delenv("DOUYIN_CLIENT_KEY")
    task = sandbox.exclusive_task_ids[0]
    published = ids_in(sandbox, task, Cooperation.PUBLISHED)[0]
    assert await cli("cancel", "--task-id", str(task), published) == 1
    assert calls(sandbox, "query_task_info") == 0 and calls(sandbox) == 1
    captured = capsys.readouterr()
    assert "pre-check skipped" in captured.err
    assert "不支持取消合作" in captured.out


@pytest.mark.usefixtures("env")
async def test_dry_run_changes_nothing(
    sandbox: SandboxServer, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run reads the roster, shows 3 batches and what would change; sends, stores nothing."""
    task = sandbox.exclusive_task_ids[0]
    before = [(m.douyin_id, m.state) for m in sandbox.roster(task)]
    known = ids_in(sandbox, task, Cooperation.WAITING)[0]
    ids = [known, *(f"dry{i}" for i in range(24))]
    assert await cli("add", "--dry-run", "--task-id", str(task), *ids) == 0
    assert (
        calls(sandbox) == 0
        and calls(sandbox, "app_token") == 0
        and calls(sandbox, "query_task_info") == 1
    )
    assert [(m.douyin_id, m.state) for m in sandbox.roster(task)] == before
    assert await audit(engine) == []
    out = capsys.readouterr().out
    assert "3 request(s)" in out and "3/3" in out and "already on the roster" in out


@pytest.mark.usefixtures("env")
async def test_terminated_task_stops_and_records_every_id(
    sandbox: SandboxServer, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """5591: exit 1 naming the fix; the batch failed with code and log_id, the rest unsent."""
    ids = [f"t{i:02d}" for i in range(15)]
    assert await cli("add", "--task-id", str(sandbox.terminated_task_id), *ids) == 1
    assert calls(sandbox) == 1
    assert "create a new exclusive task" in capsys.readouterr().err
    rows = await audit(engine)
    assert [r["douyin_id"] for r in rows] == ids
    assert all(r["error_code"] == 5591 and r["log_id"] for r in rows[:10])
    assert all(r["outcome"].startswith("not sent") for r in rows[10:])
    assert not any(r["ok"] for r in rows)


@pytest.mark.usefixtures("env")
async def test_open_task_is_refused_by_precheck_or_by_5442(
    sandbox: SandboxServer,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A non-exclusive task: refused unsent with the roster, else 5442's message and exit 1."""
    task = str(sandbox.open_task_ids[0])
    assert await cli("add", "--task-id", task, "o1") == 1
    assert calls(sandbox) == 0
    monkeypatch.delenv("DOUYIN_CLIENT_SECRET")
    assert await cli("add", "--task-id", task, "o1") == 1
    assert calls(sandbox) == 1
    assert "not an exclusive task (5442)" in capsys.readouterr().err
    assert [r["error_code"] for r in await audit(engine)] == [None, 5442]


@pytest.mark.usefixtures("env")
async def test_unavailable_platform_is_retried_then_reported(
    sandbox: SandboxServer,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """4001010 on every try: retried (3 attempts here), then exit 1 saying to try later."""
    monkeypatch.delenv("DOUYIN_CLIENT_KEY")
    sandbox.set_faults(Faults(busy_rate=1.0, apply_to_talents=True))
    assert await cli("add", "--task-id", str(sandbox.exclusive_task_ids[0]), "u1") == 1
    assert calls(sandbox) == 3
    assert "unavailable (4001010)" in capsys.readouterr().err
    assert [(r["ok"], r["error_code"]) for r in await audit(engine)] == [(False, 4001010)]


@pytest.mark.usefixtures("env")
async def test_list_shows_roster_beside_audit_log(
    sandbox: SandboxServer, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """list: every roster creator with its state, then our audit rows with their log_ids."""
    task = sandbox.exclusive_task_ids[0]
    assert await cli("add", "--task-id", str(task), "l1") == 0
    capsys.readouterr()
    assert await cli("list", "--task-id", str(task)) == 0
    out = capsys.readouterr().out
    for member in sandbox.roster(task):
        assert member.douyin_id in out
    assert "published" in out and "waiting" in out and "cancelled" in out
    row = (await audit(engine))[0]
    assert row["third_appid"] is None and row["log_id"] in out  # a provider's: test_provider


@pytest.mark.usefixtures("env")
async def test_list_needs_the_client_token(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list without DOUYIN_CLIENT_KEY (or a token) is a settings problem: exit 2."""
    monkeypatch.delenv("DOUYIN_CLIENT_KEY")
    assert await cli("list", "--task-id", str(sandbox.exclusive_task_ids[0])) == 2


@pytest.mark.usefixtures("env")
async def test_refused_app_secret_is_a_settings_error(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine
) -> None:
    """A wrong DOUYIN_APP_SECRET: exit 2, nothing sent, the id recorded as failed (40017)."""
    monkeypatch.setenv("DOUYIN_APP_SECRET", "wrong")
    assert await cli("add", "--task-id", str(sandbox.exclusive_task_ids[0]), "s1") == 2
    assert calls(sandbox) == 0
    assert [(r["ok"], r["error_code"]) for r in await audit(engine)] == [(False, 40017)]


# -- whole-call codes the sandbox cannot produce: a scripted stub of the developer host ------

Script = list[tuple[int, str]]  # (error, message) per update call; exhausted: success


@pytest.fixture
async def stub(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> AsyncIterator[Callable[[Script], dict[str, int]]]:
    """A developer host that answers update_orient_talents from a script and counts calls."""
    counts = {"token": 0, "update": 0}
    script: Script = []

    async def token(request: web.Request) -> web.Response:
        counts["token"] += 1
        data = {"access_token": f"tok{counts['token']}", "expires_in": 7200}
        return web.json_response({"err_no": 0, "err_tips": "success", "data": data})

    async def update(request: web.Request) -> web.Response:
        counts["update"] += 1
        body = await request.json()
        log_id = f"LOG{counts['update']}"
        if script:
            code, message = script.pop(0)
            return web.json_response({"error": code, "message": message, "log_id": log_id})
        items = [{"douyin_id": i, "update_result": "请求成功,已添加"} for i in body["douyin_ids"]]
        data = {"update_info_list": items}
        return web.json_response({"error": 0, "message": "", "log_id": log_id, "data": data})

    app = web.Application()
    app.router.add_post("/api/apps/v2/token", token)
    app.router.add_post("/api/apps/taskbox/update_orient_talents/", update)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url, config = str(server.make_url("")).rstrip("/"), SandboxConfig()
    app = {"DOUYIN_APP_ID": config.app_id, "DOUYIN_APP_SECRET": config.app_secret}
    hosts = {"DOUYIN_DEVELOPER_BASE_URL": url, "DOUYIN_OPEN_BASE_URL": url}
    use_env(monkeypatch, cli_env(None, database_url, **app, **hosts))

    def load(lines: Script) -> dict[str, int]:
        script[:] = lines
        return counts

    yield load
    await server.close()


async def test_bad_token_is_refreshed_once_and_retried(
    stub: Callable[[Script], dict[str, int]], engine: AsyncEngine
) -> None:
    """5502 once: a new token is fetched and the same request succeeds (exit 0)."""
    counts = stub([(5502, "accessToken不合法")])
    assert await cli("add", "--task-id", "7218760632718443557", "k1") == 0
    assert counts == {"token": 2, "update": 2}
    assert [(r["ok"], r["log_id"]) for r in await audit(engine)] == [(True, "LOG2")]


@pytest.mark.parametrize(
    ("script", "status", "text"),
    [
        ([(5501, "accessToken不存在")] * 3, 1, "missing (5501)"),
        ([(5502, "accessToken不合法")] * 3, 1, "invalid (5502)"),
        ([(5503, "appID与token不一致")], 2, "DOUYIN_APP_ID does not match"),
        ([(5592, "操作达人数量不合法")], 1, "1 to 10 ids"),
        ([(4001015, "douyin_ids must be a list")], 1, "douyin_ids must be a list"),
        ([(5442, "任务不存在")], 1, "check --task-id"),
    ],
)
async def test_whole_call_errors_name_cause_and_fix(
    stub: Callable[[Script], dict[str, int]],
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
    script: Script,
    status: int,
    text: str,
) -> None:
    """Each whole-call code: its message on stderr, its exit status, the code in the audit row."""
    stub(script)
    assert await cli("add", "--task-id", "7218760632718443557", "k1") == status
    assert text in capsys.readouterr().err
    rows = await audit(engine)
    assert [(r["ok"], r["error_code"]) for r in rows] == [(False, script[0][0])]
    assert rows[0]["log_id"].startswith("LOG")


async def test_an_apps_file_app_changes_its_own_task_and_the_audit_carries_it(
    make_sandbox: MakeSandbox,
    database_url: str,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With an apps file, `--app` names the app the task belongs to: its mini-app token changes
    its own task, and the audit row carries the app; a file of several apps needs `--app`."""
    fleet = await make_sandbox(videos=30, apps=2)
    first, second = fleet.apps
    path = tmp_path / "apps.toml"
    path.write_text(render_apps_file(fleet.apps))
    env = cli_env(fleet, database_url, unset=("DOUYIN_APP_ID", "DOUYIN_APP_SECRET"))
    use_env(monkeypatch, {**env, **secret_env(fleet.apps), "TASKBOX_APPS_FILE": str(path)})
    task = fleet.exclusive_task_ids_of(second.client_key)[0]
    assert await cli("add", "--app", second.app_id, "--task-id", str(task), "newcomer") == 0
    assert "newcomer" in [m.douyin_id for m in fleet.roster(task, app=second.client_key)]
    assert [r["app_id"] for r in await audit(engine)] == [second.app_id]
    assert await cli("add", "--task-id", str(task), "another") == 2  # which app? one line
    assert await cli("add", "--app", "tt_nope", "--task-id", str(task), "another") == 2
    assert first.app_id != second.app_id
