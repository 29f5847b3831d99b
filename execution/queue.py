"""Queue position and passive (maker) fills of our resting orders (REFERENCE section 2, points 5-7).

Our open orders are kept per side in price-time priority (``book[0]`` buys best first, ``book[1]``
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

import numba as nb
import numpy as np

from execution.records import Arrays, record_fill, to_tick, whole_lots
from execution.types import FillRule, QueueModel

RISK_AVERSE = int(QueueModel.RISK_AVERSE)
HFTBACKTEST = int(FillRule.HFTBACKTEST)


@nb.njit()
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


@nb.njit(inline="always")
def _remaining(e: Arrays, idx: int) -> float:
    return float(e.orders[idx].qty - e.orders[idx].filled)


@nb.njit()
def insert_open(e: Arrays, idx: int) -> None:
    """Put order ``idx`` in its side's list, behind every order at its price or better."""
    st = e.state[0]
    s = 0 if e.orders[idx].side > 0 else 1
    n = st.n_open[s]
    tick = e.orders[idx].tick
    j = 0
    while j < n:
        k = e.orders[e.book[s, j]].tick
        if (k < tick) if s == 0 else (k > tick):
            break
        j += 1
    for m in range(n, j, -1):
        e.book[s, m] = e.book[s, m - 1]
    e.book[s, j] = idx
    st.n_open[s] = n + 1


@nb.njit()
def remove_open(e: Arrays, idx: int) -> None:
    """Take order ``idx`` out of its side's list (no-op when it is not there)."""
    st = e.state[0]
    s = 0 if e.orders[idx].side > 0 else 1
    n = st.n_open[s]
    for j in range(n):
        if e.book[s, j] == idx:
            for m in range(j, n - 1):
                e.book[s, m] = e.book[s, m + 1]
            st.n_open[s] = n - 1
            return


@nb.njit()
def rest(e: Arrays, px: np.ndarray, qty: np.ndarray, dep: np.ndarray, idx: int) -> None:
    """Order ``idx`` joins the back of the queue at its price; ``px``/``qty``/``dep`` are its own
    side of the exchange-side book (empty arrays when there is no book yet)."""
    st = e.state[0]
    tick = e.orders[idx].tick
    if px.shape[0] == 0:  # no book yet: the queue is learnt from the first one
        size, seen = 0.0, False
    else:
        size, seen = level_at(px, qty, dep, tick, st.tick, e.orders[idx].side > 0)
    e.orders[idx].seq = st.seq
    st.seq += 1
    e.orders[idx].known = 1 if seen else 0
    e.orders[idx].level = size
    e.orders[idx].traded = 0.0
    insert_open(e, idx)
    own, floor = own_ahead(e, idx)
    # one FIFO: never less market volume ahead than our earlier orders at this price (the displayed
    # size can be smaller when our own taker order just took from this level)
    e.orders[idx].ahead = max(size, floor)
    e.orders[idx].qa0 = e.orders[idx].ahead + own if seen else np.nan


@nb.njit()
def own_ahead(e: Arrays, idx: int) -> tuple[float, float]:
    """(what our earlier orders at the same price still have left, the most market volume ahead
    of any of them): they fill before ``idx``."""
    st = e.state[0]
    s = 0 if e.orders[idx].side > 0 else 1
    tick = e.orders[idx].tick
    total = 0.0
    most = 0.0
    for j in range(st.n_open[s]):
        o = e.book[s, j]
        if o != idx and e.orders[o].tick == tick and e.orders[o].seq < e.orders[idx].seq:
            total += _remaining(e, o)
            most = max(most, e.orders[o].ahead)
    return total, most


@nb.njit()
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


@nb.njit()
def touch_fill(
    e: Arrays,
    opx: np.ndarray,
    oqx: np.ndarray,
    odep: np.ndarray,
    idx: int,
    taken_before: float,
) -> bool:
    """The opposite best reached order ``idx``'s price (FillRule.CAPPED): fill, at our price as maker,
    what the opposite side ``opx``/``oqx`` displays at or better than it, net of ``odep`` (what our
    orders took from this book already) and of ``taken_before`` (what they took from the best levels
    at earlier book events while the book stayed crossed). True when the order is now filled."""
    st = e.state[0]
    tick_size = st.tick
    buy = e.orders[idx].side > 0
    tick = e.orders[idx].tick
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
    q = whole_lots(avail, _remaining(e, idx), st.lot)
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
    st.depleted = 1
    return record_fill(e, idx, e.orders[idx].price, q, True)


@nb.njit()
def on_book(e: Arrays, row: int) -> None:
    """The exchange's book is now row ``row`` of the market: fill orders the opposite best reaches, then
    move every other order's queue position by the level change."""
    st, m = e.state[0], e.market
    bpx, bqx, apx, aqx, dep = m.bid_px[row], m.bid_qty[row], m.ask_px[row], m.ask_qty[row], e.dep
    tick_size = st.tick
    model = st.queue_model
    power = st.power
    whole = st.fill_rule == HFTBACKTEST
    for s in range(2):
        px = bpx if s == 0 else apx
        qty = bqx if s == 0 else aqx
        opx = apx if s == 0 else bpx
        oqx = aqx if s == 0 else bqx
        opp = opx[0]
        has_opp = not np.isnan(opp)
        opp_tick = to_tick(opp, tick_size) if has_opp else 0
        n = st.n_open[s]
        levels = px.shape[0]
        i = 0  # levels and orders are both best first: one merged walk
        level_tick = to_tick(px[0], tick_size) if levels > 0 and px[0] == px[0] else 0
        j = 0
        prev_tick = -1
        prev_ahead = 0.0
        taken_before = st.touch[s]
        crossed = False
        while j < n:
            idx = e.book[s, j]
            tick = e.orders[idx].tick
            if has_opp and ((opp_tick <= tick) if s == 0 else (opp_tick >= tick)):
                # the opposite best reached our price: fills at our price, as maker
                crossed = True
                if whole:
                    done = record_fill(e, idx, e.orders[idx].price, _remaining(e, idx), True)
                else:
                    before = e.orders[idx].filled
                    done = touch_fill(e, opx, oqx, dep[1 - s], idx, taken_before)
                    st.touch[s] += e.orders[idx].filled - before
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
                if e.orders[idx].known == 0:  # first sight of a level that was beyond the visible book
                    e.orders[idx].known = 1
                    e.orders[idx].ahead = size
                    e.orders[idx].qa0 = size + own_ahead(e, idx)[0]
                else:
                    e.orders[idx].ahead = queue_after_depth(
                        e.orders[idx].ahead, e.orders[idx].level, size, e.orders[idx].traded, model, power
                    )
                e.orders[idx].level = size
                e.orders[idx].traded = 0.0
            if tick == prev_tick and e.orders[idx].ahead < prev_ahead:
                e.orders[idx].ahead = prev_ahead  # one FIFO: never ahead of our earlier order
            prev_tick = tick
            prev_ahead = e.orders[idx].ahead
            j += 1
        if not crossed:
            st.touch[s] = 0.0  # the book no longer reaches our orders: what shows next is new volume


@nb.njit()
def on_trade(e: Arrays, price: float, volume: float, taker_side: int) -> None:
    """One print: hand its volume to our orders on the passive side in price-time priority."""
    st = e.state[0]
    s = 1 if taker_side > 0 else 0  # a taker buy lifts asks: our sells
    n = st.n_open[s]
    if n == 0:
        return
    lot = st.lot
    t = to_tick(price, st.tick)
    unused = volume
    j = 0
    while j < n:
        idx = e.book[s, j]
        tick = e.orders[idx].tick
        rem = _remaining(e, idx)
        if (tick > t) if s == 0 else (tick < t):
            # traded through our price: we would have been hit first
            q = whole_lots(unused, rem, lot)
        elif tick == t:
            e.orders[idx].traded += volume  # explains this much of the next level decrease
            if e.orders[idx].known == 0:
                j += 1
                continue
            reach = unused  # what of the print reaches this order's part of the queue
            ahead = e.orders[idx].ahead
            q = whole_lots(reach - ahead, rem, lot)
            e.orders[idx].ahead = max(ahead - reach, 0.0)
        else:
            break  # worse than the print: so is everything after it
        if q > 0.0:
            unused -= q
            if record_fill(e, idx, e.orders[idx].price, q, True):
                remove_open(e, idx)
                n -= 1
                continue
        j += 1
