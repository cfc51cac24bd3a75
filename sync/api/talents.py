"""The two endpoints of the talents commands, on top of the shared ApiCaller.

update_orient_talents (developer host, mini-app token in the body, envelope
{error, message, log_id, data}) and query_task_info (open host, client token in the
`access-token` header, envelope {err_no, err_msg, log_id, data}). Parsing is pure: the
`parse_*` functions take bytes and return data or raise the error table's exception.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from sync.api.client import ApiCaller
from sync.errors import ContractError, api_error
from sync.records.decode import decode_json
from sync.settings import Settings
from sync.talents.roster import OP_TYPE, Operation, call_error_message

UPDATE = "update_orient_talents"
UPDATE_PATH = "/api/apps/taskbox/update_orient_talents/"
TASK_INFO = "query_task_info"
TASK_INFO_PATH = "/api/match/v2/taskbox/query_task_info/"
TASK_INFO_PAGE_SIZE = 100


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateResult:
    """One update_orient_talents answer: its log_id and (douyin_id, update_result) pairs."""

    log_id: str | None
    results: list[tuple[str, str]]


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """A task as query_task_info reports it: its type (1 = exclusive) and its roster."""

    task_id: int
    task_type: int | None
    roster: list[tuple[str, int]]  # (douyin_id, cooperation_state)
    log_id: str | None = None

    @property
    def exclusive(self) -> bool:
        return self.task_type == 1


def _int(value: Any) -> int | None:
    """An integer, or a string of digits (some answers quote numbers); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _log_id(doc: dict[str, Any]) -> str | None:
    value = doc.get("log_id")
    return str(value) if value not in (None, "") else None


def update_body(
    token: str, app_id: str, task_id: int, op: Operation, ids: list[str], third_appid: str | None
) -> bytes:
    """The request body; task_id goes out as a bare JSON number with every digit."""
    doc: dict[str, Any] = {
        "access_token": token,
        "appid": app_id,
        "task_id": task_id,
        "op_type": OP_TYPE[op],
        "douyin_ids": ids,
    }
    if third_appid:
        doc["third_appid"] = third_appid
    return json.dumps(doc, ensure_ascii=False).encode()


def parse_update(body: bytes) -> UpdateResult:
    """The {error, message, log_id, data: {update_info_list}} envelope."""
    doc = decode_json(body, endpoint=UPDATE)
    if not isinstance(doc, dict):
        raise ContractError("answer is not a JSON object", endpoint=UPDATE)
    log_id = _log_id(doc)
    code = _int(doc.get("error"))
    if code is None:
        raise ContractError("answer has no integer error", endpoint=UPDATE, log_id=log_id)
    if code != 0:
        detail = str(doc.get("message") or "")
        message = call_error_message(code, detail)
        raise api_error("talents", code, message, endpoint=UPDATE, log_id=log_id)
    data = doc.get("data")
    items = data.get("update_info_list") if isinstance(data, dict) else None
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ContractError("data.update_info_list is not a list", endpoint=UPDATE, log_id=log_id)
    results: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("douyin_id"), str):
            raise ContractError("update_info_list item without douyin_id", endpoint=UPDATE)
        text = item.get("update_result")
        results.append((item["douyin_id"], text if isinstance(text, str) else ""))
    return UpdateResult(log_id, results)


def parse_task_info(task_id: int) -> Callable[[bytes], Task]:
    """A parser of the {err_no, err_msg, log_id, data: {…}} answer for one task id."""

    def parse(body: bytes) -> Task:
        doc = decode_json(body, endpoint=TASK_INFO)
        if not isinstance(doc, dict):
            raise ContractError("answer is not a JSON object", endpoint=TASK_INFO)
        log_id = _log_id(doc)
        code = _int(doc.get("err_no"))
        if code is None:
            raise ContractError("answer has no integer err_no", endpoint=TASK_INFO, log_id=log_id)
        if code != 0:
            message = str(doc.get("err_msg") or "error")
            raise api_error("open", code, message, endpoint=TASK_INFO, log_id=log_id)
        return _task_from(doc.get("data"), task_id, log_id)

    return parse


def _task_from(data: Any, task_id: int, log_id: str | None) -> Task:
    """The task whose id is `task_id` in data's task list; an absent task has no type."""
    if not isinstance(data, dict):
        raise ContractError("answer has no data object", endpoint=TASK_INFO, log_id=log_id)
    tasks = data.get("task_info_list", data.get("task_list"))
    if tasks is None:
        tasks = []
    if not isinstance(tasks, list):
        raise ContractError("data task list is not a list", endpoint=TASK_INFO, log_id=log_id)
    for item in tasks:
        if isinstance(item, dict) and _int(item.get("task_id")) == task_id:
            return Task(task_id, _int(item.get("task_type")), _roster(item, log_id), log_id)
    return Task(task_id, None, [], log_id)


def _roster(item: dict[str, Any], log_id: str | None) -> list[tuple[str, int]]:
    rels = item.get("oriented_talent_rel_list") or []
    if not isinstance(rels, list):
        raise ContractError(
            "oriented_talent_rel_list is not a list", endpoint=TASK_INFO, log_id=log_id
        )
    roster: list[tuple[str, int]] = []
    for rel in rels:
        state = _int(rel.get("cooperation_state")) if isinstance(rel, dict) else None
        if not isinstance(rel, dict) or not isinstance(rel.get("douyin_id"), str) or state is None:
            raise ContractError("malformed roster entry", endpoint=TASK_INFO, log_id=log_id)
        roster.append((rel["douyin_id"], state))
    return roster


class TalentsApi:
    """update(…) with the mini-app token; query_task(…) with the client token (if any)."""

    def __init__(
        self, app_caller: ApiCaller, client_caller: ApiCaller | None, settings: Settings
    ) -> None:
        self._app = app_caller
        self._client = client_caller
        self._app_id = settings.app_id or ""
        self._update_url = settings.developer_base_url + UPDATE_PATH
        self._task_url = settings.open_base_url + TASK_INFO_PATH

    @property
    def can_query(self) -> bool:
        return self._client is not None

    async def update(
        self, task_id: int, op: Operation, ids: list[str], third_appid: str | None = None
    ) -> UpdateResult:
        def build(token: str) -> tuple[bytes, dict[str, str]]:
            return update_body(token, self._app_id, task_id, op, ids, third_appid), {}

        result, _ = await self._app.call(UPDATE, self._update_url, build, parse_update)
        return result

    async def query_task(self, task_id: int) -> Task:
        if self._client is None:
            raise RuntimeError("query_task needs the client token (check can_query)")
        body = json.dumps(
            {
                "query_params_type": 1,
                "query_params_content": str(task_id),
                "page_num": 1,
                "page_size": TASK_INFO_PAGE_SIZE,
            }
        ).encode()

        def build(token: str) -> tuple[bytes, dict[str, str]]:
            return body, {"access-token": token}

        parse = parse_task_info(task_id)
        task, _ = await self._client.call(TASK_INFO, self._task_url, build, parse)
        return task
