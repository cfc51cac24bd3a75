"""Exit statuses: the one table from error class to status, and a finished run's status.

0 done; 1 some work failed; 2 usage or settings (nothing was called or written); 69 the database
went away and stayed away past --db-outage-timeout (sysexits' EX_UNAVAILABLE); 75 another run
holds the app's lock (EX_TEMPFAIL); 128 + N stopped by signal N (130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sync.db.statuses import RunStatus
from sync.errors import (
    CredentialsError,
    DatabaseConnectError,
    DatabaseUnavailable,
    RunLockedError,
    SchemaAheadError,
    SchemaBehindError,
    SettingsError,
    TaskboxError,
)

if TYPE_CHECKING:  # the parser uses this module: it must not load the pipeline
    from sync.pipeline.fleet import FleetResult
    from sync.pipeline.runs import RunResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_UNAVAILABLE = 69
EXIT_LOCKED = 75
EXIT_INTERRUPTED = 128 + signal.SIGINT

# The one table from error class to exit status: an error takes the status of the nearest
# class in its ancestry (its method resolution order) that is listed.
EXIT_STATUSES: Mapping[type[TaskboxError], int] = {
    SettingsError: EXIT_USAGE,  # nothing was called or written: fix what the line names
    CredentialsError: EXIT_USAGE,
    DatabaseConnectError: EXIT_USAGE,
    SchemaBehindError: EXIT_USAGE,
    SchemaAheadError: EXIT_USAGE,
    DatabaseUnavailable: EXIT_UNAVAILABLE,
    RunLockedError: EXIT_LOCKED,
    TaskboxError: EXIT_FAILED,  # work failed or stopped: the line and the summary say why
}


def exit_status(error: TaskboxError) -> int:
    """The exit status of a command that ended with `error`."""
    return next(EXIT_STATUSES[c] for c in type(error).__mro__ if c in EXIT_STATUSES)


def run_exit_status(result: RunResult) -> int:
    """The exit status of a finished run: its stop error's, its signal's, or by its status."""
    if result.stop_error is not None:
        return exit_status(result.stop_error)
    if result.status is RunStatus.INTERRUPTED:
        return 128 + (result.signal_number or signal.SIGINT)
    return EXIT_OK if result.status is RunStatus.SUCCEEDED else EXIT_FAILED


def fleet_exit_status(result: FleetResult) -> int:
    """The exit status of a run of several apps: 0 when no app failed (apps locked elsewhere
    are skipped, not failed), 1 when any failed, 75 only when every app was locked; a signal's
    or a database outage's status when one stopped the run."""
    from sync.pipeline.fleet import Outcome

    if result.signal_number is not None:
        return 128 + result.signal_number
    outcomes = [a.outcome for a in result.apps]
    if outcomes and all(o is Outcome.LOCKED for o in outcomes):
        return EXIT_LOCKED
    if any(isinstance(a.error, DatabaseUnavailable) for a in result.apps):
        return EXIT_UNAVAILABLE
    bad = (Outcome.FAILED, Outcome.PARTIAL, Outcome.INTERRUPTED)
    return EXIT_FAILED if any(o in bad for o in outcomes) else EXIT_OK
