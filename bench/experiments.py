"""Engine changes tried in the benchmark's scenario process only (`python -m bench --patch`),
to measure what each would buy before proposing it for `sync/` (which bench/ does not edit).

The first set (typed decoding, raw staging, plain insert for empty scopes, no nested loops in
the merge) measured well and is now the engine's own code; what is left here:

* queue-1, queue-4: 1 or 4 decoded pages queued per partition instead of 2
  (sync.pipeline.fetcher.PAGE_QUEUE_DEPTH): memory against fetchers blocked behind a busy writer.
* budget-<N>k: the run's row budget (sync.pipeline.budget, `--buffer-rows`) at N thousand rows.
* asks-<N>: asks pause while N answers wait for rows instead of 8
  (sync.pipeline.budget.WAITING_BODIES).
* guess-none: never ask for a page before the page before it came back full
  (sync.pipeline.fetcher.GUESS_AHEAD off).
* lull-none: CPU-bound work on a page does not wait for a request due to go
  (sync.pipeline.fetcher.LULL off).
* heap-returned: freed C memory goes back to the kernel as glibc's defaults have it, instead of
  being kept for the next page (sync.heap.keep_freed_memory not applied).
* start-all: every partition the concurrency allows is under way from the start, whatever the
  latency (sync.pipeline.starts.LEAST raised to the concurrency).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PATCHES = (
    "queue-1",
    "queue-4",
    "budget-<N>k",
    "asks-<N>",
    "guess-none",
    "start-all",
    "lull-none",
    "heap-returned",
)
_BUDGET = re.compile(r"budget-([0-9]+)k")
_ASKS = re.compile(r"asks-([0-9]+)")


def unknown(names: Sequence[str]) -> list[str]:
    """The names that are not patches."""
    return sorted(
        n for n in names if n not in PATCHES and not _BUDGET.fullmatch(n) and not _ASKS.fullmatch(n)
    )


def install(names: Sequence[str]) -> None:
    """Apply the named patches (see PATCHES) in this process."""
    if unknown(names):
        raise ValueError(f"unknown patches {unknown(names)}; known: {', '.join(PATCHES)}")
    from sync import heap
    from sync.pipeline import budget, fetcher, runs, starts

    if "heap-returned" in names:
        heap.keep_freed_memory = lambda: False

    for depth in (1, 4):
        if f"queue-{depth}" in names:
            fetcher.PAGE_QUEUE_DEPTH = depth
    if "guess-none" in names:
        fetcher.GUESS_AHEAD = False
    if "lull-none" in names:
        fetcher.LULL = False
    if "start-all" in names:
        starts.LEAST = 10_000  # capped at the concurrency by Starts
    for name in names:
        if match := _BUDGET.fullmatch(name):
            runs.DEFAULT_BUFFER_ROWS = int(match[1]) * 1000
        if match := _ASKS.fullmatch(name):
            budget.WAITING_BODIES = int(match[1])
