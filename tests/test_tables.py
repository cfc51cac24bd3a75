"""The CLI's one table renderer (sync.cli.tables): display widths, alignment of Chinese text,
cutting by display cells, and the status, summary and talents tables drawn with it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

import pytest

from sync.cli.status_text import PARTITION_HEADERS, render_partitions
from sync.cli.summary import render_result
from sync.cli.tables import clip, one_line, table, width
from sync.cli.talents import print_table
from sync.db.counts import RunCounts
from sync.db.status import PartitionInfo
from sync.db.statuses import RunStatus
from sync.pipeline.runs import FailedPartition, RunResult
from sync.planner import shanghai_text

ERR_MSG = "参数错误"
TASK_NAME = "小程序推广任务"


def spans(line: str, cells: Sequence[object]) -> list[tuple[int, int]]:
    """The display columns (first, past the last) each of `cells`, found in order, takes in
    `line`."""
    found, at = [], 0
    for cell in map(str, cells):
        at = line.index(cell, at)
        first = width(line[:at])
        found.append((first, first + width(cell)))
        at += len(cell)
    return found


def boundaries(line: str, cells: Sequence[object], right: Collection[int]) -> list[int]:
    """Where each column is aligned in `line`: its first display column, or the column past
    its end for a right-aligned one."""
    return [end if i in right else first for i, (first, end) in enumerate(spans(line, cells))]


def test_width_counts_wide_characters_twice() -> None:
    """CJK and fullwidth characters take two cells; combining marks and joiners none."""
    assert width(ERR_MSG) == 8
    assert width("２０２６-02-28") == 14
    assert width("e\u0301") == 1  # e + combining acute accent
    assert width("a\u200db") == 2  # zero width joiner
    assert width("…") == 1
    assert width("TaskName: 小程序") == 16


def test_fixed_width_with_right_aligned_numbers() -> None:
    """Columns line up under a rule of dashes; numeric columns align right; no trailing blanks."""
    text = table(["name", "n"], [("a", 5), ("longer", 1234)], right={1})
    assert text.splitlines() == ["name       n", "------  ----", "a          5", "longer  1234"]


def test_chinese_cells_keep_every_column_boundary() -> None:
    """With Chinese err_msg and TaskName in the middle of a row, every column of every line
    is aligned at the same display column, and the rule is as wide as the widest cell."""
    headers = ["task", "err_no", "err_msg", "rows"]
    rows = [
        (TASK_NAME, 28001007, ERR_MSG, 12),
        ("plain task", 0, "ok", 3456),
        ("混合 mixed 名称", 1, "参数 error 错误", 7),
    ]
    lines = table(headers, rows, right={3}).splitlines()
    expected = boundaries(lines[0], headers, {3})
    assert expected == [0, 17, 27, 48]
    for line, row in zip(lines[2:], rows, strict=True):
        assert boundaries(line, row, {3}) == expected, line
    assert lines[1].split() == ["-" * 15, "-" * 8, "-" * 15, "-" * 4]


def test_clip_never_cuts_a_wide_character() -> None:
    """A cut text fits its cells, ends in "…", and is a prefix of the whole characters."""
    text = f"{TASK_NAME} TaskName {ERR_MSG}"
    for cells in range(0, width(text) + 2):
        cut = clip(text, cells)
        assert width(cut) <= cells, (cells, cut)
        if cut != text and cells > 0:
            assert cut.endswith("…") and text.startswith(cut[:-1]), (cells, cut)
            assert width(cut) >= cells - 1  # at most the half of a wide character left empty
    assert clip(TASK_NAME, 6) == "小程…"
    assert clip(TASK_NAME, 7) == "小程序…"
    assert clip(TASK_NAME, 14) == TASK_NAME


def test_limits_cut_cells_by_display_width() -> None:
    """A column's limit cuts its cells to that many display cells, the rule included."""
    lines = table(["error", "n"], [(ERR_MSG * 5, 1)], limits={0: 11}).splitlines()
    assert lines[2] == "参数错误参…  1"
    assert lines[1] == "-" * 11 + "  -"


def test_cells_are_one_line_and_control_free() -> None:
    """Newlines and tabs in a cell become spaces; terminal control characters are replaced."""
    assert one_line("参数\n错误\t here ") == "参数 错误 here"
    assert one_line("\x1b[31mred") == "\ufffd[31mred"
    text = table(["a", "b"], [("x\ny", "\x07")])
    assert text.splitlines()[2] == "x y  \ufffd"


def test_a_row_must_fill_every_column() -> None:
    """A row with fewer cells than headers is a programming error, said at once."""
    with pytest.raises(ValueError, match="2 headers"):
        table(["a", "b"], [("only",)])


def test_status_partitions_align_with_chinese_text() -> None:
    """`status --run` partitions: a Chinese scope and err_msg leave the columns aligned, and
    the error is cut to its 60 display cells."""
    at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

    def part(pid: int, scope: str, err_no: int | None, error: str) -> PartitionInfo:
        return PartitionInfo(
            *(pid, 1, dt.date(2026, 10, 30), 1_761_000_000, 1_762_000_000, scope, "failed"),
            *(1, 2, 2, 100, 90, 5, 0, 12345, 0, 0, 0, "log-1", err_no, error, at, at),
        )

    parts = [part(1, "douyin_id=抖音号", 28001007, ERR_MSG * 20), part(22, "", None, "plain")]
    lines = render_partitions(parts).splitlines()
    right = set(range(4, 10))
    expected = boundaries(lines[0], PARTITION_HEADERS, right)
    for line, p in zip(lines[2:], parts, strict=True):
        window = f"{shanghai_text(p.window_start)} .. {shanghai_text(p.window_end)}"
        cells = (p.billing_date, window, p.scope or "-", "failed", 1, 2, 100, 90, 5, 12345)
        cells += (p.err_no or "-", "log-1")  # and the error, which is cut
        assert boundaries(line, cells, right) == expected[:-1], line
    assert lines[2].endswith("…") and width(lines[2]) == width(lines[1])
    assert expected[-1] + 59 <= width(lines[2]) <= expected[-1] + 60


def test_summary_tables_align_with_chinese_text() -> None:
    """The run summary: figures align right; a failed partition's Chinese error is cut by
    display width to 120 cells and the columns stay aligned."""
    failed = [
        FailedPartition(dt.date(2026, 10, 30), 1_761_000_000, 1_762_000_000, 1, ERR_MSG * 99, "L1"),
        FailedPartition(dt.date(2026, 10, 31), 1_761_000_000, 1_762_000_000, None, "x", None),
    ]
    result = RunResult(7, RunStatus.PARTIAL, RunCounts(rows_fetched=1234567), failed, 2.0)
    lines = render_result(result).splitlines()
    assert lines[0] == "run 7: partial in 2.0s"
    head = next(i for i, x in enumerate(lines) if x.startswith("rows fetched"))
    assert boundaries(lines[head + 2], ["1,234,567"], {0}) == [width("rows fetched")]
    error = width(lines[-3].rsplit("  ", 1)[0]) + 2  # where the error column starts
    first, second = lines[-2:]
    assert spans(first, ["L1"])[0][0] == spans(lines[-4], ["log_id"])[0][0]
    assert width(first) == width(lines[-3]) and 119 <= width(first) - error <= 120
    assert spans(second, ["x"])[0][0] == error


def test_talents_table_aligns_with_chinese_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    """The talents tables: a Chinese update_result before another column keeps it aligned."""
    headers = ["creator", "reason", "ok"]
    rows = [("c1", "请求成功,已添加", "yes"), ("creator-22", "failed", "no")]
    print_table(headers, rows)
    lines = capsys.readouterr().out.splitlines()
    expected = boundaries(lines[0], headers, ())
    assert expected == [0, 12, 29]
    assert [boundaries(line, row, ()) for line, row in zip(lines[2:], rows, strict=True)] == [
        expected,
        expected,
    ]
