"""What the exchange does with our requests as they arrive: the rate limit, then new orders
(post-only check, taking what crosses, resting the rest), amends, cancels and cancel-all
(REFERENCE section 2). Called by the event loop in execution.kernel at each arrival.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from execution import records as r
from execution.queue import remove_open, rest
from execution.records import Arrays
from execution.types import OrderKind, RejectReason

MARKET = int(OrderKind.MARKET)
POST_ONLY_WOULD_TAKE = int(RejectReason.POST_ONLY_WOULD_TAKE)
RATE_LIMIT = int(RejectReason.RATE_LIMIT)
INVALID = int(RejectReason.INVALID)
TOO_LATE = int(RejectReason.TOO_LATE)


@nb.njit()
def _rate_ok(e: Arrays) -> bool:
    """Per-account sliding window at arrival (Bybit ~10 order requests/s, retCode 10006): ``rate``
    holds the arrival times of the last ``rate_limit`` accepted requests, oldest at the head."""
    st, rl = e.state[0], e.rate
    if st.rate_limit <= 0:
        return True
    h = st.rate_head
    now = st.ex_now
    if rl[h] > now - st.rate_window_ns:
        return False
    rl[h] = now
    st.rate_head = (h + 1) % rl.shape[0]
    return True


@nb.njit()
def _opposite_best(px: np.ndarray, qty: np.ndarray, dep: np.ndarray, tick_size: float) -> int:
    """Best opposite price in ticks (net of our taker fills), or -1."""
    for i in range(px.shape[0]):
        if np.isnan(px[i]):
            break
        if qty[i] - dep[i] > 1e-12:
            return r.to_tick(px[i], tick_size)
    return -1


@nb.njit()
def _crosses(side: int, tick: int, opp: int) -> bool:
    return opp >= 0 and ((opp <= tick) if side > 0 else (opp >= tick))


@nb.njit()
def _side(e: Arrays, row: int, bid: bool) -> tuple[np.ndarray, np.ndarray]:
    """Prices and sizes of one side of book row ``row`` (empty before the first book)."""
    m = e.market
    if row < 0:
        return np.empty(0), np.empty(0)
    return (m.bid_px[row], m.bid_qty[row]) if bid else (m.ask_px[row], m.ask_qty[row])


@nb.njit()
def take(e: Arrays, px: np.ndarray, qty: np.ndarray, dep: np.ndarray, idx: int, cap: int, capped: bool) -> bool:
    """Walk the visible opposite levels as taker (net of earlier taker fills and, under
    FillRule.CAPPED, of the prints since the book event), up to ``cap`` when ``capped``; what we
    take stays consumed until the next book event. True when filled."""
    o = e.orders[idx]
    side = o.side
    tick_size = e.state[0].tick
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


@nb.njit()
def _reject(e: Arrays, idx: int, reason: int) -> None:
    """Refuse an amend or cancel of order ``idx``: the order stays as it is; the reason is reported."""
    e.orders[idx].reject = reason
    r.report_order(e, idx, reason)


@nb.njit()
def _place(e: Arrays, idx: int, crosses: bool) -> None:
    """A limit order that passed the post-only check: take what crosses, rest the remainder."""
    row = e.state[0].ex_book - 1
    o = e.orders[idx]
    buy = o.side > 0
    s = 0 if buy else 1
    opx, oqx = _side(e, row, not buy)
    if crosses and take(e, opx, oqx, e.dep[1 - s], idx, o.tick, True):
        return
    px, qty = _side(e, row, buy)
    rest(e, px, qty, e.dep[s], idx)
    r.report_order(e, idx, 0)


@nb.njit()
def _new(e: Arrays, idx: int) -> None:
    """A new order: on the grid, then a market order takes, a limit order is placed (post-only
    orders that would take are refused)."""
    st, o = e.state[0], e.orders[idx]
    side = o.side
    market = o.kind == MARKET
    if not r.on_grid(o.qty, st.lot) or not (market or r.on_grid(o.price, st.tick)):
        st.invalid += 1
        r.finish(e, idx, r.REJECTED, INVALID)
        return
    o.status = r.OPEN
    s_opp = 1 if side > 0 else 0
    opx, oqx = _side(e, st.ex_book - 1, side < 0)
    if market:
        o.qa0 = 0.0
        if not take(e, opx, oqx, e.dep[s_opp], idx, 0, False):
            r.finish(e, idx, r.EXPIRED, 0)  # beyond the visible book: not modelled
        return
    tick = r.to_tick(o.price, st.tick)
    o.tick = tick
    crosses = _crosses(side, tick, _opposite_best(opx, oqx, e.dep[s_opp], st.tick))
    if crosses and o.post_only == 1:  # Bybit EC_PostOnlyWillTakeLiquidity: reject, never take
        st.post_only_rejects += 1
        r.finish(e, idx, r.REJECTED, POST_ONLY_WOULD_TAKE)
        return
    _place(e, idx, crosses)


@nb.njit()
def _amend(e: Arrays, idx: int, new_price: float, new_qty: float) -> None:
    """An amend of an open order (NaN: unchanged): a new price or a bigger size loses priority."""
    st, o = e.state[0], e.orders[idx]
    tick_size, lot = st.tick, st.lot
    price = o.price if np.isnan(new_price) else new_price
    qty = o.qty if np.isnan(new_qty) else new_qty
    if not (r.on_grid(price, tick_size) and r.on_grid(qty, lot)):
        st.invalid += 1
        _reject(e, idx, INVALID)
        return
    side = o.side
    tick = r.to_tick(price, tick_size)
    moved = tick != o.tick
    crosses = False
    row = st.ex_book - 1
    if moved and row >= 0:
        opx, oqx = _side(e, row, side < 0)
        crosses = _crosses(side, tick, _opposite_best(opx, oqx, e.dep[1 if side > 0 else 0], tick_size))
        if crosses and o.post_only == 1:  # the amend is refused, the order stays as it was
            st.post_only_rejects += 1
            _reject(e, idx, POST_ONLY_WOULD_TAKE)
            return
    o.amends += 1
    grew = qty > o.qty + 1e-6 * lot
    o.qty = qty
    o.price = price
    o.tick = tick
    if qty <= o.filled + 1e-6 * lot:  # down to what already filled: the rest is cancelled
        remove_open(e, idx)
        r.finish(e, idx, r.CANCELLED, 0)
    elif moved or grew:  # a new price or a bigger size loses priority: back of the queue
        remove_open(e, idx)
        _place(e, idx, crosses)
    else:  # smaller at the same price: keeps its place
        r.report_order(e, idx, 0)


@nb.njit()
def arrive(e: Arrays) -> None:
    """The next request in flight reaches the exchange: rate limit, then new / amend / cancel / cancel-all."""
    st = e.state[0]
    q = e.requests[st.req_head]
    st.req_head += 1
    kind, idx = q.kind, q.oid - 1
    st.requests += 1
    if kind == r.REQ_NEW:
        e.orders[idx].ts_arrive = st.ex_now
    if not _rate_ok(e):
        st.rate_limit_rejects += 1
        if kind == r.REQ_NEW:
            r.finish(e, idx, r.REJECTED, RATE_LIMIT)
        elif idx >= 0:
            e.orders[idx].reject = RATE_LIMIT
            r.report_order(e, idx, RATE_LIMIT)
        else:
            r.push_report(e, st.ex_now + st.response_ns, r.REP_ORDER, 0, 0, RATE_LIMIT, (0.0, 0.0, 0.0))
        return
    if kind == r.REQ_NEW:
        _new(e, idx)
    elif kind == r.REQ_CANCEL_ALL:  # one request
        for s in range(2):
            while st.n_open[s] > 0:
                o = e.book[s, st.n_open[s] - 1]
                remove_open(e, o)
                r.finish(e, o, r.CANCELLED, 0)
        r.push_report(e, st.ex_now + st.response_ns, r.REP_ORDER, 0, 0, 0, (0.0, 0.0, 0.0))
    elif e.orders[idx].status != r.OPEN:  # filled, cancelled or expired meanwhile: too late
        if e.orders[idx].status == r.REJECTED:  # a pending order cannot be here
            st.invalid += 1
            _reject(e, idx, INVALID)
        else:
            if kind == r.REQ_CANCEL:
                st.too_late_cancels += 1
            else:
                st.too_late_amends += 1
            _reject(e, idx, TOO_LATE)
    elif kind == r.REQ_CANCEL:
        remove_open(e, idx)
        r.finish(e, idx, r.CANCELLED, 0)
    else:
        _amend(e, idx, q.price, q.qty)
