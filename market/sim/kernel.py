"""The simulator's numba kernel: a queue-reactive order book that writes Bybit v5 messages.

Model (after Huang, Lehalle & Rosenbaum 2015, "Simulating and analyzing order book data: the
queue-reactive model", JASA 110(509), shaped to what the BTC perpetual recordings show: a deep
queue at each best price and a thin, gappy book behind it):

- Each best queue receives limit orders at ``limit_rate * (1 + refill_boost * max(0, 1 - q/Q))``
  and cancels at ``cancel_rate * q/Q * (1 + cancel_imbalance * max(0, -I_side))``: queues are
  refilled when small, cancelled in proportion to their size, and pulled faster on the thin side.
- Market orders arrive at ``market_rate``; a buy with probability ``0.5 + market_imbalance * I``
  (I = (qb - qa) / (qb + qa)); heavy-tailed sizes; they walk the visible book, one print per level.
- When a best queue empties (trades or cancels), the price on that side moves to the next level
  plus a geometric pull-back, a new deep queue forms there, and after ``reform_delay`` the other
  side follows to one tick away (the spread closes). The queue that empties first is the thin
  one, so the imbalance predicts the next mid move, as in the data.
- Behind the best, ``depth_rate`` refreshes redraw a random level within ``depth_ticks``
  (occupied with probability ``depth_occupancy``, log-normal size).
- A slow log-normal activity regime multiplies every rate (volatility clustering).

The kernel runs a chunk of simulated time as a Gillespie simulation and, every ``cadence``,
writes an ``orderbook.{depth}`` delta (the levels of the top ``depth`` that changed, size 0 for
levels that left) and, per market order, a ``publicTrade`` message, as JSON bytes into a buffer.
Randomness comes from numba's generator, re-seeded per chunk so a run is reproducible whatever
else the process does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# int state slots
T_NS = 0
BEST_BID = 1
BEST_ASK = 2
BASE = 3  # tick of book index 0
UPDATE_ID = 4
TRADE_COUNT = 5
REFORM_SIDE = 6  # 0 none, +1 the bid must follow the ask up, -1 the ask must follow the bid down
REFORM_AT = 7
NEXT_PUBLISH = 8
N_PUB_BID = 9
N_PUB_ASK = 10
LAST_TRADE_TICK = 11
LAST_TRADE_DIR = 12
SNAPSHOT_DUE = 13
N_INT = 14

# float state slots
REGIME = 0
N_FLOAT = 1

# parameter slots (float64 array)
(
    P_Q,
    P_Q_SIGMA,
    P_LIMIT,
    P_REFILL,
    P_CANCEL,
    P_CANCEL_IMB,
    P_ORDER_MED,
    P_ORDER_SIGMA,
    P_MARKET,
    P_MARKET_IMB,
    P_TRADE_MED,
    P_TRADE_SIGMA,
    P_TRADE_MAX,
    P_DEPTH_TICKS,
    P_DEPTH_OCC,
    P_DEPTH_MED,
    P_DEPTH_SIGMA,
    P_DEPTH_RATE,
    P_PULLBACK,
    P_REFORM_NS,
    P_REGIME_VOL,
    P_REGIME_HL_NS,
    P_CADENCE_NS,
    P_LATENCY_NS,
    P_DEPTH,
    P_PX_MULT,
    P_PX_DEC,
    P_QTY_DEC,
    P_AWAY_SCALE,
) = range(29)
N_PARAM = 29

# message kinds in the output
MSG_SNAPSHOT = 0
MSG_DELTA = 1
MSG_TRADE = 2

# text pieces (index into the pieces table)
(
    S_BOOK_SNAP,  # {"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":
    S_BOOK_DELTA,  # {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":
    S_DATA_S,  # ,"data":{"s":"BTCUSDT","b":[
    S_ASKS,  # ],"a":[
    S_U,  # ],"u":
    S_SEQ,  # ,"seq":
    S_CTS,  # },"cts":
    S_TRADE_HEAD,  # {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":
    S_TRADE_DATA,  # ,"data":[
    S_T,  # {"T":
    S_SYM_SIDE,  # ,"s":"BTCUSDT","S":"
    S_TRADE_ID,  # the trade id prefix, e.g. sim1a2b3c4d-
    S_BUY,  # Buy
    S_SELL,  # Sell
    S_V,  # ","v":"
    S_P,  # ","p":"
    S_L,  # ","L":"
    S_PLUS,  # PlusTick
    S_MINUS,  # MinusTick
    S_ZPLUS,  # ZeroPlusTick
    S_ZMINUS,  # ZeroMinusTick
    S_I,  # ","i":"
    S_BT_END,  # ","BT":false}
) = range(23)

SEQ_OFFSET = 7_000_000_000
_LOG10 = np.log(10.0)


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


# -- text output --------------------------------------------------------------------------------


@nb.njit(cache=True)
def _put(buf: np.ndarray, pos: int, pieces: np.ndarray, offsets: np.ndarray, k: int) -> int:
    a = offsets[k]
    b = offsets[k + 1]
    for i in range(a, b):
        buf[pos] = pieces[i]
        pos += 1
    return pos


@nb.njit(cache=True)
def _put_byte(buf: np.ndarray, pos: int, c: int) -> int:
    buf[pos] = c
    return pos + 1


@nb.njit(cache=True)
def _put_uint(buf: np.ndarray, pos: int, v: int) -> int:
    if v == 0:
        buf[pos] = 48
        return pos + 1
    n = 0
    x = v
    while x > 0:
        n += 1
        x //= 10
    end = pos + n
    x = v
    for i in range(end - 1, pos - 1, -1):
        buf[i] = 48 + x % 10
        x //= 10
    return end


@nb.njit(cache=True)
def _put_decimal(buf: np.ndarray, pos: int, units: int, decimals: int) -> int:
    """A non-negative fixed-point number: units * 10^-decimals, with exactly ``decimals`` digits."""
    scale = 1
    for _ in range(decimals):
        scale *= 10
    pos = _put_uint(buf, pos, units // scale)
    if decimals > 0:
        buf[pos] = 46  # '.'
        pos += 1
        frac = units % scale
        for i in range(decimals - 1, -1, -1):
            buf[pos + i] = 48 + frac % 10
            frac //= 10
        pos += decimals
    return pos


@nb.njit(cache=True)
def _put_level(buf: np.ndarray, pos: int, tick: int, lots: int, par: np.ndarray, first: bool) -> int:
    if not first:
        pos = _put_byte(buf, pos, 44)  # ,
    pos = _put_byte(buf, pos, 91)  # [
    pos = _put_byte(buf, pos, 34)  # "
    pos = _put_decimal(buf, pos, tick * int(par[P_PX_MULT]), int(par[P_PX_DEC]))
    pos = _put_byte(buf, pos, 34)
    pos = _put_byte(buf, pos, 44)
    pos = _put_byte(buf, pos, 34)
    pos = _put_decimal(buf, pos, lots, int(par[P_QTY_DEC]))
    pos = _put_byte(buf, pos, 34)
    return _put_byte(buf, pos, 93)  # ]


# -- the book -----------------------------------------------------------------------------------


@nb.njit(cache=True)
def _collect_top(
    q: np.ndarray, best_idx: int, step: int, depth: int, limit: int, px: np.ndarray, qty: np.ndarray, base: int
) -> int:
    """Top ``depth`` non-empty levels from best_idx walking by step; returns how many."""
    n = 0
    i = best_idx
    k = 0
    while n < depth and k < limit and 0 <= i < q.shape[0]:
        if q[i] > 0:
            px[n] = base + i
            qty[n] = q[i]
            n += 1
        i += step
        k += 1
    return n


@nb.njit(cache=True)
def _diff_side(
    buf: np.ndarray,
    pos: int,
    cur_px: np.ndarray,
    cur_q: np.ndarray,
    n_cur: int,
    pub_px: np.ndarray,
    pub_q: np.ndarray,
    n_pub: int,
    descending: bool,
    par: np.ndarray,
) -> tuple[int, int]:
    """Write the changed levels (merge of two sorted lists); returns (pos, levels written)."""
    i = 0
    j = 0
    written = 0
    while i < n_cur or j < n_pub:
        take_cur = False
        take_pub = False
        if i < n_cur and j < n_pub:
            a = cur_px[i]
            b = pub_px[j]
            if a == b:
                take_cur = True
                take_pub = True
            elif (a > b) == descending:
                take_cur = True
            else:
                take_pub = True
        elif i < n_cur:
            take_cur = True
        else:
            take_pub = True
        if take_cur and take_pub:
            if cur_q[i] != pub_q[j]:
                pos = _put_level(buf, pos, cur_px[i], cur_q[i], par, written == 0)
                written += 1
            i += 1
            j += 1
        elif take_cur:
            pos = _put_level(buf, pos, cur_px[i], cur_q[i], par, written == 0)
            written += 1
            i += 1
        else:
            pos = _put_level(buf, pos, pub_px[j], 0, par, written == 0)
            written += 1
            j += 1
    return pos, written


@nb.njit(cache=True)
def _publish(
    st: np.ndarray,
    par: np.ndarray,
    bids: np.ndarray,
    asks: np.ndarray,
    pub: np.ndarray,
    scratch: np.ndarray,
    buf: np.ndarray,
    pos: int,
    pieces: np.ndarray,
    offsets: np.ndarray,
) -> tuple[int, bool]:
    """Write a snapshot or the delta of the top levels since the last publish; (pos, written)."""
    depth = int(par[P_DEPTH])
    base = st[BASE]
    limit = int(par[P_DEPTH_TICKS]) * 3
    nb_ = _collect_top(bids, st[BEST_BID] - base, -1, depth, limit, scratch[0], scratch[1], base)
    na = _collect_top(asks, st[BEST_ASK] - base, 1, depth, limit, scratch[2], scratch[3], base)
    snapshot = st[SNAPSHOT_DUE] == 1
    start = pos
    ms = st[NEXT_PUBLISH] // 1_000_000
    pos = _put(buf, pos, pieces, offsets, S_BOOK_SNAP if snapshot else S_BOOK_DELTA)
    pos = _put_uint(buf, pos, ms)
    pos = _put(buf, pos, pieces, offsets, S_DATA_S)
    if snapshot:
        for k in range(nb_):
            pos = _put_level(buf, pos, scratch[0, k], scratch[1, k], par, k == 0)
        pos = _put(buf, pos, pieces, offsets, S_ASKS)
        for k in range(na):
            pos = _put_level(buf, pos, scratch[2, k], scratch[3, k], par, k == 0)
        changed = 1
    else:
        pos, w1 = _diff_side(buf, pos, scratch[0], scratch[1], nb_, pub[0], pub[1], st[N_PUB_BID], True, par)
        pos = _put(buf, pos, pieces, offsets, S_ASKS)
        pos, w2 = _diff_side(buf, pos, scratch[2], scratch[3], na, pub[2], pub[3], st[N_PUB_ASK], False, par)
        changed = w1 + w2
    if changed == 0:
        return start, False
    st[UPDATE_ID] += 1
    st[SNAPSHOT_DUE] = 0
    pos = _put(buf, pos, pieces, offsets, S_U)
    pos = _put_uint(buf, pos, st[UPDATE_ID])
    pos = _put(buf, pos, pieces, offsets, S_SEQ)
    pos = _put_uint(buf, pos, st[UPDATE_ID] + SEQ_OFFSET)
    pos = _put(buf, pos, pieces, offsets, S_CTS)
    pos = _put_uint(buf, pos, ms)
    pos = _put_byte(buf, pos, 125)  # }
    for k in range(nb_):
        pub[0, k] = scratch[0, k]
        pub[1, k] = scratch[1, k]
    for k in range(na):
        pub[2, k] = scratch[2, k]
        pub[3, k] = scratch[3, k]
    st[N_PUB_BID] = nb_
    st[N_PUB_ASK] = na
    return pos, True


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
        _move_ask(st, par, asks, nxt + extra, lots_per_btc, par[P_AWAY_SCALE])
        st[REFORM_SIDE] = 1
    else:
        nxt = _next_level(bids, st[BEST_BID] - base, -1, limit) + base
        _move_bid(st, par, bids, nxt - extra, lots_per_btc, par[P_AWAY_SCALE])
        st[REFORM_SIDE] = -1
    st[REFORM_AT] = st[T_NS] + int(np.random.exponential(par[P_REFORM_NS])) + 1


@nb.njit(cache=True)
def _reform(st: np.ndarray, par: np.ndarray, bids: np.ndarray, asks: np.ndarray, lots_per_btc: float) -> None:
    """The other side follows to one tick from the side that moved: the spread closes."""
    if st[REFORM_SIDE] == 1 and st[BEST_ASK] - st[BEST_BID] > 1:
        _move_bid(st, par, bids, st[BEST_ASK] - 1, lots_per_btc, 1.0)
    elif st[REFORM_SIDE] == -1 and st[BEST_ASK] - st[BEST_BID] > 1:
        _move_ask(st, par, asks, st[BEST_BID] + 1, lots_per_btc, 1.0)
    st[REFORM_SIDE] = 0


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
    pos = _put(buf, pos, pieces, offsets, S_TRADE_HEAD)
    pos = _put_uint(buf, pos, ms)
    pos = _put(buf, pos, pieces, offsets, S_TRADE_DATA)
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
        if not first:
            pos = _put_byte(buf, pos, 44)
        first = False
        pos = _put(buf, pos, pieces, offsets, S_T)
        pos = _put_uint(buf, pos, ms)
        pos = _put(buf, pos, pieces, offsets, S_SYM_SIDE)
        pos = _put_trade_fields(buf, pos, st, par, side, tick, take, pieces, offsets)
        if q[idx] == 0 and tick == (st[BEST_ASK] if side > 0 else st[BEST_BID]):
            depleted = True
        if q[idx] == 0:
            idx += side
            walked += 1
    pos = _put_byte(buf, pos, 93)  # ]
    pos = _put_byte(buf, pos, 125)  # }
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
def _put_trade_fields(
    buf: np.ndarray,
    pos: int,
    st: np.ndarray,
    par: np.ndarray,
    side: int,
    tick: int,
    lots: int,
    pieces: np.ndarray,
    offsets: np.ndarray,
) -> int:
    # Buy","v":"0.012","p":"65000.1","L":"PlusTick","i":"<id>","BT":false}
    pos = _put(buf, pos, pieces, offsets, S_BUY if side > 0 else S_SELL)
    pos = _put(buf, pos, pieces, offsets, S_V)
    pos = _put_decimal(buf, pos, lots, int(par[P_QTY_DEC]))
    pos = _put(buf, pos, pieces, offsets, S_P)
    pos = _put_decimal(buf, pos, tick * int(par[P_PX_MULT]), int(par[P_PX_DEC]))
    pos = _put(buf, pos, pieces, offsets, S_L)
    last = st[LAST_TRADE_TICK]
    if tick != last and last != 0:  # noqa: PLR1714 (numba)
        st[LAST_TRADE_DIR] = 1 if tick > last else -1
    st[LAST_TRADE_TICK] = tick
    up = st[LAST_TRADE_DIR] >= 0
    if tick == last:
        pos = _put(buf, pos, pieces, offsets, S_ZPLUS if up else S_ZMINUS)
    else:
        pos = _put(buf, pos, pieces, offsets, S_PLUS if up else S_MINUS)
    pos = _put(buf, pos, pieces, offsets, S_I)
    pos = _put(buf, pos, pieces, offsets, S_TRADE_ID)
    st[TRADE_COUNT] += 1
    pos = _put_uint(buf, pos, st[TRADE_COUNT])
    pos = _put(buf, pos, pieces, offsets, S_BT_END)
    return pos


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
        p_buy = 0.5 + par[P_MARKET_IMB] * imb
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
                pos, written = _publish(st, par, bids, asks, pub, scratch, buf, pos, pieces, offsets)
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
                mid_idx = (st[BEST_BID] + st[BEST_ASK]) // 2 - st[BASE]
                room = int(par[P_DEPTH_TICKS]) * 3
                if mid_idx < room or mid_idx > bids.shape[0] - room:
                    _recenter(st, bids, asks)
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
                bids[st[BEST_BID] - d - base] = _thin(par, lots_per_btc)
            else:
                asks[st[BEST_ASK] + d - base] = _thin(par, lots_per_btc)
