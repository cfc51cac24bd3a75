"""Pagination of one window as a small state object: told what each page held, it says what next.

The daily-data endpoint returns no total and no has_more: a page shorter than `page_size` is the
last one, and a total that is an exact multiple of the page size ends with an empty page. A page
identical to the one before it (the platform ignoring `page_num`) or an endless run of full pages
would loop forever, so both stop the window with a `PagingError`.

Pure: no I/O, no clock. The caller fetches page `next_page` and reports it with `advance`.
"""

from __future__ import annotations

from sync.errors import PagingError

MAX_PAGE_SIZE = 10_000  # the API refuses larger pages
DEFAULT_MAX_PAGES = 10_000


class PageCursor:
    """Where the paging of one window stands: the next page to fetch, or done."""

    __slots__ = ("_last_fingerprint", "done", "max_pages", "next_page", "page_size", "rows")

    def __init__(self, page_size: int, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, got {page_size}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, got {max_pages}")
        self.page_size = page_size
        self.max_pages = max_pages
        self.next_page = 1
        self.done = False
        self.rows = 0  # rows received so far in this window
        self._last_fingerprint: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"PageCursor(page_size={self.page_size}, next_page={self.next_page}, "
            f"done={self.done}, rows={self.rows})"
        )

    def advance(self, row_count: int, fingerprint: bytes) -> None:
        """Record page `next_page`: it held `row_count` rows and hashed to `fingerprint`.

        Raises PagingError when the page repeats the previous non-empty page, holds more rows
        than the page size, or when another page would go past `max_pages`.
        """
        if self.done:
            raise RuntimeError("advance() called on a finished PageCursor")
        page = self.next_page
        if row_count < 0:
            raise ValueError(f"row_count must be >= 0, got {row_count}")
        if row_count > self.page_size:
            raise PagingError(
                f"page {page} has {row_count} rows, more than the page size {self.page_size}"
            )
        if row_count and fingerprint == self._last_fingerprint:
            raise PagingError(f"page {page} repeated page {page - 1}")
        self._last_fingerprint = fingerprint
        self.rows += row_count
        if row_count < self.page_size:
            self.done = True
            return
        if page >= self.max_pages:
            raise PagingError(f"more than {self.max_pages} pages")
        self.next_page = page + 1
