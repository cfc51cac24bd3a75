"""The one error table classifies every documented code, and errors carry their data."""

from __future__ import annotations

import pytest

from sync.api.client import parse_daily_data
from sync.errors import (
    CapabilityError,
    ContractError,
    ErrorClass,
    PermanentError,
    RetryableApiError,
    ThrottledError,
    TokenError,
    TransportError,
    api_error,
    classify,
)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (28001005, ErrorClass.RETRYABLE),
        (28001006, ErrorClass.RETRYABLE),
        (28001007, ErrorClass.PERMANENT),
        (28013009, ErrorClass.PERMANENT),
        (28013010, ErrorClass.PERMANENT),
        (28003018, ErrorClass.THROTTLED),
        (28001018, ErrorClass.FATAL),
        (28001008, ErrorClass.TOKEN),
        (28001003, ErrorClass.TOKEN),
        (99999999, ErrorClass.PERMANENT),
    ],
)
def test_daily_data_codes(code: int, expected: ErrorClass) -> None:
    """Each documented err_no of query_task_video_daily_data has its class."""
    assert classify("open", code) is expected


def test_exception_types_follow_class() -> None:
    """api_error builds the exception type of the code's class, with its data."""
    cases = {
        28001005: RetryableApiError,
        28003018: ThrottledError,
        28001008: TokenError,
        28001007: PermanentError,
        28001018: CapabilityError,
    }
    for code, cls in cases.items():
        exc = api_error("open", code, "msg", endpoint="ep", log_id="L1")
        assert type(exc) is cls
        assert (exc.err_no, exc.message, exc.log_id, exc.endpoint) == (code, "msg", "L1", "ep")
        assert "log_id=L1" in str(exc) and f"err_no={code}" in str(exc)


def test_parse_success_keeps_big_ids_exact() -> None:
    """A page's 19-digit IDs are exact ints and decimals are Decimal."""
    body = (
        b'{"err_no":0,"err_msg":"success","log_id":"X","data":{"video_daily_data_list":'
        b'[{"VideoId":7270855478333246754,"ExpectedProfit":1.3}]}}'
    )
    page = parse_daily_data(body)
    assert page.items[0]["VideoId"] == 7270855478333246754
    assert str(page.items[0]["ExpectedProfit"]) == "1.3"
    assert page.log_id == "X"


def test_parse_lone_surrogate_body() -> None:
    """A title with a lone surrogate escape does not fail the page."""
    body = b'{"err_no":0,"log_id":"X","data":{"video_daily_data_list":[{"VideoTitle":"a\\ud800"}]}}'
    assert parse_daily_data(body).items[0]["VideoTitle"] == "a\ud800"


@pytest.mark.parametrize(
    ("body", "exc"),
    [
        (b'{"err_no":28003018,"err_msg":"busy","log_id":"L"}', ThrottledError),
        (b'{"err_no":0,"log_id":"L"}', ContractError),
        (b'{"err_no":0,"log_id":"L","data":{"video_daily_data_list":{}}}', ContractError),
        (b'{"err_no":"0","log_id":"L","data":{}}', ContractError),
        (b"[1,2]", ContractError),
        (b'{"err_no":0,"data":{"video_daily_data_list":[{"a":', TransportError),
        (b"<html>502 Bad Gateway</html>", TransportError),
    ],
)
def test_parse_broken_answers(body: bytes, exc: type[Exception]) -> None:
    """Error codes, wrong shapes and broken bodies raise the right class, never a crash."""
    with pytest.raises(exc):
        parse_daily_data(body)


def test_null_list_is_empty() -> None:
    """A null list is an empty page (nothing more to read)."""
    body = b'{"err_no":0,"log_id":"L","data":{"video_daily_data_list":null}}'
    assert parse_daily_data(body).items == []
