"""Paging of one window, driven with plain numbers."""

from __future__ import annotations

import pytest

from sync.api.paging import PageCursor
from sync.errors import ApiError, PagingError, PermanentError


def _walk(total: int, size: int) -> list[int]:
    """The pages a cursor asks for when the window holds `total` rows."""
    cursor = PageCursor(size)
    asked = []
    while not cursor.done:
        page = cursor.next_page
        asked.append(page)
        first = (page - 1) * size
        count = max(0, min(size, total - first))
        cursor.advance(count, f"{first}:{count}".encode())
    assert cursor.rows == total
    return asked


def test_short_last_page_ends_window() -> None:
    """25 rows at 10 a page: pages 1, 2, 3, then done."""
    assert _walk(25, 10) == [1, 2, 3]


def test_exact_multiple_needs_empty_page() -> None:
    """20 rows at 10 a page: pages 1, 2 and an empty 3, then done."""
    assert _walk(20, 10) == [1, 2, 3]


def test_empty_window_is_one_page() -> None:
    """No rows at all: page 1 comes back empty and the window is done."""
    assert _walk(0, 10) == [1]


def test_repeated_page_raises() -> None:
    """A full page with the same fingerprint as the previous one stops the window."""
    cursor = PageCursor(10)
    cursor.advance(10, b"same")
    with pytest.raises(PagingError, match="page 2 repeated page 1"):
        cursor.advance(10, b"same")


def test_repeated_short_page_raises() -> None:
    """A short page identical to the previous full page is a repeat, not a last page."""
    cursor = PageCursor(10)
    cursor.advance(10, b"x")
    cursor.advance(10, b"y")
    with pytest.raises(PagingError, match="page 3 repeated page 2"):
        cursor.advance(5, b"y")


def test_two_empty_fingerprints_are_not_a_repeat() -> None:
    """An empty page after a full one ends the window even when fingerprints match."""
    cursor = PageCursor(10)
    cursor.advance(10, b"")
    cursor.advance(0, b"")
    assert cursor.done


def test_cap_raises() -> None:
    """Full pages beyond max_pages raise instead of paging forever."""
    cursor = PageCursor(10, max_pages=3)
    cursor.advance(10, b"1")
    cursor.advance(10, b"2")
    with pytest.raises(PagingError, match="more than 3 pages"):
        cursor.advance(10, b"3")


def test_short_page_at_cap_is_fine() -> None:
    """The last allowed page may end the window normally."""
    cursor = PageCursor(10, max_pages=2)
    cursor.advance(10, b"1")
    cursor.advance(9, b"2")
    assert cursor.done and cursor.next_page == 2


def test_oversized_page_raises() -> None:
    """A page with more rows than the page size breaks the contract."""
    with pytest.raises(PagingError, match="more than the page size 10"):
        PageCursor(10).advance(11, b"x")


def test_paging_error_is_permanent_for_the_endpoint() -> None:
    """PagingError fails the partition: permanent, and it names the endpoint."""
    err = PagingError("page 2 repeated page 1")
    assert isinstance(err, PermanentError) and isinstance(err, ApiError)
    assert str(err) == "query_task_video_daily_data: page 2 repeated page 1"


def test_advance_after_done_is_a_bug() -> None:
    """Reporting a page after the window finished is a programming error."""
    cursor = PageCursor(10)
    cursor.advance(3, b"x")
    with pytest.raises(RuntimeError):
        cursor.advance(3, b"y")


@pytest.mark.parametrize(("size", "pages"), [(0, 1), (10_001, 1), (10, 0)])
def test_bad_construction(size: int, pages: int) -> None:
    """Page sizes outside 1..10000 and caps below 1 are refused."""
    with pytest.raises(ValueError):
        PageCursor(size, max_pages=pages)
