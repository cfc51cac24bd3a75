"""One error hierarchy is the classification: every error under exactly one of five bases, the
code table mapping each platform code to a class, the CLI's one exit table, and foreign errors
translated at the edges (aiohttp's in sync.api.http, the database's in sync.db.database)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import socket
from pathlib import Path

import aiohttp
import asyncpg as apg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError

import sync
from sync import errors
from sync.api.client import parse_daily_data
from sync.api.http import Timeouts, new_session, post
from sync.cli.exits import EXIT_STATUSES, exit_status
from sync.cli.main import main
from sync.db import database
from sync.errors import (
    ERROR_CLASSES,
    ApiError,
    AppendConflict,
    AuthorizationError,
    CapabilityError,
    ContractError,
    CredentialsError,
    DatabaseConnectError,
    DatabaseError,
    DatabaseUnavailable,
    FatalError,
    PagingError,
    PermanentError,
    RateLimitedError,
    RequestRefusedError,
    RetryableError,
    RunLockedError,
    SchemaBehindError,
    ServerBusyError,
    SettingsError,
    TaskboxError,
    ThrottledError,
    TokenError,
    TokenRejectedError,
    TransportError,
    api_error,
    class_for,
    retryable,
)

BASES = (RetryableError, ThrottledError, TokenError, PermanentError, FatalError)
ABSTRACT = {TaskboxError, ApiError, *BASES}


def _bases_of(cls: type) -> list[type]:
    return [b for b in BASES if issubclass(cls, b)]


def _project_modules() -> list[str]:
    """Every module of the package except the sandbox (the simulated platform, not our client)
    and `python -m sync`'s entry point (importing it runs the CLI)."""
    found = pkgutil.walk_packages(sync.__path__, "sync.")
    return [m.name for m in found if not m.name.startswith(("sync.sandbox", "sync.__main__"))]


def _error_classes() -> list[type[TaskboxError]]:
    return [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, TaskboxError) and c not in ABSTRACT
    ]


# -- the tree ----------------------------------------------------------------------------------


def test_every_error_is_under_exactly_one_base() -> None:
    """Each error class of errors.py derives from one of the five bases, and only one."""
    classes = _error_classes()
    assert len(classes) >= 16
    for cls in classes:
        assert len(_bases_of(cls)) == 1, cls


def test_every_error_of_the_project_lives_in_errors_py() -> None:
    """No module outside sync.errors defines an exception of the project."""
    for name in _project_modules():
        importlib.import_module(name)
    pending: list[type] = [TaskboxError]
    seen: set[type] = set()
    while pending:
        cls = pending.pop()
        if cls not in seen:
            seen.add(cls)
            pending += cls.__subclasses__()
    outside = {f"{c.__module__}.{c.__qualname__}" for c in seen if c.__module__ != "sync.errors"}
    assert not {c for c in outside if c.startswith("sync.")}


def test_api_error_is_data_not_a_class_of_its_own() -> None:
    """ApiError carries the platform's data but cannot be raised unclassified."""
    with pytest.raises(TypeError, match="subclass"):
        ApiError("m", endpoint="ep")
    exc = RequestRefusedError("msg", endpoint="ep", err_no=7, log_id="L1")
    assert (exc.endpoint, exc.err_no, exc.message, exc.log_id) == ("ep", 7, "msg", "L1")
    assert str(exc) == "ep: msg, err_no=7, log_id=L1"


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (TransportError, RetryableError),
        (ServerBusyError, RetryableError),
        (ContractError, RetryableError),
        (DatabaseError, RetryableError),
        (AppendConflict, RetryableError),
        (DatabaseUnavailable, RetryableError),
        (RateLimitedError, ThrottledError),
        (TokenRejectedError, TokenError),
        (RequestRefusedError, PermanentError),
        (PagingError, PermanentError),
        (SettingsError, FatalError),
        (CredentialsError, FatalError),
        (CapabilityError, FatalError),
        (DatabaseConnectError, FatalError),
        (SchemaBehindError, FatalError),
        (RunLockedError, FatalError),
    ],
    ids=lambda c: c.__name__,
)
def test_each_error_says_what_to_do(cls: type[TaskboxError], base: type[TaskboxError]) -> None:
    """The tree as the module's diagram draws it."""
    assert _bases_of(cls) == [base]


def test_capability_and_credentials_are_fatal_not_permanent() -> None:
    """28001018 and a refused key stop the command: FatalError, not PermanentError."""
    for cls in (CapabilityError, CredentialsError):
        assert issubclass(cls, FatalError) and not issubclass(cls, PermanentError)


def test_one_predicate_says_what_a_request_retries() -> None:
    """Retryable, throttled and token errors are retried; permanent and fatal are not."""
    make = {"endpoint": "ep"}
    assert retryable(TransportError("t", **make))
    assert retryable(RateLimitedError("t", **make))
    assert retryable(TokenRejectedError("t", **make))
    assert not retryable(RequestRefusedError("t", **make))
    assert not retryable(CapabilityError("t", **make))
    assert not retryable(CredentialsError("t", **make))
    assert not retryable(ValueError("a bug"))


# -- the code table ----------------------------------------------------------------------------


def test_provider_codes_not_in_the_table_refuse_the_provider_or_the_merchant() -> None:
    """Provider mode: any code of the component-token call refuses the provider's credentials;
    a get_auth_token code the table does not list refuses the merchant's refresh token (it
    says to authorize again), while a component token it refuses is renewed and tried again."""
    assert class_for("component", 40037) is CredentialsError
    assert class_for("tpapp", 40021) is AuthorizationError
    assert issubclass(AuthorizationError, CredentialsError)
    assert class_for("tpapp", 28001003) is TokenRejectedError
    assert class_for("tpapp", 40002) is RequestRefusedError
    assert class_for("nope", 1) is RequestRefusedError


def test_every_code_maps_to_a_platform_class_under_one_base() -> None:
    """Each (family, code) of the table maps to a concrete ApiError under exactly one base."""
    families = {family for family, _ in ERROR_CLASSES}
    assert families == {"open", "oauth", "apps", "talents", "tpapp"}
    for key, cls in ERROR_CLASSES.items():
        assert issubclass(cls, ApiError) and cls not in ABSTRACT, key
        assert len(_bases_of(cls)) == 1, key


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (28001005, ServerBusyError),
        (28001006, ServerBusyError),
        (28001007, RequestRefusedError),
        (28013009, RequestRefusedError),
        (28013010, RequestRefusedError),
        (28003018, RateLimitedError),
        (28001018, CapabilityError),
        (28001008, TokenRejectedError),
        (28001003, TokenRejectedError),
        (99999999, RequestRefusedError),
    ],
)
def test_daily_data_codes(code: int, expected: type[ApiError]) -> None:
    """Each documented err_no of query_task_video_daily_data has its class; unknown ones are
    permanent."""
    assert class_for("open", code) is expected


def test_api_error_builds_the_tables_class_with_its_data() -> None:
    """api_error builds the exception of the code's class, carrying its data."""
    for (family, code), cls in ERROR_CLASSES.items():
        exc = api_error(family, code, "msg", endpoint="ep", log_id="L1")
        assert type(exc) is cls
        assert (exc.err_no, exc.log_id, exc.endpoint) == (code, "L1", "ep")
        assert exc.message.endswith("msg")
        assert "log_id=L1" in str(exc) and f"err_no={code}" in str(exc)


@pytest.mark.parametrize(
    ("family", "code", "settings"),
    [
        ("oauth", 10013, "DOUYIN_CLIENT_KEY/DOUYIN_CLIENT_SECRET"),
        ("oauth", 10003, "DOUYIN_CLIENT_KEY/DOUYIN_CLIENT_SECRET"),
        ("apps", 40017, "DOUYIN_APP_ID/DOUYIN_APP_SECRET"),
        ("apps", 40015, "DOUYIN_APP_ID/DOUYIN_APP_SECRET"),
    ],
)
def test_a_wrong_key_is_credentials_error_from_the_table(
    family: str, code: int, settings: str
) -> None:
    """A refused key or secret is CredentialsError by its code alone, naming the settings."""
    assert ERROR_CLASSES[family, code] is CredentialsError
    exc = api_error(family, code, "bad secret", endpoint="token", log_id=None)
    assert isinstance(exc, CredentialsError) and isinstance(exc, FatalError)
    assert exc.message == f"{settings} refused by the platform: bad secret"


def test_a_refused_credential_of_an_apps_file_names_that_app() -> None:
    """An app of the apps file is not configured by DOUYIN_*: its refusal names the app."""
    exc = api_error(
        "oauth", 10013, "bad", endpoint="t", log_id=None, credentials="app tt_a's client_secret"
    )
    assert exc.message == "app tt_a's client_secret refused by the platform: bad"


def test_an_app_id_not_matching_the_token_is_credentials_error() -> None:
    """5503 is a settings problem by the table (exit 2), with the caller's message as is."""
    exc = api_error("talents", 5503, "DOUYIN_APP_ID does not match", endpoint="u", log_id="L")
    assert type(exc) is CredentialsError and exc.message == "DOUYIN_APP_ID does not match"
    assert exit_status(exc) == 2


def test_token_throttling_is_throttled() -> None:
    """Over 500 token calls in 5 minutes slows down like 28003018, it is not a refused key."""
    assert class_for("oauth", 10020) is RateLimitedError is class_for("open", 28003018)


# -- the CLI's exit table ----------------------------------------------------------------------

_EP = {"endpoint": "ep"}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SettingsError("--from: bad date"), 2),
        (CredentialsError("refused", **_EP), 2),
        (DatabaseConnectError("cannot connect"), 2),
        (SchemaBehindError("behind"), 2),
        (DatabaseUnavailable("gone", waited=300, limit=300), 69),
        (RunLockedError("locked"), 75),
        (CapabilityError("no permission", **_EP), 1),
        (RequestRefusedError("bad parameter", **_EP), 1),
        (PagingError("page 2 repeated page 1"), 1),
        (TransportError("timed out", **_EP), 1),
        (RateLimitedError("throttled", **_EP), 1),
        (TokenRejectedError("expired", **_EP), 1),
        (DatabaseError("cannot merge"), 1),
        (AppendConflict("came again"), 1),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_each_class_has_its_exit_status(error: TaskboxError, status: int) -> None:
    """The one table: the nearest listed class of an error gives the command's exit status."""
    assert exit_status(error) == status


def test_every_error_class_has_an_exit_status() -> None:
    """No error of the project can leave the CLI without a status from the table."""
    assert TaskboxError in EXIT_STATUSES
    for cls in _error_classes():
        assert any(c in EXIT_STATUSES for c in cls.__mro__), cls


def test_the_cli_ends_with_one_line_and_the_tables_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    """An unreachable database at start: DatabaseConnectError, one stderr line, exit 2."""
    refused = make_url(database_url).set(host="127.0.0.1", port=_closed_port(), query={})
    monkeypatch.setenv("DATABASE_URL", refused.render_as_string(hide_password=False))
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("taskbox-sync: cannot connect to ")


# -- foreign errors, translated at the edges ------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5499)"),
        apg.AdminShutdownError("terminating connection due to administrator command"),
        apg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        OperationalError("COMMIT", {}, Exception("gone"), connection_invalidated=True),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_lost_connection_becomes_database_unavailable(error: BaseException) -> None:
    """asyncpg's, SQLAlchemy's and the socket's words for a lost connection: one outage."""
    translated = database.translate(error)
    assert isinstance(translated, DatabaseUnavailable)
    assert translated.reason == str(error.orig if isinstance(error, OperationalError) else error)


def test_other_errors_of_the_database_become_database_error() -> None:
    """A statement's own failure is DatabaseError (its first line); ours stay; bugs stay."""
    translated = database.translate(apg.UndefinedTableError('relation "x" does not exist\nL2'))
    assert type(translated) is DatabaseError and str(translated) == 'relation "x" does not exist'
    ours = RunLockedError("locked")
    assert database.translate(ours) is ours
    assert database.translate(ValueError("a bug")) is None


async def test_a_refused_connection_becomes_database_unavailable(database_url: str) -> None:
    """A real refused connection, through database.connection: DatabaseUnavailable."""
    refused = make_url(database_url).set(host="127.0.0.1", port=_closed_port(), query={})
    engine = database.create_engine(refused.render_as_string(hide_password=False))
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            async with database.connection(engine):
                pass
    finally:
        await engine.dispose()
    assert info.value.reason and isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_a_terminated_session_becomes_database_unavailable(database_url: str) -> None:
    """The server ending our session mid-command (57P01): DatabaseUnavailable, not SQLAlchemy's."""
    engine = database.create_engine(database_url)
    try:
        with pytest.raises(DatabaseUnavailable, match="terminating connection"):
            async with database.connection(engine) as conn:
                await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_a_failing_statement_becomes_database_error(database_url: str) -> None:
    """A statement refused by a healthy server: DatabaseError with the server's first line."""
    engine = database.create_engine(database_url)
    try:
        with pytest.raises(DatabaseError) as info:
            async with database.connection(engine) as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
    finally:
        await engine.dispose()
    assert type(info.value) is DatabaseError
    assert 'relation "no_such_table" does not exist' in str(info.value)


async def test_a_refused_http_connection_becomes_transport_error() -> None:
    """aiohttp's errors stop at sync.api.http: a refused connection is a TransportError."""
    async with new_session(Timeouts(connect=2, total=5)) as session:
        with pytest.raises(TransportError, match="connection failed") as info:
            await post(session, f"http://127.0.0.1:{_closed_port()}/x", b"{}", endpoint="ep")
    assert not isinstance(info.value, aiohttp.ClientError) and info.value.__cause__ is None


_FOREIGN = {"aiohttp": "sync/api/http.py", "asyncpg": "sync/db/", "sqlalchemy": "sync/db/"}
# Parsing DATABASE_URL (sqlalchemy.engine.make_url) is a setting's check, not a database error.
_ALSO = {("sqlalchemy", "sync/settings.py")}


def test_foreign_errors_are_caught_only_at_their_edge() -> None:
    """No `except` outside its edge module names an aiohttp, asyncpg or SQLAlchemy error."""
    root = Path(sync.__file__).parent.parent
    for name in _project_modules():
        path = root / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        where = str(path.relative_to(root))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        origin: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    origin[alias.asname or alias.name] = node.module.split(".")[0]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    origin[alias.asname or alias.name] = alias.name.split(".")[0]
        for node in ast.walk(tree):
            if not isinstance(node, ast.ExceptHandler) or node.type is None:
                continue
            for ref in ast.walk(node.type):
                if isinstance(ref, ast.Name) and origin.get(ref.id) in _FOREIGN:
                    lib = origin[ref.id]
                    allowed = where.startswith(_FOREIGN[lib]) or (lib, where) in _ALSO
                    caught = ast.unparse(node.type)
                    assert allowed, f"{where}:{node.lineno} catches {lib}'s {caught}"


# -- answers become the table's classes ----------------------------------------------------------


def test_parse_success_keeps_big_ids_exact() -> None:
    """A page's 19-digit IDs are exact ints and decimals are Decimal."""
    body = (
        b'{"err_no":0,"err_msg":"success","log_id":"X","data":{"video_daily_data_list":'
        b'[{"VideoId":7270855478333246754,"ExpectedProfit":1.3}]}}'
    )
    page = parse_daily_data(body)
    assert page.items[0].video_id == 7270855478333246754
    assert str(page.items[0].expected_profit) == "1.3"
    assert page.log_id == "X"


def test_parse_lone_surrogate_body() -> None:
    """A title with a lone surrogate escape does not fail the page (the text is made storable)."""
    body = b'{"err_no":0,"log_id":"X","data":{"video_daily_data_list":[{"VideoTitle":"a\\ud800"}]}}'
    assert parse_daily_data(body).items[0].video_title == "a\ufffd"


@pytest.mark.parametrize(
    ("body", "exc"),
    [
        (b'{"err_no":28003018,"err_msg":"busy","log_id":"L"}', RateLimitedError),
        (b'{"err_no":28001018,"err_msg":"no","log_id":"L"}', CapabilityError),
        (b'{"err_no":0,"log_id":"L"}', ContractError),
        (b'{"err_no":0,"log_id":"L","data":{"video_daily_data_list":{}}}', ContractError),
        (b'{"err_no":"0","log_id":"L","data":{}}', ContractError),
        (b"[1,2]", ContractError),
        (b'{"err_no":0,"data":{"video_daily_data_list":[{"a":', TransportError),
        (b"<html>502 Bad Gateway</html>", TransportError),
    ],
)
def test_parse_broken_answers(body: bytes, exc: type[Exception]) -> None:
    """Error codes, wrong shapes and broken bodies raise the right class, never a crash."""
    with pytest.raises(exc):
        parse_daily_data(body)


def test_null_list_is_empty() -> None:
    """A null list is an empty page (nothing more to read)."""
    body = b'{"err_no":0,"log_id":"L","data":{"video_daily_data_list":null}}'
    assert parse_daily_data(body).items == []
