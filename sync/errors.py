"""Every error taskbox-sync raises. The class says what a caller does about it:

    TaskboxError
    ├── RetryableError           try again: after a backoff with jitter (an outage: once the
    │   │                        database is back)
    │   ├── TransportError       (api) timeout, reset, HTTP 5xx, a broken body
    │   ├── ServerBusyError      (api) 28001005, 28001006, 4001010, apps -1: a passing fault
    │   ├── ContractError        (api) an answer that is not of the documented shape
    │   ├── JobInterrupted       (queue) a signal stopped a job's run: another worker resumes it
    │   └── DatabaseError        a statement failed: the partition rolls back, is tried again
    │       ├── AppendConflict   a page could not be appended: again at once, full merge
    │       └── DatabaseUnavailable  the connection was lost or refused mid-command: wait it
    │                                out (sync.pipeline.outage); past the limit, exit 69
    ├── ThrottledError           slow the shared limiter down, then try again
    │   └── RateLimitedError     (api) 28003018 over 10 QPS, oauth 10020
    ├── TokenError               get a new token (one shared refresh), then try again
    │   └── TokenRejectedError   (api) 28001008, 28001003, 5501, 5502
    ├── PermanentError           fail this unit of work with its data: trying again cannot help
    │   ├── RequestRefusedError  (api) a bad parameter, a task gone, a code not in the table
    │   ├── PagingError          (api) a window's pages do not add up
    │   └── JobFailed            (queue) a job's run failed or left partitions failed
    └── FatalError               stop the command: nothing else can succeed either
        ├── SettingsError        a setting or argument missing or malformed (exit 2)
        │   ├── DateRangeError   billing dates the API cannot serve (the CLI names the flag)
        │   └── AppsFileError    the apps file (--apps) unreadable or wrong: names file, app, key
        ├── CredentialsError     (api) 10013, 40017, 5503, …: key, secret or app id refused
        │   │                    (exit 2)
        │   └── AuthorizationError (api) a merchant's authorizer refresh token refused, or
        │                        none stored: `apps authorize` it again (provider mode)
        ├── CapabilityError      (api) 28001018: the app lacks the 数据分析 permission
        ├── DatabaseConnectError PostgreSQL unreachable or refusing us as a command starts
        │                        (exit 2)
        ├── SchemaBehindError    the schema is older than this version (exit 2)
        ├── SchemaAheadError     a newer taskbox-sync migrated the schema (exit 2)
        └── RunLockedError       another run holds the app's advisory lock (exit 75)

(api): also an `ApiError`, which is no class of its own but the data every error from the
platform carries: `endpoint`, `err_no`, `message`, `log_id` (and `http_status`), so failures
can be stored and reported as data. Messages never contain secrets: callers pass only redacted
text. `isinstance(exc, FatalError)` is the whole test of what to do; `ERROR_CLASSES` maps each
platform code to its class and `api_error` builds the error from an answer. Foreign errors
become these at the edges: aiohttp's in `sync.api.http`, the database's in
`sync.db.database`; `sync.cli.main` maps classes to exit statuses.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

DAILY_DATA = "query_task_video_daily_data"  # the endpoint paging errors are about


class TaskboxError(Exception):
    """Base of every error raised by taskbox-sync; raise one of its leaves, never a base."""


# -- what a caller does: the five bases ---------------------------------------------------


class RetryableError(TaskboxError):
    """Passing: the same work may succeed when tried again, after a backoff with jitter."""


class ThrottledError(TaskboxError):
    """The platform's rate limit was hit: slow the shared limiter down, then try again."""


class TokenError(TaskboxError):
    """The access token is expired, invalid or missing: refresh it once for everyone, retry."""


class PermanentError(TaskboxError):
    """This unit of work cannot succeed: fail it with its data, go on with the others."""


class FatalError(TaskboxError):
    """Nothing in this command can succeed: stop it."""


def retryable(exc: BaseException) -> bool:
    """The one predicate: whether sending the same request again may succeed (each class
    with its own wait: backoff, the slowed limiter, a new token)."""
    return isinstance(exc, RetryableError | ThrottledError | TokenError)


# -- the platform's errors ----------------------------------------------------------------


class ApiError(TaskboxError):
    """The data of an error from the platform: the platform answered with an error code, or
    its answer could not be used. Raised only as one of its subclasses, each of which is also
    under exactly one of the five bases."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        err_no: int | None = None,
        log_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        if type(self) is ApiError:  # unclassified: the caller would not know what to do
            raise TypeError("raise a subclass of ApiError (sync.errors), not ApiError itself")
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.err_no = err_no
        self.log_id = log_id
        self.http_status = http_status

    def __str__(self) -> str:
        parts = [self.message]
        if self.err_no is not None:
            parts.append(f"err_no={self.err_no}")
        if self.http_status is not None and self.err_no is None:
            parts.append(f"http={self.http_status}")
        if self.log_id:
            parts.append(f"log_id={self.log_id}")
        return f"{self.endpoint}: " + ", ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, err_no={self.err_no!r}, "
            f"message={self.message!r}, log_id={self.log_id!r})"
        )


class TransportError(ApiError, RetryableError):
    """No usable answer: timeout, connection reset, HTTP 5xx, truncated or malformed body."""


class ServerBusyError(ApiError, RetryableError):
    """The platform reported a passing internal problem (28001005, 28001006, 4001010, -1)."""


class ContractError(ApiError, RetryableError):
    """The answer is not of the documented shape (valid JSON, wrong structure)."""


class RateLimitedError(ApiError, ThrottledError):
    """Over the platform's request rate (28003018: 10 QPS; oauth 10020: token calls)."""


class TokenRejectedError(ApiError, TokenError):
    """The platform refused the access token as expired, invalid or missing."""


class RequestRefusedError(ApiError, PermanentError):
    """The request itself is wrong or refused (or its code is unknown to us)."""


class PagingError(ApiError, PermanentError):
    """The pages of a window do not add up: a page repeated, or more pages than the cap."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = DAILY_DATA,
        err_no: int | None = None,
        log_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(
            message, endpoint=endpoint, err_no=err_no, log_id=log_id, http_status=http_status
        )


class CredentialsError(ApiError, FatalError):
    """The platform refused our key/secret or appid/secret: a settings problem (exit 2)."""


class AuthorizationError(CredentialsError):
    """Provider mode: the merchant's authorizer refresh token was refused by the platform (or
    none is stored, or the stored one cannot be unsealed); the message says to authorize the
    app again with `taskbox-sync apps authorize APP_ID`."""


class CapabilityError(ApiError, FatalError):
    """The app lacks a permission the platform requires; nothing in this run can succeed."""


# -- our own and the database's ------------------------------------------------------------


class JobInterrupted(RetryableError):
    """A signal stopped a queued job's run (its worker is shutting down): the job goes back to
    the queue at once, and the worker that takes it resumes the run."""


class JobFailed(PermanentError):
    """A queued job's run ended failed or partial: retrying the job cannot help; the message
    is the run's error (its partitions' causes are in the ledger)."""


class SettingsError(FatalError):
    """A setting or argument is missing or malformed; the message names it and what is expected."""


class AppsFileError(SettingsError):
    """The apps file (`--apps`, TASKBOX_APPS_FILE) cannot be read or describes an app wrongly.

    Carries the file, the app (its id when it has a usable one, and its position, from 1), the
    key at fault and the problem; the one-line message names them all and never a secret."""

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        app: str | None = None,
        position: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path, self.problem, self.key = path, problem, key
        self.app, self.position = app, position
        where = [path]
        if app is not None:
            where.append(f'app "{app}"' + ("" if position is None else f" (#{position})"))
        elif position is not None:
            where.append(f"app #{position}")
        if key is not None:
            where.append(key)
        super().__init__(": ".join([*where, problem]))


class RunLockedError(FatalError):
    """Another run for the same app is in progress."""


class DatabaseConnectError(FatalError):
    """PostgreSQL could not be reached, or refused us, as a command started: its URL,
    password or server need fixing; there is nothing yet to wait for or resume."""


class SchemaBehindError(FatalError):
    """The database schema is older than this version of taskbox-sync."""


class SchemaAheadError(FatalError):
    """The database schema is at a revision this version does not know: a newer taskbox-sync
    migrated it. Nothing is changed; the fix is to upgrade taskbox-sync."""


class DatabaseError(RetryableError):
    """A statement failed in the middle of the work (the message is the driver's first line,
    never a password): its transaction is lost, the work is tried again on a new one."""


class AppendConflict(DatabaseError):
    """A page could not be appended: a key came again or is stored already. The transaction is
    lost; the partition must be synced again without appending."""


class DatabaseUnavailable(DatabaseError):
    """The connection to PostgreSQL was lost or refused: an outage, not a failure of the work.

    `reason` is the driver's first line (never a password). Once the wait is over, `waited` and
    `limit` say how long it lasted, and `outcome` what became of the work.
    """

    def __init__(
        self,
        reason: str,
        *,
        waited: float | None = None,
        limit: float | None = None,
        outcome: str | None = None,
    ) -> None:
        self.reason = reason
        self.waited = waited
        self.limit = limit
        self.outcome = outcome
        super().__init__(reason)

    def __str__(self) -> str:
        if self.waited is None:
            text = f"database unavailable: {self.reason}"
        else:
            text = f"database unavailable for {self.waited:.0f} s"
            if self.limit is not None:
                text += f" (--db-outage-timeout {self.limit:g})"
            text += f": {self.reason}"
        return f"{text}; {self.outcome}" if self.outcome else text

    def ended(self, outcome: str) -> DatabaseUnavailable:
        """The same outage, with what became of the work."""
        return DatabaseUnavailable(
            self.reason, waited=self.waited, limit=self.limit, outcome=outcome
        )


# -- the one table --------------------------------------------------------------------------

# (API family, code) -> class. Families have their own code spaces:
#   "open"    open.douyin.com JSON envelope {err_no, err_msg, log_id, data}
#   "oauth"   /oauth/client_token/ {data: {error_code}, extra: {logid}}
#   "apps"    /api/apps/v2/token {err_no, err_tips}
#   "talents" developer.toutiao.com update_orient_talents {error, message, log_id}
#   "component" /openapi/v2/auth/tp/token/ {errno, message}: any code refuses the provider's
#             component app id, secret or ticket (no code is documented)
#   "tpapp"   /api/tpapp/v2/auth/get_auth_token/ (open envelope): codes not in the table
#             refuse the merchant's refresh token
ERROR_CLASSES: Mapping[tuple[str, int], type[ApiError]] = {
    ("open", 28001005): ServerBusyError,  # system busy / internal error
    ("open", 28001006): ServerBusyError,  # network call error
    ("open", 28001007): RequestRefusedError,  # invalid parameter
    ("open", 28013009): RequestRefusedError,  # start earlier than 90 days: a planning bug
    ("open", 28013010): RequestRefusedError,  # page size over 10000: a planning bug
    ("open", 28003018): RateLimitedError,  # over 10 QPS
    ("open", 28001018): CapabilityError,  # app lacks the "数据分析" capability
    ("open", 28001008): TokenRejectedError,  # access token expired
    ("open", 28001003): TokenRejectedError,  # access token invalid
    ("oauth", 10002): CredentialsError,  # bad parameter
    ("oauth", 10003): CredentialsError,  # unknown client_key
    ("oauth", 10013): CredentialsError,  # wrong key or secret
    ("oauth", 10020): RateLimitedError,  # over 500 token calls in 5 minutes
    ("apps", -1): ServerBusyError,  # system error
    ("apps", 40015): CredentialsError,  # bad appid
    ("apps", 40017): CredentialsError,  # bad secret
    ("apps", 40020): CredentialsError,  # bad grant_type
    ("talents", 5501): TokenRejectedError,  # access token missing
    ("talents", 5502): TokenRejectedError,  # access token invalid
    ("talents", 5503): CredentialsError,  # appid does not match the token: settings
    ("talents", 5442): RequestRefusedError,  # task not found or not exclusive
    ("talents", 5591): RequestRefusedError,  # task terminated
    ("talents", 5592): RequestRefusedError,  # bad number of ids
    ("talents", 4001010): ServerBusyError,  # service unavailable
    ("talents", 4001015): RequestRefusedError,  # parameter error
    ("tpapp", 28001003): TokenRejectedError,  # the component token invalid
    ("tpapp", 28001008): TokenRejectedError,  # the component token expired
    ("tpapp", 40002): RequestRefusedError,  # grant_type or its parameter missing: our bug
    ("tpapp", 40040): RequestRefusedError,  # an unknown grant_type: our bug
    ("tpapp", 28001005): ServerBusyError,
    ("tpapp", 28001006): ServerBusyError,
}
# A family's class for a code the table does not list (default: RequestRefusedError).
FAMILY_DEFAULTS: Mapping[str, type[ApiError]] = {
    "component": CredentialsError,
    "tpapp": AuthorizationError,
}

# The settings a family's token request sends: a refused credential names them, so the one
# line the CLI prints says what to fix.
CREDENTIAL_SETTINGS: Mapping[str, str] = {
    "oauth": "DOUYIN_CLIENT_KEY/DOUYIN_CLIENT_SECRET",
    "apps": "DOUYIN_APP_ID/DOUYIN_APP_SECRET",
}


def class_for(family: str, code: int) -> type[ApiError]:
    """The class of a platform error code; codes we have never seen are permanent."""
    return ERROR_CLASSES.get((family, code), FAMILY_DEFAULTS.get(family, RequestRefusedError))


def api_error(
    family: str,
    code: int,
    message: str,
    *,
    endpoint: str,
    log_id: str | None,
    http_status: int | None = None,
    credentials: str | None = None,
) -> ApiError:
    """The error for an answer carrying a platform error code: its class from the table. A
    refused credential is named: `credentials` (an apps file's app), else the family's
    environment variables."""
    cls = class_for(family, code)
    if cls is CredentialsError and family in CREDENTIAL_SETTINGS:
        named = credentials or CREDENTIAL_SETTINGS[family]
        message = f"{named} refused by the platform: {message}"
    return cls(message, endpoint=endpoint, err_no=code, log_id=log_id, http_status=http_status)


# -- billing dates the API cannot serve (the planner raises, the CLI names the flags) ---------


class DateBound(enum.StrEnum):
    """Which bound of a range of billing dates an error is about."""

    FIRST = "first"
    LAST = "last"
    LOOKBACK = "lookback"


class DateProblem(enum.StrEnum):
    """Why a bound was refused."""

    REVERSED = "reversed"  # first after last
    NOT_YET = "not yet"  # last not closed yet: the data is T+1
    BEYOND_REACH = "beyond reach"  # first older than the API's 90 days
    LOOKBACK = "lookback"  # lookback days outside 1..MAX_NIGHTLY_LOOKBACK


# The sentence of each problem; {first}, {last} and {lookback} are the names of the bounds.
_WORDING: Mapping[DateProblem, str] = {
    DateProblem.REVERSED: "{first} {value} is after {last} {limit}; "
    "give a {first} on or before {last}",
    DateProblem.NOT_YET: "{last} {value} is not available yet (data is T+1, China time); "
    "the latest billing date is {limit}",
    DateProblem.BEYOND_REACH: "{first} {value} is beyond the API's 90-day reach; "
    "the earliest billing date it can serve is {limit}",
    DateProblem.LOOKBACK: "{lookback}: expected a number of days from 1 to {limit}, got {value}",
}

_PLAIN_NAMES: Mapping[DateBound, str] = {
    DateBound.FIRST: "first date",
    DateBound.LAST: "last date",
    DateBound.LOOKBACK: "lookback days",
}


class DateRangeError(SettingsError):
    """Billing dates the API cannot serve. Carries the bound at fault, the value given for it
    (a date, or a number of lookback days), the limit it broke (the other bound, the latest
    or earliest servable date, the most lookback days) and the problem; `worded` names the
    bounds as the caller knows them (the CLI: by its flags)."""

    def __init__(
        self, bound: DateBound, problem: DateProblem, value: dt.date | int, limit: dt.date | int
    ) -> None:
        self.bound, self.problem, self.value, self.limit = bound, problem, value, limit
        super().__init__(self.worded({}))

    def worded(self, names: Mapping[DateBound, str]) -> str:
        """The one-line message, each bound called by its name in `names` (a bound missing
        there by a plain name: "first date", "last date", "lookback days")."""
        named = {bound.value: names.get(bound, _PLAIN_NAMES[bound]) for bound in DateBound}
        return _WORDING[self.problem].format(value=self.value, limit=self.limit, **named)
