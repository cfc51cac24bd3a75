"""`taskbox-sync talents add|cancel|list`: the command line and the calls.

The decisions are in sync.talents.roster, the wire formats in sync.api.talents and the audit rows
in sync.cli.talent_audit; this module reads the input, runs the requests in batches, has one
talent_operations row written per creator outcome (pre-check refusals and unsent ids included)
and prints the table.

A change the platform accepted is never lost from the audit: each batch is recorded before the
next is sent, through a database outage too (`pipeline.outage`, --db-outage-timeout); past the limit
the rows not recorded are printed on stderr, one JSON object per row in talent_operations'
columns, the batches not yet sent are not sent, and the command exits 69.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import ClientSession
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.api.client import ApiCaller, CallStats
from sync.api.http import Timeouts, new_session
from sync.api.limiter import RequestLimiter
from sync.api.provider import ProviderTokens
from sync.api.retry import RetryPolicy
from sync.api.talents import TalentsApi
from sync.api.tokens import AppTokenProvider, ClientTokenProvider, StaticToken, TokenProvider
from sync.apps import load_apps_file, settings_for
from sync.cli.jobs import secrets_of
from sync.cli.tables import table
from sync.cli.talent_audit import Audit, Outcome
from sync.db import database
from sync.db.connect import open_engine
from sync.db.schema import talent_operations
from sync.db.vault import PostgresVault, Sealer
from sync.errors import ApiError, SettingsError
from sync.logs import configure_logging
from sync.pipeline.outage import DatabaseGate
from sync.settings import Secret, Settings
from sync.talents.roster import (
    Operation,
    Roster,
    Verdict,
    batches,
    expected_change,
    parse_ids,
    parse_task_id,
    precheck,
    results_by_id,
    state_label,
)

log = logging.getLogger(__name__)

RETRY_POLICY = RetryPolicy()  # the engine's default; tests shorten it


def app_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings of the app the command works for: with an apps file, the app `--app` names
    (it may be left out when the file holds one app); else the DOUYIN_* variables' app."""
    path = settings.apps_file
    if path is None:
        if args.app:
            raise SettingsError("--app: needs an apps file (--apps FILE or TASKBOX_APPS_FILE)")
        return settings
    apps = load_apps_file(path)
    if args.app:
        (app,) = apps.select([args.app])
    elif len(apps.apps) == 1:
        (app,) = apps.apps
    else:
        raise SettingsError(
            f"--app: {path} holds {len(apps.apps)} apps; name the one the task belongs to"
        )
    return settings_for(settings, app)


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"--from-file: cannot read {path}: {exc}") from None


def _client_tokens(settings: Settings, session: ClientSession) -> TokenProvider | None:
    if settings.access_token:
        return StaticToken(settings.access_token, endpoint="query_task_info")
    if settings.client_key and settings.client_secret:
        return ClientTokenProvider(
            session, settings.open_base_url, settings.client_key, settings.client_secret
        )
    return None


@asynccontextmanager
async def open_api(
    settings: Settings, engine: AsyncEngine | None = None
) -> AsyncIterator[TalentsApi]:
    """The two callers on one session and one limiter at settings.qps; tokens fetched lazily.
    A provider's merchant (auth = "provider") uses its authorizer token for both calls (the
    docs name it for talents; for task info, inferred), kept in the vault on `engine`."""
    async with new_session(Timeouts()) as session:
        limiter = RequestLimiter(settings.qps)
        stats = CallStats()
        app_tokens: TokenProvider
        client_tokens: TokenProvider | None
        if settings.provider is not None:
            if engine is None:
                raise SettingsError("provider mode: the talents commands need the database")
            sealer = Sealer.required(settings.secret_key, 'an app with auth = "provider"')
            app_tokens = client_tokens = ProviderTokens(PostgresVault(engine, sealer))(
                settings, session
            )
        else:
            app_tokens = AppTokenProvider(
                session,
                settings.developer_base_url,
                settings.app_id or "",
                settings.app_secret or Secret(""),
            )
            client_tokens = _client_tokens(settings, session)
        app = ApiCaller(session, limiter, app_tokens, policy=RETRY_POLICY, stats=stats)
        client = (
            ApiCaller(session, limiter, client_tokens, policy=RETRY_POLICY, stats=stats)
            if client_tokens
            else None
        )
        yield TalentsApi(app, client, settings)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print one of the CLI's tables (sync.cli.tables: Chinese text aligns)."""
    print(table(headers, rows))


async def _roster(api: TalentsApi, task_id: int) -> tuple[Roster | None, int | None]:
    """The roster and task type for the pre-check; None (with a warning) where unknowable."""
    if not api.can_query:
        log.warning(
            "pre-check skipped: DOUYIN_CLIENT_KEY/DOUYIN_CLIENT_SECRET (or DOUYIN_ACCESS_TOKEN) "
            "not set, so the roster cannot be read"
        )
        return None, None
    task = await api.query_task(task_id)
    if task.task_type is None:
        log.warning("pre-check skipped: query_task_info does not list task %d", task_id)
        return None, None
    return dict(task.roster), task.task_type


def _refusals(
    op: Operation, ids: list[str], roster: Roster | None, task_type: int | None
) -> tuple[list[str], list[Outcome]]:
    allowed, refused = precheck(op, ids, roster, task_type=task_type)
    return allowed, [Outcome(i, False, Verdict.REFUSED, reason) for i, reason in refused]


async def _send(
    api: TalentsApi, audit: Audit, allowed: list[str]
) -> tuple[list[Outcome], ApiError | None]:
    """Every batch in turn, each recorded before the next goes; a whole-call error, or a
    database that stayed away, stops the rest."""
    task_id, op, third = audit.task_id, audit.op, audit.third
    outcomes: list[Outcome] = []
    parts = batches(allowed)
    for n, batch in enumerate(parts, 1):
        if audit.lost is not None:  # no change the audit cannot hold
            note = "not sent: the database is unavailable, so the change could not be audited"
            unsent = [Outcome(i, False, Verdict.NOT_SENT, note) for p in parts[n - 1 :] for i in p]
            await audit.record(unsent)
            return outcomes + unsent, None
        try:
            answer = await api.update(task_id, op, batch, third)
        except ApiError as exc:
            rows = [
                Outcome(i, False, Verdict.FAILED, exc.message, exc.err_no, exc.log_id)
                for i in batch
            ]
            rest = [i for later in parts[n:] for i in later]
            note = f"not sent: an earlier request failed ({exc.err_no or exc.message})"
            rows += [Outcome(i, False, Verdict.NOT_SENT, note) for i in rest]
            await audit.record(rows)
            return outcomes + rows, exc
        rows = [
            Outcome(i, ok, Verdict.OK if ok else Verdict.FAILED, reason, None, answer.log_id)
            for i, ok, reason in results_by_id(op, batch, answer.results)
        ]
        await audit.record(rows)
        outcomes += rows
        log.info("batch %d/%d: %d ids sent, log_id=%s", n, len(parts), len(batch), answer.log_id)
    return outcomes, None


async def _update(args: argparse.Namespace, settings: Settings, op: Operation) -> int:
    task_id = parse_task_id(args.task_id)
    text = _read_file(args.from_file) if args.from_file else None
    ids, notes = parse_ids(args.douyin_ids, text)
    for note in notes:
        log.warning("%s", note)
    third: str | None = (args.third_appid or "").strip() or None
    if third is None and settings.provider is not None:
        third = settings.app_id  # a provider acts for its merchant's mini-app (inferred)
    if args.dry_run:
        return await _dry_run(settings, task_id, op, ids)
    settings.require_app_credentials()
    async with open_engine(settings) as engine, open_api(settings, engine) as api:
        gate = DatabaseGate(lambda: database.probe(engine), limit=args.db_outage_timeout)
        audit = Audit(engine, gate, task_id, op, third, settings.recorded_app)
        try:
            roster, task_type = await _roster(api, task_id)
            allowed, refused = _refusals(op, ids, roster, task_type)
            await audit.record(refused)
            sent, error = await _send(api, audit, allowed) if allowed else ([], None)
        finally:
            await gate.close()
    by_id = {o.douyin_id: o for o in [*refused, *sent]}
    outcomes = [by_id[i] for i in ids]
    print_table(
        ["creator", "outcome", "reason"],
        [(o.douyin_id, o.status, o.reason.removeprefix(f"{o.status}: ")) for o in outcomes],
    )
    if audit.lost is not None:
        raise audit.lost.ended(
            f"{audit.printed} audit rows not recorded are printed above as JSON lines "
            "(talent_operations columns): add them when the database is back"
        )
    if error is not None:  # its class gives the exit status (5503, a wrong app id: 2)
        raise error
    return 0 if all(o.ok for o in outcomes) else 1


async def _dry_run(settings: Settings, task_id: int, op: Operation, ids: list[str]) -> int:
    async with contextlib.AsyncExitStack() as stack:
        # a provider's merchant reads its token from the vault; other apps need no database
        engine = (
            await stack.enter_async_context(open_engine(settings)) if settings.provider else None
        )
        api = await stack.enter_async_context(open_api(settings, engine))
        roster, task_type = await _roster(api, task_id)
    allowed, refused = _refusals(op, ids, roster, task_type)
    rows: list[tuple[str, str, str, str]] = [
        (o.douyin_id, "-", o.status, o.reason.removeprefix(f"{o.status}: ")) for o in refused
    ]
    parts = batches(allowed)
    for n, batch in enumerate(parts, 1):
        rows += [(i, f"{n}/{len(parts)}", op, expected_change(op, i, roster)) for i in batch]
    print(f"dry run: task {task_id}, {len(ids)} ids, {len(parts)} request(s); nothing changed")
    print_table(["creator", "batch", "operation", "expected"], rows)
    return 1 if refused else 0


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    """`talents add|cancel`: 0 every creator succeeded, 1 some failed, 2 bad input."""
    settings = app_settings(args, settings)
    configure_logging(args.log_format, secrets=secrets_of(settings))
    op = Operation(args.talents_command)
    return asyncio.run(_update(args, settings, op))


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    task_id = parse_task_id(args.task_id)
    settings.require_daily_data_credentials()
    async with open_engine(settings) as engine, open_api(settings, engine) as api:
        task = await api.query_task(task_id)
        async with database.connection(engine) as conn:
            query = (
                select(talent_operations)
                .where(
                    talent_operations.c.task_id == task_id,
                    # this app's operations (and those recorded before apps were recorded)
                    or_(
                        talent_operations.c.app_id == settings.recorded_app,
                        talent_operations.c.app_id.is_(None),
                    ),
                )
                .order_by(talent_operations.c.created_at, talent_operations.c.id)
            )
            audit = (await conn.execute(query)).mappings().all()
    if task.task_type is None:
        print(f"task {task_id}: not listed by query_task_info (log_id {task.log_id})")
    else:
        kind = "exclusive" if task.exclusive else f"not exclusive (task_type {task.task_type})"
        print(f"task {task_id}: {kind}, {len(task.roster)} creators on the platform's roster")
        print_table(["creator", "state"], [(i, state_label(s)) for i, s in task.roster])
    print(f"\naudit log: {len(audit)} operations recorded by taskbox-sync")
    print_table(
        ["time", "creator", "operation", "ok", "log_id", "outcome"],
        [
            (
                r["created_at"].isoformat(timespec="seconds"),
                r["douyin_id"],
                r["operation"],
                "yes" if r["ok"] else "no",
                r["log_id"] or "-",
                r["outcome"],
            )
            for r in audit
        ],
    )
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """`talents list`: the platform's roster beside talent_operations for the task."""
    settings = app_settings(args, settings)
    configure_logging(args.log_format, secrets=secrets_of(settings))
    return asyncio.run(_list(args, settings))
