"""Matching-engine scenarios with outcomes worked out by hand (REFERENCE section 2).

Each scenario is a tiny recorded market: book events ``B(ts, bids, asks)`` and prints
``T(ts, price, qty, taker_side)``, received 1 ns after the exchange time. Orders are sent at
local time 101 (just after the first book arrived) unless said otherwise; with 10 ns entry and
response latency they reach the exchange at 111 and their reports come back 10 ns after the event.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from execution.engine import Engine, Wake
from execution.market import Market, market_data
from execution.queue import queue_after_depth
from execution.types import EngineConfig, Fees, FillRule, OrderKind, OrderStatus, QueueModel, RejectReason, Side

pytestmark = pytest.mark.kernels

L = 3
CFG = EngineConfig(entry_latency_ns=10, response_latency_ns=10)
MAKER, TAKER = CFG.fees.maker, CFG.fees.taker
BUY, SELL = Side.BUY, Side.SELL

Event = tuple[Any, ...]


def B(ts: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> Event:
    return ("B", ts, bids, asks)


def T(ts: int, price: float, qty: float, side: int) -> Event:
    return ("T", ts, price, qty, side)


def market(*events: Event) -> Market:
    books = [e for e in events if e[0] == "B"]
    trades = [e for e in events if e[0] == "T"]

    def side(levels: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        pad = L - len(levels)
        return [p for p, _ in levels] + [math.nan] * pad, [q for _, q in levels] + [0.0] * pad

    bids = [side(b[2]) for b in books]
    asks = [side(b[3]) for b in books]
    return market_data(
        [b[1] for b in books],
        [b[1] + 1 for b in books],
        [p for p, _ in bids],
        [q for _, q in bids],
        [p for p, _ in asks],
        [q for _, q in asks],
        [t[1] for t in trades],
        [t[1] + 1 for t in trades],
        [t[2] for t in trades],
        [t[3] for t in trades],
        [t[4] for t in trades],
    )


def start(*events: Event, cfg: EngineConfig = CFG, sample_ns: int = 1_000_000_000) -> Engine:
    """An engine loaded with the events and advanced to just after the first book arrived (101)."""
    e = Engine(cfg, L, sample_ns=sample_ns)
    e.load(market(*events))
    e.run_until(101)
    return e


def fills_of(e: Engine) -> list[tuple[int, float, float]]:
    return [(int(f["order_id"]), float(f["price"]), float(f["qty"])) for f in e.fills()]


TOUCH = B(100, [(100.0, 5.0), (99.9, 4.0)], [(100.1, 5.0), (100.2, 2.0)])
INSIDE = B(100, [(99.9, 5.0)], [(100.2, 5.0)])  # 100.0 and 100.1 are free: an order there is alone


def test_five_ahead_three_traded_no_fill_then_four_more_fill_two() -> None:
    e = start(TOUCH, T(200, 100.0, 3.0, -1), B(250, [(100.0, 2.0)], [(100.1, 5.0)]), T(300, 100.0, 4.0, -1))
    oid = e.submit(BUY, 3.0, 100.0)
    e.run_until(299)
    assert len(e.fills()) == 0  # 5 ahead, 3 traded: 2 still ahead
    e.run_until(400)
    f = e.fills()
    assert fills_of(e) == [(oid, 100.0, 2.0)]  # 4 traded: 2 for those ahead, 2 for us
    assert f["maker"][0] and f["queue_ahead"][0] == 5.0 and f["ts_ex"][0] == 300 and f["ts_local"][0] == 310
    assert f["fee"][0] == 100.0 * 2.0 * MAKER
    assert e.orders()["status"][0] == OrderStatus.OPEN and e.orders()["filled"][0] == 2.0


def test_post_only_that_would_cross_is_rejected_and_counted() -> None:
    e = start(TOUCH, T(200, 100.1, 1.0, 1), T(300, 100.2, 3.0, 1))
    cross = e.submit(BUY, 1.0, 100.1)  # would take the 100.1 ask
    deep = e.submit(BUY, 1.0, 100.2)
    fine = e.submit(BUY, 1.0, 100.0)
    e.run_until(121)
    o = e.orders()
    assert list(o["status"]) == [OrderStatus.REJECTED, OrderStatus.REJECTED, OrderStatus.OPEN]
    assert list(o["reject"][:2]) == [RejectReason.POST_ONLY_WOULD_TAKE] * 2
    assert e.counters().post_only_rejects == 2
    assert e.order_status(cross) == OrderStatus.REJECTED and e.order_status(deep) == OrderStatus.REJECTED
    assert e.order_status(fine) == OrderStatus.OPEN
    e.run_until(1000)
    assert len(e.fills()) == 0  # never filled as taker
    assert e.position() == 0.0


@pytest.mark.parametrize("trade_ts", [305, 315])
def test_a_cancel_in_flight_loses_to_a_fill_that_arrives_first(trade_ts: int) -> None:
    e = start(INSIDE, T(trade_ts, 100.0, 1.0, -1))
    oid = e.submit(BUY, 1.0, 100.0)  # alone at a new level: nobody ahead
    e.run_until(300)
    e.cancel(oid)  # reaches the exchange at 310
    e.run_until(1000)
    o = e.orders()[0]
    if trade_ts < 310:  # the print came first: filled, the cancel is too late
        assert fills_of(e) == [(oid, 100.0, 1.0)]
        assert o["status"] == OrderStatus.FILLED and o["reject"] == RejectReason.TOO_LATE
        assert e.counters().too_late_cancels == 1 and e.position() == 1.0
    else:
        assert len(e.fills()) == 0
        assert o["status"] == OrderStatus.CANCELLED and o["ts_done_ex"] == 310
        assert e.counters().too_late_cancels == 0 and e.position() == 0.0
    assert e.open_orders() == []


def test_partial_fills_move_position_fees_and_pnl_each_time() -> None:
    e = start(INSIDE, T(200, 100.1, 1.0, 1), T(300, 100.1, 1.5, 1), T(400, 100.2, 2.0, 1))
    oid = e.submit(SELL, 3.0, 100.1)  # alone at 100.1
    mid = (99.9 + 100.2) / 2
    pos = cash = fees = 0.0
    for ts, qty in ((200, 1.0), (300, 1.5), (400, 0.5)):  # the last one traded through us: the rest
        e.run_until(ts + 9)
        assert e.position() == pos  # the fill report is still on its way
        assert e.run_until(10_000, Wake.FILL) == Wake.FILL and e.now == ts + 10
        fee = 100.1 * qty * MAKER
        pos -= qty
        cash -= -1 * 100.1 * qty + fee
        fees += fee
        assert (e.position(), e.cash(), e.fees_paid()) == (pos, cash, fees)
        assert e.equity() == cash + pos * mid
    assert fills_of(e) == [(oid, 100.1, 1.0), (oid, 100.1, 1.5), (oid, 100.1, 0.5)]
    assert e.order_status(oid) == OrderStatus.FILLED and e.open_orders() == []


AMEND_BOOKS = (
    B(100, [(100.0, 5.0), (99.9, 4.0)], [(100.1, 5.0)]),
    B(150, [(100.0, 8.0), (99.9, 4.0)], [(100.1, 5.0)]),  # 3 BTC joined behind us at 100.0
    T(300, 100.0, 6.0, -1),
    T(400, 100.0, 3.0, -1),
)


def test_amend_down_keeps_priority() -> None:
    e = start(*AMEND_BOOKS)
    oid = e.submit(BUY, 2.0, 100.0)  # 5 ahead
    e.run_until(160)
    e.amend(oid, qty=1.0)
    e.run_until(1000)
    assert fills_of(e) == [(oid, 100.0, 1.0)]  # 6 traded > 5 ahead
    assert e.fills()["queue_ahead"][0] == 5.0 and e.orders()["amends"][0] == 1


def test_amend_up_loses_priority() -> None:
    e = start(*AMEND_BOOKS)
    oid = e.submit(BUY, 2.0, 100.0)
    e.run_until(160)
    e.amend(oid, qty=3.0)  # back of the queue: 8 ahead
    e.run_until(350)
    assert len(e.fills()) == 0  # 6 traded < 8 ahead
    e.run_until(1000)
    assert fills_of(e) == [(oid, 100.0, 1.0)] and e.fills()["queue_ahead"][0] == 8.0


def test_amend_price_loses_priority() -> None:
    e = start(*AMEND_BOOKS)
    oid = e.submit(BUY, 1.0, 100.0)
    e.run_until(160)
    e.amend(oid, price=99.9)  # arrives 170: 4 ahead at 99.9
    e.run_until(180)
    e.amend(oid, price=100.0)  # arrives 190: back of the 100.0 queue, 8 ahead
    e.run_until(1000)
    assert fills_of(e) == [(oid, 100.0, 1.0)]  # only from the second print (6 + 3 > 8)
    assert e.fills()["ts_ex"][0] == 400 and e.fills()["queue_ahead"][0] == 8.0
    o = e.orders()[0]
    assert o["amends"] == 2 and o["price"] == 100.0


def test_amend_to_what_already_filled_cancels_the_rest() -> None:
    e = start(INSIDE, T(200, 100.0, 1.0, -1))
    oid = e.submit(BUY, 3.0, 100.0)
    e.run_until(250)
    e.amend(oid, qty=1.0)
    e.run_until(1000)
    o = e.orders()[0]
    assert o["status"] == OrderStatus.CANCELLED and o["filled"] == 1.0 and o["qty"] == 1.0


def test_the_eleventh_request_in_a_second_is_rate_limited() -> None:
    e = start(INSIDE)
    ids = [e.submit(BUY, 0.1, 99.0) for _ in range(11)]  # all reach the exchange at 111
    e.run_until(200)
    o = e.orders()
    assert list(o["status"][:10]) == [OrderStatus.OPEN] * 10
    assert o["status"][10] == OrderStatus.REJECTED and o["reject"][10] == RejectReason.RATE_LIMIT
    assert e.counters().rate_limit_rejects == 1 and e.counters().requests == 11
    second = 1_000_000_000
    e.run_until(111 + second - 1 - 10)
    e.cancel(ids[0])  # arrives 1 ns before the window has moved past the first ten: refused
    e.run_until(111 + second - 10)
    e.cancel(ids[1])  # arrives exactly one window after them: accepted
    e.run_until(111 + second + 100)
    o = e.orders()
    assert o["status"][0] == OrderStatus.OPEN and o["reject"][0] == RejectReason.RATE_LIMIT
    assert o["status"][1] == OrderStatus.CANCELLED
    assert e.counters().rate_limit_rejects == 2


def test_own_orders_at_one_price_fill_in_fifo_order_and_a_print_is_used_once() -> None:
    e = start(INSIDE, T(200, 100.0, 1.5, -1), T(300, 100.0, 0.2, -1))
    a = e.submit(BUY, 1.0, 100.0)
    b = e.submit(BUY, 1.0, 100.0)  # behind a
    e.run_until(1000)
    assert fills_of(e) == [(a, 100.0, 1.0), (b, 100.0, 0.5), (b, 100.0, 0.2)]
    assert list(e.fills()["queue_ahead"]) == [0.0, 1.0, 1.0]  # a is ahead of b


def test_a_print_through_two_prices_serves_the_better_price_first_and_only_once() -> None:
    e = start(INSIDE, T(200, 99.8, 1.5, -1))
    a = e.submit(BUY, 1.0, 99.9)  # 5 ahead at 99.9
    b = e.submit(BUY, 1.0, 100.0)  # alone at 100.0
    e.run_until(1000)
    assert fills_of(e) == [(b, 100.0, 1.0), (a, 99.9, 0.5)]


def test_trade_through_fills_up_to_the_print_size() -> None:
    e = start(TOUCH, T(200, 99.9, 1.5, -1), T(300, 99.8, 1.0, -1))
    oid = e.submit(BUY, 2.0, 100.0)  # 5 ahead at 100.0, but prints below our price reach us first
    e.run_until(1000)
    assert fills_of(e) == [(oid, 100.0, 1.5), (oid, 100.0, 0.5)]


def test_the_opposite_best_crossing_our_price_fills_what_it_shows() -> None:
    e = start(TOUCH, B(200, [(100.2, 2.0)], [(100.3, 2.0)]))
    oid = e.submit(SELL, 2.0, 100.2)  # 2 ahead at 100.2
    e.run_until(1000)
    f = e.fills()
    assert fills_of(e) == [(oid, 100.2, 2.0)] and f["maker"][0] and f["ts_ex"][0] == 200


# The opposite best comes down to our 5 BTC bid at 100.0 showing 0.001 BTC, stays there, grows, leaves, comes back.
TOUCH_EPISODE = (
    B(100, [(100.0, 5.0)], [(100.1, 5.0)]),
    B(200, [(99.9, 5.0)], [(100.0, 0.001), (100.1, 5.0)]),  # a seller at our price: 0.001 shown
    B(300, [(99.9, 5.0)], [(100.0, 0.001), (100.1, 5.0)]),  # the same 0.001: it already traded with us
    B(400, [(99.9, 5.0)], [(100.0, 1.0), (100.1, 5.0)]),  # 0.999 more arrived at our price
    B(500, [(99.9, 5.0)], [(100.1, 5.0)]),  # the book no longer reaches us
    B(600, [(99.9, 5.0)], [(100.0, 0.5), (100.1, 5.0)]),  # new sellers at our price
)


def test_a_5_btc_bid_touched_by_a_0_001_ask_fills_0_001_not_5() -> None:
    e = start(*TOUCH_EPISODE)
    oid = e.submit(BUY, 5.0, 100.0)  # 5 ahead at 100.0
    e.run_until(250)
    f = e.fills()
    assert fills_of(e) == [(oid, 100.0, 0.001)] and f["maker"][0] and f["fee"][0] == 100.0 * 0.001 * MAKER
    e.run_until(350)
    assert len(e.fills()) == 1  # the seller still shown is the one who traded with us
    e.run_until(1000)
    assert fills_of(e)[1:] == [(oid, 100.0, 0.999), (oid, 100.0, 0.5)]
    assert list(e.fills()["ts_ex"]) == [200, 400, 600]
    o = e.orders()[0]
    assert o["status"] == OrderStatus.OPEN and o["filled"] == pytest.approx(1.5, abs=1e-12)
    assert e.position() == pytest.approx(1.5, abs=1e-12)


def test_the_hftbacktest_rule_fills_the_whole_order_at_the_first_touch() -> None:
    e = start(*TOUCH_EPISODE, cfg=dataclasses.replace(CFG, fill_rule=FillRule.HFTBACKTEST))
    oid = e.submit(BUY, 5.0, 100.0)
    e.run_until(1000)
    assert fills_of(e) == [(oid, 100.0, 5.0)] and e.fills()["ts_ex"][0] == 200
    assert e.orders()["status"][0] == OrderStatus.FILLED


def test_a_touch_fill_takes_every_level_at_or_better_than_our_price_best_order_first() -> None:
    e = start(
        B(100, [(99.8, 5.0)], [(100.3, 5.0)]),
        B(200, [(99.7, 5.0)], [(99.9, 0.3), (100.0, 0.5), (100.1, 2.0)]),
        B(300, [(99.7, 5.0)], [(99.9, 0.3), (100.0, 0.5), (100.1, 2.0)]),
    )
    high = e.submit(BUY, 0.2, 100.0)  # reaches 99.9 and 100.0: 0.8 shown
    low = e.submit(BUY, 1.0, 99.9)  # reaches 99.9 only: 0.3 shown, of which the better bid took 0.2
    e.run_until(250)
    assert [(o, p, round(q, 9)) for o, p, q in fills_of(e)] == [(high, 100.0, 0.2), (low, 99.9, 0.1)]
    e.run_until(1000)
    assert len(e.fills()) == 2  # the same book again: nothing new to take
    assert e.orders()["status"][1] == OrderStatus.OPEN


def test_a_bid_above_the_sellers_gets_only_what_they_show_at_or_below_it() -> None:
    e = start(
        B(100, [(99.8, 5.0)], [(100.3, 5.0)]),
        B(200, [(99.7, 5.0)], [(99.9, 0.3), (100.0, 0.5), (100.1, 2.0)]),
    )
    high = e.submit(BUY, 0.6, 100.0)  # the 99.9 seller and 0.3 of the 100.0 one trade with it
    low = e.submit(BUY, 1.0, 99.9)  # the 0.2 left at 100.0 is above its price: nothing
    e.run_until(1000)
    assert fills_of(e) == [(high, 100.0, 0.6)] and e.orders()["filled"][low - 1] == 0.0


def test_a_market_order_walks_the_book_net_of_the_prints_since_the_snapshot() -> None:
    asks = [(100.1, 1.0), (100.2, 2.0)]
    events = (B(100, [(100.0, 5.0)], asks), T(105, 100.1, 0.6, 1), B(300, [(100.0, 5.0)], asks))
    e = start(*events)
    oid = e.submit(BUY, 1.0, kind=OrderKind.MARKET)  # arrives at 111: 0.4 left at 100.1
    e.run_until(1000)
    assert [(o, p, round(q, 9)) for o, p, q in fills_of(e)] == [(oid, 100.1, 0.4), (oid, 100.2, 0.6)]
    hbt = start(*events, cfg=dataclasses.replace(CFG, fill_rule=FillRule.HFTBACKTEST))
    hbt.submit(BUY, 1.0, kind=OrderKind.MARKET)
    hbt.run_until(1000)
    assert fills_of(hbt) == [(1, 100.1, 1.0)]  # hftbacktest walks the snapshot as it was


def test_a_new_order_queues_behind_what_the_prints_since_the_snapshot_left() -> None:
    events = (B(100, [(100.0, 5.0)], [(100.1, 5.0)]), T(105, 100.0, 3.0, -1), T(300, 100.0, 2.5, -1))
    e = start(*events)
    oid = e.submit(BUY, 1.0, 100.0)  # arrives at 111: 5 shown, 3 traded since: 2 ahead
    e.run_until(1000)
    assert fills_of(e) == [(oid, 100.0, 0.5)] and e.fills()["queue_ahead"][0] == 2.0
    hbt = start(*events, cfg=dataclasses.replace(CFG, fill_rule=FillRule.HFTBACKTEST))
    hbt.submit(BUY, 1.0, 100.0)  # 5 ahead: 2.5 traded later does not reach us
    hbt.run_until(1000)
    assert len(hbt.fills()) == 0


@pytest.mark.parametrize(("model", "filled"), [(QueueModel.PROB, 1.0), (QueueModel.RISK_AVERSE, 0.0)])
def test_a_level_shrinking_without_trades_moves_us_up_only_under_prob(model: QueueModel, filled: float) -> None:
    cfg = dataclasses.replace(CFG, queue_model=model, queue_power=2.0)
    e = start(
        B(100, [(100.0, 5.0)], [(100.1, 5.0)]),
        B(200, [(100.0, 10.0)], [(100.1, 5.0)]),  # 5 joined behind us
        B(300, [(100.0, 6.0)], [(100.1, 5.0)]),  # 4 cancelled, no trade
        T(400, 100.0, 5.0, -1),
        cfg=cfg,
    )
    e.submit(BUY, 2.0, 100.0)
    e.run_until(1000)
    # PROB: front 5, back 5: 1 - (5/10)^2 = 3/4 of the 4 cancelled were behind, 1 ahead: 4 ahead
    assert float(e.fills()["qty"].sum()) == filled


def test_queue_after_depth_follows_hftbacktest() -> None:
    prob, risk = int(QueueModel.PROB), int(QueueModel.RISK_AVERSE)
    assert queue_after_depth(5.0, 10.0, 6.0, 0.0, prob, 2.0) == 4.0
    assert queue_after_depth(5.0, 10.0, 6.0, 0.0, risk, 2.0) == 5.0
    assert queue_after_depth(5.0, 10.0, 7.0, 3.0, prob, 2.0) == 5.0  # all explained by trades
    assert queue_after_depth(5.0, 10.0, 3.0, 4.0, prob, 2.0) == 3.0  # 4.25 by the split: never above the level
    front, back, chg = 8.0, 2.0, 1.0
    p = 1.0 - (front / (front + back)) ** 3.0  # the share of the decrease behind us
    assert queue_after_depth(front, 10.0, 9.0, 0.0, prob, 3.0) == front - (1 - p) * chg
    # the back (2) cannot absorb its share of 6: the rest comes from the front (hftbacktest's min term)
    assert queue_after_depth(front, 10.0, 4.0, 0.0, prob, 3.0) == pytest.approx(4.0, abs=1e-12)


def test_a_market_order_walks_three_levels_and_pays_the_taker_fee() -> None:
    asks = [(100.1, 1.0), (100.2, 2.0), (100.3, 1.5)]
    e = start(B(100, [(100.0, 5.0)], asks), B(300, [(100.0, 5.0)], asks))
    big = e.submit(BUY, 4.0, kind=OrderKind.MARKET)
    e.run_until(120)
    rest = e.submit(BUY, 1.0, kind=OrderKind.MARKET)  # only 0.5 left in the visible book
    e.run_until(200)
    f = e.fills()
    assert fills_of(e) == [(big, 100.1, 1.0), (big, 100.2, 2.0), (big, 100.3, 1.0), (rest, 100.3, 0.5)]
    assert not f["maker"].any()
    assert list(f["fee"]) == [p * q * TAKER for p, q in ((100.1, 1.0), (100.2, 2.0), (100.3, 1.0), (100.3, 0.5))]
    mine = f["order_id"] == big
    assert (f["price"][mine] * f["qty"][mine]).sum() / 4.0 == (100.1 * 1.0 + 100.2 * 2.0 + 100.3 * 1.0) / 4.0
    o = e.orders()
    assert o["status"][0] == OrderStatus.FILLED
    assert o["status"][1] == OrderStatus.EXPIRED and o["filled"][1] == 0.5  # the rest is not modelled
    e.run_until(301)
    again = e.submit(BUY, 1.0, kind=OrderKind.MARKET)  # a new book restores the liquidity
    e.run_until(400)
    assert fills_of(e)[-1] == (again, 100.1, 1.0)


def test_a_post_only_order_sees_the_liquidity_our_taker_order_took() -> None:
    e = start(B(100, [(100.0, 5.0)], [(100.1, 1.0), (100.3, 1.0)]))
    e.submit(BUY, 1.0, kind=OrderKind.MARKET)  # takes all of 100.1
    e.run_until(120)
    e.submit(BUY, 1.0, 100.1)  # 100.1 is empty now: rests instead of crossing
    e.run_until(200)
    assert list(e.orders()["status"]) == [OrderStatus.FILLED, OrderStatus.OPEN]


@pytest.mark.parametrize("side", [BUY, SELL])
def test_funding_is_charged_at_each_boundary_by_hand(side: Side) -> None:
    fees = Fees(funding_interval_ns=10_000, funding_rate=0.0001)
    cfg = dataclasses.replace(CFG, fees=fees)
    book = ([(100.0, 5.0)], [(100.1, 5.0)])
    e = start(B(100, *book), B(20_000, *book), cfg=cfg, sample_ns=5_000)
    e.submit(side, 2.0, kind=OrderKind.MARKET)
    e.run_until(29_000)
    price = 100.1 if side == BUY else 100.0
    mid = (100.0 + 100.1) / 2
    fee = price * 2.0 * fees.taker
    funding = side * 2.0 * mid * fees.funding_rate  # longs pay, shorts receive
    cash = 0.0
    cash -= side * price * 2.0 + fee
    after_one = cash - funding
    cash = after_one - funding  # boundaries at 10_000 and 20_000
    assert e.funding_paid() == funding + funding
    assert e.cash() == cash and e.fees_paid() == fee
    s = e.samples()
    assert list(s["ts"]) == [5_000, 10_000, 15_000, 20_000, 25_000]
    assert s["cash"][1] == after_one and s["equity"][1] == after_one + side * 2.0 * mid
    assert s["cash"][-1] == cash and s["position"][-1] == side * 2.0


def _random_market(seed: int, n: int = 300) -> Market:
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    mid, ts = 1000, 0
    for _ in range(n):
        ts += int(rng.integers(1, 30))
        if rng.random() < 0.4:
            side = 1 if rng.random() < 0.5 else -1
            px = (mid + (1 if side > 0 else 0) + int(rng.integers(0, 2)) * side) / 10
            events.append(T(ts, px, round(float(rng.uniform(0.001, 2.0)), 3), side))
        else:
            mid += int(rng.integers(-1, 2))
            bids = [((mid - k) / 10, round(float(rng.uniform(0.1, 5)), 3)) for k in range(L)]
            asks = [((mid + 1 + k) / 10, round(float(rng.uniform(0.1, 5)), 3)) for k in range(L)]
            events.append(B(ts, bids, asks))
    return market(*events)


def test_the_same_data_and_seed_give_identical_results() -> None:
    def once() -> tuple[bytes, bytes]:
        e = Engine(CFG, L)
        m = _random_market(3)
        e.load(m)
        e.run_until(int(m.books.ts_local[0]))
        for k in range(4):
            e.submit(BUY, 1.0, round(e.best_bid * 10 - k) / 10)
            e.submit(SELL, 1.0, round(e.best_ask * 10 + k) / 10)
        e.run_until(10**6)
        return e.fills().tobytes(), e.orders().tobytes()

    a, b = once(), once()
    assert a == b
    assert len(a[0]) > 0


def test_a_print_is_matched_before_the_book_with_the_same_exchange_time() -> None:
    e = start(INSIDE, T(200, 100.1, 1.0, 1), B(200, [(100.1, 1.0)], [(100.2, 5.0)]))
    oid = e.submit(SELL, 2.0, 100.1)  # alone at 100.1
    e.run_until(1000)
    # the print fills 1 from the queue, then the book that crossed us fills the rest
    assert fills_of(e) == [(oid, 100.1, 1.0), (oid, 100.1, 1.0)]


def test_cancel_all_is_one_request_and_ends_every_open_order() -> None:
    e = start(INSIDE)
    a = e.submit(BUY, 1.0, 99.9)
    b = e.submit(SELL, 1.0, 100.3)
    e.run_until(150)
    e.cancel_all()
    assert e.run_until(1000, Wake.ORDER) == Wake.ORDER and e.now == 170  # 160 at the exchange + 10
    e.run_until(1000)
    assert list(e.orders()["status"]) == [OrderStatus.CANCELLED] * 2
    assert e.counters().requests == 3 and e.open_orders() == []
    assert e.order_status(a) == e.order_status(b) == OrderStatus.CANCELLED


def test_a_later_own_order_never_has_less_ahead_than_an_earlier_one_at_its_price() -> None:
    e = start(B(100, [(100.0, 5.0)], [(100.1, 5.0)]), T(300, 100.0, 6.0, -1))
    a = e.submit(BUY, 1.0, 100.0)  # 5 ahead
    e.submit(SELL, 3.0, kind=OrderKind.MARKET)  # our own sell takes 3 of the 5 displayed at 100.0
    e.run_until(150)
    b = e.submit(BUY, 1.0, 100.0)  # 2 displayed, but it queues behind a: 5 ahead plus a's 1
    e.run_until(1000)
    assert fills_of(e)[-1] == (a, 100.0, 1.0)  # the 6 traded reach a only
    assert e.orders()["filled"][b - 1] == 0.0
    f = e.fills()
    assert list(f["queue_ahead"][f["maker"]]) == [5.0]
