"""update_orient_talents and query_task_info: exclusive-task rosters and every documented code."""

from __future__ import annotations

ADDED = "请求成功,已添加"
CANCELLED = "请求成功,已取消"
ALREADY_CANCELLED = "请求失败,和该达人的合作已取消,无法重复取消"
PUBLISHED = "请求失败,达人已投稿,不支持取消合作"


def results(resp) -> list[str]:
    body = resp.json
    assert body["error"] == 0 and set(body) == {"error", "message", "log_id", "data"}
    return [item["update_result"] for item in body["data"]["update_info_list"]]


def states(sandbox, task_id: int) -> dict[str, int]:
    return {m.douyin_id: int(m.state) for m in sandbox.roster(task_id)}


async def test_add_then_cancel_then_cancel_again(api):
    """Adding answers 已添加, cancelling 已取消, cancelling twice the documented failure text."""
    token = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    ids = ["new_creator_1", "new_creator_2"]
    add = await api.talents(token, task_id=task, op_type=1, douyin_ids=ids)
    assert results(add) == [ADDED, ADDED]
    assert [i["douyin_id"] for i in add.json["data"]["update_info_list"]] == ids
    assert states(api.server, task)["new_creator_1"] == 2
    cancel = await api.talents(token, task_id=task, op_type=2, douyin_ids=ids[:1])
    assert results(cancel) == [CANCELLED]
    again = await api.talents(token, task_id=task, op_type=2, douyin_ids=ids)
    assert results(again) == [ALREADY_CANCELLED, CANCELLED]
    assert states(api.server, task)["new_creator_1"] == 3


async def test_published_creator_cannot_be_cancelled(api):
    """Cancelling a creator who already published fails for that creator only, with error 0."""
    token = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    roster = states(api.server, task)
    published = next(d for d, s in roster.items() if s == 1)
    waiting = next(d for d, s in roster.items() if s == 2)
    resp = await api.talents(token, task_id=task, op_type=2, douyin_ids=[published, waiting])
    assert results(resp) == [PUBLISHED, CANCELLED]
    assert states(api.server, task)[published] == 1


async def test_ids_per_call_between_1_and_10(api):
    """Zero ids or more than ten answer 5592; exactly ten is fine."""
    token = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    for ids in ([], [f"c{i}" for i in range(11)]):
        resp = await api.talents(token, task_id=task, op_type=1, douyin_ids=ids)
        assert resp.json["error"] == 5592
    resp = await api.talents(
        token, task_id=task, op_type=1, douyin_ids=[f"c{i}" for i in range(10)]
    )
    assert results(resp) == [ADDED] * 10


async def test_at_most_200_creators_per_task_cancelled_included(api):
    """A task holds at most 200 creators, cancelled ones included; more fail per creator."""
    token = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    room = 200 - len(api.server.roster(task))
    new = [f"fill{i}" for i in range(room)]
    for i in range(0, room, 10):
        resp = await api.talents(token, task_id=task, op_type=1, douyin_ids=new[i : i + 10])
        assert set(results(resp)) == {ADDED}
    resp = await api.talents(token, task_id=task, op_type=2, douyin_ids=new[:5])
    assert results(resp) == [CANCELLED] * 5
    over = await api.talents(token, task_id=task, op_type=1, douyin_ids=["one_more", new[0]])
    verdicts = results(over)
    assert verdicts[0].startswith("请求失败") and "200" in verdicts[0]
    assert verdicts[1] == ADDED  # re-adding a cancelled creator takes no new place
    assert len(api.server.roster(task)) == 200


async def test_task_errors(api):
    """A terminated task answers 5591; an unknown or non-exclusive task 5442."""
    token = await api.app_token()
    server = api.server
    cases = [(server.terminated_task_id, 5591), (7000000000000000001, 5442)]
    cases.append((server.open_task_ids[0], 5442))
    for task, code in cases:
        resp = await api.talents(token, task_id=task, op_type=1, douyin_ids=["x"])
        body = resp.json
        assert body["error"] == code and body["message"] and body["log_id"]


async def test_token_errors(api):
    """No token 5501, a bad or wrong-kind token 5502, an appid not matching the token 5503."""
    task = api.server.exclusive_task_ids[0]
    fields = {"task_id": task, "op_type": 1, "douyin_ids": ["x"]}
    assert (await api.talents(..., **fields)).json["error"] == 5501
    assert (await api.talents("", **fields)).json["error"] == 5501
    assert (await api.talents("not-a-token", **fields)).json["error"] == 5502
    assert (await api.talents(await api.token(), **fields)).json["error"] == 5502
    token = await api.app_token()
    resp = await api.talents(token, appid="tt_someone_else", **fields)
    assert resp.json["error"] == 5503


async def test_bad_parameters_give_4001015(api):
    """op_type not 1/2, a task_id that is not a number, or bad douyin_ids answer 4001015."""
    token = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    good = {"task_id": task, "op_type": 1, "douyin_ids": ["x"]}
    for change in (
        {"op_type": 3},
        {"op_type": "1"},
        {"task_id": str(task)},
        {"task_id": 1.5},
        {"douyin_ids": "x"},
        {"douyin_ids": [1]},
        {"appid": ...},
    ):
        resp = await api.talents(token, **{**good, **change})
        assert resp.json["error"] == 4001015, change
    resp = await api.post(api.TALENTS, raw=b"{oops")
    assert resp.json["error"] == 4001015


async def test_full_width_comma_option(make_sandbox, make_api):
    """With talent_comma="，" the texts use the full-width comma."""
    api = make_api(await make_sandbox(talent_comma="，"))
    token = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    resp = await api.talents(token, task_id=task, op_type=1, douyin_ids=["fw"])
    assert results(resp) == ["请求成功，已添加"]


async def test_query_task_info_shows_rosters(api):
    """query_task_info returns task_type and the roster, updates included; unknown ids nothing."""
    client = await api.token()
    app = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    await api.talents(app, task_id=task, op_type=1, douyin_ids=["seen_in_info"])

    async def info(task_id: int, token: str = client):
        body = {
            "query_params_type": 1,
            "query_params_content": str(task_id),
            "page_num": 1,
            "page_size": 10,
        }
        return await api.post(api.TASK_INFO, body, headers={"access-token": token})

    body = (await info(task)).json
    assert body["err_no"] == 0 and body["err_msg"] == "success" and body["log_id"]
    [found] = body["data"]["task_list"]
    assert found["task_id"] == task and found["task_type"] == 1
    rel = {r["douyin_id"]: r for r in found["oriented_talent_rel_list"]}
    assert rel["seen_in_info"]["cooperation_state"] == 2
    assert {r["cooperation_state"] for r in rel.values()} == {1, 2, 3}
    assert all(
        set(r) == {"douyin_id", "cooperation_state", "cancel_operator"} for r in rel.values()
    )
    [open_task] = (await info(api.server.open_task_ids[0])).json["data"]["task_list"]
    assert open_task["task_type"] != 1 and open_task["oriented_talent_rel_list"] == []
    assert (await info(123)).json["data"]["task_list"] == []
    assert (await info(task, "clt.bogus")).json["err_no"] == 28001003
    resp = await api.post(api.TASK_INFO, {"query_params_type": 1}, headers={"access-token": client})
    assert resp.json["err_no"] == 28001007


async def test_small_datasets_still_have_every_roster_state(make_sandbox):
    """Even a 3-video dataset has published, waiting and cancelled creators on exclusive tasks."""
    server = await make_sandbox(videos=3)
    running, terminated = server.exclusive_task_ids[:2]
    assert terminated == server.terminated_task_id
    assert set(states(server, running).values()) == {1, 2, 3}
    assert 1 in set(states(server, terminated).values())
