"""The pure part of the talents commands: ids, batches, verdicts, pre-checks, messages, and
the wire formats of its two endpoints."""

from __future__ import annotations

import json

import pytest

from sync.api.talents import parse_task_info, parse_update, update_body
from sync.errors import (
    ApiError,
    ContractError,
    PermanentError,
    ServerBusyError,
    SettingsError,
    TokenError,
)
from sync.talents.roster import (
    CALL_ERRORS,
    MAX_ROSTER,
    NO_RESULT,
    batches,
    call_error_message,
    classify_result,
    expected_change,
    parse_ids,
    parse_task_id,
    precheck,
    results_by_id,
)


def test_ids_are_trimmed_and_duplicates_dropped_with_a_note() -> None:
    """Arguments are trimmed, the first of duplicates kept in order, and each drop is noted."""
    ids, notes = parse_ids([" a1 ", "b2", "a1", "c3", "b2 "])
    assert ids == ["a1", "b2", "c3"]
    assert notes == ["dropped duplicate id a1", "dropped duplicate id b2"]


@pytest.mark.parametrize("bad", ["", "   ", "\t"])
def test_an_empty_argument_is_refused(bad: str) -> None:
    """An empty or blank id argument is bad input, not silently skipped."""
    with pytest.raises(SettingsError, match="empty id"):
        parse_ids(["a1", bad])


def test_an_id_with_inner_whitespace_is_refused() -> None:
    """Two ids pasted into one argument are refused rather than sent as one."""
    with pytest.raises(SettingsError, match="whitespace"):
        parse_ids(["a1 b2"])


def test_file_takes_one_id_per_line_with_comments_and_blanks() -> None:
    """A file adds its ids after the arguments; comments and blank lines are skipped."""
    text = "# invited in March\nx1\n\n  y2  # from the agency\n#z3\nx1\r\nb2\n"
    ids, notes = parse_ids(["b2"], text)
    assert ids == ["b2", "x1", "y2"]
    assert notes == ["dropped duplicate id x1", "dropped duplicate id b2"]


def test_no_ids_at_all_is_refused() -> None:
    """A command with neither ids nor a file with ids is bad input."""
    with pytest.raises(SettingsError, match="no Douyin ids"):
        parse_ids([], "# only a comment\n\n")


@pytest.mark.parametrize(
    ("text", "value"),
    [("7218760632718443557", 7218760632718443557), (" 1 ", 1), (str(2**63 - 1), 2**63 - 1)],
)
def test_task_id_is_parsed_exactly(text: str, value: int) -> None:
    """Task ids above 2**53 keep every digit; the 64-bit maximum is accepted."""
    assert parse_task_id(text) == value


@pytest.mark.parametrize(
    "text", ["0", "-5", str(2**63), "7.2e18", "7218760632718443557.0", "0x10", "", "1_000", "٣"]
)
def test_task_id_refuses_anything_but_a_positive_64_bit_integer(text: str) -> None:
    """Zero, negatives, overflow, floats, hex, underscores and non-ASCII digits are refused."""
    with pytest.raises(SettingsError, match="--task-id"):
        parse_task_id(text)


def test_batches_are_at_most_ten() -> None:
    """25 ids make three requests of 10, 10 and 5, in order."""
    ids = [f"d{i}" for i in range(25)]
    parts = batches(ids)
    assert [len(p) for p in parts] == [10, 10, 5]
    assert [i for p in parts for i in p] == ids
    assert batches([]) == []


@pytest.mark.parametrize("comma", [",", "，"])
def test_success_texts_in_both_comma_forms(comma: str) -> None:
    """Both comma forms of the documented success text count, each only for its operation."""
    assert classify_result("add", f"请求成功{comma}已添加") == (True, f"请求成功{comma}已添加")
    assert classify_result("cancel", f"请求成功{comma}已取消") == (True, f"请求成功{comma}已取消")
    assert classify_result("add", f"请求成功{comma}已取消")[0] is False
    assert classify_result("cancel", f"请求成功{comma}已添加")[0] is False


def test_other_texts_are_the_failure_reason() -> None:
    """Any other text is that creator's failure reason; a missing one is 'no result returned'."""
    text = "请求失败,和该达人的合作已取消,无法重复取消"
    assert classify_result("cancel", text) == (False, text)
    assert classify_result("add", None) == (False, NO_RESULT)
    assert classify_result("add", "  ") == (False, "empty result text")


def test_results_by_id_marks_missing_creators_failed() -> None:
    """Every sent id gets a verdict; one absent from update_info_list failed."""
    answer = [("a", "请求成功,已添加"), ("c", "请求失败,该达人已在专属任务中")]
    assert results_by_id("add", ["a", "b", "c"], answer) == [
        ("a", True, "请求成功,已添加"),
        ("b", False, NO_RESULT),
        ("c", False, "请求失败,该达人已在专属任务中"),
    ]


def _roster(n: int, cancelled: int = 0) -> dict[str, int]:
    roster = {f"r{i}": 2 for i in range(n - cancelled)}
    roster.update({f"x{i}": 3 for i in range(cancelled)})
    return roster


def test_cap_counts_cancelled_creators_and_not_ids_already_there() -> None:
    """At 195 (5 cancelled), 5 new ids fit, ids already on the roster don't count again."""
    roster = _roster(195, cancelled=5)
    ids = ["n1", "n2", "n3", "n4", "n5", "r0", "x0"]
    assert precheck("add", ids, roster) == (ids, [])


def test_cap_refuses_the_whole_request() -> None:
    """One id over 200 refuses every id of the request, with a reason naming the limit."""
    roster = _roster(MAX_ROSTER - 1, cancelled=3)
    allowed, refused = precheck("add", ["n1", "n2", "r0"], roster)
    assert allowed == []
    assert [i for i, _ in refused] == ["n1", "n2", "r0"]
    assert all("201 creators" in reason and "200" in reason for _, reason in refused)


def test_published_creators_cannot_be_cancelled() -> None:
    """Cancelling a published creator is refused; waiting, cancelled and unknown ones are sent."""
    roster = {"p": 1, "w": 2, "c": 3}
    allowed, refused = precheck("cancel", ["p", "w", "c", "u"], roster)
    assert allowed == ["w", "c", "u"]
    assert len(refused) == 1 and refused[0][0] == "p" and "published" in refused[0][1]


def test_unknown_roster_allows_everything() -> None:
    """Without a roster (no client token) nothing is refused before calling."""
    ids = [f"n{i}" for i in range(300)]
    assert precheck("add", ids, None) == (ids, [])
    assert precheck("cancel", ["p"], None) == (["p"], [])


def test_expected_change_describes_the_dry_run() -> None:
    """The dry run says what each id would change given the roster."""
    roster = {"p": 1, "w": 2, "c": 3}
    assert expected_change("add", "n", roster) == "would add"
    assert expected_change("add", "c", roster) == "would add again (cancelled before)"
    assert "already on the roster (waiting)" in expected_change("add", "w", roster)
    assert expected_change("cancel", "w", roster) == "would cancel"
    assert "already cancelled" in expected_change("cancel", "c", roster)
    assert "not on the roster" in expected_change("cancel", "n", roster)
    assert expected_change("add", "n", None) == "would add (roster unknown)"


def test_every_documented_code_has_a_message_with_a_fix() -> None:
    """Each whole-call code maps to text naming cause and fix; 4001015 carries the detail."""
    assert set(CALL_ERRORS) == {5501, 5502, 5503, 5442, 5591, 5592, 4001010, 4001015}
    assert "create a new exclusive task" in call_error_message(5591, "任务已终止")
    assert "DOUYIN_APP_ID" in call_error_message(5503, "")
    assert "task_id must be a number" in call_error_message(4001015, "task_id must be a number")
    assert "12345" in call_error_message(12345, "odd")


# -- the wire formats, fed recorded payloads -------------------------------------------------


def test_update_body_sends_the_task_id_as_an_exact_bare_number() -> None:
    """task_id goes out as a JSON integer with all 19 digits; third_appid only when given."""
    body = update_body("tok", "tt1", 7218760632718443557, "cancel", ["a", "b"], None)
    assert b'"task_id": 7218760632718443557,' in body
    assert json.loads(body) == {
        "access_token": "tok",
        "appid": "tt1",
        "task_id": 7218760632718443557,
        "op_type": 2,
        "douyin_ids": ["a", "b"],
    }
    with_third = json.loads(update_body("tok", "tt1", 1, "add", ["a"], "tt_other"))
    assert with_third["third_appid"] == "tt_other" and with_third["op_type"] == 1


def test_parse_update_reads_results_and_log_id() -> None:
    """error 0 with per-creator results gives (douyin_id, update_result) pairs and the log_id."""
    body = (
        '{"data": {"update_info_list": [{"douyin_id": "lw1352552", "update_result": '
        '"请求成功,已添加"}, {"douyin_id": "x", "update_result": '
        '"请求失败,和该达人的合作已取消"}]},'
        ' "message": "success", "error": 0, "log_id": "202303311900598DCDC833868FAC221F33"}'
    ).encode()
    result = parse_update(body)
    assert result.log_id == "202303311900598DCDC833868FAC221F33"
    assert result.results == [
        ("lw1352552", "请求成功,已添加"),
        ("x", "请求失败,和该达人的合作已取消"),
    ]


@pytest.mark.parametrize(
    ("code", "kind"),
    [(5502, TokenError), (4001010, ServerBusyError), (5591, PermanentError), ("5442", ApiError)],
)
def test_parse_update_raises_the_error_tables_class(code: object, kind: type[ApiError]) -> None:
    """A non-zero error (even quoted) raises the talents family's class with message and log_id."""
    body = json.dumps({"error": code, "message": "m", "log_id": "L1", "data": {}}).encode()
    with pytest.raises(kind) as caught:
        parse_update(body)
    assert caught.value.err_no == int(str(code)) and caught.value.log_id == "L1"
    assert caught.value.message == call_error_message(int(str(code)), "m")


@pytest.mark.parametrize(
    "body", [b"[]", b'{"message": "success"}', b'{"error": 0, "data": {"update_info_list": 3}}']
)
def test_parse_update_refuses_other_shapes(body: bytes) -> None:
    """Answers that are not the documented envelope are contract errors (retried upstream)."""
    with pytest.raises(ContractError):
        parse_update(body)


def test_parse_task_info_reads_type_and_roster() -> None:
    """query_task_info: our task's type and (douyin_id, state) pairs; a task not listed: None."""
    task_id = 7057687745307520697
    item = {
        "task_id": task_id,
        "task_type": 1,
        "oriented_talent_rel_list": [
            {"douyin_id": "p", "cooperation_state": 1, "cancel_operator": 0},
            {"douyin_id": "c", "cooperation_state": "3", "cancel_operator": 1},
        ],
    }
    doc = {"err_no": 0, "err_msg": "success", "log_id": "L2", "data": {"task_list": [item]}}
    raw = json.dumps(doc).encode()
    assert b"7057687745307520697" in raw
    task = parse_task_info(task_id)(raw)
    assert task.exclusive and task.roster == [("p", 1), ("c", 3)] and task.log_id == "L2"
    assert parse_task_info(task_id + 2)(raw).task_type is None
    error = json.dumps({"err_no": 28001008, "err_msg": "expired", "log_id": "L3"}).encode()
    with pytest.raises(TokenError):
        parse_task_info(task_id)(error)
