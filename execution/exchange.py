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

from core.jit import kernel_jit, typed_int
from execution import records as r
from execution.queue import remove_open, rest
from execution.records import Arrays
from execution.types import OrderKind, RejectReason

MARKET = int(OrderKind.MARKET)
POST_ONLY_WOULD_TAKE = typed_int(RejectReason.POST_ONLY_WOULD_TAKE)
RATE_LIMIT = typed_int(RejectReason.RATE_LIMIT)
INVALID = typed_int(RejectReason.INVALID)
TOO_LATE = int(RejectReason.TOO_LATE)


@kernel_jit()
def arrive(e: Arrays) -> None:
    """The request at the head of the queue reaches the exchange."""
    s = e.state[0]
    h = s.req_head
    s.req_head = h + 1
    req = e.requests[h]
    kind = req.kind
    idx = req.order_id - 1
    s.requests += 1
    if kind == r.REQ_NEW:
        e.orders[idx].ts_arrive_ex = s.ex_now
    if not _rate_ok(e):
        _rate_limited(e, kind, idx)
    elif kind == r.REQ_NEW:
        _new(e, idx)
    elif kind == r.REQ_CANCEL_ALL:
        _cancel_all(e)
    elif e.orders[idx].status != r.OPEN:  # filled, cancelled or expired meanwhile: too late
        if e.orders[idx].status == r.REJECTED:  # (a pending order cannot be here)
            s.invalid += 1
            _reject(e, idx, INVALID)
        else:
            if kind == r.REQ_CANCEL:
                s.too_late_cancels += 1
            else:
                s.too_late_amends += 1
            _reject(e, idx, TOO_LATE)
    elif kind == r.REQ_CANCEL:
        remove_open(e, idx)
        r.finish(e, idx, r.CANCELLED, r.ZERO)
    else:
        _amend(e, idx, req.price, req.qty)


@kernel_jit()
def _rate_ok(e: Arrays) -> bool:
    """Per-account sliding window at arrival (Bybit ~10 order requests/s, retCode 10006): the ring
    ``rl`` holds the arrival times of the last ``rate_limit`` accepted requests, oldest at the head."""
    s, cfg, rl = e.state[0], e.config[0], e.rl
    if cfg.rate_limit <= 0:
        return True
    h = s.rate_head
    now = s.ex_now
    if rl[h] > now - cfg.rate_window_ns:
        return False
    rl[h] = now
    s.rate_head = (h + 1) % rl.shape[0]
    return True


@kernel_jit()
def _rate_limited(e: Arrays, kind: int, idx: int) -> None:
    """Refused by the rate limit: a new order ends rejected, an amend or cancel leaves it as it is."""
    s = e.state[0]
    s.rate_limit_rejects += 1
    if kind == r.REQ_NEW:
        r.finish(e, idx, r.REJECTED, RATE_LIMIT)
    elif idx >= 0:
        e.orders[idx].reject = RATE_LIMIT
        r.report_order(e, idx, RATE_LIMIT)
    else:
        r.push_report(e, s.ex_now + e.config[0].response_ns, r.REP_ORDER, r.ZERO, r.ZERO, RATE_LIMIT)


@kernel_jit(inline="always")  # returns views (core.jit)
def _opposite(e: Arrays, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prices, sizes, what our taker fills took) of the side an order of ``side`` would take from,
    as the exchange holds it now (empty before the first book event)."""
    row = e.state[0].ex_book - 1
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
    tick_size = e.config[0].tick
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
    o = e.orders[idx]
    side = o.side
    px, qty, dep = _opposite(e, side)
    tick_size = e.config[0].tick
    for i in range(px.shape[0]):
        p = px[i]
        if np.isnan(p):
            break
        if capped and ((r.to_tick(p, tick_size) > cap) if side > 0 else (r.to_tick(p, tick_size) < cap)):
            break
        avail = qty[i] - dep[i]
        if avail <= 1e-12:
            continue
        q = min(o.qty - o.filled, avail)
        dep[i] += q
        e.state[0].depleted = 1
        if r.record_fill(e, idx, p, q, False):
            return True
    return False


@kernel_jit()
def _new(e: Arrays, idx: int) -> None:
    """A new order: off the grid is invalid; a market order takes what the book shows; a limit
    order that would take is rejected when post-only, else takes, and rests the rest."""
    s, cfg, o = e.state[0], e.config[0], e.orders[idx]
    market = o.kind == MARKET
    if not r.on_grid(o.qty, cfg.lot) or not (market or r.on_grid(o.price, cfg.tick)):
        s.invalid += 1
        r.finish(e, idx, r.REJECTED, INVALID)
        return
    o.status = r.OPEN
    if market:
        o.queue_ahead = 0.0
        if not _take(e, idx, 0, False):
            r.finish(e, idx, r.EXPIRED, r.ZERO)  # beyond the visible book: not modelled
        return
    tick = r.to_tick(o.price, cfg.tick)
    o.tick = tick
    crosses = _crosses(e, o.side, tick)
    if crosses and o.post_only == 1:  # Bybit EC_PostOnlyWillTakeLiquidity: reject, never take
        s.post_only_rejects += 1
        r.finish(e, idx, r.REJECTED, POST_ONLY_WOULD_TAKE)
        return
    _place(e, idx, crosses)


@kernel_jit()
def _place(e: Arrays, idx: int, crosses: bool) -> None:
    """A limit order that passed the post-only check: take what crosses, rest the remainder."""
    o = e.orders[idx]
    if crosses and _take(e, idx, o.tick, True):
        return
    row = e.state[0].ex_book - 1
    side = o.side
    dep = e.dep[0 if side > 0 else 1]
    if row < 0:
        rest(e, e.dep[0, :0], e.dep[0, :0], dep, idx)
    elif side > 0:
        rest(e, e.bid_px[row], e.bid_qty[row], dep, idx)
    else:
        rest(e, e.ask_px[row], e.ask_qty[row], dep, idx)
    r.report_order(e, idx, r.ZERO)


@kernel_jit()
def _cancel_all(e: Arrays) -> None:
    """Cancel every open order (one request, one report of its own)."""
    s = e.state[0]
    for side in range(2):
        while s.n_open[side] > 0:
            o = e.opn[side, s.n_open[side] - 1]
            remove_open(e, o)
            r.finish(e, o, r.CANCELLED, r.ZERO)
    r.push_report(e, s.ex_now + e.config[0].response_ns, r.REP_ORDER, r.ZERO, r.ZERO, r.ZERO)


@kernel_jit()
def _reject(e: Arrays, idx: int, reason: int) -> None:
    """Refuse an amend or cancel of order ``idx`` (the caller counts it): the order stays as it is;
    the reason is reported."""
    e.orders[idx].reject = reason
    r.report_order(e, idx, reason)


@kernel_jit()
def _amend(e: Arrays, idx: int, new_price: float, new_qty: float) -> None:
    """Amend an open order (NaN: unchanged). Down to what already filled cancels the rest; a new
    price or a bigger size goes to the back of the queue; smaller at the same price keeps its place."""
    s, cfg, o = e.state[0], e.config[0], e.orders[idx]
    price = o.price if np.isnan(new_price) else new_price
    qty = o.qty if np.isnan(new_qty) else new_qty
    lot = cfg.lot
    if not (r.on_grid(price, cfg.tick) and r.on_grid(qty, lot)):
        s.invalid += 1
        _reject(e, idx, INVALID)
        return
    tick = r.to_tick(price, cfg.tick)
    moved = tick != o.tick
    crosses = moved and s.ex_book > 0 and _crosses(e, o.side, tick)
    if crosses and o.post_only == 1:  # the amend is refused, the order stays as it was
        s.post_only_rejects += 1
        _reject(e, idx, POST_ONLY_WOULD_TAKE)
        return
    o.amends += 1
    grew = qty > o.qty + 1e-6 * lot
    o.qty = qty
    o.price = price
    o.tick = tick
    if qty <= o.filled + 1e-6 * lot:  # down to what already filled: the rest is cancelled
        remove_open(e, idx)
        r.finish(e, idx, r.CANCELLED, r.ZERO)
    elif moved or grew:  # a new price or a bigger size loses priority: back of the queue
        remove_open(e, idx)
        _place(e, idx, crosses)
    else:  # smaller at the same price: keeps its place
        r.report_order(e, idx, r.ZERO)
