"""The live order gateway with the real ccxt client against the stand-in's private Bybit v5 API.

Every test starts its own stand-in (the simulator, live) on 127.0.0.1 and talks to it through
ccxt exactly as to Bybit; nothing in ccxt is mocked. The stand-in's own rules (signatures,
duplicate client ids, the grid, rate limits, matching) are tested directly as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import numpy as np
import pytest

from core.config import AppConfig
from core.errors import UserError
from execution.types import OrderKind
from execution.venue import BookView
from live.bybit_gateway import BybitGateway
from standin import BackgroundStandin
from standin.account import POST_ONLY_REASON, Account
from standin.feeds import SimFeed
from standin.private import PrivateSpec
from tests.conftest import ConfigFactory

KEY, SECRET = "test-key-7f3a", "test-secret-c91e"
TICK = 0.1
FAR = 500  # ticks: 50 USDT from the touch, where the simulated market does not reach in a test


@pytest.fixture
def standin() -> Iterator[BackgroundStandin]:
    cfg = AppConfig()
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50), private=PrivateSpec(KEY, SECRET)) as server:
        yield server


@pytest.fixture
def cfg(standin: BackgroundStandin, make_config: ConfigFactory) -> AppConfig:
    return make_config(bybit={"rest_url": standin.url, "ws_public_url": standin.ws_url, "timeout": "3s"})


# -- helpers ---------------------------------------------------------------------------------


def _private(server: BackgroundStandin, method: str, path: str, params: dict[str, Any], **auth: str) -> Any:
    """A signed Bybit v5 request, as the docs describe it (no ccxt)."""
    key, secret = auth.get("key", KEY), auth.get("secret", SECRET)
    ts, recv = auth.get("ts", str(time.time_ns() // 1_000_000)), "5000"
    query = "&".join(f"{k}={v}" for k, v in params.items())
    body = json.dumps(params) if method == "POST" else ""
    payload = body if method == "POST" else query
    sig = hmac.new(secret.encode(), (ts + key + recv + payload).encode(), hashlib.sha256).hexdigest()
    url = server.url + path + ("?" + query if method == "GET" and query else "")
    headers = {"X-BAPI-API-KEY": key, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": recv, "X-BAPI-SIGN": sig}
    req = urllib.request.Request(url, data=body.encode() if method == "POST" else None, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read()), dict(r.headers)


def _open_on_exchange(server: BackgroundStandin) -> list[dict[str, Any]]:
    res, _ = _private(server, "GET", "/v5/order/realtime", {"category": "linear", "symbol": "BTCUSDT"})
    return res["result"]["list"]


def _book(server: BackgroundStandin) -> BookView:
    with urllib.request.urlopen(server.url + "/v5/market/orderbook?category=linear&symbol=BTCUSDT&limit=5") as r:
        data = json.loads(r.read())["result"]
    bids, asks = np.array(data["b"], float), np.array(data["a"], float)
    return BookView(time.time_ns(), bids[:, 0], bids[:, 1], asks[:, 0], asks[:, 1])


def _gateway(cfg: AppConfig, run_id: str = "t1", secret: str = SECRET) -> BybitGateway:
    return BybitGateway(cfg, KEY, secret, run_id, poll_ns=20_000_000)


async def _until(gw: BybitGateway, done: Callable[[], bool], limit_s: float = 15.0) -> None:
    """Sync until ``done()``; the limit only keeps a broken gateway from hanging the suite."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "the gateway never got there"
        await gw.sync()
        await asyncio.sleep(0.01)


def _run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def _kinds(events: list[dict[str, Any]], order_id: int | None = None) -> list[str]:
    return [e["kind"] for e in events if order_id is None or e.get("order_id") == order_id]


# -- the gateway -----------------------------------------------------------------------------


def test_a_post_only_order_rests_and_is_open_on_both_sides(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            price = round(_book(standin).bid - (50 + FAR) * TICK, 1)
            oid = gw.submit(1, 0.01, price, tag=7)
            assert [o.order_id for o in gw.open_orders()] == [oid]  # visible at once, before it is sent
            await gw.sync()
            (mine,) = gw.open_orders()
            assert (mine.order_id, mine.side, mine.price, mine.qty, mine.tag) == (oid, 1, price, 0.01, 7)
            (row,) = _open_on_exchange(standin)
            assert row["orderLinkId"] == f"t1-{oid}" and row["timeInForce"] == "PostOnly"
            assert float(row["price"]) == price and row["orderStatus"] == "New"
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "ack"]
            json.dumps(events, allow_nan=False)  # the journal's records are plain JSON
            assert gw.errors == 0 and gw.take_events() == []
        finally:
            await gw.aclose()

    _run(go)


def test_a_crossing_post_only_is_cancelled_with_bybits_reason(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            oid = gw.submit(1, 0.01, round(_book(standin).ask + 20 * TICK, 1))
            await _until(gw, lambda: not gw.open_orders())
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "ack", "cancelled"]
            assert events[-1]["detail"] == POST_ONLY_REASON
            assert gw.position() == 0.0 and "fill" not in _kinds(events)  # never a taker fill
            assert gw.errors == 0
        finally:
            await gw.aclose()

    _run(go)


def test_amend_moves_the_price_and_shrinks_the_size(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            bid = _book(standin).bid
            oid = gw.submit(1, 0.03, round(bid - (60 + FAR) * TICK, 1))
            await gw.sync()
            gw.amend(oid, price=round(bid - (70 + FAR) * TICK, 1))
            assert await gw.sync()  # an applied amend is a change the strategy should see
            gw.amend(oid, qty=0.02)
            await gw.sync()
            (mine,) = gw.open_orders()
            (row,) = _open_on_exchange(standin)
            assert (mine.price, mine.qty) == (round(bid - (70 + FAR) * TICK, 1), 0.02)
            assert (float(row["price"]), float(row["qty"])) == (mine.price, mine.qty)
            assert _kinds(gw.take_events(), oid) == ["submit", "ack", "amend", "ack", "amend", "ack"]
        finally:
            await gw.aclose()

    _run(go)


def test_cancel_and_cancel_all_leave_nothing_open(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            bid = _book(standin).bid
            ids = [gw.submit(1, 0.01, round(bid - (40 + i + FAR) * TICK, 1)) for i in range(3)]
            await gw.sync()
            assert len(_open_on_exchange(standin)) == 3
            gw.cancel(ids[0])
            await _until(gw, lambda: len(gw.open_orders()) == 2)
            assert {r["orderLinkId"] for r in _open_on_exchange(standin)} == {f"t1-{i}" for i in ids[1:]}
            gw.cancel_all()
            await _until(gw, lambda: not gw.open_orders())
            assert _open_on_exchange(standin) == []
            events = gw.take_events()
            assert [e["order_id"] for e in events if e["kind"] == "cancelled"] == ids
            assert "cancel_all" in _kinds(events)
        finally:
            await gw.aclose()

    _run(go)


def test_a_market_order_fills_and_position_and_equity_follow(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            start = gw.equity()
            assert start == pytest.approx(100_000.0)
            oid = gw.submit(1, 0.02, kind=OrderKind.MARKET)
            await _until(gw, lambda: not gw.open_orders())
            events = gw.take_events()
            fills = [e for e in events if e["kind"] == "fill"]
            assert fills and _kinds(events, oid)[-1] == "filled"
            qty = sum(f["qty"] for f in fills)
            cost = sum(f["qty"] * f["price"] for f in fills)
            fee = sum(f["fee"] for f in fills)
            assert qty == pytest.approx(0.02) and gw.position() == pytest.approx(0.02)
            assert fee == pytest.approx(cost * 0.00055) and not any(f["maker"] for f in fills)
            book = _book(standin)
            gw.set_book(book)
            assert gw.equity() == pytest.approx(start - cost - fee + 0.02 * book.mid)
            gw.submit(-1, 0.02, kind=OrderKind.MARKET)
            await _until(gw, lambda: not gw.open_orders())
            assert gw.position() == pytest.approx(0.0)
            res, _ = _private(standin, "GET", "/v5/position/list", {"category": "linear", "symbol": "BTCUSDT"})
            assert res["result"]["list"][0]["size"] == "0.000"
        finally:
            await gw.aclose()

    _run(go)


def test_a_resting_order_filled_by_the_market_is_a_maker_fill(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            oid = gw.submit(1, 0.001, _book(standin).bid)  # join the best bid: the next sell print fills it
            await gw.sync()
            deadline = time.monotonic() + 30
            while gw.open_orders():  # follow the bid if it moves away first
                assert time.monotonic() < deadline
                (o,) = gw.open_orders()
                bid = _book(standin).bid
                if bid > o.price + TICK / 2:
                    gw.amend(oid, price=bid)
                await gw.sync()
                await asyncio.sleep(0.02)
            fills = [e for e in gw.take_events() if e["kind"] == "fill"]
            assert len(fills) == 1 and fills[0]["maker"] and fills[0]["order_id"] == oid
            assert fills[0]["fee"] == pytest.approx(fills[0]["price"] * 0.001 * 0.0002)
            assert gw.position() == pytest.approx(0.001)
        finally:
            await gw.aclose()

    _run(go)


def test_rejected_orders_are_reject_events_and_counted(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            standin.inject("reject_orders", 30.0)
            oid = gw.submit(1, 0.01, round(_book(standin).bid - (40 + FAR) * TICK, 1))
            assert await gw.sync()
            assert gw.open_orders() == [] and _open_on_exchange(standin) == []
            (reject,) = [e for e in gw.take_events() if e["kind"] == "reject"]
            assert reject["order_id"] == oid and "110007" in reject["detail"]
            assert (gw.errors, gw.rate_limited) == (1, 0)
        finally:
            await gw.aclose()

    _run(go)


def test_rate_limits_are_counted_and_the_order_dropped(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            standin.inject("rate_limit", 30.0)
            oid = gw.submit(-1, 0.01, round(_book(standin).ask + (40 + FAR) * TICK, 1))
            assert await gw.sync()
            assert gw.open_orders() == [] and (gw.rate_limited, gw.errors) == (1, 0)
            assert _kinds(gw.take_events(), oid) == ["submit", "reject"]
            requests = standin.stats()["private"]["private_requests"]
            await gw.sync()  # backing off: no poll for a second
            assert standin.stats()["private"]["private_requests"] == requests
        finally:
            await gw.aclose()

    _run(go)


def test_a_dropped_create_is_recovered_never_duplicated(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            standin.inject("drop_response")
            price = round(_book(standin).bid - (40 + FAR) * TICK, 1)
            oid = gw.submit(1, 0.01, price)
            await gw.sync()
            assert standin.stats()["private"]["dropped_responses"] == 1
            (row,) = _open_on_exchange(standin)  # exactly one order, the one that was sent
            assert row["orderLinkId"] == f"t1-{oid}"
            assert standin.stats()["private"]["orders_created"] == 1
            (mine,) = gw.open_orders()
            assert (mine.order_id, mine.price) == (oid, price)
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "error", "ack"] and "recovered" in events[-1]["detail"]
            assert gw.errors == 1 and "ret_110072" not in standin.stats()["private"]  # looked up, not re-sent
            gw.cancel(oid)  # and the gateway can work it like any other
            await _until(gw, lambda: not gw.open_orders())
        finally:
            await gw.aclose()

    _run(go)


def test_a_lost_create_is_sent_again_once_the_exchange_says_it_has_none(
    standin: BackgroundStandin, cfg: AppConfig
) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            standin.inject("drop_request")
            oid = gw.submit(-1, 0.01, round(_book(standin).ask + (40 + FAR) * TICK, 1))
            await gw.sync()
            assert standin.stats()["private"]["dropped_requests"] == 1
            (row,) = _open_on_exchange(standin)
            assert row["orderLinkId"] == f"t1-{oid}" and standin.stats()["private"]["orders_created"] == 1
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "error", "ack"] and "sent again" in events[-1]["detail"]
            assert [o.order_id for o in gw.open_orders()] == [oid]
        finally:
            await gw.aclose()

    _run(go)


def test_a_reused_client_id_never_adopts_another_order(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        first = _gateway(cfg, "r1")
        await first.start()
        oid = first.submit(1, 0.01, round(_book(standin).bid - (40 + FAR) * TICK, 1))
        await first.sync()
        first.cancel(oid)
        await _until(first, lambda: not first.open_orders())
        await first.aclose()
        second = _gateway(cfg, "r1")  # the same run id without the journal: r1-1 again
        await second.start()
        try:
            again = second.submit(-1, 0.01, round(_book(standin).ask + (40 + FAR) * TICK, 1))
            await second.sync()
            assert again == oid and second.open_orders() == []  # the exchange said 110072: not ours
            events = second.take_events()
            assert "belongs to another order" in " ".join(e.get("detail", "") for e in events)
            assert _open_on_exchange(standin) == []
        finally:
            await second.aclose()

    _run(go)


def test_a_restart_takes_position_and_orders_from_the_exchange(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        before = _gateway(cfg, "run7")
        await before.start()
        before.submit(1, 0.01, kind=OrderKind.MARKET)
        await _until(before, lambda: not before.open_orders())
        price = round(_book(standin).bid - (40 + FAR) * TICK, 1)
        resting = before.submit(1, 0.02, price)
        await before.sync()
        book = _book(standin)
        before.set_book(book)
        equity, position, since = before.equity(), before.position(), before.ledger.exec_since_ms
        known = {e["client_id"]: e["order_id"] for e in before.take_events() if e["kind"] == "submit"}
        await before.aclose()  # a crash: nothing cancelled
        writes = standin.stats()["private"]["order_writes"]

        after = _gateway(cfg, "run7")
        await after.start(known)
        try:
            after.set_book(book)
            assert after.position() == pytest.approx(position) == pytest.approx(0.01)
            assert after.equity() == pytest.approx(equity)
            (o,) = after.open_orders()
            assert (o.order_id, o.side, o.price, o.qty) == (resting, 1, price, 0.02)
            assert _kinds(after.take_events()) == ["ack"]  # adopted
            # the day's executions were read once: the polls ask from the newest on, as before the crash
            assert since > 0 and after.ledger.exec_since_ms == since
            for _ in range(3):
                await after.sync()
            assert standin.stats()["private"]["order_writes"] == writes  # nothing was sent
            assert after.submit(1, 0.01, price) == resting + 1  # new ids continue after the journal's
        finally:
            await after.aclose()

    _run(go)


def test_orders_that_ended_while_the_runner_was_down_get_their_end_in_the_journal(
    standin: BackgroundStandin, cfg: AppConfig
) -> None:
    """A journal's open order that the exchange cancelled (or filled) while the runner was down is
    recorded as ended at the next start, as Bybit tells it: no later restart finds it open again."""
    from warehouse.journal import Restored

    async def go() -> None:
        before = _gateway(cfg, "run8")
        await before.start()
        bid = _book(standin).bid
        ids = [before.submit(1, 0.01, round(bid - (40 + i + FAR) * TICK, 1)) for i in range(2)]
        await before.sync()
        gone = before.ledger.orders[ids[0]]
        submits = {e["order_id"]: e for e in before.take_events() if e["kind"] == "submit"}
        await before.aclose()  # a crash: both rest on the exchange
        _private(standin, "POST", "/v5/order/cancel", {"category": "linear", "symbol": "BTCUSDT",
                                                       "orderId": gone.exchange_id})  # fmt: skip
        after = _gateway(cfg, "run8")
        restored = Restored(
            open_orders={oid: {"client_id": e["client_id"]} for oid, e in submits.items()},
            client_ids={e["client_id"]: oid for oid, e in submits.items()},
        )
        await after.begin(restored, time.time_ns())
        try:
            assert [o.order_id for o in after.open_orders()] == ids[1:]  # the other one is adopted
            events = after.take_events()
            (ended,) = [e for e in events if e["kind"] == "cancelled"]
            assert ended["order_id"] == ids[0] and ended["client_id"] == gone.client_id
            assert ended["detail"] == "ended while the runner was down: Cancelled"
        finally:
            await after.aclose()

    _run(go)


def test_keys_never_reach_the_logs_or_the_events(
    standin: BackgroundStandin, cfg: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    ccxt_log = logging.getLogger("live.bybit_gateway.ccxt")

    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            gw.submit(1, 0.01, kind=OrderKind.MARKET)
            await _until(gw, lambda: not gw.open_orders())
            events = json.dumps(gw.take_events())
            assert KEY not in events and SECRET not in events
        finally:
            await gw.aclose()

    ccxt_log.setLevel(logging.DEBUG)  # someone debugging: ccxt logs every request with its headers
    try:
        with caplog.at_level(logging.DEBUG):
            _run(go)
    finally:
        ccxt_log.setLevel(logging.WARNING)
    requests = [r.getMessage() for r in caplog.records if r.name == ccxt_log.name]
    assert any("X-BAPI-API-KEY" in m for m in requests)
    assert not any(KEY in m or SECRET in m for m in (r.getMessage() for r in caplog.records))


def test_a_wrong_secret_is_one_clear_line_without_the_secret(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg, secret="not-the-secret-x")
        with pytest.raises(UserError) as err:
            await gw.start()
        text = str(err.value)
        assert "refused the API key" in text and "wrong secret" in text and "\n" not in text
        assert "not-the-secret-x" not in text and KEY not in text
        assert err.value.__cause__ is None and err.value.__suppress_context__

    _run(go)


# -- the stand-in's private API, directly ----------------------------------------------------


def test_the_standin_checks_bybit_signatures(standin: BackgroundStandin) -> None:
    params = {"category": "linear", "symbol": "BTCUSDT"}
    ok, _ = _private(standin, "GET", "/v5/order/realtime", params)
    assert ok["retCode"] == 0
    assert _private(standin, "GET", "/v5/order/realtime", params, key="other")[0]["retCode"] == 10003
    bad, _ = _private(standin, "GET", "/v5/order/realtime", params, secret="wrong")
    assert bad["retCode"] == 10004 and bad["retMsg"].startswith("error sign!")
    stale = str(time.time_ns() // 1_000_000 - 60_000)
    assert _private(standin, "GET", "/v5/order/realtime", params, ts=stale)[0]["retCode"] == 10002


def test_the_standin_refuses_duplicates_and_off_grid_orders(standin: BackgroundStandin) -> None:
    bid = _book(standin).bid
    order = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.010"}
    order |= {"price": f"{bid - 5:.1f}", "timeInForce": "PostOnly", "orderLinkId": "dup-1"}
    assert _private(standin, "POST", "/v5/order/create", order)[0]["retCode"] == 0
    assert _private(standin, "POST", "/v5/order/create", order)[0]["retCode"] == 110072
    res, _ = _private(standin, "POST", "/v5/order/create", order | {"orderLinkId": "q", "qty": "0.0105"})
    assert (res["retCode"], res["retMsg"]) == (10001, "params error: Qty invalid")
    res, _ = _private(standin, "POST", "/v5/order/create", order | {"orderLinkId": "p", "price": f"{bid:.1f}5"})
    assert res["retCode"] == 10001
    assert len(_open_on_exchange(standin)) == 1


def test_the_standin_rate_limits_order_requests_per_second(standin: BackgroundStandin) -> None:
    cancel = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "nothing"}
    codes, headers = [], {}
    for _ in range(12):
        res, headers = _private(standin, "POST", "/v5/order/cancel", cancel)
        codes.append(res["retCode"])
    assert codes[:10] == [110001] * 10 and 10006 in codes[10:]
    assert headers["X-Bapi-Limit"] == "10" and headers["X-Bapi-Limit-Status"] == "0"


# -- the stand-in's matching rules -----------------------------------------------------------


class _Book:
    def __init__(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        self.bids, self.asks = bids, asks

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        return (
            [[f"{p:.1f}", f"{q:.3f}"] for p, q in self.bids[:depth]],
            [[f"{p:.1f}", f"{q:.3f}"] for p, q in self.asks[:depth]],
        )


def _limit(acc: Account, side: str, qty: str, price: float, link: str) -> Any:
    p = {"side": side, "orderType": "Limit", "qty": qty, "price": f"{price:.1f}", "timeInForce": "PostOnly"}
    return acc.create(p | {"orderLinkId": link}, 1)


def test_prints_fill_resting_orders_once_in_price_then_time_priority() -> None:
    book = _Book([(100.0, 5.0)], [(100.1, 5.0)])
    acc = Account("BTCUSDT", book, 0.1, 1, min_notional=0.0)
    a = _limit(acc, "Buy", "0.050", 100.0, "a")
    b = _limit(acc, "Buy", "0.050", 100.0, "b")
    better = _limit(acc, "Buy", "0.050", 100.0, "c")
    acc.amend({"orderLinkId": "c", "price": "100.1"}, 2)  # now crosses: a post-only amend is cancelled
    assert better.status == "Cancelled" and better.reject_reason == POST_ONLY_REASON
    acc.amend({"orderLinkId": "a", "qty": "0.040"}, 3)  # a size decrease keeps a's place
    acc.on_trades([{"p": "100.0", "v": "0.060", "S": "Sell"}], 4)
    assert (a.filled, b.filled) == (0.04, 0.02)  # one print, used once, a first
    acc.on_trades([{"p": "100.0", "v": "1.000", "S": "Buy"}], 5)  # a buyer's print does not fill bids
    assert b.filled == 0.02
    acc.amend({"orderLinkId": "b", "price": "99.9"}, 6)
    book.asks = [(99.9, 1.0)]  # the ask came down through it: the rest fills as maker at 99.9
    acc.on_book(7)
    assert b.status == "Filled" and all(e.maker for e in acc.executions)
    assert acc.position.size == pytest.approx(0.09)
    assert acc.position.avg == pytest.approx((0.04 * 100.0 + 0.02 * 100.0 + 0.03 * 99.9) / 0.09)


def test_a_market_order_walks_the_book_and_pays_the_taker_fee() -> None:
    acc = Account("BTCUSDT", _Book([(99.0, 1.0)], [(100.0, 0.01), (100.5, 0.02)]), 0.1, 1, min_notional=0.0)
    o = acc.create({"side": "Buy", "orderType": "Market", "qty": "0.050", "orderLinkId": "m"}, 1)
    assert [(e.price, e.qty) for e in acc.executions] == [(100.0, 0.01), (100.5, 0.02)]
    assert o.status == "PartiallyFilledCanceled" and o.filled == pytest.approx(0.03)
    fees = 0.00055 * (100.0 * 0.01 + 100.5 * 0.02)
    assert acc.balance == pytest.approx(100_000.0 - fees)
    acc.create({"side": "Sell", "orderType": "Market", "qty": "0.030", "orderLinkId": "x"}, 2)
    assert acc.position.size == 0.0
    pnl = 0.03 * (99.0 - (100.0 * 0.01 + 100.5 * 0.02) / 0.03)
    assert acc.balance == pytest.approx(100_000.0 - fees - 0.00055 * 99.0 * 0.03 + pnl)
    assert math.isclose(acc.position.realised, acc.balance - 100_000.0)
