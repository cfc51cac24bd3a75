"""Rendered billing dates: one date's rows as a blob with row offsets, and the cache that keeps
the most recently used of them for every app of a sandbox within one budget."""

from __future__ import annotations

import datetime as dt
from array import array
from collections import OrderedDict
from dataclasses import dataclass

from sync.sandbox.catalog import Video


@dataclass
class DayRows:
    """One billing date's rendered rows."""

    day: dt.date
    videos: list[Video]
    publish_times: list[int]
    blob: bytes
    starts: array[int]
    """len(videos) + 1 offsets; row i is blob[starts[i]:starts[i + 1] - 1] (each row is followed
    by a "," in the blob)."""
    _by_douyin: dict[str, list[int]] | None = None
    _by_agency: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def positions_for(self, *, douyin_id: str | None, agency_key: str | None) -> list[int]:
        """Row positions matching the filters (ascending)."""
        result: list[int] | None = None
        if douyin_id is not None:
            if self._by_douyin is None:
                self._by_douyin = {}
                for i, v in enumerate(self.videos):
                    self._by_douyin.setdefault(v.creator.douyin_id, []).append(i)
            result = self._by_douyin.get(douyin_id, [])
        if agency_key is not None:
            if self._by_agency is None:
                self._by_agency = {}
                for i, v in enumerate(self.videos):
                    if v.agency is not None:
                        self._by_agency.setdefault(v.agency.client_key, []).append(i)
            matches = self._by_agency.get(agency_key, [])
            result = matches if result is None else sorted(set(result) & set(matches))
        return list(range(len(self.videos))) if result is None else result


class RenderedDays:
    """Rendered dates by (app number, date), at most `capacity` of them: the least recently used
    go first, whichever app they belong to, so memory stays bounded however many apps there are
    (a date dropped is rendered again when asked for: cheap for an app's few hundred rows)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._days: OrderedDict[tuple[int, dt.date], DayRows] = OrderedDict()

    def __len__(self) -> int:
        return len(self._days)

    def get(self, app: int, day: dt.date) -> DayRows | None:
        found = self._days.get((app, day))
        if found is not None:
            self._days.move_to_end((app, day))
        return found

    def put(self, app: int, day: dt.date, rows: DayRows) -> None:
        self._days[(app, day)] = rows
        self._days.move_to_end((app, day))
        while len(self._days) > self.capacity:
            self._days.popitem(last=False)

    def drop(self, app: int, day: dt.date) -> None:
        self._days.pop((app, day), None)
