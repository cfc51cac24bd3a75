"""Quiet logs (#17): a page is logged only when rows are rejected or values dropped; negative
amounts (refunds above a day's GMV: legitimate) are counted and shown once, in the summary, with
a few examples and the log_ids of their answers. The CLI runs against the sandbox through a
proxy on 127.0.0.1 that makes some of its amounts negative."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.schema import video_daily_earnings
from sync.pipeline.runs import RunNotes
from sync.records.mapper import NEGATIVE_AMOUNT
from sync.sandbox import SandboxServer
from tests.helpers import Clock, MakeSandbox, backfill_args, cli_env, run_cli

_DECIMAL = re.compile(r'"@dec:(-?[0-9.]+)"')


def encode(doc: Any) -> bytes:
    """JSON as the platform writes it: decimals as numbers, lone surrogates escaped (the sandbox
    sends some in titles)."""

    def marked(value: Any) -> str:
        assert isinstance(value, Decimal)
        return f"@dec:{value}"

    text = json.dumps(doc, default=marked, ensure_ascii=True)
    return _DECIMAL.sub(r"\1", text).encode()


class NegatingProxy:
    """Forwards every request to the sandbox; in daily-data answers, every fifth row's
    ExpectedProfit and every seventh row's GMV1d become negative. Remembers each such row (video,
    task) with the value served and the answer's log_id."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        # (date, video, task) -> (profit, log_id), and -> GMV
        self.negative: dict[tuple[str, int, int], tuple[Decimal, str]] = {}
        self.negative_gmv: dict[tuple[str, int, int], int] = {}
        self.base_url = ""
        self._count = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def _negate(self, body: bytes) -> bytes:
        doc = json.loads(body, parse_float=Decimal)
        items = (doc.get("data") or {}).get("video_daily_data_list") or []
        for item in items:
            n = next(self._count)
            key = (item["date"], item["VideoId"], item["TaskId"])
            if n % 5 == 0:
                item["ExpectedProfit"] = -abs(Decimal(item["ExpectedProfit"])) - Decimal("0.5")
                self.negative[key] = (item["ExpectedProfit"], doc["log_id"])
            if n % 7 == 0:
                item["GMV1d"] = -abs(item["GMV1d"]) - 1
                self.negative_gmv[key] = item["GMV1d"]
        return encode(doc)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as answer:
            body = await answer.read()
            kind = answer.headers.get("Content-Type", "application/json")
        if "query_task_video_daily_data" in request.path and answer.status == 200:
            body = self._negate(body)
        return web.Response(status=answer.status, body=body, content_type=kind.split(";")[0])

    async def __aenter__(self) -> NegatingProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """~110 rows a billing date."""
    return await make_sandbox(seed=7, videos=150, tasks=6, creators=20)


@pytest.fixture
async def proxy(sandbox: SandboxServer) -> AsyncIterator[NegatingProxy]:
    async with NegatingProxy(sandbox.base_url) as p:
        yield p


async def _stored(engine: AsyncEngine) -> dict[tuple[str, int, int], Any]:
    v = video_daily_earnings
    async with engine.connect() as conn:
        result = await conn.execute(
            select(v.c.billing_date, v.c.video_id, v.c.task_id, v.c.expected_profit, v.c.gmv_1d)
        )
        return {(r.billing_date.isoformat(), r.video_id, r.task_id): r for r in result}


@pytest.mark.wall_clock
async def test_negative_amounts_log_no_page_and_are_summed_up_once(
    sandbox: SandboxServer,
    proxy: NegatingProxy,
    database_url: str,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    """A backfill whose answers hold negative amounts on most pages logs no warning at all; the
    summary counts them once and shows at most 3 examples, each with its answer's log_id; the
    amounts are stored as sent."""
    env = cli_env(sandbox, database_url)
    env["DOUYIN_OPEN_BASE_URL"] = proxy.base_url
    result = await run_cli(*backfill_args(clock.recent_dates(3), "--page-size", "20"), env=env)
    assert result.status == 0, result
    assert proxy.negative and proxy.negative_gmv
    assert "WARNING" not in result.stderr and "negative" not in result.stderr, result
    # The stored rows carry the amounts as sent.
    stored = await _stored(engine)
    for key, (profit, _) in proxy.negative.items():
        assert stored[key].expected_profit == profit
    for key, gmv in proxy.negative_gmv.items():
        assert stored[key].gmv_1d == gmv
    # The summary: one count, then examples with their answers' log_ids.
    count = len(proxy.negative) + len(proxy.negative_gmv)
    lines = result.stdout.splitlines()
    head = f"noted, stored as sent: {count:,} {NEGATIVE_AMOUNT}; for example:"
    assert head in lines, result.stdout
    examples = lines[lines.index(head) + 1 :]
    assert 1 <= len(examples) <= 3, result.stdout
    log_ids = {log_id for _, log_id in proxy.negative.values()}
    for line in examples:
        match = re.fullmatch(
            r"  video (\d+) task (\d+): (\w+) is negative: (-[\d.]+) \(log_id=(\w+)\)", line
        )
        assert match, line
        keys = {k[1:] for k in [*proxy.negative, *proxy.negative_gmv]}
        assert (int(match[1]), int(match[2])) in keys, line
        assert match[5] in log_ids or match[3] == "gmv_1d", line
    assert result.stdout.count("noted, stored as sent") == 1


@pytest.mark.wall_clock
async def test_a_page_with_a_dropped_value_is_still_logged(
    sandbox: SandboxServer, proxy: NegatingProxy, database_url: str, clock: Clock
) -> None:
    """Values that cannot be stored as sent (a figure that is no number: stored NULL) still log
    their page, with its log_id; negative amounts beside them are not in that line."""

    def spoil(body: bytes, negate: Any = proxy._negate) -> bytes:
        doc = json.loads(negate(body), parse_float=Decimal)
        items = (doc.get("data") or {}).get("video_daily_data_list") or []
        if items:
            items[0]["ActiveCnt1d"] = "many"
        return encode(doc)

    proxy._negate = spoil  # type: ignore[method-assign]
    env = cli_env(sandbox, database_url)
    env["DOUYIN_OPEN_BASE_URL"] = proxy.base_url
    result = await run_cli(*backfill_args(clock.recent_dates(1), "--page-size", "50"), env=env)
    assert result.status == 0, result
    warnings = [line for line in result.err_lines if "WARNING" in line]
    assert warnings, result
    for line in warnings:
        assert re.search(r"page log_id=\w+: 0 rows rejected, 1 values stored as NULL: ", line)
        assert "active_cnt_1d is not an int64: 'many'" in line and "negative" not in line


def test_notes_keep_three_examples_of_a_kind_and_every_count() -> None:
    """Run notes add up every count, keep the first three examples of each kind with their
    log_ids, and merge partitions' notes the same way."""
    notes = RunNotes()
    texts = {NEGATIVE_AMOUNT: ["a", "b"]}
    notes.add({NEGATIVE_AMOUNT: 5}, texts, "L1")
    notes.add({NEGATIVE_AMOUNT: 2}, texts, "L2")
    other = RunNotes()
    other.add(
        {"dates other than the billing date": 1}, {"dates other than the billing date": ["d"]}, None
    )
    notes.merge(other)
    assert notes.counts == {NEGATIVE_AMOUNT: 7, "dates other than the billing date": 1}
    assert notes.examples[NEGATIVE_AMOUNT] == [("a", "L1"), ("b", "L1"), ("a", "L2")]
    assert notes.total == 8
