"""The process keeps its freed C heap for the next page (sync.heap)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sync import heap


@pytest.mark.parametrize(
    ("environ", "chose"),
    [
        ({}, False),
        ({"PATH": "/bin", "MALLOC": "x"}, False),
        ({"MALLOC_ARENA_MAX": "2"}, False),
        ({"MALLOC_ARENA_MAX_": "2"}, True),
        ({"MALLOC_TRIM_THRESHOLD_": "0"}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, True),
        ({"GLIBC_TUNABLES": "glibc.rtld.nns=2"}, False),
    ],
)
def test_the_operators_own_malloc_settings_are_left_alone(
    environ: dict[str, str], chose: bool
) -> None:
    """MALLOC_*_ variables or glibc.malloc tunables mean the operator chose: nothing is set."""
    assert heap._operator_chose(environ) is chose


def _freed_pages_come_back(env: dict[str, str]) -> int:
    """Minor page faults of a process that frees and takes again 4 MiB buffers, as pages do."""
    script = """
import resource, sys
from sync import heap
if sys.argv[1] == "keep":
    assert heap.keep_freed_memory()
for _ in range(3):
    blocks = [bytearray(4 * 2**20) for _ in range(4)]
    del blocks
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks = [bytearray(4 * 2**20) for _ in range(4)]
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    mode = env.pop("mode")
    out = subprocess.run(
        [sys.executable, "-c", script, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_kept_heap_takes_no_fresh_pages_for_the_next_buffers() -> None:
    """With the heap kept, buffers freed and taken again fault no new pages in (glibc's
    defaults map and unmap each 4 MiB buffer: ~1,000 faults each time)."""

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base.pop("GLIBC_TUNABLES", None)
    kept = _freed_pages_come_back({**base, "mode": "keep"})
    default = _freed_pages_come_back({**base, "mode": "default"})
    assert default > 20 * 4 * 1000  # every buffer faulted in again
    assert kept < 1000
