"""The matching engine's state as numpy structured records with named fields: the engine's state
and configuration rows, the two accounts, orders, requests and reports in flight (fills and equity
samples are ``types.FILL_DTYPE`` / ``SAMPLE_DTYPE`` rows, as the engine hands them out); the
writers of fills, reports and equity samples; and the delivery of reports to the local view.

The kernels (``execution.queue``, ``execution.exchange``, ``execution.kernel``) and the ``Engine``
wrapper share these records; numba reads and writes a row's fields in place (``e.orders[i].ahead``,
``e.state[0].now``). Every array is owned by ``Engine``; the kernels only write into it and report
when it needs more room.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from core.jit import kernel_jit, typed_int
from execution.types import FILL_DTYPE, SAMPLE_DTYPE, OrderStatus

INF = 9_223_372_036_854_775_807  # int64 max: "never"
INT, FLOAT = np.int64, np.float64


def _record(fields: Any) -> np.dtype:
    """A structured dtype whose rows are ``np.record``: fields read and written as attributes
    (``row.now``) by numpy too, so the kernels also run interpreted (NUMBA_DISABLE_JIT=1, the
    coverage pass), where a plain structured row (np.void) has no attributes."""
    return np.dtype((np.record, np.dtype(fields)))


# The engine's moving state, one row (``Arrays.state[0]``).
STATE_ROW = _record(
    [
        # where the kernels are in the held market (execution.held_market moves the cursors when it
        # drops the rows they are done with)
        ("ex_book", INT),  # next book event the exchange processes
        ("ex_trade", INT),  # next trade the exchange processes
        ("local_book", INT),  # next book event delivered to us
        ("n_books", INT),  # book events held
        ("n_trades", INT),  # trades held
        ("finite", INT),  # a backtest block: the data ends (Wake.END can fire)
        # the clocks
        ("now", INT),  # local clock
        ("ex_now", INT),  # exchange clock
        ("last_delivery", INT),  # local time of the last book delivery (deliveries stay in order)
        ("started", INT),  # sample / funding boundaries initialised
        ("next_sample", INT),
        ("next_funding", INT),
        ("next_timer", INT),  # a compiled strategy's next timer wake (local clock; FAR_PAST: not started)
        # what is in flight and what was written
        ("req_head", INT),  # requests in flight: requests[req_head:req_n]
        ("req_n", INT),
        ("rep_head", INT),  # reports in flight: reports[rep_head:rep_n]
        ("rep_n", INT),
        ("n_orders", INT),  # orders sent (rows of orders in use)
        ("first_live", INT),  # orders below this row are done in the local view (compiled strategies skip them)
        ("n_fills", INT),
        ("n_samples", INT),
        # the matching
        ("seq", INT),  # queue priority counter
        ("n_open", INT, (2,)),  # open orders per side: [0] buys, [1] sells (rows of opn in use)
        ("rate_head", INT),  # oldest slot of the rate-limit ring
        ("depleted", INT),  # our taker fills consumed visible liquidity since the last book event
        ("touched", FLOAT, (2,)),  # opposite volume our buys / sells took by touch fills while the book stays crossed
        # request outcomes at the exchange (engine.Counters, the same names)
        ("requests", INT),
        ("post_only_rejects", INT),
        ("rate_limit_rejects", INT),
        ("too_late_cancels", INT),
        ("too_late_amends", INT),
        ("invalid", INT),
    ]
)

# The engine's configuration, one row (``Arrays.config[0]``), set once.
CONFIG_ROW = _record(
    [
        ("entry_ns", INT),  # latency of a request to the exchange
        ("response_ns", INT),  # latency of a report back to us
        ("rate_limit", INT),  # requests per window (0: none)
        ("rate_window_ns", INT),
        ("sample_ns", INT),  # equity sample interval
        ("funding_ns", INT),  # funding interval
        ("queue_model", INT),  # types.QueueModel
        ("fill_rule", INT),  # types.FillRule
        ("tick", FLOAT),
        ("lot", FLOAT),
        ("maker", FLOAT),  # fee rates
        ("taker", FLOAT),
        ("funding_rate", FLOAT),
        ("queue_power", FLOAT),  # the PROB queue model's n
    ]
)

# The account, twice (``Arrays.accounts``): [EXCHANGE] the truth, [LOCAL] as the delivered reports tell it.
ACCOUNT_ROW = _record([("position", FLOAT), ("cash", FLOAT), ("fees", FLOAT), ("funding", FLOAT)])
EXCHANGE = 0
LOCAL = 1

# One order (``Arrays.orders``; row = order id - 1), as the exchange holds it and as reported to us.
ORDER_ROW = _record(
    [
        ("side", INT),
        ("kind", INT),  # types.OrderKind
        ("post_only", INT),
        ("tag", INT),
        ("status", INT),  # types.OrderStatus
        ("reject", INT),  # the last reject of any request on this order (types.RejectReason)
        ("amends", INT),
        ("ts_submit_local", INT),
        ("ts_arrive_ex", INT),
        ("ts_done_ex", INT),
        ("price", FLOAT),
        ("qty", FLOAT),
        ("filled", FLOAT),
        # its place in the queue at its price
        ("tick", INT),  # limit price in ticks
        ("seq", INT),  # time priority at its price (lower = earlier)
        ("known", INT),  # queue ahead known (the level has been visible since it rested)
        ("ahead", FLOAT),  # market volume ahead of us at our price (our own orders excluded)
        ("level", FLOAT),  # displayed size at our price at the last book event that showed it
        ("traded", FLOAT),  # traded at our price since that book event
        ("queue_ahead", FLOAT),  # BTC ahead (market + our earlier orders) when it joined the queue at its price
        # the local view: as last reported
        ("local_status", INT),
        ("local_reject", INT),
        ("local_price", FLOAT),
        ("local_qty", FLOAT),
        ("local_filled", FLOAT),
    ]
)

# The engine's fills and equity samples: the public records (types.FILL_DTYPE / SAMPLE_DTYPE) as rows
FILL_ROW = _record(FILL_DTYPE)
SAMPLE_ROW = _record(SAMPLE_DTYPE)

# A request in flight to the exchange (``Arrays.requests``): an amend's NaN price or qty is unchanged.
REQUEST_ROW = _record([("ts", INT), ("kind", INT), ("order_id", INT), ("price", FLOAT), ("qty", FLOAT)])
REQ_NEW = 0
REQ_AMEND = 1
REQ_CANCEL = 2
REQ_CANCEL_ALL = 3

# A report in flight to us (``Arrays.reports``). ORDER: the order's status, price, qty and filled
# (amount); FILL: side (status), price, qty, fee (amount); FUNDING: the amount paid.
REPORT_ROW = _record(
    [
        ("ts", INT),  # local delivery time
        ("kind", INT),  # REP_ORDER, REP_FILL, REP_FUNDING
        ("order_id", INT),
        ("status", INT),
        ("reject", INT),
        ("price", FLOAT),
        ("qty", FLOAT),
        ("amount", FLOAT),
    ]
)
# numpy ints (core.jit.typed_int): a Python int constant or literal passed to a kernel is a compile
# of that kernel for each value
REP_ORDER = typed_int(0)
REP_FILL = typed_int(1)
REP_FUNDING = typed_int(2)
ZERO = typed_int(0)  # a reject of 0 (done), no order id, no status

# Wake flags (execution.engine.Wake mirrors them); W_SPACE asks the wrapper for bigger arrays.
W_FILL = 1
W_ORDER = 2
W_BOOK = 4
W_END = 8
W_TIMER = 16  # a compiled strategy's timer (execution.compiled)
W_SPACE = 1 << 30

OPEN = typed_int(OrderStatus.OPEN)
FILLED = typed_int(OrderStatus.FILLED)
CANCELLED = typed_int(OrderStatus.CANCELLED)
REJECTED = typed_int(OrderStatus.REJECTED)
EXPIRED = typed_int(OrderStatus.EXPIRED)


class Arrays(NamedTuple):
    """Every array of one engine, by name: what ``execution.kernel.advance`` and a compiled
    strategy's step (execution.compiled) take. Valid until the engine grows them."""

    state: np.ndarray  # STATE_ROW[1]: clocks, cursors, counters
    config: np.ndarray  # CONFIG_ROW[1]
    accounts: np.ndarray  # ACCOUNT_ROW[2]: [EXCHANGE], [LOCAL]
    book_ts_ex: np.ndarray  # the held market (execution.market.Market: its books but the epoch, its trades)
    book_ts_local: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray
    trade_ts_ex: np.ndarray
    trade_ts_local: np.ndarray
    trade_price: np.ndarray
    trade_qty: np.ndarray
    trade_side: np.ndarray
    dep: np.ndarray  # what our taker fills took from the current book, per side and level
    orders: np.ndarray  # ORDER_ROW
    opn: np.ndarray  # open orders (rows) per side in price-time priority
    requests: np.ndarray  # REQUEST_ROW, in flight: [state.req_head, state.req_n)
    reports: np.ndarray  # REPORT_ROW, in flight: [state.rep_head, state.rep_n)
    fills: np.ndarray  # FILL_ROW (types.FILL_DTYPE)
    samples: np.ndarray  # SAMPLE_ROW (types.SAMPLE_DTYPE)
    rl: np.ndarray  # the rate-limit ring


class Row:
    """One row of a record array, for Python: each field as a plain one-element view (``row.now[0]``,
    written in place), which numpy reads and writes several times faster than a field of the row
    itself (np.void). Valid while the array is not replaced."""

    def __init__(self, rows: np.ndarray, i: int = 0) -> None:
        one = rows[i : i + 1]
        for name in rows.dtype.names or ():
            setattr(self, name, one[name])

    def __getattr__(self, name: str) -> np.ndarray:  # for the type checker: every field is an array
        raise AttributeError(name)


@kernel_jit(inline="always")
def to_tick(price: float, tick: float) -> int:
    """The price in whole ticks (prices in the data sit on the tick grid up to float error)."""
    return int(np.floor(price / tick + 0.5))


@kernel_jit()
def on_grid(x: float, step: float) -> bool:
    """x is a positive multiple of step (up to float error)."""
    k = x / step
    return x > 0.0 and abs(k - np.floor(k + 0.5)) < 1e-6


@kernel_jit()
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


@kernel_jit()
def push_report(e: Arrays, ts: int, kind: int, oid: int, status: int, reject: int) -> int:
    """Queue one report for local delivery at ``ts`` (the wrapper guarantees the room); its price,
    qty and amount are 0 until the caller sets them. Returns its row."""
    s = e.state[0]
    n = s.rep_n
    rep = e.reports[n]
    rep.ts = ts
    rep.kind = kind
    rep.order_id = oid
    rep.status = status
    rep.reject = reject
    rep.price = 0.0
    rep.qty = 0.0
    rep.amount = 0.0
    s.rep_n = n + 1
    return int(n)


@kernel_jit()
def report_order(e: Arrays, idx: int, reject: int) -> None:
    """Report the order's current state (status, price, size, filled) and how the request that
    changed it went (``reject``, 0 = done) to us."""
    s, o = e.state[0], e.orders[idx]
    rep = e.reports[push_report(e, s.ex_now + e.config[0].response_ns, REP_ORDER, idx + 1, o.status, reject)]
    rep.price = o.price
    rep.qty = o.qty
    rep.amount = o.filled


@kernel_jit()
def finish(e: Arrays, idx: int, status: int, reject: int) -> None:
    """End the order's life with ``status`` now (exchange clock) and report it."""
    o = e.orders[idx]
    o.status = status
    o.ts_done_ex = e.state[0].ex_now
    if reject:
        o.reject = reject
    report_order(e, idx, reject)


@kernel_jit()
def record_fill(e: Arrays, idx: int, price: float, qty: float, maker: bool) -> bool:
    """Fill ``qty`` of order ``idx`` at ``price``: position, cash and fees move now; the fill
    reaches us after the response latency. True when the order is now completely filled."""
    s, cfg, acct, o = e.state[0], e.config[0], e.accounts[EXCHANGE], e.orders[idx]
    side = o.side
    fee = price * qty * (cfg.maker if maker else cfg.taker)
    acct.position += side * qty
    acct.cash -= side * price * qty + fee
    acct.fees += fee
    o.filled += qty
    ts = s.ex_now
    n = s.n_fills
    f = e.fills[n]
    f.ts_ex = ts
    f.ts_local = ts + cfg.response_ns
    f.order_id = idx + 1
    f.tag = o.tag
    f.side = side
    f.maker = maker
    f.price = price
    f.qty = qty
    f.fee = fee
    f.queue_ahead = o.queue_ahead
    s.n_fills = n + 1
    rep = e.reports[push_report(e, ts + cfg.response_ns, REP_FILL, idx + 1, side, ZERO)]
    rep.price = price
    rep.qty = qty
    rep.amount = fee
    done = bool(o.qty - o.filled <= 1e-6 * cfg.lot)
    if done:
        finish(e, idx, FILLED, ZERO)
    return done


@kernel_jit()
def boundary(e: Arrays) -> None:
    """Funding at a funding time, then an equity sample. Bybit charges position value x funding
    rate (longs pay shorts when the rate is positive); the mid stands in for the mark price."""
    s, cfg, acct = e.state[0], e.config[0], e.accounts[EXCHANGE]
    b = min(s.next_sample, s.next_funding)
    s.ex_now = max(s.ex_now, b)
    row = s.ex_book - 1
    mid = 0.5 * (e.bid_px[row, 0] + e.ask_px[row, 0]) if row >= 0 else np.nan
    if s.next_funding == b:
        if not np.isnan(mid) and acct.position != 0.0:
            amount = acct.position * mid * cfg.funding_rate
            acct.cash -= amount
            acct.funding += amount
            e.reports[push_report(e, b + cfg.response_ns, REP_FUNDING, ZERO, ZERO, ZERO)].amount = amount
        s.next_funding += cfg.funding_ns
    if s.next_sample == b:
        if row >= 0:
            n = s.n_samples
            sample = e.samples[n]
            sample.ts = b
            sample.mid = mid
            sample.position = acct.position
            sample.cash = acct.cash
            sample.equity = acct.cash + acct.position * mid if acct.position != 0.0 else acct.cash
            s.n_samples = n + 1
        s.next_sample += cfg.sample_ns


@kernel_jit()
def deliver_report(e: Arrays) -> int:
    """Apply one report to the local view; the wake flags it raises."""
    s, local = e.state[0], e.accounts[LOCAL]
    h = s.rep_head
    s.rep_head = h + 1
    rep = e.reports[h]
    idx = rep.order_id - 1
    if rep.kind == REP_FILL:
        side, price, qty, fee = rep.status, rep.price, rep.qty, rep.amount
        local.position += side * qty
        local.cash -= side * price * qty + fee
        local.fees += fee
        e.orders[idx].local_filled += qty
        return W_FILL | W_ORDER
    if rep.kind == REP_FUNDING:
        local.cash -= rep.amount
        local.funding += rep.amount
        return 0
    if idx >= 0:
        o = e.orders[idx]
        o.local_status = rep.status
        o.local_reject = rep.reject
        o.local_price = rep.price
        o.local_qty = rep.qty
        o.local_filled = rep.amount
    return W_ORDER
