"""The states of a run (sync_runs.status) and of a partition attempt (sync_partitions.status).

StrEnums: a member is its text, so it is written to the text columns and compared with what
they hold as is (the stored values are the same words as before these types: no migration),
and prints as the word. The ledger (sync.db.ledger) moves runs and partitions through them:

    run        running ─► succeeded | partial | failed | interrupted
    partition  running ─► done | failed          (running again on a retry of the same entry)
"""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    """A run's state: running until it ends, then how it ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every partition done
    PARTIAL = "partial"  # some partitions failed; the others are done
    FAILED = "failed"  # stopped on a fatal answer of the platform
    INTERRUPTED = "interrupted"  # a signal, a database outage, a lost lock, or a dead process

    @property
    def final(self) -> bool:
        """Whether a run can end in this state (every state but running)."""
        return self is not RunStatus.RUNNING


class PartitionStatus(enum.StrEnum):
    """A partition attempt's state; done commits together with the partition's rows."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
