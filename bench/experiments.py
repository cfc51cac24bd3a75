"""Engine changes tried in the benchmark's scenario process only (`python -m bench --patch`),
to measure what each would buy before proposing it for `sync/` (which bench/ does not edit).

The first set (typed decoding, raw staging, plain insert for empty scopes, no nested loops in
the merge) measured well and is now the engine's own code; what is left here:

* queue-1, queue-4: 1 or 4 decoded pages queued per partition instead of 2
  (sync.fetcher.PAGE_QUEUE_DEPTH): memory against fetchers blocked behind a busy writer.
* budget-40k, budget-160k: the run's row budget (sync.budget) at half or twice the default.
"""

from __future__ import annotations

from collections.abc import Sequence

PATCHES = ("queue-1", "queue-4", "budget-40k", "budget-160k")


def install(names: Sequence[str]) -> None:
    """Apply the named patches (see PATCHES) in this process."""
    unknown = set(names) - set(PATCHES)
    if unknown:
        raise ValueError(f"unknown patches {sorted(unknown)}; known: {', '.join(PATCHES)}")
    from sync import fetcher, runs

    for depth in (1, 4):
        if f"queue-{depth}" in names:
            fetcher.PAGE_QUEUE_DEPTH = depth
    for rows in (40_000, 160_000):
        if f"budget-{rows // 1000}k" in names:
            runs.DEFAULT_BUFFER_ROWS = rows
