"""Our requests reaching the exchange (REFERENCE section 2): the rate limit, then a new order, an
amend, a cancel or a cancel-all, as Bybit treats them.

Called by the event loop (``execution.kernel.advance``) once per request arrival, with the engine's
arrays by name (``records.Arrays``). A new limit order is checked against the book as the exchange
holds it at that moment (post-only orders that would take are rejected, never take); the rest of
an order that crosses takes the visible opposite levels as taker, what it does not take rests at
the back of its price's queue. An amend that moves the price or grows the size loses priority.
"""

from __future__ import annotations

import numpy as np

from core.jit import kernel_jit
from execution import records as r
from execution.queue import remove_open, rest
from execution.records import Arrays
from execution.types import OrderKind, RejectReason

MARKET = int(OrderKind.MARKET)
POST_ONLY_WOULD_TAKE = int(RejectReason.POST_ONLY_WOULD_TAKE)
RATE_LIMIT = int(RejectReason.RATE_LIMIT)
INVALID = int(RejectReason.INVALID)
TOO_LATE = int(RejectReason.TOO_LATE)


@kernel_jit()
def arrive(e: Arrays) -> None:
    """The request at the head of the queue reaches the exchange."""
    si, qi = e.si, e.qi
    h = si[r.S_REQ_HEAD]
    si[r.S_REQ_HEAD] = h + 1
    kind = qi[h, r.Q_KIND]
    idx = qi[h, r.Q_OID] - 1
    si[r.C_REQUESTS] += 1
    if kind == r.REQ_NEW:
        e.oi[idx, r.O_TS_ARRIVE] = si[r.S_EX_NOW]
    if not _rate_ok(si, e.rl):
        _rate_limited(e, kind, idx)
    elif kind == r.REQ_NEW:
        _new(e, idx)
    elif kind == r.REQ_CANCEL_ALL:
        _cancel_all(e)
    elif e.oi[idx, r.O_STATUS] != r.OPEN:  # filled, cancelled or expired meanwhile: too late
        late = e.oi[idx, r.O_STATUS] != r.REJECTED  # (a pending order cannot be here)
        counter = r.C_INVALID if not late else (r.C_LATE_CANCEL if kind == r.REQ_CANCEL else r.C_LATE_AMEND)
        _reject(e, idx, TOO_LATE if late else INVALID, counter)
    elif kind == r.REQ_CANCEL:
        remove_open(e, idx)
        r.finish(e, idx, r.CANCELLED, 0)
    else:
        _amend(e, idx, e.qf[h, r.Q_PRICE], e.qf[h, r.Q_QTY])


@kernel_jit()
def _rate_ok(si: np.ndarray, rl: np.ndarray) -> bool:
    """Per-account sliding window at arrival (Bybit ~10 order requests/s, retCode 10006): ``rl``
    holds the arrival times of the last ``rate_limit`` accepted requests, oldest at the head."""
    if si[r.K_RATE_LIMIT] <= 0:
        return True
    h = si[r.S_RATE_HEAD]
    now = si[r.S_EX_NOW]
    if rl[h] > now - si[r.K_RATE_WINDOW]:
        return False
    rl[h] = now
    si[r.S_RATE_HEAD] = (h + 1) % rl.shape[0]
    return True


@kernel_jit()
def _rate_limited(e: Arrays, kind: int, idx: int) -> None:
    """Refused by the rate limit: a new order ends rejected, an amend or cancel leaves it as it is."""
    si = e.si
    si[r.C_RATE_LIMIT] += 1
    if kind == r.REQ_NEW:
        r.finish(e, idx, r.REJECTED, RATE_LIMIT)
    elif idx >= 0:
        e.oi[idx, r.O_REJECT] = RATE_LIMIT
        r.report_order(e, idx, RATE_LIMIT)
    else:
        r.push_report(e, si[r.S_EX_NOW] + si[r.K_RESPONSE], r.REP_ORDER, 0, 0, RATE_LIMIT)


@kernel_jit(inline="always")  # returns views (core.jit)
def _opposite(e: Arrays, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prices, sizes, what our taker fills took) of the side an order of ``side`` would take from,
    as the exchange holds it now (empty before the first book event)."""
    row = e.si[r.S_EX_BOOK] - 1
    dep = e.dep[1 if side > 0 else 0]
    if row < 0:
        return e.dep[0, :0], e.dep[0, :0], dep  # empty views: no allocation (core.jit)
    if side > 0:
        return e.ask_px[row], e.ask_qty[row], dep
    return e.bid_px[row], e.bid_qty[row], dep


@kernel_jit()
def _crosses(e: Arrays, side: int, tick: int) -> bool:
    """An order of ``side`` at ``tick`` would take: the best opposite price still showing size (net
    of our taker fills) is at or through it."""
    px, qty, dep = _opposite(e, side)
    tick_size = e.sf[r.K_TICK]
    for i in range(px.shape[0]):
        if np.isnan(px[i]):
            return False
        if qty[i] - dep[i] > 1e-12:
            opp = r.to_tick(px[i], tick_size)
            return (opp <= tick) if side > 0 else (opp >= tick)
    return False


@kernel_jit()
def _take(e: Arrays, idx: int, cap: int, capped: bool) -> bool:
    """Walk the visible opposite levels as taker (net of earlier taker fills and, under
    FillRule.CAPPED, of the prints since the book event), up to ``cap`` when ``capped``; what we
    take stays consumed until the next book event. True when filled."""
    si, sf, oi, of = e.si, e.sf, e.oi, e.of
    side = oi[idx, r.O_SIDE]
    px, qty, dep = _opposite(e, side)
    tick_size = sf[r.K_TICK]
    for i in range(px.shape[0]):
        p = px[i]
        if np.isnan(p):
            break
        if capped and ((r.to_tick(p, tick_size) > cap) if side > 0 else (r.to_tick(p, tick_size) < cap)):
            break
        avail = qty[i] - dep[i]
        if avail <= 1e-12:
            continue
        q = min(of[idx, r.F_QTY] - of[idx, r.F_FILLED], avail)
        dep[i] += q
        si[r.S_DEPLETED] = 1
        if r.record_fill(e, idx, p, q, False):
            return True
    return False


@kernel_jit()
def _new(e: Arrays, idx: int) -> None:
    """A new order: off the grid is invalid; a market order takes what the book shows; a limit
    order that would take is rejected when post-only, else takes, and rests the rest."""
    si, oi, of = e.si, e.oi, e.of
    market = oi[idx, r.O_KIND] == MARKET
    if not r.on_grid(of[idx, r.F_QTY], e.sf[r.K_LOT]) or not (market or r.on_grid(of[idx, r.F_PRICE], e.sf[r.K_TICK])):
        si[r.C_INVALID] += 1
        r.finish(e, idx, r.REJECTED, INVALID)
        return
    oi[idx, r.O_STATUS] = r.OPEN
    if market:
        of[idx, r.F_QA0] = 0.0
        if not _take(e, idx, 0, False):
            r.finish(e, idx, r.EXPIRED, 0)  # beyond the visible book: not modelled
        return
    tick = r.to_tick(of[idx, r.F_PRICE], e.sf[r.K_TICK])
    oi[idx, r.O_TICK] = tick
    crosses = _crosses(e, oi[idx, r.O_SIDE], tick)
    if crosses and oi[idx, r.O_POST] == 1:  # Bybit EC_PostOnlyWillTakeLiquidity: reject, never take
        si[r.C_POST_ONLY] += 1
        r.finish(e, idx, r.REJECTED, POST_ONLY_WOULD_TAKE)
        return
    _place(e, idx, crosses)


@kernel_jit()
def _place(e: Arrays, idx: int, crosses: bool) -> None:
    """A limit order that passed the post-only check: take what crosses, rest the remainder."""
    if crosses and _take(e, idx, e.oi[idx, r.O_TICK], True):
        return
    row = e.si[r.S_EX_BOOK] - 1
    side = e.oi[idx, r.O_SIDE]
    dep = e.dep[0 if side > 0 else 1]
    if row < 0:
        rest(e, e.dep[0, :0], e.dep[0, :0], dep, idx)
    elif side > 0:
        rest(e, e.bid_px[row], e.bid_qty[row], dep, idx)
    else:
        rest(e, e.ask_px[row], e.ask_qty[row], dep, idx)
    r.report_order(e, idx, 0)


@kernel_jit()
def _cancel_all(e: Arrays) -> None:
    """Cancel every open order (one request, one report of its own)."""
    si = e.si
    for s in range(2):
        while si[r.S_N_OPEN + s] > 0:
            o = e.opn[s, si[r.S_N_OPEN + s] - 1]
            remove_open(e, o)
            r.finish(e, o, r.CANCELLED, 0)
    r.push_report(e, si[r.S_EX_NOW] + si[r.K_RESPONSE], r.REP_ORDER, 0, 0, 0)


@kernel_jit()
def _reject(e: Arrays, idx: int, reason: int, counter: int) -> None:
    """Refuse an amend or cancel of order ``idx``: the order stays as it is; the reason is reported."""
    e.si[counter] += 1
    e.oi[idx, r.O_REJECT] = reason
    r.report_order(e, idx, reason)


@kernel_jit()
def _amend(e: Arrays, idx: int, new_price: float, new_qty: float) -> None:
    """Amend an open order (NaN: unchanged). Down to what already filled cancels the rest; a new
    price or a bigger size goes to the back of the queue; smaller at the same price keeps its place."""
    si, sf, oi, of = e.si, e.sf, e.oi, e.of
    price = of[idx, r.F_PRICE] if np.isnan(new_price) else new_price
    qty = of[idx, r.F_QTY] if np.isnan(new_qty) else new_qty
    lot = sf[r.K_LOT]
    if not (r.on_grid(price, sf[r.K_TICK]) and r.on_grid(qty, lot)):
        _reject(e, idx, INVALID, r.C_INVALID)
        return
    tick = r.to_tick(price, sf[r.K_TICK])
    moved = tick != oi[idx, r.O_TICK]
    crosses = moved and si[r.S_EX_BOOK] > 0 and _crosses(e, oi[idx, r.O_SIDE], tick)
    if crosses and oi[idx, r.O_POST] == 1:  # the amend is refused, the order stays as it was
        _reject(e, idx, POST_ONLY_WOULD_TAKE, r.C_POST_ONLY)
        return
    oi[idx, r.O_AMENDS] += 1
    grew = qty > of[idx, r.F_QTY] + 1e-6 * lot
    of[idx, r.F_QTY] = qty
    of[idx, r.F_PRICE] = price
    oi[idx, r.O_TICK] = tick
    if qty <= of[idx, r.F_FILLED] + 1e-6 * lot:  # down to what already filled: the rest is cancelled
        remove_open(e, idx)
        r.finish(e, idx, r.CANCELLED, 0)
    elif moved or grew:  # a new price or a bigger size loses priority: back of the queue
        remove_open(e, idx)
        _place(e, idx, crosses)
    else:  # smaller at the same price: keeps its place
        r.report_order(e, idx, 0)
