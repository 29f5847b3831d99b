"""The simulator's numba kernel: a queue-reactive order book that writes Bybit v5 messages.

Model (after Huang, Lehalle & Rosenbaum 2015, "Simulating and analyzing order book data: the
queue-reactive model", JASA 110(509), shaped to what the BTC perpetual recordings show: a deep
queue at each best price and a thin, gappy book behind it):

- Each best queue receives limit orders at ``limit_rate * (1 + refill_boost * max(0, 1 - q/Q))``
  and cancels at ``cancel_rate * q/Q * (1 + cancel_imbalance * max(0, -I_side))``: queues are
  refilled when small, cancelled in proportion to their size, and pulled faster on the thin side.
- Market orders arrive at ``market_rate``; a buy with probability
  ``0.5 + market_imbalance * I + meta_tilt * N`` (I = (qb - qa) / (qb + qa), N the net sign of
  the active metaorders); heavy-tailed sizes; they walk the visible book, one print per level.
- Metaorders (Lillo, Mike & Farmer 2005; Bouchaud, Farmer & Lillo 2009) start as a Poisson
  process (``meta_rate``), each with a random sign and a Pareto duration (median
  ``meta_duration``, tail ``meta_duration_tail``, capped): hidden state that makes order signs
  long-memory and recent trade flow informative about the next tens of seconds.
- When a best queue empties (trades or cancels), the price on that side moves to the next level
  plus a geometric pull-back, a new deep queue forms there, and after ``reform_delay`` the other
  side follows to one tick away (the spread closes). The queue that empties first is the thin
  one, so the imbalance predicts the next mid move, as in the data.
- Behind the best, ``depth_rate`` refreshes redraw a random level within ``depth_ticks``
  (occupied with probability ``depth_occupancy``, log-normal size).
- A slow log-normal activity regime multiplies every rate (volatility clustering).

The kernel runs a chunk of simulated time as a Gillespie simulation and, every ``cadence``,
writes an ``orderbook.{depth}`` delta (the levels of the top ``depth`` that changed, size 0 for
levels that left) and, per market order, a ``publicTrade`` message, as JSON bytes into a buffer
(``writer.py``; the state and parameter slots are in ``layout.py``).
Randomness comes from numba's generator, re-seeded per chunk so a run is reproducible whatever
else the process does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from sim.layout import (
    BASE,
    BEST_ASK,
    BEST_BID,
    MAX_META,
    META_END,
    META_NET,
    META_SIGN,
    MSG_DELTA,
    MSG_SNAPSHOT,
    MSG_TRADE,
    NEXT_PUBLISH,
    P_AWAY_SCALE,
    P_CADENCE_NS,
    P_CANCEL,
    P_CANCEL_IMB,
    P_DEPTH_MED,
    P_DEPTH_OCC,
    P_DEPTH_RATE,
    P_DEPTH_SIGMA,
    P_DEPTH_TICKS,
    P_LATENCY_NS,
    P_LIMIT,
    P_MARKET,
    P_MARKET_IMB,
    P_META_DUR_NS,
    P_META_MAX_NS,
    P_META_RATE,
    P_META_TAIL,
    P_META_TILT,
    P_ORDER_MED,
    P_ORDER_SIGMA,
    P_PULLBACK,
    P_Q,
    P_Q_SIGMA,
    P_QTY_DEC,
    P_REFILL,
    P_REFORM_NS,
    P_REGIME_HL_NS,
    P_REGIME_VOL,
    P_TRADE_MAX,
    P_TRADE_MED,
    P_TRADE_SIGMA,
    REFORM_AT,
    REFORM_SIDE,
    REGIME,
    SNAPSHOT_DUE,
    T_NS,
)
from sim.writer import publish, put_print, put_trade_end, put_trade_head


@nb.njit(cache=True)
def _lognormal_lots(median_lots: float, sigma: float, cap_lots: float) -> int:
    x = median_lots * np.exp(sigma * np.random.standard_normal())
    x = min(x, cap_lots)
    return max(1, int(x))


@nb.njit(cache=True)
def _geometric(mean: float) -> int:
    if mean <= 0.0:
        return 0
    p = 1.0 / (1.0 + mean)
    return int(np.log(1.0 - np.random.random()) / np.log(1.0 - p))


@nb.njit(cache=True)
def _thin(par: np.ndarray, lots_per_btc: float) -> int:
    if np.random.random() >= par[P_DEPTH_OCC]:
        return 0
    return _lognormal_lots(par[P_DEPTH_MED] * lots_per_btc, par[P_DEPTH_SIGMA], 1e9)


@nb.njit(cache=True)
def _big(par: np.ndarray, lots_per_btc: float) -> int:
    return _lognormal_lots(par[P_Q] * lots_per_btc, par[P_Q_SIGMA], 1e12)


# -- the book -----------------------------------------------------------------------------------


@nb.njit(cache=True)
def _refill_range(q: np.ndarray, lo: int, hi: int, par: np.ndarray, lots_per_btc: float) -> None:
    for i in range(max(lo, 0), min(hi, q.shape[0])):
        q[i] = _thin(par, lots_per_btc)


@nb.njit(cache=True)
def _clear_range(q: np.ndarray, lo: int, hi: int) -> None:
    for i in range(max(lo, 0), min(hi, q.shape[0])):
        q[i] = 0


@nb.njit(cache=True)
def _move_ask(
    st: np.ndarray, par: np.ndarray, asks: np.ndarray, new_ba: int, lots_per_btc: float, scale: float
) -> None:
    """The best ask moves to new_ba (up or down); keep the thin book behind it in range."""
    base = st[BASE]
    old = st[BEST_ASK]
    d = int(par[P_DEPTH_TICKS])
    if new_ba > old:
        _clear_range(asks, old - base, new_ba - base)
        _refill_range(asks, max(old + d + 1, new_ba + 1) - base, new_ba + d + 1 - base, par, lots_per_btc)
    else:
        _refill_range(asks, new_ba + 1 - base, old - base, par, lots_per_btc)
        if old > new_ba:
            asks[old - base] = _thin(par, lots_per_btc)  # the old deep queue mostly leaves
        _clear_range(asks, new_ba + d + 1 - base, old + d + 1 - base)
    asks[new_ba - base] += max(1, int(scale * _big(par, lots_per_btc)))
    st[BEST_ASK] = new_ba


@nb.njit(cache=True)
def _move_bid(
    st: np.ndarray, par: np.ndarray, bids: np.ndarray, new_bb: int, lots_per_btc: float, scale: float
) -> None:
    base = st[BASE]
    old = st[BEST_BID]
    d = int(par[P_DEPTH_TICKS])
    if new_bb < old:
        _clear_range(bids, new_bb + 1 - base, old + 1 - base)
        _refill_range(bids, new_bb - d - base, min(old - d, new_bb) - base, par, lots_per_btc)
    else:
        _refill_range(bids, old + 1 - base, new_bb - base, par, lots_per_btc)
        if new_bb > old:
            bids[old - base] = _thin(par, lots_per_btc)
        _clear_range(bids, old - d - base, new_bb - d - base)
    bids[new_bb - base] += max(1, int(scale * _big(par, lots_per_btc)))
    st[BEST_BID] = new_bb


@nb.njit(cache=True)
def _next_level(q: np.ndarray, idx: int, step: int, limit: int) -> int:
    i = idx + step
    k = 0
    while k < limit and 0 <= i + step < q.shape[0] and q[i] == 0:
        i += step
        k += 1
    return i


@nb.njit(cache=True)
def _deplete(
    st: np.ndarray, par: np.ndarray, bids: np.ndarray, asks: np.ndarray, side: int, lots_per_btc: float
) -> None:
    """The best queue of ``side`` (+1 ask, -1 bid) emptied: move that side, schedule the other."""
    base = st[BASE]
    limit = int(par[P_DEPTH_TICKS])
    extra = _geometric(par[P_PULLBACK])
    if side > 0:
        nxt = _next_level(asks, st[BEST_ASK] - base, 1, limit) + base
        _move_ask(st, par, asks, min(nxt + extra, base + asks.shape[0] - 1), lots_per_btc, par[P_AWAY_SCALE])
        st[REFORM_SIDE] = 1
    else:
        nxt = _next_level(bids, st[BEST_BID] - base, -1, limit) + base
        _move_bid(st, par, bids, max(nxt - extra, base), lots_per_btc, par[P_AWAY_SCALE])
        st[REFORM_SIDE] = -1
    st[REFORM_AT] = st[T_NS] + int(np.random.exponential(par[P_REFORM_NS])) + 1
    _keep_centred(st, par, bids, asks)  # several depletions may come before the next publish


@nb.njit(cache=True)
def _reform(st: np.ndarray, par: np.ndarray, bids: np.ndarray, asks: np.ndarray, lots_per_btc: float) -> None:
    """The other side follows to one tick from the side that moved: the spread closes."""
    if st[REFORM_SIDE] == 1 and st[BEST_ASK] - st[BEST_BID] > 1:
        _move_bid(st, par, bids, st[BEST_ASK] - 1, lots_per_btc, 1.0)
    elif st[REFORM_SIDE] == -1 and st[BEST_ASK] - st[BEST_BID] > 1:
        _move_ask(st, par, asks, st[BEST_BID] + 1, lots_per_btc, 1.0)
    st[REFORM_SIDE] = 0


@nb.njit(cache=True)
def _keep_centred(st: np.ndarray, par: np.ndarray, bids: np.ndarray, asks: np.ndarray) -> None:
    """Re-centre the window when the mid comes within 3 x depth_ticks of an edge."""
    mid_idx = (st[BEST_BID] + st[BEST_ASK]) // 2 - st[BASE]
    room = int(par[P_DEPTH_TICKS]) * 3
    if mid_idx < room or mid_idx > bids.shape[0] - room:
        _recenter(st, bids, asks)


@nb.njit(cache=True)
def _recenter(st: np.ndarray, bids: np.ndarray, asks: np.ndarray) -> None:
    """Shift the window so the mid sits in its middle (rare: the window is wide)."""
    w = bids.shape[0]
    mid_idx = (st[BEST_BID] + st[BEST_ASK]) // 2 - st[BASE]
    shift = mid_idx - w // 2
    if shift > 0:
        bids[: w - shift] = bids[shift:].copy()
        bids[w - shift :] = 0
        asks[: w - shift] = asks[shift:].copy()
        asks[w - shift :] = 0
    else:
        s = -shift
        bids[s:] = bids[: w - s].copy()
        bids[:s] = 0
        asks[s:] = asks[: w - s].copy()
        asks[:s] = 0
    st[BASE] += shift


# -- order flow and the event loop --------------------------------------------------------------


@nb.njit(cache=True)
def _trade(
    st: np.ndarray,
    par: np.ndarray,
    bids: np.ndarray,
    asks: np.ndarray,
    side: int,
    lots_per_btc: float,
    buf: np.ndarray,
    pos: int,
    pieces: np.ndarray,
    offsets: np.ndarray,
) -> int:
    """A market order of ``side`` (+1 buy, -1 sell) walks the book; one publicTrade message."""
    size = _lognormal_lots(par[P_TRADE_MED] * lots_per_btc, par[P_TRADE_SIGMA], par[P_TRADE_MAX] * lots_per_btc)
    base = st[BASE]
    q = asks if side > 0 else bids
    idx = (st[BEST_ASK] if side > 0 else st[BEST_BID]) - base
    ms = st[T_NS] // 1_000_000
    pos = put_trade_head(buf, pos, ms, pieces, offsets)
    depleted = False
    first = True
    walked = 0
    while size > 0 and walked < 400 and 0 <= idx < q.shape[0]:
        if q[idx] == 0:
            idx += side
            walked += 1
            continue
        take = min(size, q[idx])
        q[idx] -= take
        size -= take
        tick = base + idx
        pos = put_print(buf, pos, st, par, side, tick, take, ms, first, pieces, offsets)
        first = False
        if q[idx] == 0 and tick == (st[BEST_ASK] if side > 0 else st[BEST_BID]):
            depleted = True
        if q[idx] == 0:
            idx += side
            walked += 1
    pos = put_trade_end(buf, pos)
    if depleted:
        # the order ran through the best queue: the price moves past everything it consumed
        if side > 0:
            if base + idx > st[BEST_ASK]:
                st[BEST_ASK] = base + idx - 1  # _deplete moves from the last emptied level
        elif base + idx < st[BEST_BID]:
            st[BEST_BID] = base + idx + 1
        _deplete(st, par, bids, asks, side, lots_per_btc)
    return pos


@nb.njit(cache=True)
def _metaorders(st: np.ndarray, par: np.ndarray, activity: float) -> None:
    """End the metaorders that are due, and start one with the probability of a Poisson start.

    Called once per publish step (the cadence is the metaorders' time resolution). Durations are
    Pareto with tail exponent ``P_META_TAIL``, scaled to the median ``P_META_DUR_NS``, capped.
    """
    t = st[T_NS]
    for i in range(MAX_META):
        if st[META_END + i] != 0 and st[META_END + i] <= t:
            st[META_NET] -= st[META_SIGN + i]
            st[META_END + i] = 0
    rate = par[P_META_RATE] * activity
    if rate <= 0.0 or np.random.random() >= 1.0 - np.exp(-rate * par[P_CADENCE_NS] * 1e-9):
        return
    sign = 1 if np.random.random() < 0.5 else -1
    tail = par[P_META_TAIL]
    x_min = par[P_META_DUR_NS] * 2.0 ** (-1.0 / tail)  # Pareto(x_min, tail) has median P_META_DUR_NS
    duration = min(x_min * (1.0 - np.random.random()) ** (-1.0 / tail), par[P_META_MAX_NS])
    for i in range(MAX_META):
        if st[META_END + i] == 0:
            st[META_END + i] = t + int(duration) + 1
            st[META_SIGN + i] = sign
            st[META_NET] += sign
            return


@nb.njit(cache=True)
def run_chunk(
    seed: int,
    end_ns: int,
    st: np.ndarray,
    fs: np.ndarray,
    par: np.ndarray,
    bids: np.ndarray,
    asks: np.ndarray,
    pub: np.ndarray,
    scratch: np.ndarray,
    buf: np.ndarray,
    msg_end: np.ndarray,
    msg_ts: np.ndarray,
    msg_kind: np.ndarray,
    pieces: np.ndarray,
    offsets: np.ndarray,
) -> int:
    """Simulate until ``end_ns``; returns the number of messages written, or -1 if a buffer is full.

    On -1 the state is partly advanced: the caller restores its copy and retries with more room.
    """
    np.random.seed(seed)
    lots_per_btc = 10.0 ** par[P_QTY_DEC]
    q_ref = par[P_Q] * lots_per_btc
    latency = int(par[P_LATENCY_NS])
    cadence = int(par[P_CADENCE_NS])
    margin = 64 * 1024
    n = 0
    pos = 0
    t = st[T_NS]
    while True:
        if pos + margin > buf.shape[0] or n + 2 >= msg_end.shape[0]:
            return -1
        base = st[BASE]
        qb = float(bids[st[BEST_BID] - base])
        qa = float(asks[st[BEST_ASK] - base])
        imb = (qb - qa) / (qb + qa) if qb + qa > 0 else 0.0
        m = np.exp(fs[REGIME])
        r_lb = m * par[P_LIMIT] * (1.0 + par[P_REFILL] * max(0.0, 1.0 - qb / q_ref))
        r_la = m * par[P_LIMIT] * (1.0 + par[P_REFILL] * max(0.0, 1.0 - qa / q_ref))
        r_cb = m * par[P_CANCEL] * qb / q_ref * (1.0 + par[P_CANCEL_IMB] * max(0.0, -imb))
        r_ca = m * par[P_CANCEL] * qa / q_ref * (1.0 + par[P_CANCEL_IMB] * max(0.0, imb))
        p_buy = min(1.0, max(0.0, 0.5 + par[P_MARKET_IMB] * imb + par[P_META_TILT] * st[META_NET]))
        r_mb = m * par[P_MARKET] * p_buy
        r_ms = m * par[P_MARKET] * (1.0 - p_buy)
        r_d = m * par[P_DEPTH_RATE]
        total = r_lb + r_la + r_cb + r_ca + r_mb + r_ms + r_d
        dt = np.random.exponential(1e9 / total) if total > 0 else 1e18
        deadline = st[NEXT_PUBLISH]
        if st[REFORM_SIDE] != 0 and st[REFORM_AT] < deadline:
            deadline = st[REFORM_AT]
        if min(t + dt, deadline) > end_ns:
            st[T_NS] = end_ns  # memoryless: the next chunk redraws the pending event
            return n
        if t + dt >= deadline:
            # a scheduled step comes first (memoryless: the next event is redrawn after it)
            t = deadline
            st[T_NS] = t
            if st[REFORM_SIDE] != 0 and st[REFORM_AT] == t:
                _reform(st, par, bids, asks, lots_per_btc)
            if st[NEXT_PUBLISH] == t:
                snapshot = st[SNAPSHOT_DUE] == 1
                pos, written = publish(st, par, bids, asks, pub, scratch, buf, pos, pieces, offsets)
                if written:
                    msg_end[n] = pos
                    msg_ts[n] = t + latency
                    msg_kind[n] = MSG_SNAPSHOT if snapshot else MSG_DELTA
                    n += 1
                st[NEXT_PUBLISH] = t + cadence
                # activity regime: Ornstein-Uhlenbeck in log space, stationary sd = regime_vol
                a = np.exp(-np.log(2.0) * cadence / par[P_REGIME_HL_NS])
                sd = par[P_REGIME_VOL] * np.sqrt(1.0 - a * a)
                fs[REGIME] = a * fs[REGIME] + sd * np.random.standard_normal()
                _metaorders(st, par, np.exp(fs[REGIME]))
                _keep_centred(st, par, bids, asks)
            continue
        t += int(dt)
        st[T_NS] = t
        u = np.random.random() * total
        if u < r_lb:
            bids[st[BEST_BID] - base] += _lognormal_lots(par[P_ORDER_MED] * lots_per_btc, par[P_ORDER_SIGMA], 1e12)
        elif u < r_lb + r_la:
            asks[st[BEST_ASK] - base] += _lognormal_lots(par[P_ORDER_MED] * lots_per_btc, par[P_ORDER_SIGMA], 1e12)
        elif u < r_lb + r_la + r_cb:
            i = st[BEST_BID] - base
            bids[i] -= min(bids[i], _lognormal_lots(par[P_ORDER_MED] * lots_per_btc, par[P_ORDER_SIGMA], 1e12))
            if bids[i] == 0:
                _deplete(st, par, bids, asks, -1, lots_per_btc)
        elif u < r_lb + r_la + r_cb + r_ca:
            i = st[BEST_ASK] - base
            asks[i] -= min(asks[i], _lognormal_lots(par[P_ORDER_MED] * lots_per_btc, par[P_ORDER_SIGMA], 1e12))
            if asks[i] == 0:
                _deplete(st, par, bids, asks, 1, lots_per_btc)
        elif u < total - r_d:
            side = 1 if u < r_lb + r_la + r_cb + r_ca + r_mb else -1
            pos = _trade(st, par, bids, asks, side, lots_per_btc, buf, pos, pieces, offsets)
            msg_end[n] = pos
            msg_ts[n] = t + latency
            msg_kind[n] = MSG_TRADE
            n += 1
        else:
            d = 1 + int(np.random.random() * par[P_DEPTH_TICKS])
            if np.random.random() < 0.5:
                i = st[BEST_BID] - d - base
                if i >= 0:
                    bids[i] = _thin(par, lots_per_btc)
            else:
                i = st[BEST_ASK] + d - base
                if i < asks.shape[0]:
                    asks[i] = _thin(par, lots_per_btc)
