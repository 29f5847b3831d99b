"""Queue position and passive (maker) fills of our resting orders (REFERENCE section 2, points 5-7).

Our open orders are kept per side in price-time priority (``opn[0]`` buys best first, ``opn[1]``
sells best first); orders at one price form one FIFO, the later behind the earlier. Each order
tracks the *market* volume ahead of it at its price (``ahead``): the recorded book never holds our
simulated orders, so "ahead" never exceeds the displayed size there; the BTC ahead of the n-th own
order at a price is its market volume ahead plus what our earlier orders there still have left.

Queue model, after hftbacktest (``hftbacktest/src/backtest/models/queue.rs``, nkaz001/hftbacktest):
- on acceptance, ahead = the displayed size at our price (0 for a new or empty level);
- a trade at our price moves us up one for one (``trade``);
- at a book event, the change of the level size not explained by trades since the previous one,
  chg = prev - new - traded, is split: RISK_AVERSE (``RiskAdverseQueueModel``) puts all of it
  behind us, ahead = min(ahead, new); PROB (``ProbQueueModel`` with ``PowerProbQueueFunc3``) puts
  the share prob = 1 - (front / (front + back))^n behind us and the rest in front:
  est = front - (1 - prob) * chg + min(back - prob * chg, 0), ahead = min(est, new). (REFERENCE
  section 2 and types.QueueModel name that expression p_front; in hftbacktest's code it is the
  probability that a decrease happened *behind* the order, which is what is implemented here.)
An order placed before any book, or beyond the visible levels, learns its queue (the displayed
size) when its level first shows.
Maker fills at our price: a print through our price fills min(remaining, the print's unused
volume); a print at our price fills only its excess over the volume ahead. An opposite best that
reaches our price (types.FillRule): CAPPED fills what the opposite side displays at or better than
our price, in whole lots, best order first, less what our orders on that side already took while
the book stayed crossed (a seller still shown there is taken to be the one who traded with us;
only growth of the displayed size is new volume); the rest keeps resting, with nobody ahead.
HFTBACKTEST fills the rest whatever is displayed (hftbacktest's exchange models). A print's
volume is handed out once, in price-time priority.
"""

from __future__ import annotations

import numpy as np

from core.jit import kernel_jit
from execution.records import Arrays, record_fill, to_tick, whole_lots
from execution.types import FillRule, QueueModel

RISK_AVERSE = int(QueueModel.RISK_AVERSE)
HFTBACKTEST = int(FillRule.HFTBACKTEST)


@kernel_jit()
def level_at(px: np.ndarray, qty: np.ndarray, dep: np.ndarray, tick: int, tick_size: float, bid: bool) -> tuple:
    """(size, visible) at ``tick`` on one side of a top-L row (best first; size net of ``dep``).

    A price between or before the shown levels, or anywhere when the side shows fewer than L
    levels (NaN), is visible with size 0; a price beyond the L-th level is not visible."""
    for i in range(px.shape[0]):
        p = px[i]
        if np.isnan(p):
            return 0.0, True
        k = to_tick(p, tick_size)
        if k == tick:
            return max(qty[i] - dep[i], 0.0), True
        if (k < tick) if bid else (k > tick):
            return 0.0, True
    return 0.0, False


@kernel_jit()
def insert_open(e: Arrays, idx: int) -> None:
    """Put order ``idx`` in its side's list, behind every order at its price or better."""
    st, orders, opn = e.state[0], e.orders, e.opn
    s = 0 if orders[idx].side > 0 else 1
    n = st.n_open[s]
    tick = orders[idx].tick
    j = 0
    while j < n:
        k = orders[opn[s, j]].tick
        if (k < tick) if s == 0 else (k > tick):
            break
        j += 1
    for m in range(n, j, -1):
        opn[s, m] = opn[s, m - 1]
    opn[s, j] = idx
    st.n_open[s] = n + 1


@kernel_jit()
def remove_open(e: Arrays, idx: int) -> None:
    """Take order ``idx`` out of its side's list (no-op when it is not there)."""
    st, opn = e.state[0], e.opn
    s = 0 if e.orders[idx].side > 0 else 1
    n = st.n_open[s]
    for j in range(n):
        if opn[s, j] == idx:
            for m in range(j, n - 1):
                opn[s, m] = opn[s, m + 1]
            st.n_open[s] = n - 1
            return


@kernel_jit()
def rest(e: Arrays, px: np.ndarray, qty: np.ndarray, dep: np.ndarray, idx: int) -> None:
    """Order ``idx`` joins the back of the queue at its price; ``px``/``qty``/``dep`` are its own
    side of the exchange-side book (empty arrays when there is no book yet)."""
    st, o = e.state[0], e.orders[idx]
    if px.shape[0] == 0:  # no book yet: the queue is learnt from the first one
        size, seen = 0.0, False
    else:
        size, seen = level_at(px, qty, dep, o.tick, e.config[0].tick, o.side > 0)
    o.seq = st.seq
    st.seq += 1
    o.known = 1 if seen else 0
    o.level = size
    o.traded = 0.0
    insert_open(e, idx)
    own, floor = own_ahead(e, idx)
    # one FIFO: never less market volume ahead than our earlier orders at this price (the displayed
    # size can be smaller when our own taker order just took from this level)
    o.ahead = max(size, floor)
    o.queue_ahead = o.ahead + own if seen else np.nan


@kernel_jit()
def own_ahead(e: Arrays, idx: int) -> tuple[float, float]:
    """(what our earlier orders at the same price still have left, the most market volume ahead
    of any of them): they fill before ``idx``."""
    orders, opn = e.orders, e.opn
    me = orders[idx]
    s = 0 if me.side > 0 else 1
    total = 0.0
    most = 0.0
    for j in range(e.state[0].n_open[s]):
        k = opn[s, j]
        o = orders[k]
        if k != idx and o.tick == me.tick and o.seq < me.seq:
            total += o.qty - o.filled
            most = max(most, o.ahead)
    return total, most


@kernel_jit()
def queue_after_depth(front: float, prev: float, new: float, traded: float, model: int, power: float) -> float:
    """Market volume ahead of us after the level went from ``prev`` to ``new`` with ``traded``
    printed at it meanwhile (hftbacktest ``ProbQueueModel::depth`` / ``RiskAdverseQueueModel::depth``)."""
    chg = prev - new - traded
    if chg <= 0.0 or model == RISK_AVERSE:
        return min(front, new)
    back = max(prev - front, 0.0)
    total = front + back
    prob = 1.0 - (front / total) ** power if total > 0.0 else 1.0  # share of chg behind us
    est = front - (1.0 - prob) * chg + min(back - prob * chg, 0.0)
    return max(min(est, new), 0.0)


@kernel_jit()
def touch_fill(e: Arrays, opx: np.ndarray, oqx: np.ndarray, odep: np.ndarray, idx: int, taken_before: float) -> bool:
    """The opposite best reached order ``idx``'s price (FillRule.CAPPED): fill, at our price as maker,
    what the opposite side ``opx``/``oqx`` displays at or better than it, net of ``odep`` (what our
    orders took from this book already) and of ``taken_before`` (what they took from the best levels
    at earlier book events while the book stayed crossed). True when the order is now filled."""
    cfg, o = e.config[0], e.orders[idx]
    tick_size = cfg.tick
    buy = o.side > 0
    tick = o.tick
    skip = taken_before
    avail = 0.0
    for i in range(opx.shape[0]):
        p = opx[i]
        if np.isnan(p):
            break
        k = to_tick(p, tick_size)
        if (k > tick) if buy else (k < tick):
            break
        a = max(oqx[i] - odep[i], 0.0)
        used = min(a, skip)
        skip -= used
        avail += a - used
    q = whole_lots(avail, o.qty - o.filled, cfg.lot)
    if q <= 0.0:
        return False
    skip, left = taken_before, q
    for i in range(opx.shape[0]):  # book what we took, best level first
        if left <= 0.0:
            break
        a = max(oqx[i] - odep[i], 0.0)
        used = min(a, skip)
        skip -= used
        take = min(a - used, left)
        odep[i] += take
        left -= take
    e.state[0].depleted = 1
    return record_fill(e, idx, o.price, q, True)


@kernel_jit()
def on_book(e: Arrays, row: int) -> None:
    """Book event ``row`` reached the exchange: fill orders the opposite best reaches, then move
    every other order's queue position by the level change."""
    st, cfg, orders, opn, dep = e.state[0], e.config[0], e.orders, e.opn, e.dep
    bpx, bqx, apx, aqx = e.bid_px[row], e.bid_qty[row], e.ask_px[row], e.ask_qty[row]
    tick_size = cfg.tick
    model = cfg.queue_model
    power = cfg.queue_power
    whole = cfg.fill_rule == HFTBACKTEST
    for s in range(2):
        n = st.n_open[s]
        if n == 0:  # no order on this side: nothing to fill or move
            st.touched[s] = 0.0
            continue
        px = bpx if s == 0 else apx
        qty = bqx if s == 0 else aqx
        opx = apx if s == 0 else bpx
        oqx = aqx if s == 0 else bqx
        opp = opx[0]
        has_opp = not np.isnan(opp)
        opp_tick = to_tick(opp, tick_size) if has_opp else 0
        levels = px.shape[0]
        i = 0  # levels and orders are both best first: one merged walk
        level_tick = to_tick(px[0], tick_size) if levels > 0 and px[0] == px[0] else 0
        j = 0
        prev_tick = -1
        prev_ahead = 0.0
        taken_before = st.touched[s]
        crossed = False
        while j < n:
            idx = opn[s, j]
            o = orders[idx]
            tick = o.tick
            if has_opp and ((opp_tick <= tick) if s == 0 else (opp_tick >= tick)):
                # the opposite best reached our price: fills at our price, as maker
                crossed = True
                if whole:
                    done = record_fill(e, idx, o.price, o.qty - o.filled, True)
                else:
                    before = o.filled
                    done = touch_fill(e, opx, oqx, dep[1 - s], idx, taken_before)
                    st.touched[s] += o.filled - before
                if done:
                    remove_open(e, idx)
                    n -= 1
                    continue
            while i < levels and not np.isnan(px[i]) and ((level_tick > tick) if s == 0 else (level_tick < tick)):
                i += 1
                if i < levels and not np.isnan(px[i]):
                    level_tick = to_tick(px[i], tick_size)
            seen = i < levels  # past the L-th level: not visible
            size = qty[i] - dep[s, i] if seen and not np.isnan(px[i]) and level_tick == tick else 0.0
            if seen:
                if o.known == 0:  # first sight of a level that was beyond the visible book
                    o.known = 1
                    o.ahead = size
                    o.queue_ahead = size + own_ahead(e, idx)[0]
                else:
                    o.ahead = queue_after_depth(o.ahead, o.level, size, o.traded, model, power)
                o.level = size
                o.traded = 0.0
            if tick == prev_tick and o.ahead < prev_ahead:
                o.ahead = prev_ahead  # one FIFO: never ahead of our earlier order
            prev_tick = tick
            prev_ahead = o.ahead
            j += 1
        if not crossed:
            st.touched[s] = 0.0  # the book no longer reaches our orders: what shows next is new volume


@kernel_jit()
def on_trade(e: Arrays, k: int) -> None:
    """Trade ``k`` reached the exchange: hand its volume to our orders on the passive side in
    price-time priority."""
    cfg, orders, opn = e.config[0], e.orders, e.opn
    price, volume, taker_side = e.trade_price[k], e.trade_qty[k], e.trade_side[k]
    s = 1 if taker_side > 0 else 0  # a taker buy lifts asks: our sells
    n = e.state[0].n_open[s]
    if n == 0:
        return
    lot = cfg.lot
    t = to_tick(price, cfg.tick)
    unused = volume
    j = 0
    while j < n:
        idx = opn[s, j]
        o = orders[idx]
        tick = o.tick
        rem = o.qty - o.filled
        if (tick > t) if s == 0 else (tick < t):
            # traded through our price: we would have been hit first
            q = whole_lots(unused, rem, lot)
        elif tick == t:
            o.traded += volume  # explains this much of the next level decrease
            if o.known == 0:
                j += 1
                continue
            reach = unused  # what of the print reaches this order's part of the queue
            ahead = o.ahead
            q = whole_lots(reach - ahead, rem, lot)
            o.ahead = max(ahead - reach, 0.0)
        else:
            break  # worse than the print: so is everything after it
        if q > 0.0:
            unused -= q
            if record_fill(e, idx, o.price, q, True):
                remove_open(e, idx)
                n -= 1
                continue
        j += 1
