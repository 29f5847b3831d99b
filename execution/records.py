"""The matching engine's state as named records: the layouts, the writers of fills, reports and
equity samples, and the delivery of reports to the local view.

The kernels (``execution.queue``, ``execution.kernel``) and the ``Engine`` wrapper share one
``Arrays`` tuple: a one-row ``STATE_DTYPE`` record (clocks, cursors, counters, the configuration
and the account), the market buffers, and structured arrays of orders, requests and reports in
flight, fills and equity samples. Every array is owned by ``Engine``; the kernels only write into
it and report when it needs more room.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from execution.market import MarketData
from execution.types import OrderStatus

INF = 9_223_372_036_854_775_807  # int64 max: "never"

I8, F8 = np.int64, np.float64

# The engine's scalar state: one row, fields read and written by name (``st = e.state[0]``).
STATE_DTYPE = np.dtype(
    [
        ("ex_book", I8),  # next book event the exchange processes
        ("ex_trade", I8),  # next trade the exchange processes
        ("loc_book", I8),  # next book event delivered to us
        ("n_book", I8),  # book events held
        ("n_trade", I8),  # trades held
        ("now", I8),  # local clock
        ("ex_now", I8),  # exchange clock
        ("last_delivery", I8),  # local time of the last book delivery (deliveries stay in order)
        ("next_sample", I8),
        ("next_funding", I8),
        ("req_head", I8),  # requests in flight: requests[req_head:req_n]
        ("req_n", I8),
        ("rep_head", I8),  # reports in flight: reports[rep_head:rep_n]
        ("rep_n", I8),
        ("n_orders", I8),
        ("n_fills", I8),
        ("n_samples", I8),
        ("seq", I8),  # queue priority counter
        ("n_open", I8, (2,)),  # open orders per side: buys, sells
        ("rate_head", I8),  # oldest slot of the rate-limit ring
        ("depleted", I8),  # our taker fills consumed visible liquidity since the last book event
        ("finite", I8),  # a backtest block: the data ends (Wake.END can fire)
        ("started", I8),  # sample / funding boundaries initialised
        # counters (engine.Counters)
        ("requests", I8),
        ("post_only_rejects", I8),
        ("rate_limit_rejects", I8),
        ("too_late_cancels", I8),
        ("too_late_amends", I8),
        ("invalid", I8),
        # configuration
        ("entry_ns", I8),
        ("response_ns", I8),
        ("rate_limit", I8),
        ("rate_window_ns", I8),
        ("sample_ns", I8),
        ("funding_ns", I8),
        ("queue_model", I8),
        ("fill_rule", I8),  # types.FillRule
        ("tick", F8),
        ("lot", F8),
        ("maker", F8),
        ("taker", F8),
        ("funding_rate", F8),
        ("power", F8),
        # the account: exchange side (the truth), then as the delivered reports tell it (local view)
        ("position", F8),
        ("cash", F8),
        ("fees", F8),
        ("funding", F8),
        ("l_position", F8),
        ("l_cash", F8),
        ("l_fees", F8),
        ("l_funding", F8),
        ("touch", F8, (2,)),  # opposite volume our buys / sells took by touch fills while the book stays crossed
    ]
)

# One order as the kernels track it (row = order_id - 1); ``l_*``: the local view.
ORDER_STATE_DTYPE = np.dtype(
    [
        ("side", I8),
        ("kind", I8),
        ("post_only", I8),
        ("tick", I8),  # limit price in ticks
        ("status", I8),
        ("reject", I8),  # the last reject of any request on this order
        ("amends", I8),
        ("tag", I8),
        ("ts_submit", I8),
        ("ts_arrive", I8),
        ("ts_done", I8),
        ("seq", I8),  # time priority at its price (lower = earlier)
        ("known", I8),  # queue ahead known (the level has been visible since it rested)
        ("l_status", I8),
        ("l_reject", I8),
        ("price", F8),
        ("qty", F8),
        ("filled", F8),
        ("ahead", F8),  # market volume ahead of us at our price (our own orders excluded)
        ("level", F8),  # displayed size at our price at the last book event that showed it
        ("traded", F8),  # traded at our price since that book event
        ("qa0", F8),  # BTC ahead (market + our earlier orders) when it joined the queue at its price
        ("l_price", F8),
        ("l_qty", F8),
        ("l_filled", F8),
    ]
)

# A request in flight to the exchange (price / qty NaN: unchanged, for an amend).
REQUEST_DTYPE = np.dtype([("ts", I8), ("kind", I8), ("oid", I8), ("price", F8), ("qty", F8)])
REQ_NEW = 0
REQ_AMEND = 1
REQ_CANCEL = 2
REQ_CANCEL_ALL = 3

# A report in flight to us: ORDER (status, reject; a, b, c = price, qty, filled), FILL (status =
# side; a, b, c = price, qty, fee), FUNDING (a = amount).
REPORT_DTYPE = np.dtype(
    [("ts", I8), ("kind", I8), ("oid", I8), ("status", I8), ("reject", I8), ("a", F8), ("b", F8), ("c", F8)]
)
REP_ORDER = 0
REP_FILL = 1
REP_FUNDING = 2

# The equity curve on the exchange clock: cash is net of fees and funding, equity = cash + position * mid.
SAMPLE_DTYPE = np.dtype([("ts", I8), ("mid", F8), ("position", F8), ("cash", F8), ("equity", F8)])

# Wake flags (execution.engine.Wake mirrors them); W_SPACE asks the wrapper for bigger arrays.
W_FILL = 1
W_ORDER = 2
W_BOOK = 4
W_END = 8
W_SPACE = 1 << 30

OPEN = int(OrderStatus.OPEN)
FILLED = int(OrderStatus.FILLED)
CANCELLED = int(OrderStatus.CANCELLED)
REJECTED = int(OrderStatus.REJECTED)
EXPIRED = int(OrderStatus.EXPIRED)
PENDING = int(OrderStatus.PENDING)


class Arrays(NamedTuple):
    """Everything the kernels read and write (numpy arrays, owned by ``Engine``)."""

    state: np.ndarray  # STATE_DTYPE[1]
    market: MarketData  # the held book events and trades
    dep: np.ndarray  # float64[2, L]: what our taker fills took from the current book, per side and level
    rate: np.ndarray  # int64 ring: arrival times of the last ``rate_limit`` accepted requests
    orders: np.ndarray  # ORDER_STATE_DTYPE[cap]
    book: np.ndarray  # int64[2, cap]: our open orders per side, in price-time priority (row indices)
    requests: np.ndarray  # REQUEST_DTYPE[cap]
    reports: np.ndarray  # REPORT_DTYPE[cap]
    fills: np.ndarray  # types.FILL_DTYPE[cap]
    samples: np.ndarray  # SAMPLE_DTYPE[cap]


@nb.njit(inline="always")
def to_tick(price: float, tick: float) -> int:
    """The price in whole ticks (prices in the data sit on the tick grid up to float error)."""
    return int(np.floor(price / tick + 0.5))


@nb.njit()
def on_grid(x: float, step: float) -> bool:
    """x is a positive multiple of step (up to float error)."""
    k = x / step
    return x > 0.0 and abs(k - np.floor(k + 0.5)) < 1e-6


@nb.njit()
def whole_lots(avail: float, rem: float, lot: float) -> float:
    """What a fill of up to ``avail`` gives an order with ``rem`` left: everything when it covers
    the rest, else whole lots (hftbacktest's queue models fill in lots as well)."""
    if rem <= 1e-9 * lot or avail <= 1e-9 * lot:
        return 0.0  # float residue is not volume: never a fill of 1e-17 BTC
    if avail >= rem - 1e-6 * lot:
        return rem
    q = np.floor(avail / lot + 1e-6) * lot
    if q <= 0.0:
        return 0.0
    return avail if abs(q - avail) < 1e-9 * lot else q


@nb.njit()
def push_report(
    e: Arrays, ts: int, kind: int, oid: int, status: int, reject: int, abc: tuple[float, float, float]
) -> None:
    """Queue one report for local delivery at ``ts`` (the wrapper guarantees the room)."""
    st = e.state[0]
    rep = e.reports[st.rep_n]
    rep.ts, rep.kind, rep.oid, rep.status, rep.reject = ts, kind, oid, status, reject
    rep.a, rep.b, rep.c = abc
    st.rep_n += 1


@nb.njit()
def report_order(e: Arrays, idx: int, reject: int) -> None:
    """Report the order's current state (status, price, size, filled) and how the request that
    changed it went (``reject``, 0 = done) to us."""
    st, o = e.state[0], e.orders[idx]
    push_report(e, st.ex_now + st.response_ns, REP_ORDER, idx + 1, o.status, reject, (o.price, o.qty, o.filled))


@nb.njit()
def finish(e: Arrays, idx: int, status: int, reject: int) -> None:
    """End the order's life with ``status`` now (exchange clock) and report it."""
    o = e.orders[idx]
    o.status = status
    o.ts_done = e.state[0].ex_now
    if reject:
        o.reject = reject
    report_order(e, idx, reject)


@nb.njit()
def record_fill(e: Arrays, idx: int, price: float, qty: float, maker: bool) -> bool:
    """Fill ``qty`` of order ``idx`` at ``price``: position, cash and fees move now; the fill
    reaches us after the response latency. True when the order is now completely filled."""
    st, o = e.state[0], e.orders[idx]
    side = o.side
    fee = price * qty * (st.maker if maker else st.taker)
    st.position += side * qty
    st.cash -= side * price * qty + fee
    st.fees += fee
    o.filled += qty
    ts = st.ex_now
    f = e.fills[st.n_fills]
    f.ts_ex, f.ts_local, f.order_id, f.tag, f.side = ts, ts + st.response_ns, idx + 1, o.tag, side
    f.maker, f.price, f.qty, f.fee, f.queue_ahead = maker, price, qty, fee, o.qa0
    st.n_fills += 1
    push_report(e, ts + st.response_ns, REP_FILL, idx + 1, side, 0, (price, qty, fee))
    done = bool(o.qty - o.filled <= 1e-6 * st.lot)
    if done:
        finish(e, idx, FILLED, 0)
    return done


@nb.njit()
def boundary(e: Arrays) -> None:
    """Funding at a funding time, then an equity sample. Bybit charges position value x funding
    rate (longs pay shorts when the rate is positive); the mid stands in for the mark price."""
    st = e.state[0]
    b = min(st.next_sample, st.next_funding)
    st.ex_now = max(st.ex_now, b)
    row = st.ex_book - 1
    mid = 0.5 * (e.market.bid_px[row, 0] + e.market.ask_px[row, 0]) if row >= 0 else np.nan
    if st.next_funding == b:
        if not np.isnan(mid) and st.position != 0.0:
            amount = st.position * mid * st.funding_rate
            st.cash -= amount
            st.funding += amount
            push_report(e, b + st.response_ns, REP_FUNDING, 0, 0, 0, (amount, 0.0, 0.0))
        st.next_funding += st.funding_ns
    if st.next_sample == b:
        if row >= 0:
            sm = e.samples[st.n_samples]
            sm.ts, sm.mid, sm.position, sm.cash = b, mid, st.position, st.cash
            sm.equity = st.cash + st.position * mid if st.position != 0.0 else st.cash
            st.n_samples += 1
        st.next_sample += st.sample_ns


@nb.njit()
def deliver_report(e: Arrays) -> int:
    """Apply one report to the local view; the wake flags it raises."""
    st = e.state[0]
    rep = e.reports[st.rep_head]
    st.rep_head += 1
    idx = rep.oid - 1
    if rep.kind == REP_FILL:
        side, price, qty, fee = rep.status, rep.a, rep.b, rep.c
        st.l_position += side * qty
        st.l_cash -= side * price * qty + fee
        st.l_fees += fee
        e.orders[idx].l_filled += qty
        return W_FILL | W_ORDER
    if rep.kind == REP_FUNDING:
        st.l_cash -= rep.a
        st.l_funding += rep.a
        return 0
    if idx >= 0:
        o = e.orders[idx]
        o.l_status, o.l_reject = rep.status, rep.reject
        o.l_price, o.l_qty, o.l_filled = rep.a, rep.b, rep.c
    return W_ORDER
