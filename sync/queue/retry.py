"""What becomes of a job that did not succeed (pure): the error its run ends with, and whether
and when procrastinate runs it again.

The classes of `sync.errors` decide, as they decide the commands' exit statuses:

    a signal stopped the run (JobInterrupted; the command's 130/143)   again at once
    another run holds the app's lock (RunLockedError; 75)              again after 2, 4, 8 … 120 s
    the database stayed away, a passing API fault (RetryableError,     again after 30, 60 … 1800 s
      ThrottledError, TokenError; 69)
    credentials refused, 28001018, a bad apps file, a failed or        never: the job fails
      partial run (FatalError, PermanentError; 1 and 2)

A job is tried at most MAX_ATTEMPTS times. Each retry resumes the run: the partitions the
earlier attempts committed are skipped.
"""

from __future__ import annotations

import signal

from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from sync.db.statuses import RunStatus
from sync.errors import (
    JobFailed,
    JobInterrupted,
    RetryableError,
    RunLockedError,
    TaskboxError,
    ThrottledError,
    TokenError,
)
from sync.pipeline.runs import RunResult

MAX_ATTEMPTS = 12
LOCKED_WAIT, LOCKED_CAP = 2.0, 120.0
PASSING_WAIT, PASSING_CAP = 30.0, 1800.0


def run_error(result: RunResult) -> TaskboxError | None:
    """The error a job whose run ended with `result` fails with; None when it succeeded."""
    if result.status is RunStatus.SUCCEEDED:
        return None
    if result.stop_error is not None:  # the database stayed away, the lock was taken
        return result.stop_error
    if result.status is RunStatus.INTERRUPTED:
        name = signal.Signals(result.signal_number or signal.SIGTERM).name
        return JobInterrupted(
            f"run {result.run_id} stopped by {name}: partitions in flight finished or rolled "
            "back; the job is queued again and resumes"
        )
    return JobFailed(f"run {result.run_id} {result.status}: {result.error or 'no error recorded'}")


def retry_delay(error: BaseException, attempts: int) -> float | None:
    """Seconds before the job runs again after its `attempts`-th failure (counted from 0), or
    None when it must not run again."""
    if attempts + 1 >= MAX_ATTEMPTS:
        return None
    if isinstance(error, JobInterrupted):
        return 0.0
    if isinstance(error, RunLockedError):
        return min(LOCKED_WAIT * 2.0**attempts, LOCKED_CAP)
    if isinstance(error, RetryableError | ThrottledError | TokenError):
        return min(PASSING_WAIT * 2.0**attempts, PASSING_CAP)
    return None


class SyncRetry(BaseRetryStrategy):
    """procrastinate's retry decision for sync jobs, by `retry_delay`."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        delay = retry_delay(exception, job.attempts)
        if delay is None:
            return None
        return RetryDecision(retry_in={"seconds": round(delay)})
