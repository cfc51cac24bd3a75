"""How the process keeps the C heap it frees: for the next page, not for the kernel.

Every page the engine handles passes through a few buffers of megabytes (the answer's body, the
COPY's chunks, asyncpg's messages). glibc serves such sizes from fresh mappings, or trims them
off the heap's top once freed, so the next page takes new memory, and the kernel zeroes every
4 KiB of it at first touch: ~0.5 us a page on a quiet machine, 2.3-5.8 us on VMs this project
was measured on. With the heap kept (`keep_freed_memory`), the benchmark's *ceiling* spent
7.8 CPU-s in the sync process instead of 9.6 for the same million rows (write 3.3 us a row
instead of 4.1, HTTP and the rest 1.2 instead of 1.5), and *fleet-big* 35.5 instead of 41.5.

The cost is that the process holds on to what it had at its busiest (bounded by the row budget:
the benchmark's peak RSS stayed under 300 MB) instead of handing it back between pages.

Only glibc has these knobs (`mallopt`); elsewhere (musl, macOS) this does nothing. Settings of
the operator's own (GLIBC_TUNABLES or MALLOC_*_ in the environment) are left as they are.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

# mallopt's parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# Blocks below this come from the heap, not mappings of their own: glibc's own ceiling for its
# moving threshold on 64-bit (32 MiB), above any page's buffers.
MMAP_THRESHOLD = 32 * 2**20
# Free memory at the heap's top is given back only beyond this: more than a run holds at once.
TRIM_THRESHOLD = 512 * 2**20
# How much more than asked the heap grows by (address space only until touched).
TOP_PAD = 64 * 2**20


def _operator_chose(environ: Mapping[str, str]) -> bool:
    """Whether the environment already tunes glibc's malloc."""
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "") or any(
        name.startswith("MALLOC_") and name.endswith("_") for name in environ
    )


def keep_freed_memory() -> bool:
    """Keep freed C memory for reuse (see the module docstring); True when glibc took it."""
    if not sys.platform.startswith("linux") or _operator_chose(os.environ):
        return False
    import ctypes  # here, not at the top: every command's start-up imports this module

    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: the C library it runs on
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt is a stub)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )
