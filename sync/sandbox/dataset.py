"""One app's rows per billing date: built lazily, rendered once, cached, paged by slicing; edits.

A billing date's rows are every catalog video published on or before that (Shanghai) day, in the
API's stable order, minus removed rows, plus rows added by `mutate`. A date is built the first time
it is asked for: each row's JSON is rendered once into one blob (rows joined by ","), with the
offset of every row, so a page is `blob[starts[a]:starts[b] - 1]`: one copy, no per-row work.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import random
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from sync.sandbox.catalog import Catalog, IdSource, Video, build_catalog, random_title
from sync.sandbox.config import SandboxConfig
from sync.sandbox.days import DAY, day_end, day_start, yesterday
from sync.sandbox.figures import (
    POOL_MASK,
    POOL_SHIFT,
    Figures,
    changed,
    day_multiplier,
    mix,
    pool_index,
    video_hash,
)
from sync.sandbox.render import date_part, figures_part, pool_parts, row_dict, static_part
from sync.sandbox.rendered import DayRows, RenderedDays

REACH_DAYS = 90
"""video_publish_start_time may not be earlier than now - 90 days."""


@dataclass
class Page:
    """A page of rows as byte pieces to join with b","; `count` rows in all."""

    pieces: list[bytes | memoryview]
    count: int


@dataclass
class DayEdits:
    """Late-settlement edits to one billing date."""

    changed: dict[int, Figures] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    added: list[Video] = field(default_factory=list)
    generation: int = 0


class Dataset:
    """One app's seeded dataset plus edits, and the page/truth queries over it.

    `seed` is the app's (default: the config's); the figure pool stays the config's, shared by
    every app. Rendered dates live in `rendered` under `app` (default: a cache of its own). Rows
    added by `mutate` take ids outside `reserved` (the ids of the other apps' catalogs).
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        seed: int | None = None,
        app: int = 1,
        rendered: RenderedDays | None = None,
        reserved: set[int] | None = None,
    ) -> None:
        self._config = config
        self._clock = config.clock
        self._seed = config.seed if seed is None else seed
        self._app = app
        self._rendered = RenderedDays(config.cache_dates) if rendered is None else rendered
        self.catalog: Catalog = build_catalog(
            self._seed,
            videos=config.videos,
            tasks=config.tasks,
            creators=config.creators,
            history_days=config.history_days,
            now=config.clock(),
        )
        videos = self.catalog.videos
        self._publish_times = [v.publish_time for v in videos]
        self._index = {v.video_id: i for i, v in enumerate(videos)}
        self._hashes = [video_hash(self._seed, v.video_id) for v in videos]
        self._statics: list[bytes] | None = None
        self._extra_statics: dict[int, tuple[bytes, int]] = {}
        self._pool, self._pool_parts = pool_parts(config.seed, config.snake_case)
        self._edits: dict[dt.date, DayEdits] = {}
        self._ids: IdSource | None = None
        self._reserved = reserved if reserved is not None else set()

    def ids(self) -> set[int]:
        """Every id its catalog uses: tasks, videos and the videos' mids."""
        videos = self.catalog.videos
        return (
            {t.task_id for t in self.catalog.tasks}
            | {v.video_id for v in videos}
            | {v.mid for v in videos}
        )

    # -- building ---------------------------------------------------------------------------

    def _catalog_statics(self) -> list[bytes]:
        if self._statics is None:
            snake = self._config.snake_case
            self._statics = [static_part(v, snake_case=snake) for v in self.catalog.videos]
        return self._statics

    def _static_of(self, video: Video) -> tuple[bytes, int]:
        """The video's rendered static fields and its figure hash."""
        index = self._index.get(video.video_id)
        if index is not None and self.catalog.videos[index] is video:
            return self._catalog_statics()[index], self._hashes[index]
        found = self._extra_statics.get(video.video_id)
        if found is None:
            static = static_part(video, snake_case=self._config.snake_case)
            found = (static, video_hash(self._seed, video.video_id))
            self._extra_statics[video.video_id] = found
        return found

    def _figures(self, video: Video, day: dt.date, edits: DayEdits | None) -> Figures:
        if edits is not None:
            figures = edits.changed.get(video.video_id)
            if figures is not None:
                return figures
        vhash = self._static_of(video)[1]
        return self._pool[pool_index(vhash, day_multiplier(self._seed, day.toordinal()))]

    def _count_on(self, day: dt.date) -> int:
        """How many catalog videos were published on or before `day`."""
        return bisect_right(self._publish_times, day_end(day))

    def _videos_on(self, day: dt.date) -> list[Video]:
        videos = list(self.catalog.videos[: self._count_on(day)])
        edits = self._edits.get(day)
        if edits is not None:
            if edits.removed:
                videos = [v for v in videos if v.video_id not in edits.removed]
            if edits.added:
                videos.extend(edits.added)
                videos.sort(key=lambda v: v.sort_key)
        return videos

    def rows(self, day: dt.date) -> DayRows:
        """The rendered rows of `day` (built on first use, then cached)."""
        cached = self._rendered.get(self._app, day)
        if cached is not None:
            return cached
        built = self._build(day)
        self._rendered.put(self._app, day, built)
        # A rendered day is hundreds of thousands of long-lived objects: out of the cyclic
        # collector, whose full passes would otherwise stall the server (and with it the clock
        # its throttle reads) for ~200 ms. Acyclic, they are still freed when evicted.
        gc.freeze()
        return built

    def _build(self, day: dt.date) -> DayRows:
        snake = self._config.snake_case
        tail = date_part(day.isoformat(), snake_case=snake) + b","
        mult = day_multiplier(self._seed, day.toordinal())
        parts = self._pool_parts
        edits = self._edits.get(day)
        if edits is None:  # the common case: a prefix of the catalog, rendered in bulk
            count = self._count_on(day)
            videos = list(self.catalog.videos[:count])
            heads = [parts[((h * mult) >> POOL_SHIFT) & POOL_MASK] for h in self._hashes[:count]]
            rendered = [a + b + tail for a, b in zip(heads, self._catalog_statics(), strict=False)]
        else:
            videos = self._videos_on(day)
            rendered = []
            for video in videos:
                static, vhash = self._static_of(video)
                figures = edits.changed.get(video.video_id)
                if figures is None:
                    head = parts[pool_index(vhash, mult)]
                else:
                    head = figures_part(figures, snake_case=snake)
                rendered.append(head + static + tail)
        return DayRows(
            day=day,
            videos=videos,
            publish_times=self._publish_times[: len(videos)]
            if edits is None
            else [v.publish_time for v in videos],
            blob=b"".join(rendered),
            starts=array("q", accumulate(map(len, rendered), initial=0)),
        )

    def warm(self, days: list[dt.date]) -> int:
        """Build (and cache) the given dates now; returns the number of rows rendered."""
        return sum(len(self.rows(day)) for day in days)

    # -- queries ----------------------------------------------------------------------------

    def visible(self, day: dt.date) -> bool:
        """Whether the platform has data for `day` yet (T+1)."""
        return day <= yesterday(self._clock())

    def page(
        self,
        day: dt.date,
        *,
        start_ts: int,
        end_ts: int,
        page_num: int,
        page_size: int,
        douyin_id: str | None = None,
        agency_key: str | None = None,
    ) -> Page:
        """Rows `page_num` (1-based) of `day` published within [start_ts, end_ts]."""
        if not self.visible(day) or day < dt.date(2000, 1, 1):
            return Page([], 0)
        rows = self.rows(day)
        lo = bisect_left(rows.publish_times, start_ts)
        hi = bisect_right(rows.publish_times, end_ts)
        first = (page_num - 1) * page_size
        if douyin_id is None and agency_key is None:
            a = lo + first
            b = min(hi, a + page_size)
            if a >= b:
                return Page([], 0)
            view = memoryview(rows.blob)[rows.starts[a] : rows.starts[b] - 1]
            return Page([view], b - a)
        positions = rows.positions_for(douyin_id=douyin_id, agency_key=agency_key)
        window = positions[bisect_left(positions, lo) : bisect_left(positions, hi)]
        chosen = window[first : first + page_size]
        view = memoryview(rows.blob)
        starts = rows.starts
        return Page([view[starts[i] : starts[i + 1] - 1] for i in chosen], len(chosen))

    def reach_start(self) -> int:
        """The earliest video_publish_start_time the API accepts now."""
        return math.ceil(self._clock() - REACH_DAYS * DAY)

    def truth(
        self,
        day: dt.date,
        start_ts: int | None = None,
        end_ts: int | None = None,
        *,
        douyin_id: str | None = None,
        agency_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Exactly the rows the API returns for `day` over [start_ts, end_ts], in its order.

        Defaults cover the whole reachable publish range (now - 90 days .. now).
        """
        if not self.visible(day):
            return []
        start = self.reach_start() if start_ts is None else start_ts
        end = math.floor(self._clock()) if end_ts is None else end_ts
        rows = self.rows(day)
        edits = self._edits.get(day)
        date_text = day.isoformat()
        result = []
        for video in rows.videos:
            if not start <= video.publish_time <= end:
                continue
            if douyin_id is not None and video.creator.douyin_id != douyin_id:
                continue
            if agency_key is not None and (
                video.agency is None or video.agency.client_key != agency_key
            ):
                continue
            result.append(row_dict(video, self._figures(video, day, edits), date_text))
        return result

    # -- late settlement ----------------------------------------------------------------------

    def mutate(
        self,
        days: list[dt.date],
        *,
        change_fraction: float = 0.1,
        add: int = 0,
        remove: int = 0,
        seed: int = 0,
    ) -> dict[str, dict[str, Any]]:
        """Change, add and remove rows of the given billing dates; says what changed per date."""
        if not 0.0 <= change_fraction <= 1.0 or add < 0 or remove < 0:
            raise ValueError("need 0 <= change_fraction <= 1, add >= 0, remove >= 0")
        for day in days:
            if not self.visible(day):
                raise ValueError(f"billing date {day} has no data yet (T+1)")
        report: dict[str, dict[str, Any]] = {}
        for day in dict.fromkeys(days):
            report[day.isoformat()] = self._mutate_day(day, change_fraction, add, remove, seed)
            self._rendered.drop(self._app, day)
        return report

    def _mutate_day(
        self, day: dt.date, change_fraction: float, add: int, remove: int, seed: int
    ) -> dict[str, Any]:
        edits = self._edits.setdefault(day, DayEdits())
        edits.generation += 1
        rng = random.Random(f"mutate/{self._seed}/{seed}/{day}/{edits.generation}")
        current = self._videos_on(day)
        gone = rng.sample(current, k=min(remove, len(current)))
        gone_ids = {v.video_id for v in gone}
        edits.removed |= gone_ids
        edits.added = [v for v in edits.added if v.video_id not in gone_ids]
        for vid in gone_ids:
            edits.changed.pop(vid, None)
        remaining = [v for v in current if v.video_id not in gone_ids]
        to_change = rng.sample(
            remaining, k=min(len(remaining), round(change_fraction * len(current)))
        )
        for video in to_change:
            old = self._figures(video, day, edits)
            key = mix(video.video_id ^ (edits.generation << 48) ^ (seed << 8) ^ day.toordinal())
            edits.changed[video.video_id] = changed(old, key)
        added = [self._new_video(day, rng) for _ in range(add)]
        edits.added.extend(added)
        return {
            "changed": sorted(v.video_id for v in to_change),
            "added": sorted(v.video_id for v in added),
            "removed": sorted(gone_ids),
            "rows": len(remaining) + len(added),
        }

    def _new_video(self, day: dt.date, rng: random.Random) -> Video:
        if self._ids is None:
            taken = {v.video_id for v in self.catalog.videos} | {v.mid for v in self.catalog.videos}
            taken |= {t.task_id for t in self.catalog.tasks} | self._reserved
            self._ids = IdSource(random.Random(f"added/{self._seed}"), taken)
        catalog = self.catalog
        task = catalog.tasks[rng.randrange(len(catalog.tasks))]
        pool = catalog.pools.get(task.task_id, catalog.creators)
        now = self._clock()
        high = min(day_end(day), math.floor(now))
        low = max(day_start(day) - 29 * DAY, self.reach_start() + DAY)
        if low > high:
            low = day_start(day)
        return Video(
            video_id=self._ids.next(),
            task=task,
            creator=pool[rng.randrange(len(pool))],
            agency=catalog.agencies[rng.randrange(len(catalog.agencies))]
            if rng.random() < 0.7
            else None,
            publish_time=rng.randint(low, high),
            title=random_title(rng),
            mid=self._ids.next(),
        )

    def reset(self) -> None:
        """Drop every edit: the dataset is back to what the seed gives."""
        for day in self._edits:
            self._rendered.drop(self._app, day)
        self._edits.clear()
        self._ids = None
