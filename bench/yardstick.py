"""The machine's yardstick: three fixed workloads timed at a run's start, so that figures from
different machines (or one VM on a good and a bad day) can be compared.

The same code ran 20-30 % slower on one day than the next on "the same" 2-core VM, and 1.4-2.5
times slower on another VM whose plain Python loop was faster, where a page fault cost ~3-5 us
(~0.5 is usual). One number does not tell those apart, so three:

- `loop_s`: a 10 M-step Python loop (the interpreter alone);
- `page_us_per_row`: the engine's decode and mapping of one reference page, 10,000 rows of the
  sandbox's seed 1 (the process's work on every row, allocation included), best of 3;
- `fault_us`: one fresh 4 KiB page of memory, touched (what a page's buffers cost the kernel).
"""

from __future__ import annotations

import functools
import resource
import time
from typing import Any

from sync.records.decode import decode_daily_data
from sync.records.mapper import map_page
from sync.sandbox import SandboxConfig
from sync.sandbox.state import Sandbox

ROWS = 10_000


def _loop() -> float:
    began = time.perf_counter()
    for _ in range(10_000_000):
        pass
    return time.perf_counter() - began


@functools.cache  # built once for the run's two measures
def _reference_page() -> tuple[bytes, Any]:
    sandbox = Sandbox(SandboxConfig(seed=1, videos=ROWS + ROWS // 5))
    app = sandbox.apps[0]
    (day,) = sandbox.recent_dates(1)
    app.dataset.warm([day])
    rows = app.dataset.rows(day)
    count = min(ROWS, len(rows))
    items = rows.blob[: rows.starts[count] - 1]
    body = b'{"err_no":0,"err_msg":"","log_id":"yardstick","data":{"video_daily_data_list":['
    return body + items + b"]}}", day


def _page_us_per_row(body: bytes, day: Any) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        page = decode_daily_data(bytes(body))  # a fresh copy, as from the socket
        records = map_page(page.rows, day).records
        best = min(best, (time.process_time() - began) / len(records) * 1e6)
        del page, records
    return best


def _fault_us() -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    began = time.perf_counter()
    for _ in range(4):
        block = bytearray(32 * 2**20)  # large: its own mapping, fresh pages
        block[::4096] = b"\x01" * len(range(0, len(block), 4096))
        del block
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return (time.perf_counter() - began) / max(faults, 1) * 1e6


def measure() -> dict[str, float]:
    body, day = _reference_page()
    return {
        "loop_s": round(_loop(), 3),
        "page_us_per_row": round(_page_us_per_row(body, day), 2),
        "fault_us": round(_fault_us(), 2),
    }


def line(figures: dict[str, float]) -> str:
    return (
        f"machine yardstick: 10 M-step loop {figures['loop_s']:.2f} s, decode + map "
        f"{figures['page_us_per_row']:.2f} us a row, a fresh page of memory "
        f"{figures['fault_us']:.2f} us"
    )


if __name__ == "__main__":
    print(line(measure()))
