"""The matching engine's state as plain arrays: column layouts, the writers of fills, reports and
equity samples, and the delivery of reports to the local view.

The kernels (``execution.queue``, ``execution.kernel``) and the ``Engine`` wrapper share these
layouts; numba compiles the integer constants in. Every array is owned by ``Engine``; the kernels
only write into it and report when it needs more room.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from core.jit import kernel_jit
from execution.types import OrderStatus

INF = 9_223_372_036_854_775_807  # int64 max: "never"

# si: int64 state vector ------------------------------------------------------------------------
S_EX_BOOK = 0  # next book event the exchange processes
S_EX_TRADE = 1  # next trade the exchange processes
S_LOC_BOOK = 2  # next book event delivered to us
S_N_BOOK = 3  # book events held
S_N_TRADE = 4  # trades held
S_NOW = 5  # local clock
S_EX_NOW = 6  # exchange clock
S_LAST_DELIVERY = 7  # local time of the last book delivery (deliveries stay in order)
S_NEXT_SAMPLE = 8
S_NEXT_FUNDING = 9
S_REQ_HEAD = 10  # requests in flight: qi[head:n]
S_REQ_N = 11
S_REP_HEAD = 12  # reports in flight: ri[head:n]
S_REP_N = 13
S_N_FILLS = 14
S_N_SAMPLES = 15
S_SEQ = 16  # queue priority counter
S_N_OPEN = 17  # open orders per side: S_N_OPEN + 0 buys, + 1 sells
S_RATE_HEAD = 19  # oldest slot of the rate-limit ring
S_DEPLETED = 20  # our taker fills consumed visible liquidity since the last book event
S_FINITE = 21  # a backtest block: the data ends (Wake.END can fire)
S_STARTED = 22  # sample / funding boundaries initialised
C_REQUESTS = 23  # counters
C_POST_ONLY = 24
C_RATE_LIMIT = 25
C_LATE_CANCEL = 26
C_LATE_AMEND = 27
C_INVALID = 28
K_ENTRY = 29  # config
K_RESPONSE = 30
K_RATE_LIMIT = 31
K_RATE_WINDOW = 32
K_SAMPLE = 33
K_FUNDING = 34
K_QUEUE_MODEL = 35
K_FILL_RULE = 36  # types.FillRule
S_N_ORDERS = 37  # orders sent (rows of oi / of in use)
S_NEXT_TIMER = 38  # a compiled strategy's next timer wake (local clock; FAR_PAST: not started)
S_FIRST_LIVE = 39  # orders below this row are done in the local view (compiled strategies skip them)
N_SI = 40

# sf: float64 state vector ----------------------------------------------------------------------
P_POS = 0  # exchange-side account (the truth)
P_CASH = 1
P_FEES = 2
P_FUNDING = 3
L_POS = 4  # the account as the delivered reports tell it (local view)
L_CASH = 5
L_FEES = 6
L_FUNDING = 7
K_TICK = 8
K_LOT = 9
K_MAKER = 10
K_TAKER = 11
K_FUNDING_RATE = 12
K_POWER = 13
T_TOUCH = 14  # opposite volume our buys (+ 0) / sells (+ 1) took by touch fills while the book stays crossed
N_SF = 16

# orders: oi int64[cap, N_OI], of float64[cap, N_OF]; row = order_id - 1 -------------------------
O_SIDE = 0
O_KIND = 1
O_POST = 2
O_TICK = 3  # limit price in ticks
O_STATUS = 4
O_REJECT = 5  # the last reject of any request on this order
O_AMENDS = 6
O_TAG = 7
O_TS_SUBMIT = 8
O_TS_ARRIVE = 9
O_TS_DONE = 10
O_SEQ = 11  # time priority at its price (lower = earlier)
O_KNOWN = 12  # queue ahead known (the level has been visible since it rested)
O_L_STATUS = 13  # local view
O_L_REJECT = 14
N_OI = 15

F_PRICE = 0
F_QTY = 1
F_FILLED = 2
F_AHEAD = 3  # market volume ahead of us at our price (our own orders excluded)
F_LEVEL = 4  # displayed size at our price at the last book event that showed it
F_TRADED = 5  # traded at our price since that book event
F_QA0 = 6  # BTC ahead (market + our earlier orders) when it joined the queue at its price
F_L_PRICE = 7  # local view
F_L_QTY = 8
F_L_FILLED = 9
N_OF = 10

# requests in flight: qi int64[cap, 3], qf float64[cap, 2] ---------------------------------------
Q_TS = 0  # arrival at the exchange
Q_KIND = 1
Q_OID = 2
Q_PRICE = 0  # NaN = unchanged (amend)
Q_QTY = 1
REQ_NEW = 0
REQ_AMEND = 1
REQ_CANCEL = 2
REQ_CANCEL_ALL = 3

# reports in flight: ri int64[cap, 5], rf float64[cap, 3] ----------------------------------------
R_TS = 0  # local delivery time
R_KIND = 1
R_OID = 2
R_STATUS = 3  # ORDER: status; FILL: side
R_REJECT = 4
R_A = 0  # ORDER: price, qty, filled; FILL: price, qty, fee; FUNDING: amount
R_B = 1
R_C = 2
REP_ORDER = 0
REP_FILL = 1
REP_FUNDING = 2

# fills: fi int64[cap, 6], ff float64[cap, 4]; samples: smi int64[cap], smf float64[cap, 4] ------
FI_TS_EX = 0
FI_TS_LOCAL = 1
FI_OID = 2
FI_TAG = 3
FI_SIDE = 4
FI_MAKER = 5
FF_PRICE = 0
FF_QTY = 1
FF_FEE = 2
FF_AHEAD = 3
SM_MID = 0
SM_POS = 1
SM_CASH = 2
SM_EQUITY = 3

# Wake flags (execution.engine.Wake mirrors them); W_SPACE asks the wrapper for bigger arrays.
W_FILL = 1
W_ORDER = 2
W_BOOK = 4
W_END = 8
W_TIMER = 16  # a compiled strategy's timer (execution.compiled)
W_SPACE = 1 << 30

OPEN = int(OrderStatus.OPEN)
FILLED = int(OrderStatus.FILLED)
CANCELLED = int(OrderStatus.CANCELLED)
REJECTED = int(OrderStatus.REJECTED)
EXPIRED = int(OrderStatus.EXPIRED)


class Arrays(NamedTuple):
    """Every array of one engine, by name: what ``execution.kernel.advance`` and a compiled
    strategy's step (execution.compiled) take. Valid until the engine grows them."""

    si: np.ndarray  # int64 state: clocks, cursors, counters, configuration (S_*, C_*, K_*)
    sf: np.ndarray  # float64 state: the account on both sides, configuration (P_*, L_*, K_*)
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
    oi: np.ndarray  # orders, int64 columns (O_*)
    of: np.ndarray  # orders, float64 columns (F_*)
    opn: np.ndarray  # open orders per side in price-time priority
    qi: np.ndarray  # requests in flight (Q_*)
    qf: np.ndarray
    ri: np.ndarray  # reports in flight (R_*)
    rf: np.ndarray
    fi: np.ndarray  # fills (FI_*, FF_*)
    ff: np.ndarray
    smi: np.ndarray  # equity samples
    smf: np.ndarray
    rl: np.ndarray  # the rate-limit ring


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
    """Queue one report for local delivery at ``ts`` (the wrapper guarantees the room); its float
    fields (R_A, R_B, R_C) are 0 until the caller sets them. Returns its row."""
    si, ri, rf = e.si, e.ri, e.rf
    n = si[S_REP_N]
    ri[n, R_TS] = ts
    ri[n, R_KIND] = kind
    ri[n, R_OID] = oid
    ri[n, R_STATUS] = status
    ri[n, R_REJECT] = reject
    rf[n, R_A] = 0.0
    rf[n, R_B] = 0.0
    rf[n, R_C] = 0.0
    si[S_REP_N] = n + 1
    return int(n)


@kernel_jit()
def report_order(e: Arrays, idx: int, reject: int) -> None:
    """Report the order's current state (status, price, size, filled) and how the request that
    changed it went (``reject``, 0 = done) to us."""
    si, of = e.si, e.of
    n = push_report(e, si[S_EX_NOW] + si[K_RESPONSE], REP_ORDER, idx + 1, e.oi[idx, O_STATUS], reject)
    e.rf[n, R_A] = of[idx, F_PRICE]
    e.rf[n, R_B] = of[idx, F_QTY]
    e.rf[n, R_C] = of[idx, F_FILLED]


@kernel_jit()
def finish(e: Arrays, idx: int, status: int, reject: int) -> None:
    """End the order's life with ``status`` now (exchange clock) and report it."""
    oi = e.oi
    oi[idx, O_STATUS] = status
    oi[idx, O_TS_DONE] = e.si[S_EX_NOW]
    if reject:
        oi[idx, O_REJECT] = reject
    report_order(e, idx, reject)


@kernel_jit()
def record_fill(e: Arrays, idx: int, price: float, qty: float, maker: bool) -> bool:
    """Fill ``qty`` of order ``idx`` at ``price``: position, cash and fees move now; the fill
    reaches us after the response latency. True when the order is now completely filled."""
    si, sf, oi, of, fi, ff = e.si, e.sf, e.oi, e.of, e.fi, e.ff
    side = oi[idx, O_SIDE]
    fee = price * qty * (sf[K_MAKER] if maker else sf[K_TAKER])
    sf[P_POS] += side * qty
    sf[P_CASH] -= side * price * qty + fee
    sf[P_FEES] += fee
    of[idx, F_FILLED] += qty
    ts = si[S_EX_NOW]
    n = si[S_N_FILLS]
    fi[n, FI_TS_EX] = ts
    fi[n, FI_TS_LOCAL] = ts + si[K_RESPONSE]
    fi[n, FI_OID] = idx + 1
    fi[n, FI_TAG] = oi[idx, O_TAG]
    fi[n, FI_SIDE] = side
    fi[n, FI_MAKER] = 1 if maker else 0
    ff[n, FF_PRICE] = price
    ff[n, FF_QTY] = qty
    ff[n, FF_FEE] = fee
    ff[n, FF_AHEAD] = of[idx, F_QA0]
    si[S_N_FILLS] = n + 1
    k = push_report(e, ts + si[K_RESPONSE], REP_FILL, idx + 1, side, 0)
    e.rf[k, R_A] = price
    e.rf[k, R_B] = qty
    e.rf[k, R_C] = fee
    done = bool(of[idx, F_QTY] - of[idx, F_FILLED] <= 1e-6 * sf[K_LOT])
    if done:
        finish(e, idx, FILLED, 0)
    return done


@kernel_jit()
def boundary(e: Arrays) -> None:
    """Funding at a funding time, then an equity sample. Bybit charges position value x funding
    rate (longs pay shorts when the rate is positive); the mid stands in for the mark price."""
    si, sf, smf = e.si, e.sf, e.smf
    b = min(si[S_NEXT_SAMPLE], si[S_NEXT_FUNDING])
    si[S_EX_NOW] = max(si[S_EX_NOW], b)
    row = si[S_EX_BOOK] - 1
    mid = 0.5 * (e.bid_px[row, 0] + e.ask_px[row, 0]) if row >= 0 else np.nan
    if si[S_NEXT_FUNDING] == b:
        if not np.isnan(mid) and sf[P_POS] != 0.0:
            amount = sf[P_POS] * mid * sf[K_FUNDING_RATE]
            sf[P_CASH] -= amount
            sf[P_FUNDING] += amount
            e.rf[push_report(e, b + si[K_RESPONSE], REP_FUNDING, 0, 0, 0), R_A] = amount
        si[S_NEXT_FUNDING] += si[K_FUNDING]
    if si[S_NEXT_SAMPLE] == b:
        if row >= 0:
            n = si[S_N_SAMPLES]
            e.smi[n] = b
            smf[n, SM_MID] = mid
            smf[n, SM_POS] = sf[P_POS]
            smf[n, SM_CASH] = sf[P_CASH]
            smf[n, SM_EQUITY] = sf[P_CASH] + sf[P_POS] * mid if sf[P_POS] != 0.0 else sf[P_CASH]
            si[S_N_SAMPLES] = n + 1
        si[S_NEXT_SAMPLE] += si[K_SAMPLE]


@kernel_jit()
def deliver_report(e: Arrays) -> int:
    """Apply one report to the local view; the wake flags it raises."""
    si, sf, oi, of, ri, rf = e.si, e.sf, e.oi, e.of, e.ri, e.rf
    h = si[S_REP_HEAD]
    si[S_REP_HEAD] = h + 1
    kind = ri[h, R_KIND]
    idx = ri[h, R_OID] - 1
    if kind == REP_FILL:
        side, price, qty, fee = ri[h, R_STATUS], rf[h, R_A], rf[h, R_B], rf[h, R_C]
        sf[L_POS] += side * qty
        sf[L_CASH] -= side * price * qty + fee
        sf[L_FEES] += fee
        of[idx, F_L_FILLED] += qty
        return W_FILL | W_ORDER
    if kind == REP_FUNDING:
        sf[L_CASH] -= rf[h, R_A]
        sf[L_FUNDING] += rf[h, R_A]
        return 0
    if idx >= 0:
        oi[idx, O_L_STATUS] = ri[h, R_STATUS]
        oi[idx, O_L_REJECT] = ri[h, R_REJECT]
        of[idx, F_L_PRICE] = rf[h, R_A]
        of[idx, F_L_QTY] = rf[h, R_B]
        of[idx, F_L_FILLED] = rf[h, R_C]
    return W_ORDER
