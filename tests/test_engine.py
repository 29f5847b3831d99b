"""The matching engine's API: clocks and wake-ups, the local view, the live push path, the loader."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest

from core.errors import UserError
from execution.engine import Engine, Wake
from execution.market import Market, empty_market
from execution.types import EngineConfig, OrderKind, OrderStatus, RejectReason, Side
from execution.venue import Gateway
from pipelines.replay import load_market
from sim.source import SimSource
from tests.conftest import ConfigFactory
from tests.test_engine_scenarios import CFG, B, T, _random_market, market
from warehouse.db import reading
from warehouse.ingest import run_ingest

S = 1_000_000_000
FEED = 50  # feed latency in these tests: ts_local = ts_ex + 50
BUSY = dataclasses.replace(CFG, rate_window_ns=300)  # the scripted strategy's data spans a few microseconds


def slow_feed(*events: tuple) -> Market:
    m = market(*events)
    return Market(m.books._replace(ts_local=m.books.ts_ex + FEED), m.trades._replace(ts_local=m.trades.ts_ex + FEED))


@pytest.mark.kernels
def test_the_local_view_lags_the_exchange_by_the_feed_and_response_latency() -> None:
    e = Engine(CFG, 3)
    e.load(slow_feed(B(100, [(100.0, 5.0)], [(100.1, 5.0)]), B(200, [(100.1, 2.0)], [(100.2, 5.0)])))
    e.run_until(149)
    assert math.isnan(e.best_bid) and math.isnan(e.mid) and e.book().ts_local == -1
    e.run_until(150)
    assert (e.best_bid, e.best_ask, e.mid) == (100.0, 100.1, 0.5 * (100.0 + 100.1))
    oid = e.submit(Side.SELL, 2.0, 100.1)  # reaches the exchange at 160: 5 ahead
    assert e.order_status(oid) == OrderStatus.PENDING and len(e.open_orders()) == 1
    assert e.run_until(10_000, Wake.ORDER) == Wake.ORDER and e.now == 170  # the ack
    assert e.order_status(oid) == OrderStatus.OPEN
    # the bid reaches 100.1 at exchange time 200: we hear of the fill at 210 and of the book at 250
    assert e.run_until(10_000, Wake.FILL | Wake.BOOK) == Wake.FILL and e.now == 210
    assert e.position() == -2.0 and e.best_bid == 100.0
    assert e.run_until(10_000, Wake.FILL | Wake.BOOK) == Wake.BOOK and e.now == 250 and e.best_bid == 100.1
    book = e.book()
    assert book.ts_local == 250 and list(book.ask_px[:1]) == [100.2]


@pytest.mark.kernels
def test_run_until_stops_on_a_best_change_not_on_a_size_change() -> None:
    e = Engine(CFG, 3)
    e.load(
        market(
            B(100, [(100.0, 5.0)], [(100.1, 5.0)]),
            B(200, [(100.0, 7.0)], [(100.1, 5.0)]),
            B(300, [(100.0, 7.0)], [(100.2, 5.0)]),
        )
    )
    assert e.run_until(50, Wake.BOOK) == Wake.NONE and e.now == 50
    assert e.run_until(1000, Wake.BOOK) == Wake.BOOK and e.now == 101  # the first book
    assert e.run_until(1000, Wake.BOOK) == Wake.BOOK and e.now == 301
    assert e.run_until(1000, Wake.BOOK | Wake.END) == Wake.END and e.now == 301
    assert e.run_until(5000, Wake.END) == Wake.END and e.now == 301  # stays at the end of the data
    assert e.run_until(5000) == Wake.NONE and e.now == 5000


@pytest.mark.kernels
def test_requests_are_checked_and_results_have_the_shared_dtypes() -> None:
    e = Engine(CFG, 3)
    e.load(market(B(100, [(100.0, 5.0)], [(100.1, 5.0)])))
    e.run_until(101)
    with pytest.raises(ValueError, match="unknown order"):
        e.cancel(1)
    with pytest.raises(ValueError):
        e.submit(0, 1.0, 100.0)
    off_tick = e.submit(Side.BUY, 1.0, 100.05)
    off_lot = e.submit(Side.BUY, 0.0005, 100.0)
    ok = e.submit(Side.BUY, 1.0, 99.0, tag=42)
    with pytest.raises(ValueError, match="price or a qty"):
        e.amend(ok)
    e.run_until(200)
    with pytest.raises(ValueError, match="before now"):
        e.run_until(199)
    o = e.orders()
    assert list(o["order_id"]) == [off_tick, off_lot, ok]
    assert list(o["status"]) == [OrderStatus.REJECTED, OrderStatus.REJECTED, OrderStatus.OPEN]
    assert list(o["reject"][:2]) == [RejectReason.INVALID] * 2 and e.counters().invalid == 2
    assert o["ts_done_ex"][2] == -1 and o["ts_arrive_ex"][2] == 111 and o["ts_submit_local"][2] == 101
    assert o["tag"][2] == 42 and o["post_only"][2]
    assert [x.order_id for x in e.open_orders()] == [ok] and e.open_orders()[0].tag == 42
    m = e.submit(Side.SELL, 1.0, kind=OrderKind.MARKET, tag=7)
    e.run_until(300)
    f = e.fills()
    assert len(f) == 1 and f["order_id"][0] == m and f["tag"][0] == 7 and f["side"][0] == -1
    assert math.isnan(e.orders()["price"][3]) and not e.orders()["post_only"][3]


def test_describe_is_json_and_names_the_queue_model() -> None:
    d = Engine(CFG, 5, sample_ns=S).describe()
    json.dumps(d)
    assert d["queue_model"] == "PROB" and d["levels"] == 5 and d["entry_latency_ns"] == 10
    assert d["fees"]["taker"] == CFG.fees.taker and "impact" in d


def test_the_engine_is_a_venue() -> None:
    v: Gateway = Engine(CFG, 3)  # mypy checks the protocol; the rest is a smoke test
    assert v.position() == 0.0 and v.open_orders() == [] and math.isnan(v.book().mid)


def test_market_data_refuses_corrupt_input() -> None:
    good = market(B(100, [(100.0, 5.0)], [(100.1, 5.0)]), B(200, [(100.0, 5.0)], [(100.1, 5.0)]))
    with pytest.raises(ValueError, match="backwards"):
        good._replace(books=good.books._replace(ts_ex=good.books.ts_ex[::-1].copy())).validate()
    with pytest.raises(ValueError, match="crossed"):
        market(B(100, [(100.2, 5.0)], [(100.1, 5.0)]))
    with pytest.raises(ValueError, match="float64"):
        good._replace(books=good.books._replace(bid_px=good.books.bid_px.astype(np.float32))).validate()
    with pytest.raises(ValueError, match="positive size"):
        market(B(100, [(100.0, 5.0)], [(100.1, 5.0)]), T(150, 100.0, 0.0, 1))
    e = Engine(CFG, 3)
    e.load(good)
    with pytest.raises(ValueError, match="back in exchange time"):
        e.push_book(150, 151, np.array([100.0]), np.array([1.0]), np.array([100.1]), np.array([1.0]))
    assert empty_market(3).n_events == 0


def test_live_events_make_the_held_buffers_again_once_per_thousands_not_per_event() -> None:
    """Books and trades pushed one at a time while the engine keeps up (a live runner): the held
    buffers are made again once per HELD_MIN events, not for each, and the kernels see every event."""
    from execution.held_market import HELD_MIN

    e = Engine(CFG, 3)
    held = e.market._hold
    made = 0

    def counted(*args: Any, **kwargs: Any) -> None:
        nonlocal made
        made += 1
        held(*args, **kwargs)

    e.market._hold = counted  # type: ignore[method-assign]
    pushes = 2 * HELD_MIN + 10
    for i in range(pushes):
        t = 1_000 + 10 * i
        px = 100.0 + (i % 7) / 10
        e.push_book(t, t + 1, np.array([px]), np.array([1.0]), np.array([px + 0.1]), np.array([1.0]))
        e.push_trade(t, t + 1, px + 0.1, 0.5, 1)
        e.run_until(t + 2, Wake.NONE)
        assert e.best_bid == px  # the kernels saw this event
    assert 0 < made <= 2 * (pushes // HELD_MIN + 1), made  # books and trades; it was 2 per push


def _strategy(e: Engine, m: Market, push: bool) -> None:
    """A busy scripted strategy: quotes, amends, cancels and market orders on wake-ups."""
    rng = np.random.default_rng(11)
    events = sorted(
        [(int(t), 0, i) for i, t in enumerate(m.trades.ts_ex)] + [(int(t), 1, i) for i, t in enumerate(m.books.ts_ex)]
    )
    fed = 0

    def feed(t: int) -> None:
        nonlocal fed
        while fed < len(events) and events[fed][0] <= t:
            _, kind, i = events[fed]
            if kind == 0:
                e.push_trade(int(m.trades.ts_ex[i]), int(m.trades.ts_local[i]), float(m.trades.price[i]),
                             float(m.trades.qty[i]), int(m.trades.side[i]))  # fmt: skip
            else:
                e.push_book(int(m.books.ts_ex[i]), int(m.books.ts_local[i]), m.books.bid_px[i], m.books.bid_qty[i],
                            m.books.ask_px[i], m.books.ask_qty[i])  # fmt: skip
            fed += 1

    end = int(max(m.books.ts_local[-1], m.trades.ts_local[-1])) + 100
    t = int(m.books.ts_local[0])
    while e.now < end:
        if push:
            feed(t)
        if e.run_until(t, Wake.FILL | Wake.BOOK) == Wake.NONE:
            t += 37
        if math.isnan(e.mid):
            continue
        mine = e.open_orders()
        u = rng.random()
        if len(mine) < 4:
            side = Side.BUY if u < 0.5 else Side.SELL
            px = e.best_bid if side == Side.BUY else e.best_ask
            e.submit(side, 0.5, round(px * 10 - int(rng.integers(0, 2)) * side) / 10, tag=int(rng.integers(100)))
        elif u < 0.3:
            o = mine[int(rng.integers(len(mine)))]
            e.amend(o.order_id, price=round((e.best_bid if o.side > 0 else e.best_ask) * 10) / 10)
        elif u < 0.5:
            e.amend(mine[0].order_id, qty=round(float(rng.uniform(0.1, 1.0)), 3))
        elif u < 0.7:
            e.cancel(mine[-1].order_id)
        elif u < 0.75:
            e.submit(Side.BUY if rng.random() < 0.5 else Side.SELL, 0.3, kind=OrderKind.MARKET)
        elif u < 0.78:
            e.cancel_all()


@pytest.mark.kernels
def test_the_live_push_path_gives_the_same_results_as_the_loaded_block() -> None:
    m = _random_market(21, n=400)
    loaded, pushed = Engine(BUSY, 3, sample_ns=500), Engine(BUSY, 3, sample_ns=500)
    loaded.load(m)
    _strategy(loaded, m, push=False)
    _strategy(pushed, m, push=True)
    assert len(loaded.fills()) > 10 and len(loaded.orders()) > 20
    assert loaded.fills().tobytes() == pushed.fills().tobytes()
    assert loaded.orders().tobytes() == pushed.orders().tobytes()
    assert loaded.samples().tobytes() == pushed.samples().tobytes()
    assert loaded.counters() == pushed.counters()
    assert (loaded.position(), loaded.cash()) == (pushed.position(), pushed.cash())
    o = loaded.orders()
    assert (o["status"] == OrderStatus.CANCELLED).any() and (o["amends"] > 0).any()


@pytest.mark.kernels
def test_a_loaded_block_is_held_without_a_copy_and_never_written() -> None:
    # the first block of a fresh engine is held as it is (hours of a replay are hundreds of MB):
    # a run with taker and maker fills must leave it as it was, and a second block still appends
    m = _random_market(8, n=400)
    before = [a.copy() for a in (*m.books, *m.trades)]
    e = Engine(BUSY, 3, sample_ns=500)
    e.load(m)
    assert np.shares_memory(e.arrays().bid_qty, m.books.bid_qty)
    _strategy(e, m, push=False)
    first = e.fills()
    assert len(first) > 10
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip((*m.books, *m.trades), before, strict=True))
    later = _random_market(9, n=50)
    shift = int(m.books.ts_ex[-1]) + 1
    e.load(
        Market(
            later.books._replace(ts_ex=later.books.ts_ex + shift, ts_local=later.books.ts_local + shift),
            later.trades._replace(ts_ex=later.trades.ts_ex + shift, ts_local=later.trades.ts_local + shift),
        )
    )
    assert not np.shares_memory(e.arrays().bid_qty, m.books.bid_qty)  # copied into a bigger buffer
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip((*m.books, *m.trades), before, strict=True))
    # the kernels see every market array read-only (one type), so a read-only block, as the warehouse
    # reader returns it, is held without a copy as well, and replays to the same fills
    assert not any(a.flags.writeable for a in (e.arrays().bid_qty, e.arrays().trade_ts_ex))
    frozen = m._replace(books=m.books._replace(bid_qty=m.books.bid_qty.copy()))
    frozen.books.bid_qty.flags.writeable = False
    f = Engine(BUSY, 3, sample_ns=500)
    f.load(frozen)
    assert np.shares_memory(f.arrays().bid_qty, frozen.books.bid_qty)
    _strategy(f, frozen, push=False)
    assert np.array_equal(f.fills(), first)


@pytest.mark.kernels
def test_a_run_is_deterministic() -> None:
    m = _random_market(5, n=400)
    runs = []
    for _ in range(2):
        e = Engine(BUSY, 3)
        e.load(m)
        _strategy(e, m, push=False)
        runs.append((e.fills().tobytes(), e.orders().tobytes(), e.samples().tobytes()))
    assert runs[0] == runs[1] and len(runs[0][0]) > 0


def test_load_market_reads_the_warehouse_back(make_config: ConfigFactory) -> None:
    c = make_config(warehouse={"snapshot_levels": 5})
    assert run_ingest(SimSource(c.sim, c.instrument, 50, 20 * S), c, detail="test").status == "completed"
    m = load_market(c, None, None)
    with reading(c.resolve(c.warehouse.path)) as con:
        snaps = con.execute(
            "SELECT ts_exchange_ns, ts_local_ns, bid_px, bid_qty, ask_px, ask_qty FROM snapshots "
            "ORDER BY ts_exchange_ns, update_id"
        ).fetchall()
        trades = con.execute(
            "SELECT ts_exchange_ns, ts_local_ns, price, qty, side FROM trades "
            "ORDER BY ts_exchange_ns, ts_local_ns, trade_id"
        ).fetchall()
    assert m.levels == 5 and len(m.books.ts_ex) == len(snaps) > 100 and len(m.trades.ts_ex) == len(trades) > 10
    for j, name in enumerate(("ts_ex", "ts_local", "bid_px", "bid_qty", "ask_px", "ask_qty")):
        want = np.array([row[j] for row in snaps], dtype=np.int64 if j < 2 else np.float64)
        np.testing.assert_array_equal(getattr(m.books, name), want)
    for j, name in enumerate(("ts_ex", "ts_local", "price", "qty", "side")):
        np.testing.assert_array_equal(getattr(m.trades, name), [row[j] for row in trades])
    lo, hi = int(m.books.ts_ex[len(snaps) // 3]), int(m.books.ts_ex[2 * len(snaps) // 3])
    w = load_market(c, lo, hi, levels=2)
    keep = (m.books.ts_ex >= lo) & (m.books.ts_ex < hi)
    np.testing.assert_array_equal(w.books.ask_qty, m.books.ask_qty[keep, :2])
    np.testing.assert_array_equal(w.trades.ts_ex, m.trades.ts_ex[(m.trades.ts_ex >= lo) & (m.trades.ts_ex < hi)])
    with pytest.raises(UserError, match="5 book levels"):
        load_market(c, None, None, levels=6)
    e = Engine(EngineConfig(), m.levels)
    e.load(m)
    assert e.run_until(int(m.books.ts_local[-1]) + S, Wake.END) == Wake.END
    assert e.now == int(m.books.ts_local[-1]) and e.best_bid == m.books.bid_px[-1, 0]


@pytest.mark.kernels
def test_fills_come_in_whole_lots_and_float_residue_never_fills() -> None:
    from execution.records import whole_lots

    assert whole_lots(2.0, 0.7, 0.001) == 0.7  # covers the rest
    assert whole_lots(0.0025, 1.0, 0.001) == pytest.approx(0.002)  # whole lots only
    assert whole_lots(1e-17, 1.0, 0.001) == 0.0  # residue of a float subtraction
    assert whole_lots(0.5, 1e-17, 0.001) == 0.0
    assert whole_lots(0.0009, 1.0, 0.001) == 0.0


def test_records_grow_with_every_row_and_field_kept() -> None:
    """The engine's state lives in structured records (execution.records); growing one copies its
    bytes, so every field of every row survives, and the new rows are empty."""
    from execution.held_market import grow
    from execution.records import ORDER_ROW
    from execution.types import FILL_DTYPE

    rng = np.random.default_rng(3)
    for dtype in (ORDER_ROW, FILL_DTYPE):  # aligned, and packed (an int8 and a bool among int64 / float64)
        rows = np.zeros(37, dtype)
        for name in dtype.names or ():
            rows[name] = rng.integers(-100, 100, len(rows)) if dtype[name].kind in "iu" else rng.normal(size=len(rows))
        rows["side"] = rng.choice([-1, 1], len(rows))
        out = grow(rows[5:], 40)
        assert len(out) == 64 and out.dtype == dtype
        assert out[:32].tobytes() == rows[5:].tobytes()
        assert not out[32:].view(np.uint8).any()
    plain = grow(np.arange(6.0).reshape(3, 2), 4, math.nan)
    assert plain.shape == (6, 2) and (plain[:3].ravel() == np.arange(6.0)).all() and np.isnan(plain[3:]).all()


@pytest.mark.kernels
def test_the_results_are_the_engine_records() -> None:
    """fills() hands out the fill rows the kernels wrote, counters() the state row's counters by name."""
    e = Engine(CFG, 3)
    e.load(
        market(B(100, [(100.0, 5.0)], [(100.1, 5.0)]), T(150, 100.1, 1.0, 1), B(200, [(100.0, 5.0)], [(100.1, 4.0)]))
    )
    e.run_until(110)  # the first book has arrived (the feed latency is 0 here)
    e.submit(Side.BUY, 0.5, kind=OrderKind.MARKET, tag=9)
    e.submit(Side.SELL, 0.5, 100.0, tag=4)  # post-only at the bid: rejected
    e.run_until(10**6)
    fills = e.fills()
    assert len(fills) == 1 and fills["tag"][0] == 9 and fills["side"][0] == 1 and not fills["maker"][0]
    assert fills["price"][0] == 100.1 and fills["qty"][0] == 0.5 and fills["ts_local"][0] > fills["ts_ex"][0]
    counters = e.counters()
    assert counters.requests == 2 and counters.post_only_rejects == 1 and counters.invalid == 0
    assert e.orders()["reject"].tolist() == [0, int(RejectReason.POST_ONLY_WOULD_TAKE)]
