"""Exclusive-task creators (update_orient_talents), the pure part: input, batches, checks, verdicts.

No I/O here: `parse_ids` reads text already read, `precheck` a roster already fetched, and
`classify_result` the platform's `update_result` text. The one table that turns a whole-call
error code into a message naming cause and fix is `CALL_ERRORS`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence

from sync.errors import SettingsError


class Operation(enum.StrEnum):
    """What a request does to the creators it names; stored in talent_operations.operation."""

    ADD = "add"
    CANCEL = "cancel"


class Verdict(enum.StrEnum):
    """What became of one creator of a command: the outcome column of its printed table."""

    OK = "ok"
    FAILED = "failed"  # the platform refused the creator, or the request failed
    REFUSED = "refused"  # refused by the pre-check, never sent
    NOT_SENT = "not sent"  # an earlier request failed, or the audit could not be written


OP_TYPE: Mapping[Operation, int] = {Operation.ADD: 1, Operation.CANCEL: 2}
BATCH_SIZE = 10  # ids per request (the platform's limit)
MAX_ROSTER = 200  # creators per exclusive task, cancelled ones included
MAX_TASK_ID = 2**63 - 1
EXCLUSIVE_TASK_TYPE = 1

NO_RESULT = "no result returned"


class CooperationState(enum.IntEnum):
    """A creator's state on an exclusive task, as query_task_info reports it."""

    PUBLISHED = 1
    WAITING = 2
    CANCELLED = 3

    @property
    def label(self) -> str:
        return {1: "published", 2: "waiting", 3: "cancelled"}[self.value]


def state_label(state: int) -> str:
    """`published`, `waiting`, `cancelled`, or `state N` for a value we do not know."""
    try:
        return CooperationState(state).label
    except ValueError:
        return f"state {state}"


# Both comma forms: the documentation page shows the ASCII one, other pages the full-width one.
_SUCCESS: Mapping[Operation, frozenset[str]] = {
    Operation.ADD: frozenset({"请求成功,已添加", "请求成功，已添加"}),
    Operation.CANCEL: frozenset({"请求成功,已取消", "请求成功，已取消"}),
}

_EXCLUSIVE_ONLY = "check --task-id; only exclusive tasks have invited creators"

# code -> what went wrong and what to do about it. {detail} is the platform's own message.
CALL_ERRORS: Mapping[int, str] = {
    5501: "the mini-app access token was missing (5501) even after a refresh: check "
    "DOUYIN_APP_ID/DOUYIN_APP_SECRET and DOUYIN_DEVELOPER_BASE_URL",
    5502: "the mini-app access token was refused as invalid (5502) even after a refresh: check "
    "DOUYIN_APP_ID/DOUYIN_APP_SECRET belong to the same mini-app",
    5503: "DOUYIN_APP_ID does not match the access token (5503): set DOUYIN_APP_ID and "
    "DOUYIN_APP_SECRET of the same mini-app (a service provider passes the other app as "
    "--third-appid)",
    5442: "the task does not exist or is not an exclusive task (5442): " + _EXCLUSIVE_ONLY,
    5591: "the task has been terminated (5591): a terminated exclusive task cannot change its "
    "creators; create a new exclusive task",
    5592: "bad number of creators in one request (5592): the platform takes 1 to 10 ids per "
    "request; taskbox-sync sends at most 10, so report this as a bug",
    4001010: "the platform is unavailable (4001010) and stayed so through the retries: try "
    "again later",
    4001015: "the platform refused a parameter (4001015: {detail}): check --task-id, the "
    "Douyin ids and --third-appid",
}


def call_error_message(code: int, detail: str) -> str:
    """The human message for a whole-call error code, with the platform's text where useful."""
    template = CALL_ERRORS.get(code)
    if template is None:
        return f"the platform refused the request ({code}: {detail})"
    return template.replace("{detail}", detail or "no detail given")


_TASK_ID = re.compile(r"[0-9]+")


def parse_task_id(text: str) -> int:
    """A positive 64-bit task id, parsed exactly from decimal digits (never through a float)."""
    value = text.strip()
    if not _TASK_ID.fullmatch(value):
        raise SettingsError(f"--task-id: expected a positive integer, got {text!r}")
    number = int(value)
    if not 0 < number <= MAX_TASK_ID:
        raise SettingsError(f"--task-id: expected a positive 64-bit integer, got {text!r}")
    return number


def _file_ids(file_text: str) -> list[str]:
    """One id per line; `#` starts a comment; blank lines are skipped."""
    result = []
    for line in file_text.splitlines():
        value = line.split("#", 1)[0].strip()
        if value:
            result.append(value)
    return result


def parse_ids(args: Sequence[str], file_text: str | None = None) -> tuple[list[str], list[str]]:
    """The ids to send, in first-seen order, and notes on what was dropped.

    Arguments are trimmed; an empty one, or one with whitespace inside, is refused
    (SettingsError). Duplicates are dropped and said so in the notes.
    """
    candidates: list[str] = []
    for raw in args:
        value = raw.strip()
        if not value:
            raise SettingsError("DOUYIN_ID: an empty id was given; remove it or quote it right")
        candidates.append(value)
    if file_text is not None:
        candidates.extend(_file_ids(file_text))
    ids: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for value in candidates:
        if any(ch.isspace() for ch in value):
            raise SettingsError(f"DOUYIN_ID: {value!r} contains whitespace; give one id per item")
        if value in seen:
            duplicates.append(value)
            continue
        seen.add(value)
        ids.append(value)
    if not ids:
        raise SettingsError("DOUYIN_ID: no Douyin ids given (as arguments or with --from-file)")
    notes = [f"dropped duplicate id {value}" for value in duplicates]
    return ids, notes


def batches(ids: Sequence[str], size: int = BATCH_SIZE) -> list[list[str]]:
    """`ids` cut into consecutive requests of at most `size`."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def classify_result(op: Operation, text: str | None) -> tuple[bool, str]:
    """Whether one creator's `update_result` means success for `op`, and the reason shown."""
    if text is None:
        return False, NO_RESULT
    value = text.strip()
    if value in _SUCCESS[op]:
        return True, value
    return False, value or "empty result text"


def results_by_id(
    op: Operation, ids: Sequence[str], results: Iterable[tuple[str, str]]
) -> list[tuple[str, bool, str]]:
    """Each sent id with its verdict; an id the answer does not mention failed (no result)."""
    answers: dict[str, str] = {}
    for douyin_id, text in results:
        answers.setdefault(douyin_id.strip(), text)
    return [(i, *classify_result(op, answers.get(i))) for i in ids]


Roster = Mapping[str, int]  # douyin_id -> cooperation_state


def precheck(
    op: Operation, ids: Sequence[str], roster: Roster | None, *, task_type: int | None = None
) -> tuple[list[str], list[tuple[str, str]]]:
    """What may be sent, and what is refused before any call, given the roster (None: unknown).

    A task known not to be exclusive refuses everything. Adding: the roster (cancelled
    creators included) may not pass 200; ids already on it do not count again; past the cap
    the whole request is refused. Cancelling: a creator who already published cannot be.
    """
    if task_type is not None and task_type != EXCLUSIVE_TASK_TYPE:
        reason = (
            f"refused: the task is not exclusive (task_type {task_type}); "
            + (CALL_ERRORS[5442].split(": ", 1)[1])
        )
        return [], [(i, reason) for i in ids]
    if roster is None:
        return list(ids), []
    if op == Operation.ADD:
        new = [i for i in ids if i not in roster]
        total = len(roster) + len(new)
        if total > MAX_ROSTER:
            reason = (
                f"refused: the task would have {total} creators, over the platform's limit of "
                f"{MAX_ROSTER} (cancelled ones count; {len(roster)} already on the roster)"
            )
            return [], [(i, reason) for i in ids]
        return list(ids), []
    allowed: list[str] = []
    refused: list[tuple[str, str]] = []
    for i in ids:
        if roster.get(i) == CooperationState.PUBLISHED:
            refused.append(
                (
                    i,
                    "refused: the creator already published; the platform does "
                    "not allow cancelling a published creator",
                )
            )
        else:
            allowed.append(i)
    return allowed, refused


def expected_change(op: Operation, douyin_id: str, roster: Roster | None) -> str:
    """What a request for this id would change, as far as the roster tells (for --dry-run)."""
    if roster is None:
        return f"would {op} (roster unknown)"
    state = roster.get(douyin_id)
    if op == Operation.ADD:
        if state is None:
            return "would add"
        if state == CooperationState.CANCELLED:
            return "would add again (cancelled before)"
        return f"no change expected: already on the roster ({state_label(state)})"
    if state is None:
        return "no change expected: not on the roster"
    if state == CooperationState.CANCELLED:
        return "no change expected: already cancelled"
    return "would cancel"
