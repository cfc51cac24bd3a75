"""Every error taskbox-sync raises, and the one table that classifies API error codes.

    TaskboxError
    ├── SettingsError        a setting or argument is missing or malformed (exit 2)
    ├── DatabaseError        PostgreSQL unreachable, refused, or its schema is behind
    │   ├── SchemaBehindError
    │   └── DatabaseUnavailable  the connection was lost or refused mid-command: an outage to
    │                            wait out (sync.pipeline.outage); past the limit, exit 69
    ├── RunLockedError       another run holds the app's advisory lock (exit 75)
    └── ApiError             the platform answered with an error, or did not answer usably
        ├── TransportError   timeout, reset, HTTP 5xx, a broken body            (retryable)
        ├── ThrottledError   28003018: over 10 QPS                              (throttled)
        ├── TokenError       28001008 / 28001003 / 5501 / 5502: get a new token (token)
        ├── PermanentError   bad parameter, task gone, …: retrying cannot help  (permanent)
        │   └── CapabilityError  28001018: the app lacks the data permission    (fatal)
        ├── CredentialsError 10013, 40017, …: key or secret refused             (fatal, exit 2)
        └── ContractError    an answer that is not the documented shape         (retryable)

Every ApiError carries `endpoint`, `err_no`, `message` and `log_id` so that failures can be
stored and reported as data. Messages never contain secrets: callers pass only redacted text.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class ErrorClass(enum.Enum):
    """What a caller should do about an error."""

    RETRYABLE = "retryable"  # back off with jitter and try again, a bounded number of times
    THROTTLED = "throttled"  # slow the shared limiter down, then try again
    TOKEN = "token"  # noqa: S105 - refresh the token once (shared by all requests), then try again
    PERMANENT = "permanent"  # fail this unit of work with the code, message and log_id
    FATAL = "fatal"  # stop the whole run: nothing else will succeed either


class TaskboxError(Exception):
    """Base of every error raised by taskbox-sync."""


class SettingsError(TaskboxError):
    """A setting or argument is missing or malformed; the message names it and what is expected."""


class DatabaseError(TaskboxError):
    """PostgreSQL could not be reached or used."""


class SchemaBehindError(DatabaseError):
    """The database schema is older than this version of taskbox-sync."""


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


class RunLockedError(TaskboxError):
    """Another run for the same app is in progress."""


class ApiError(TaskboxError):
    """The platform answered with an error code, or its answer could not be used."""

    error_class = ErrorClass.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        err_no: int | None = None,
        log_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
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


class TransportError(ApiError):
    """No usable answer: timeout, connection reset, HTTP 5xx, truncated or malformed body."""

    error_class = ErrorClass.RETRYABLE


class ThrottledError(ApiError):
    """The platform's rate limit was hit (28003018)."""

    error_class = ErrorClass.THROTTLED


class TokenError(ApiError):
    """The access token is expired, invalid or missing."""

    error_class = ErrorClass.TOKEN


class PermanentError(ApiError):
    """The request itself is wrong or refused; repeating it cannot succeed."""

    error_class = ErrorClass.PERMANENT


class RetryableApiError(ApiError):
    """The platform reported a passing internal problem (28001005, 28001006, 4001010)."""

    error_class = ErrorClass.RETRYABLE


class CapabilityError(PermanentError):
    """The app lacks a permission the platform requires; nothing in this run can succeed."""

    error_class = ErrorClass.FATAL


class CredentialsError(ApiError):
    """The platform refused our key/secret or appid/secret: a settings problem (exit 2)."""

    error_class = ErrorClass.FATAL


class ContractError(ApiError):
    """The answer is not of the documented shape (valid JSON, wrong structure)."""

    error_class = ErrorClass.RETRYABLE


# The one table: (API family, code) -> class. Families have their own code spaces:
#   "open"    open.douyin.com JSON envelope {err_no, err_msg, log_id, data}
#   "oauth"   /oauth/client_token/ {data: {error_code}, extra: {logid}}
#   "apps"    /api/apps/v2/token {err_no, err_tips}
#   "talents" developer.toutiao.com update_orient_talents {error, message, log_id}
ERROR_CLASSES: Mapping[tuple[str, int], ErrorClass] = {
    ("open", 28001005): ErrorClass.RETRYABLE,  # system busy / internal error
    ("open", 28001006): ErrorClass.RETRYABLE,  # network call error
    ("open", 28001007): ErrorClass.PERMANENT,  # invalid parameter
    ("open", 28013009): ErrorClass.PERMANENT,  # start earlier than 90 days: a planning bug
    ("open", 28013010): ErrorClass.PERMANENT,  # page size over 10000: a planning bug
    ("open", 28003018): ErrorClass.THROTTLED,  # over 10 QPS
    ("open", 28001018): ErrorClass.FATAL,  # app lacks the "数据分析" capability
    ("open", 28001008): ErrorClass.TOKEN,  # access token expired
    ("open", 28001003): ErrorClass.TOKEN,  # access token invalid
    ("oauth", 10002): ErrorClass.FATAL,  # bad parameter
    ("oauth", 10003): ErrorClass.FATAL,  # unknown client_key
    ("oauth", 10013): ErrorClass.FATAL,  # wrong key or secret
    ("oauth", 10020): ErrorClass.THROTTLED,  # over 500 token calls in 5 minutes
    ("apps", -1): ErrorClass.RETRYABLE,  # system error
    ("apps", 40015): ErrorClass.FATAL,  # bad appid
    ("apps", 40017): ErrorClass.FATAL,  # bad secret
    ("apps", 40020): ErrorClass.FATAL,  # bad grant_type
    ("talents", 5501): ErrorClass.TOKEN,  # access token missing
    ("talents", 5502): ErrorClass.TOKEN,  # access token invalid
    ("talents", 5503): ErrorClass.FATAL,  # appid does not match the token: settings
    ("talents", 5442): ErrorClass.PERMANENT,  # task not found or not exclusive
    ("talents", 5591): ErrorClass.PERMANENT,  # task terminated
    ("talents", 5592): ErrorClass.PERMANENT,  # bad number of ids
    ("talents", 4001010): ErrorClass.RETRYABLE,  # service unavailable
    ("talents", 4001015): ErrorClass.PERMANENT,  # parameter error
}

_EXCEPTION_FOR: Mapping[ErrorClass, type[ApiError]] = {
    ErrorClass.RETRYABLE: RetryableApiError,
    ErrorClass.THROTTLED: ThrottledError,
    ErrorClass.TOKEN: TokenError,
    ErrorClass.PERMANENT: PermanentError,
    ErrorClass.FATAL: CapabilityError,
}


def classify(family: str, code: int) -> ErrorClass:
    """The class of a platform error code; codes we have never seen are permanent."""
    return ERROR_CLASSES.get((family, code), ErrorClass.PERMANENT)


def api_error(
    family: str,
    code: int,
    message: str,
    *,
    endpoint: str,
    log_id: str | None,
    http_status: int | None = None,
) -> ApiError:
    """Build the exception for a platform error code, typed by its class."""
    cls = _EXCEPTION_FOR[classify(family, code)]
    return cls(message, endpoint=endpoint, err_no=code, log_id=log_id, http_status=http_status)
