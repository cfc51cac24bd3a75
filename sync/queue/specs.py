"""What a sync job is (pure): one app over a range of billing dates, nightly or backfill.

A job's arguments are plain JSON (no secret: the worker reads the app's credentials from its own
apps file or environment). Two keys go with it: `lock`, the app — procrastinate runs at most one
job per lock at a time, so an app's 10 QPS are never shared by two jobs — and `queueing_lock`,
the app with the kind and the dates, which refuses a second identical job while one waits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sync.errors import SettingsError

KINDS = ("nightly", "backfill")


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    """One app's sync over the billing dates first..last (inclusive)."""

    app_id: str
    kind: str
    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SettingsError(f"job kind: expected nightly or backfill, got {self.kind!r}")

    @property
    def lock(self) -> str:
        """At most one running job holds it: one job per app at a time."""
        return f"app:{self.app_id}"

    @property
    def queueing_lock(self) -> str:
        """At most one waiting job holds it: an identical job is refused while one waits."""
        return f"{self.app_id}:{self.kind}:{self.first}:{self.last}"

    @property
    def dates(self) -> str:
        return f"{self.first}..{self.last}" if self.first != self.last else str(self.first)

    def describe(self) -> str:
        return f"app {self.app_id}: {self.kind} {self.dates}"

    def kwargs(self) -> dict[str, Any]:
        """The job's arguments as procrastinate stores them."""
        return {
            "app": self.app_id,
            "kind": self.kind,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
        }

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> JobSpec:
        try:
            return cls(
                str(kwargs["app"]),
                str(kwargs["kind"]),
                dt.date.fromisoformat(str(kwargs["first"])),
                dt.date.fromisoformat(str(kwargs["last"])),
            )
        except (KeyError, ValueError) as exc:
            raise SettingsError(f"a job's arguments are not a sync job's: {exc}") from None
