"""Exclusive-task rosters and the update_orient_talents rules, as pure state.

Rules from the docs: at most 10 creators per call (and at least one); at most 200 creators per task,
cancelled ones included; a creator who already published cannot be cancelled; a terminated task
cannot be changed; an unknown or non-exclusive task does not exist for this API.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from sync.sandbox.catalog import Catalog, Task
from sync.sandbox.codes import (
    TALENT_BAD_COUNT,
    TALENT_BAD_PARAM,
    TALENT_NO_TASK,
    TALENT_TASK_TERMINATED,
    ApiError,
)

MAX_PER_CALL = 10
MAX_PER_TASK = 200
ADD = 1
CANCEL = 2


class Cooperation(enum.IntEnum):
    PUBLISHED = 1
    WAITING = 2
    CANCELLED = 3


class CancelOperator(enum.IntEnum):
    NONE = 0
    DEVELOPER = 1
    CREATOR = 2


@dataclass
class Member:
    douyin_id: str
    state: Cooperation
    cancel_operator: CancelOperator = CancelOperator.NONE

    def to_json(self) -> dict[str, object]:
        return {
            "douyin_id": self.douyin_id,
            "cooperation_state": int(self.state),
            "cancel_operator": int(self.cancel_operator),
        }


@dataclass(frozen=True)
class UpdateRequest:
    task_id: int
    op_type: int
    douyin_ids: tuple[str, ...]


def parse_update(body: dict[str, object]) -> UpdateRequest | ApiError:
    """Validate task_id, op_type and douyin_ids of an update_orient_talents body."""
    task_id = body.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id <= 0:
        return ApiError(TALENT_BAD_PARAM, "task_id must be a number")
    op_type = body.get("op_type")
    if isinstance(op_type, bool) or op_type not in (ADD, CANCEL):
        return ApiError(TALENT_BAD_PARAM, "op_type must be 1 or 2")
    ids = body.get("douyin_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        return ApiError(TALENT_BAD_PARAM, "douyin_ids must be a list of strings")
    third = body.get("third_appid")
    if third is not None and not isinstance(third, str):
        return ApiError(TALENT_BAD_PARAM, "third_appid must be a string")
    if not 1 <= len(ids) <= MAX_PER_CALL:
        return ApiError(TALENT_BAD_COUNT, f"{len(ids)} douyin_ids")
    assert isinstance(op_type, int)
    return UpdateRequest(task_id=task_id, op_type=op_type, douyin_ids=tuple(map(str, ids)))


class Rosters:
    """Every exclusive task's roster, seeded from the catalog (published creators are the ones
    with videos on the task), plus some waiting and some cancelled creators."""

    def __init__(self, catalog: Catalog, seed: int, *, comma: str = ",") -> None:
        self._catalog = catalog
        self._seed = seed
        self._comma = comma
        self.tasks: dict[int, Task] = {t.task_id: t for t in catalog.tasks}
        self.members: dict[int, dict[str, Member]] = {}
        self.reset()

    def reset(self) -> None:
        rng = random.Random(f"rosters/{self._seed}")
        published: dict[int, set[str]] = {}
        for video in self._catalog.videos:
            if video.task.exclusive:
                published.setdefault(video.task.task_id, set()).add(video.creator.douyin_id)
        creators = [c.douyin_id for c in self._catalog.creators]
        self.members = {}
        for task in self._catalog.tasks:
            if not task.exclusive:
                continue
            roster: dict[str, Member] = {}
            for douyin_id in sorted(published.get(task.task_id, ())):
                roster[douyin_id] = Member(douyin_id, Cooperation.PUBLISHED)
            others = [c for c in creators if c not in roster]
            extra = rng.sample(others, k=min(len(others), rng.randint(3, 6)))
            for n, douyin_id in enumerate(extra):
                if n % 3 == 2:
                    operator = CancelOperator.DEVELOPER if n % 2 else CancelOperator.CREATOR
                    roster[douyin_id] = Member(douyin_id, Cooperation.CANCELLED, operator)
                else:
                    roster[douyin_id] = Member(douyin_id, Cooperation.WAITING)
            self.members[task.task_id] = roster

    def exclusive_task_ids(self) -> list[int]:
        return [t.task_id for t in self._catalog.tasks if t.exclusive]

    def check_task(self, task_id: int) -> ApiError | None:
        task = self.tasks.get(task_id)
        if task is None or not task.exclusive:
            return ApiError(TALENT_NO_TASK, "")
        if task.terminated:
            return ApiError(TALENT_TASK_TERMINATED, "")
        return None

    def _text(self, success: bool, text: str) -> str:
        return (("请求成功," if success else "请求失败,") + text).replace(",", self._comma)

    def update(self, request: UpdateRequest) -> list[dict[str, str]]:
        """Apply one checked request; one `{douyin_id, update_result}` per id, in order."""
        roster = self.members[request.task_id]
        results = []
        for douyin_id in request.douyin_ids:
            if request.op_type == ADD:
                text = self._add(roster, douyin_id)
            else:
                text = self._cancel(roster, douyin_id)
            results.append({"douyin_id": douyin_id, "update_result": text})
        return results

    def _add(self, roster: dict[str, Member], douyin_id: str) -> str:
        member = roster.get(douyin_id)
        if member is None:
            if len(roster) >= MAX_PER_TASK:
                return self._text(False, f"专属任务达人数量已达上限{MAX_PER_TASK}个")
            roster[douyin_id] = Member(douyin_id, Cooperation.WAITING)
            return self._text(True, "已添加")
        if member.state is Cooperation.CANCELLED:
            member.state = Cooperation.WAITING
            member.cancel_operator = CancelOperator.NONE
            return self._text(True, "已添加")
        return self._text(False, "该达人已在专属任务中,无需重复添加")

    def _cancel(self, roster: dict[str, Member], douyin_id: str) -> str:
        member = roster.get(douyin_id)
        if member is None:
            return self._text(False, "该达人不在专属任务中")
        if member.state is Cooperation.PUBLISHED:
            return self._text(False, "达人已投稿,不支持取消合作")
        if member.state is Cooperation.CANCELLED:
            return self._text(False, "和该达人的合作已取消,无法重复取消")
        member.state = Cooperation.CANCELLED
        member.cancel_operator = CancelOperator.DEVELOPER
        return self._text(True, "已取消")

    def task_json(self, task_id: int) -> dict[str, object] | None:
        """A task as query_task_info returns it (None when unknown)."""
        task = self.tasks.get(task_id)
        if task is None:
            return None
        roster = self.members.get(task_id, {})
        return {
            "task_id": task.task_id,
            "task_name": task.name,
            "task_type": 1 if task.exclusive else 2,
            "task_status": 3 if task.terminated else 1,
            "micro_app_title": task.micro_app_title,
            "oriented_talent_rel_list": [m.to_json() for m in roster.values()],
        }
