"""Request validation for the open-platform endpoints: pure functions from a parsed body to a query.

Checks run in a fixed order and the first failure wins: the body is a JSON object; each required
field is present with its documented type; page_num >= 1; page_size >= 1 then <= 10000 (28013010);
start <= end; end - start <= 30 days; start >= now - 90 days (28013009).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sync.sandbox.codes import INVALID_PARAM, PAGE_TOO_LARGE, START_TOO_EARLY, ApiError
from sync.sandbox.days import DAY, parse_day

MAX_PAGE_SIZE = 10_000
MAX_SPAN = 30 * DAY
REACH = 90 * DAY
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class DailyQuery:
    billing_date: dt.date
    page_num: int
    page_size: int
    start_ts: int
    end_ts: int
    douyin_id: str | None
    agency_client_key: str | None


def _int(body: dict[str, object], name: str, limit: int) -> int | ApiError:
    value = body.get(name)
    if value is None:
        return ApiError(INVALID_PARAM, f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        return ApiError(INVALID_PARAM, f"{name} must be an integer")
    if not -limit - 1 <= value <= limit:
        return ApiError(INVALID_PARAM, f"{name} is out of range")
    return value


def _optional_text(body: dict[str, object], name: str) -> str | ApiError | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return ApiError(INVALID_PARAM, f"{name} must be a string")
    return value


def parse_daily_query(body: object, now: float) -> DailyQuery | ApiError:
    """Validate a query_task_video_daily_data body against the documented rules."""
    if not isinstance(body, dict):
        return ApiError(INVALID_PARAM, "body must be a JSON object")
    billing = body.get("billing_date")
    if billing is None:
        return ApiError(INVALID_PARAM, "billing_date is required")
    if not isinstance(billing, str):
        return ApiError(INVALID_PARAM, "billing_date must be a string")
    day = parse_day(billing)
    if day is None:
        return ApiError(INVALID_PARAM, "billing_date must be YYYY-MM-DD")
    page_num = _int(body, "page_num", INT32_MAX)
    if isinstance(page_num, ApiError):
        return page_num
    page_size = _int(body, "page_size", INT32_MAX)
    if isinstance(page_size, ApiError):
        return page_size
    start = _int(body, "video_publish_start_time", INT64_MAX)
    if isinstance(start, ApiError):
        return start
    end = _int(body, "video_publish_end_time", INT64_MAX)
    if isinstance(end, ApiError):
        return end
    douyin_id = _optional_text(body, "douyin_id")
    if isinstance(douyin_id, ApiError):
        return douyin_id
    agency = _optional_text(body, "agency_client_key")
    if isinstance(agency, ApiError):
        return agency
    if page_num < 1:
        return ApiError(INVALID_PARAM, "page_num must be >= 1")
    if page_size < 1:
        return ApiError(INVALID_PARAM, "page_size must be >= 1")
    if page_size > MAX_PAGE_SIZE:
        return ApiError(PAGE_TOO_LARGE, "")
    if start > end:
        return ApiError(
            INVALID_PARAM, "video_publish_start_time must not be after video_publish_end_time"
        )
    if end - start > MAX_SPAN:
        return ApiError(INVALID_PARAM, "publish time span must not exceed 30 days")
    if start < now - REACH:
        return ApiError(START_TOO_EARLY, "")
    return DailyQuery(
        billing_date=day,
        page_num=page_num,
        page_size=page_size,
        start_ts=start,
        end_ts=end,
        douyin_id=douyin_id,
        agency_client_key=agency,
    )


@dataclass(frozen=True)
class TaskInfoQuery:
    task_id: int
    page_num: int
    page_size: int


def parse_task_info_query(body: object) -> TaskInfoQuery | ApiError:
    """Validate a query_task_info body: query by task id (type 1) only."""
    if not isinstance(body, dict):
        return ApiError(INVALID_PARAM, "body must be a JSON object")
    kind = _int(body, "query_params_type", INT32_MAX)
    if isinstance(kind, ApiError):
        return kind
    if kind != 1:
        return ApiError(INVALID_PARAM, "query_params_type must be 1 (task id)")
    content = body.get("query_params_content")
    if not isinstance(content, str) or not content.isdigit() or not content.isascii():
        return ApiError(INVALID_PARAM, "query_params_content must be a task id string")
    page_num = _int(body, "page_num", INT32_MAX)
    if isinstance(page_num, ApiError):
        return page_num
    page_size = _int(body, "page_size", INT32_MAX)
    if isinstance(page_size, ApiError):
        return page_size
    if page_num < 1 or page_size < 1:
        return ApiError(INVALID_PARAM, "page_num and page_size must be >= 1")
    if page_size > 100:
        return ApiError(INVALID_PARAM, "page_size must be <= 100")
    return TaskInfoQuery(task_id=int(content), page_num=page_num, page_size=page_size)
