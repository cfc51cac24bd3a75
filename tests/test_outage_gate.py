"""The outage gate without a database: the backoff arithmetic, the gate driven by a clock the
test owns (probes that fail, then succeed; a limit that passes), and which errors are an
outage."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg.exceptions as apg
import pytest
from sqlalchemy.exc import InterfaceError, OperationalError

from sync.db.database import outage_reason
from sync.errors import DatabaseError, DatabaseUnavailable, RunLockedError, TransportError
from sync.pipeline.outage import Backoff, DatabaseGate

# -- the arithmetic -------------------------------------------------------------------------


def test_delays_start_at_once_double_and_stop_at_the_cap() -> None:
    """The first probe goes at once; the pauses then double from `first` up to `cap`."""
    b = Backoff(first=0.5, factor=2.0, cap=5.0)
    assert [b.delay(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_long_outage_never_overflows() -> None:
    """Tens of thousands of probes (a day's limit at a short cap) stay at the cap."""
    b = Backoff(first=0.5, factor=2.0, cap=5.0)
    assert b.delay(20_000) == 5.0


def test_next_wait_is_cut_to_the_limit_and_ends_there() -> None:
    """A pause never runs past the limit, the last probe falls on it, then no more."""
    b = Backoff(first=0.5, factor=2.0, cap=5.0)
    assert b.next_wait(0, 0.0, 300.0) == 0.0  # the first probe goes at once
    assert b.next_wait(4, 10.0, 300.0) == 4.0
    assert b.next_wait(9, 297.5, 300.0) == 2.5  # the last probe falls on the limit
    assert b.next_wait(10, 300.0, 300.0) is None
    assert b.next_wait(10, 301.0, 300.0) is None


def test_a_zero_limit_probes_once() -> None:
    """With no time to wait, the database is probed once, at once."""
    b = Backoff()
    assert b.next_wait(0, 0.0, 0.0) == 0.0
    assert b.next_wait(1, 0.0, 0.0) is None


def test_the_schedule_of_a_five_minute_limit() -> None:
    """Probes at 0, 0.5, 1.5, 3.5, 7.5, then every 5 s; the last one at 300 s exactly."""
    b = Backoff(first=0.5, factor=2.0, cap=5.0)
    waited, tries, times = 0.0, 0, []
    while (pause := b.next_wait(tries, waited, 300.0)) is not None:
        waited += pause
        tries += 1
        times.append(waited)
    assert times[:6] == [0.0, 0.5, 1.5, 3.5, 7.5, 12.5]
    assert times[-1] == 300.0
    assert len(times) == 64
    assert all(b - a <= 5.0 for a, b in itertools.pairwise(times))


def test_probe_timeout_and_log_cadence() -> None:
    """A probe gets its limit (at least a second before the end); a log line every 10 s."""
    b = Backoff(probe_limit=10.0, log_every=10.0)
    assert b.probe_timeout(0.0, 300.0) == 10.0
    assert b.probe_timeout(299.5, 300.0) == 1.0  # a last probe still gets a second
    assert b.log_due(10.0, 0.0) and not b.log_due(19.9, 10.0)


# -- the gate, on a clock the test drives ----------------------------------------------------


class FakeTime:
    """A clock whose sleeps advance it at once (yielding to the loop)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Database:
    """A probe that fails `down_for` seconds of fake time, then succeeds."""

    def __init__(self, time: FakeTime, down_for: float) -> None:
        self.time = time
        self.down_for = down_for
        self.probes: list[float] = []

    async def probe(self) -> None:
        self.probes.append(self.time.now)
        if self.time.now < self.down_for:
            raise DatabaseUnavailable("[Errno 111] Connect call failed")


def gate_for(db: Database, limit: float) -> DatabaseGate:
    return DatabaseGate(db.probe, limit=limit, clock=db.time.clock, sleep=db.time.sleep)


async def test_gate_opens_when_the_database_is_back() -> None:
    """A report closes the gate; probes with backoff find the database back and reopen it."""
    t = FakeTime()
    db = Database(t, down_for=45.0)
    gate = gate_for(db, limit=300.0)
    since = await gate.ready()
    gate.report(DatabaseUnavailable("connection reset"), since)
    assert gate.down
    with pytest.raises(DatabaseUnavailable):
        await gate.check()  # the fetchers' hook: no request while the database is away
    assert await gate.ready() == since + 1
    assert not gate.down and gate.failure is None
    assert db.probes[-1] == 47.5  # 45 s plus at most one pause of the cap
    assert 45.0 <= gate.waited <= 50.0
    await gate.check()
    await gate.close()


async def test_gate_fails_past_the_limit_and_every_waiter_raises() -> None:
    """Past the limit every waiter gets the same DatabaseUnavailable, which names the cause."""
    t = FakeTime()
    db = Database(t, down_for=10_000.0)
    gate = gate_for(db, limit=3.0)
    gate.report(DatabaseUnavailable("connection refused"))
    waiters = [asyncio.ensure_future(gate.ready()) for _ in range(3)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    failure = gate.failure
    assert isinstance(failure, DatabaseUnavailable)
    assert all(r is failure for r in results)
    assert failure.waited == 3.0 and failure.limit == 3.0
    assert str(failure) == (
        "database unavailable for 3 s (--db-outage-timeout 3): [Errno 111] Connect call failed"
    )
    assert db.probes[-1] == 3.0  # the last probe on the limit
    with pytest.raises(DatabaseUnavailable):
        await gate.check()
    await gate.close()


async def test_a_stale_report_closes_nothing() -> None:
    """A connection that died in an outage already waited out is found only later: the gate
    stays open (the worker starts its partition again at once)."""
    t = FakeTime()
    db = Database(t, down_for=1.0)
    gate = gate_for(db, limit=60.0)
    old = await gate.ready()
    gate.report(DatabaseUnavailable("admin shutdown"), old)
    new = await gate.ready()
    gate.report(DatabaseUnavailable("connection is closed"), old)
    assert not gate.down and await gate.ready() == new
    assert gate.generation == 1
    await gate.close()


async def test_run_repeats_a_step_after_each_outage() -> None:
    """`run` waits out an outage met by a step, then runs the step again."""
    t = FakeTime()
    db = Database(t, down_for=2.0)
    gate = gate_for(db, limit=60.0)
    calls = 0

    async def step() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DatabaseUnavailable("connection was closed in the middle of operation")
        return "recorded"

    assert await gate.run(step) == "recorded"
    assert calls == 2
    await gate.close()


async def test_a_probe_that_finds_the_lock_taken_ends_the_wait() -> None:
    """A probe that finds another run holding the lock ends the wait with RunLockedError."""
    t = FakeTime()

    async def probe() -> None:
        raise RunLockedError("another run took the lock")

    gate = DatabaseGate(probe, limit=60.0, clock=t.clock, sleep=t.sleep)
    gate.report(DatabaseUnavailable("connection reset"))
    with pytest.raises(RunLockedError):
        await gate.ready()
    await gate.close()


async def test_the_runs_one_reason_is_the_first_failure() -> None:
    """The probe finds the lock taken (the watcher's RunLockedError); a partition's commit then
    finds its run taken too (another RunLockedError): `fail` keeps and returns the first, which
    the partition raises, so the engine sees the gate's own failure and stops the run quietly
    (a second error object once made the run raise it instead of ending 'interrupted')."""
    t = FakeTime()
    first = RunLockedError("another run took the lock")

    async def probe() -> None:
        raise first

    gate = DatabaseGate(probe, limit=60.0, clock=t.clock, sleep=t.sleep)
    gate.report(DatabaseUnavailable("connection reset"))
    with pytest.raises(RunLockedError):
        await gate.ready()
    second = RunLockedError("run 1 was marked 'interrupted' by another run")
    assert gate.fail(second) is first and gate.failure is first
    await gate.close()
    fresh = DatabaseGate(probe, limit=60.0, clock=t.clock, sleep=t.sleep)
    assert fresh.fail(second) is second and fresh.failure is second
    with pytest.raises(RunLockedError) as raised:
        await fresh.ready()
    assert raised.value is second
    await fresh.close()


# -- which errors are an outage (sync.db.database.outage_reason) ---------------------------------


def _raised(outer: BaseException, inner: BaseException, *, cause: bool = True) -> BaseException:
    """`outer` as raised while handling `inner` (`from inner` when `cause`)."""
    try:
        try:
            raise inner
        except BaseException as exc:
            if cause:
                raise outer from exc
            raise outer  # noqa: B904 - the context chain is what is tested
    except BaseException as got:
        return got


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5499)"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        apg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        apg.AdminShutdownError("terminating connection due to administrator command"),
        apg.CannotConnectNowError("the database system is starting up"),
        apg.CrashShutdownError("terminating connection because of crash of another process"),
        apg.ConnectionFailureError("connection failure"),
        apg.InterfaceError("cannot perform operation: connection is closed"),
        apg.InternalClientError("not connected"),
        OperationalError("COMMIT", {}, Exception("gone"), connection_invalidated=True),
        _raised(
            DatabaseError("copy page: connection was closed in the middle of operation"),
            apg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ),
        _raised(
            InterfaceError("ROLLBACK", {}, apg.InterfaceError("another operation is in progress")),
            apg.InternalClientError("not connected"),
            cause=False,
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_lost_connections_are_outages(error: BaseException) -> None:
    """Refused, reset, closed, shut-down or starting-up connections are outages."""
    assert outage_reason(error)


@pytest.mark.parametrize(
    "error",
    [
        apg.UniqueViolationError("duplicate key value violates unique constraint"),
        apg.QueryCanceledError("canceling statement due to statement timeout"),
        apg.InterfaceError("cannot perform operation: another operation is in progress"),
        DatabaseError("PartitionWriter needs a connection inside a transaction"),
        # The platform's side: aiohttp's connection errors are OSErrors, wrapped as ApiErrors.
        _raised(
            TransportError("connection refused", endpoint="query_task_video_daily_data"),
            ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 8080)"),
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_of_the_work_are_not_outages(error: BaseException) -> None:
    """Errors of the statements themselves, and of the platform's side, are not outages."""
    assert outage_reason(error) is None


def test_the_reason_is_the_drivers_first_line() -> None:
    """The outage's reason is the first line of the driver's message."""
    error = _raised(
        DatabaseError("copy page: connection was closed in the middle of operation"),
        apg.AdminShutdownError("terminating connection due to administrator command\nDETAIL: x"),
    )
    assert outage_reason(error) == "terminating connection due to administrator command"
