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
(``writer.py``; the state and parameters are named records, ``state.py``; the book's moves are
``book.py``).
Randomness comes from numba's generator, re-seeded per chunk so a run is reproducible whatever
else the process does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from core.jit import typed_int  # (also: an on-disk cache of an older version is a miss, not a crash)
from sim.book import Row, deplete, keep_centred, lognormal_lots, reform, thin
from sim.state import MAX_META, MSG_DELTA, MSG_SNAPSHOT, MSG_TRADE, Book, Out
from sim.writer import publish, put_print, put_trade_end, put_trade_head

_ZERO, _BID, _ASK = typed_int(0), typed_int(-1), typed_int(1)  # numpy ints: see run_chunk


@nb.njit(cache=True)
def _trade(st: Row, par: Row, bids: np.ndarray, asks: np.ndarray, o: Out, side: int, pos: int) -> int:
    """A market order of ``side`` (+1 buy, -1 sell) walks the book; one publicTrade message."""
    lots_per_btc = par.lots_per_btc
    size = lognormal_lots(par.trade_med * lots_per_btc, par.trade_sigma, par.trade_max * lots_per_btc)
    base = st.base_tick
    q = asks if side > 0 else bids
    idx = (st.best_ask if side > 0 else st.best_bid) - base
    pos = put_trade_head(o, pos, st.t_ns // 1_000_000)
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
        pos = put_print(o, pos, st, par, side, tick, take, first)
        first = False
        if q[idx] == 0 and tick == (st.best_ask if side > 0 else st.best_bid):
            depleted = True
        if q[idx] == 0:
            idx += side
            walked += 1
    pos = put_trade_end(o.buf, pos)
    if depleted:
        # the order ran through the best queue: the price moves past everything it consumed
        if side > 0:
            if base + idx > st.best_ask:
                st.best_ask = base + idx - 1  # deplete moves from the last emptied level
        elif base + idx < st.best_bid:
            st.best_bid = base + idx + 1
        deplete(st, par, bids, asks, side)
    return pos


@nb.njit(cache=True)
def _metaorders(st: Row, par: Row, activity: float) -> None:
    """End the metaorders that are due, and start one with the probability of a Poisson start.

    Called once per publish step (the cadence is the metaorders' time resolution). Durations are
    Pareto with tail exponent ``meta_tail``, scaled to the median ``meta_dur_ns``, capped.
    """
    t = st.t_ns
    end, sign_of = st.meta_end, st.meta_sign
    for i in range(MAX_META):
        if end[i] != 0 and end[i] <= t:
            st.meta_net -= sign_of[i]
            end[i] = 0
    rate = par.meta_rate * activity
    if rate <= 0.0 or np.random.random() >= 1.0 - np.exp(-rate * par.cadence_ns * 1e-9):
        return
    sign = 1 if np.random.random() < 0.5 else -1
    tail = par.meta_tail
    x_min = par.meta_dur_ns * 2.0 ** (-1.0 / tail)  # Pareto(x_min, tail) has median meta_dur_ns
    duration = min(x_min * (1.0 - np.random.random()) ** (-1.0 / tail), par.meta_max_ns)
    for i in range(MAX_META):
        if end[i] == 0:
            end[i] = t + int(duration) + 1
            sign_of[i] = sign
            st.meta_net += sign
            return


@nb.njit(cache=True)
def _scheduled(st: Row, par: Row, b: Book, o: Out, t: int, pos: int, n: int) -> tuple[int, int]:
    """The scheduled steps due at ``t``: the spread closing, a publish (with the activity regime
    and the metaorders, which move on the publish cadence); returns (pos, messages written)."""
    st.t_ns = t
    if st.reform_side != 0 and st.reform_at == t:
        reform(st, par, b.bids, b.asks)
    if st.next_publish == t:
        cadence = int(par.cadence_ns)
        snapshot = st.snapshot_due == 1
        pos, written = publish(b, par, o, pos)
        if written:
            o.end[n] = pos
            o.ts[n] = t + int(par.latency_ns)
            o.kind[n] = MSG_SNAPSHOT if snapshot else MSG_DELTA
            n += 1
        st.next_publish = t + cadence
        # activity regime: Ornstein-Uhlenbeck in log space, stationary sd = regime_vol
        a = np.exp(-np.log(2.0) * cadence / par.regime_hl_ns)
        sd = par.regime_vol * np.sqrt(1.0 - a * a)
        st.regime = a * st.regime + sd * np.random.standard_normal()
        _metaorders(st, par, np.exp(st.regime))
        keep_centred(st, par, b.bids, b.asks)
    return pos, n


@nb.njit(cache=True, inline="always")  # per event: no call, no reference counting
def _rates(
    st: Row, par: Row, bids: np.ndarray, asks: np.ndarray, q_ref: float
) -> tuple[float, float, float, float, float, float, float]:
    """Event rates (1/s): limit bid, limit ask, cancel bid, cancel ask, market buy, market sell, depth."""
    base = st.base_tick
    qb = float(bids[st.best_bid - base])
    qa = float(asks[st.best_ask - base])
    imb = (qb - qa) / (qb + qa) if qb + qa > 0 else 0.0
    m = np.exp(st.regime)
    r_lb = m * par.limit * (1.0 + par.refill * max(0.0, 1.0 - qb / q_ref))
    r_la = m * par.limit * (1.0 + par.refill * max(0.0, 1.0 - qa / q_ref))
    r_cb = m * par.cancel * qb / q_ref * (1.0 + par.cancel_imb * max(0.0, -imb))
    r_ca = m * par.cancel * qa / q_ref * (1.0 + par.cancel_imb * max(0.0, imb))
    p_buy = min(1.0, max(0.0, 0.5 + par.market_imb * imb + par.meta_tilt * st.meta_net))
    r_mb = m * par.market * p_buy
    r_ms = m * par.market * (1.0 - p_buy)
    r_d = m * par.depth_rate
    return r_lb, r_la, r_cb, r_ca, r_mb, r_ms, r_d


@nb.njit(cache=True, inline="always")  # per event: no call, no reference counting
def _event(
    st: Row,
    par: Row,
    bids: np.ndarray,
    asks: np.ndarray,
    o: Out,
    r: tuple[float, float, float, float, float, float, float],
    pos: int,
    n: int,
) -> tuple[int, int]:
    """One random event, drawn in proportion to the rates ``r``; returns (pos, messages written)."""
    r_lb, r_la, r_cb, r_ca, r_mb, r_ms, r_d = r
    total = r_lb + r_la + r_cb + r_ca + r_mb + r_ms + r_d
    base = st.base_tick
    order_med = par.order_med * par.lots_per_btc
    u = np.random.random() * total
    if u < r_lb:
        bids[st.best_bid - base] += lognormal_lots(order_med, par.order_sigma, 1e12)
    elif u < r_lb + r_la:
        asks[st.best_ask - base] += lognormal_lots(order_med, par.order_sigma, 1e12)
    elif u < r_lb + r_la + r_cb:
        i = st.best_bid - base
        bids[i] -= min(bids[i], lognormal_lots(order_med, par.order_sigma, 1e12))
        if bids[i] == 0:
            deplete(st, par, bids, asks, _BID)
    elif u < r_lb + r_la + r_cb + r_ca:
        i = st.best_ask - base
        asks[i] -= min(asks[i], lognormal_lots(order_med, par.order_sigma, 1e12))
        if asks[i] == 0:
            deplete(st, par, bids, asks, _ASK)
    elif u < total - r_d:
        side = 1 if u < r_lb + r_la + r_cb + r_ca + r_mb else -1
        pos = _trade(st, par, bids, asks, o, side, pos)
        o.end[n] = pos
        o.ts[n] = st.t_ns + int(par.latency_ns)
        o.kind[n] = MSG_TRADE
        n += 1
    else:
        d = 1 + int(np.random.random() * par.depth_ticks)
        if np.random.random() < 0.5:
            i = st.best_bid - d - base
            if i >= 0:
                bids[i] = thin(par)
        else:
            i = st.best_ask + d - base
            if i < asks.shape[0]:
                asks[i] = thin(par)
    return pos, n


@nb.njit(cache=True)
def run_chunk(seed: int, end_ns: int, b: Book, params: np.ndarray, o: Out) -> int:
    """Simulate until ``end_ns``; returns the number of messages written, or -1 if a buffer is full.

    On -1 the state is partly advanced: the caller restores its copy and retries with more room.
    """
    np.random.seed(seed)
    st = b.state[0]
    par = params[0]
    q_ref = par.q * par.lots_per_btc
    margin = 64 * 1024
    # int64 from the start (core.jit.typed_int): a literal 0 would compile the kernels they are
    # passed to twice, for the literal and for the int64 they become in the loop
    n = _ZERO
    pos = _ZERO
    t = st.t_ns
    bids, asks = b.bids, b.asks  # once: every access of a tuple's array counts a reference
    room, msgs = o.buf.shape[0] - margin, o.end.shape[0] - 2
    while True:
        if pos > room or n >= msgs:
            return -1
        r = _rates(st, par, bids, asks, q_ref)
        r_lb, r_la, r_cb, r_ca, r_mb, r_ms, r_d = r
        total = r_lb + r_la + r_cb + r_ca + r_mb + r_ms + r_d
        dt = np.random.exponential(1e9 / total) if total > 0 else 1e18
        deadline = st.next_publish
        if st.reform_side != 0 and st.reform_at < deadline:
            deadline = st.reform_at
        if min(t + dt, deadline) > end_ns:
            st.t_ns = end_ns  # memoryless: the next chunk redraws the pending event
            return n
        if t + dt >= deadline:
            # a scheduled step comes first (memoryless: the next event is redrawn after it)
            t = deadline
            pos, n = _scheduled(st, par, b, o, t, pos, n)
            continue
        t += int(dt)
        st.t_ns = t
        pos, n = _event(st, par, bids, asks, o, r, pos, n)
