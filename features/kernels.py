"""The feature kernels: one numba step per book update and per trade, shared by batch and live.

State lives in explicit arrays (``State``), so the same step functions serve the batch driver
(``run``: a whole recording in one call, or chunk after chunk) and the online engine (one event
per call): the two can only differ if their inputs differ. Windowed sums use ring buffers of
per-update contributions with one tail per window; a window that empties is reset to exactly 0.

Definitions are in features/catalog.py (the kernel writes the vector in the catalog's order).
Inputs are validated here and reported as error codes (no exceptions inside numba); the Python
drivers turn them into one-line errors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

from features.catalog import BOOK_WINDOWS_S, MIN_LEVELS, MLOFI_LEVELS, N_FEATURES, TIME_CAP_S, TRADE_WINDOWS_S

OK = 0
ERR_NAN = 1
ERR_CROSSED = 2
ERR_BACKWARDS = 3
ERR_EMPTY_SIDE = 4
ERR_OVERFLOW = 5
ERR_BAD_TRADE = 6
ERR_TRADE_BACKWARDS = 7

ERRORS = {
    ERR_NAN: "NaN or negative size in the book",
    ERR_CROSSED: "crossed book (best bid >= best ask)",
    ERR_BACKWARDS: "book update earlier than the previous one (time going backwards)",
    ERR_EMPTY_SIDE: "a side of the book is empty",
    ERR_OVERFLOW: "more book updates in the longest window than the ring buffer holds",
    ERR_BAD_TRADE: "trade with a NaN / non-positive price or size, or a side other than +1 / -1",
    ERR_TRADE_BACKWARDS: "trade earlier than the previous trade (time going backwards)",
}

NS = 1_000_000_000
BW = np.array([w * NS for w in BOOK_WINDOWS_S], np.int64)  # 1s, 10s, 60s, 300s
TW = np.array([w * NS for w in TRADE_WINDOWS_S], np.int64)  # 1s, 10s, 60s
K = MLOFI_LEVELS
DAY_NS = 86_400 * NS
CAP_NS = int(TIME_CAP_S * NS)

# per-update contributions (book ring columns)
C_OFI = 0  # .. C_OFI + K - 1: OFI per level
C_ADD_BID = K
C_CANCEL_BID = K + 1
C_ADD_ASK = K + 2
C_CANCEL_ASK = K + 3
C_SQRET = K + 4
C_MIDCHG = K + 5
C_DEPTH1 = K + 6
C_ONE = K + 7
C_X = K + 8  # signed taker volume since the previous update
C_Y = K + 9  # mid change since the previous update, bps
C_XY = K + 10
C_XX = K + 11
C_MID = K + 12  # not a sum: the mid after the update, for as-of lookups
NV = K + 13

# trade ring columns
T_BUY = 0
T_SELL = 1
T_ONE = 2
NT = 3

# scalar state
S_LAST_MID, S_BUY_SINCE, S_SELL_SINCE = range(3)
NS_F = 3
I_LAST_TS, I_LAST_TRADE_TS, I_LAST_MIDCHG_TS, I_EPOCH, I_HAVE_PREV, I_HEAD, I_THEAD, I_WRITTEN = range(8)
NS_I = 8


class State(NamedTuple):
    """Everything the kernels remember between events (numpy arrays, owned by the driver)."""

    f: np.ndarray  # float64[NS_F]
    i: np.ndarray  # int64[NS_I]
    ring_ts: np.ndarray  # int64[cap]
    ring: np.ndarray  # float64[cap, NV]
    bsum: np.ndarray  # float64[len(BW), NV]
    btail: np.ndarray  # int64[len(BW)] absolute index of each window's oldest update
    tring_ts: np.ndarray  # int64[tcap]
    tring: np.ndarray  # float64[tcap, NT]
    tsum: np.ndarray  # float64[len(TW), NT]
    ttail: np.ndarray  # int64[len(TW)]
    prev_px: np.ndarray  # float64[2, K] previous update's best K levels (bid row 0, ask row 1)
    prev_qty: np.ndarray  # float64[2, K]
    tick: np.ndarray  # float64[1]


def new_state(tick: float, capacity: int = 1 << 17, trade_capacity: int = 1 << 17) -> State:
    st = State(
        f=np.zeros(NS_F),
        i=np.zeros(NS_I, np.int64),
        ring_ts=np.zeros(capacity, np.int64),
        ring=np.zeros((capacity, NV)),
        bsum=np.zeros((len(BW), NV)),
        btail=np.zeros(len(BW), np.int64),
        tring_ts=np.zeros(trade_capacity, np.int64),
        tring=np.zeros((trade_capacity, NT)),
        tsum=np.zeros((len(TW), NT)),
        ttail=np.zeros(len(TW), np.int64),
        prev_px=np.full((2, K), np.nan),
        prev_qty=np.zeros((2, K)),
        tick=np.array([tick]),
    )
    reset_state(st)
    return st


def reset_state(st: State) -> None:
    """Forget everything (the online engine's ``reset()``)."""
    st.f[:] = 0.0
    st.i[:] = 0
    st.i[I_LAST_TS] = np.iinfo(np.int64).min
    st.i[I_LAST_TRADE_TS] = np.iinfo(np.int64).min
    st.i[I_EPOCH] = np.iinfo(np.int64).min
    st.bsum[:] = 0.0
    st.btail[:] = 0
    st.tsum[:] = 0.0
    st.ttail[:] = 0
    st.prev_px[:] = np.nan
    st.prev_qty[:] = 0.0


@nb.njit(cache=True)
def on_trade(st: State, ts: int, px: float, qty: float, side: int) -> int:
    """Take one trade (side +1 taker buy, -1 taker sell) into the trade windows."""
    f, iv, tring_ts, tring = st.f, st.i, st.tring_ts, st.tring
    if not (px > 0.0 and qty > 0.0) or abs(side) != 1:
        return ERR_BAD_TRADE
    if ts < iv[I_LAST_TRADE_TS]:
        return ERR_TRADE_BACKWARDS
    cap = tring_ts.shape[0]
    head = iv[I_THEAD]
    if head - st.ttail[len(TW) - 1] >= cap:
        return ERR_OVERFLOW
    slot = head % cap
    tring_ts[slot] = ts
    buy = qty if side == 1 else 0.0
    sell = qty if side == -1 else 0.0
    tring[slot, T_BUY] = buy
    tring[slot, T_SELL] = sell
    tring[slot, T_ONE] = 1.0
    for j in range(len(TW)):
        st.tsum[j, T_BUY] += buy
        st.tsum[j, T_SELL] += sell
        st.tsum[j, T_ONE] += 1.0
    iv[I_THEAD] = head + 1
    iv[I_LAST_TRADE_TS] = ts
    f[S_BUY_SINCE] += buy
    f[S_SELL_SINCE] += sell
    return OK


@nb.njit(cache=True, inline="always")
def _present(px: float, qty: float) -> bool:
    return not math.isnan(px) and qty > 0.0


@nb.njit(cache=True)
def _check_side(px: np.ndarray, qty: np.ndarray) -> int:
    if not _present(px[0], qty[0]):
        return ERR_NAN if (math.isnan(qty[0]) or qty[0] < 0.0) else ERR_EMPTY_SIDE
    for k in range(px.shape[0]):
        q = qty[k]
        if math.isnan(q) or q < 0.0 or (q > 0.0 and math.isnan(px[k])) or math.isinf(px[k]):
            return ERR_NAN
    return OK


@nb.njit(cache=True)
def _add_cancel(prev_px: np.ndarray, prev_qty: np.ndarray, px: np.ndarray, qty: np.ndarray, is_bid: bool) -> tuple:
    """(added, removed) size on the best K levels of one side between two updates."""
    added = 0.0
    removed = 0.0
    # the previous visible range: prices at least as good as its K-th (or last present) level
    prev_worst = np.nan
    for j in range(K):
        if _present(prev_px[j], prev_qty[j]):
            prev_worst = prev_px[j]
    cur_worst = np.nan
    n_cur = 0
    for i in range(K):
        if _present(px[i], qty[i]):
            cur_worst = px[i]
            n_cur += 1
    for i in range(K):
        if not _present(px[i], qty[i]):
            continue
        found = False
        for j in range(K):
            if prev_px[j] == px[i] and _present(prev_px[j], prev_qty[j]):
                d = qty[i] - prev_qty[j]
                if d > 0.0:
                    added += d
                else:
                    removed -= d
                found = True
                break
        if not found and not math.isnan(prev_worst):
            inside = px[i] > prev_worst if is_bid else px[i] < prev_worst
            if inside:
                added += qty[i]
    for j in range(K):
        if not _present(prev_px[j], prev_qty[j]):
            continue
        found = False
        for i in range(K):
            if px[i] == prev_px[j] and _present(px[i], qty[i]):
                found = True
                break
        if not found:
            inside = n_cur < K or (prev_px[j] > cur_worst if is_bid else prev_px[j] < cur_worst)
            if inside:
                removed += prev_qty[j]
    return added, removed


@nb.njit(cache=True)
def _evict(
    ring_ts: np.ndarray, ring: np.ndarray, sums: np.ndarray, tails: np.ndarray, windows: np.ndarray, head: int, ts: int
) -> None:
    """Drop from each window's sum the entries that left it (ts - w, ts]; an empty window is exactly 0."""
    cap = ring_ts.shape[0]
    for j in range(windows.shape[0]):
        lo = ts - windows[j]
        t = tails[j]
        while t < head and ring_ts[t % cap] <= lo:
            for c in range(ring.shape[1]):
                sums[j, c] -= ring[t % cap, c]
            t += 1
        if t == head:
            sums[j, :] = 0.0
        tails[j] = t


@nb.njit(cache=True)
def on_book(
    st: State,
    ts: int,
    epoch: int,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    out: np.ndarray,
) -> int:
    """Take one book update (the top levels after it) and write the feature vector into ``out``."""
    f, iv = st.f, st.i
    e = _check_side(bid_px, bid_qty)
    if e != OK:
        return e
    e = _check_side(ask_px, ask_qty)
    if e != OK:
        return e
    b1, a1, qb1, qa1 = bid_px[0], ask_px[0], bid_qty[0], ask_qty[0]
    if b1 >= a1:
        return ERR_CROSSED
    if ts < iv[I_LAST_TS]:
        return ERR_BACKWARDS
    cap = st.ring_ts.shape[0]
    head = iv[I_HEAD]
    nbw = len(BW)
    _evict(st.ring_ts, st.ring, st.bsum, st.btail, BW, head, ts)  # before checking the ring has room
    if head - st.btail[nbw - 1] + 1 >= cap:
        return ERR_OVERFLOW
    mid = 0.5 * (a1 + b1)
    first = head == 0
    same_epoch = iv[I_HAVE_PREV] == 1 and epoch == iv[I_EPOCH]
    slot = head % cap
    row = st.ring[slot]
    row[:] = 0.0
    if same_epoch:
        pp, pq = st.prev_px, st.prev_qty
        for lvl in range(K):
            b, qb, a, qa = bid_px[lvl], bid_qty[lvl], ask_px[lvl], ask_qty[lvl]
            pb, pqb, pa, pqa = pp[0, lvl], pq[0, lvl], pp[1, lvl], pq[1, lvl]
            ev = 0.0
            if _present(b, qb) and _present(pb, pqb):
                if b >= pb:
                    ev += qb
                if b <= pb:
                    ev -= pqb
            if _present(a, qa) and _present(pa, pqa):
                if a <= pa:
                    ev -= qa
                if a >= pa:
                    ev += pqa
            row[C_OFI + lvl] = ev
        add_b, rem_b = _add_cancel(pp[0], pq[0], bid_px, bid_qty, True)
        add_a, rem_a = _add_cancel(pp[1], pq[1], ask_px, ask_qty, False)
        row[C_ADD_BID] = add_b
        row[C_CANCEL_BID] = max(rem_b - f[S_SELL_SINCE], 0.0)
        row[C_ADD_ASK] = add_a
        row[C_CANCEL_ASK] = max(rem_a - f[S_BUY_SINCE], 0.0)
    if not first:
        last_mid = f[S_LAST_MID]
        r = math.log(mid / last_mid)
        row[C_SQRET] = r * r
        if mid != last_mid:
            row[C_MIDCHG] = 1.0
            iv[I_LAST_MIDCHG_TS] = ts
        x = f[S_BUY_SINCE] - f[S_SELL_SINCE]
        y = r * 1e4
        row[C_X] = x
        row[C_Y] = y
        row[C_XY] = x * y
        row[C_XX] = x * x
    else:
        iv[I_LAST_MIDCHG_TS] = ts
    row[C_DEPTH1] = 0.5 * (qb1 + qa1)
    row[C_ONE] = 1.0
    row[C_MID] = mid
    st.ring_ts[slot] = ts
    for j in range(nbw):
        for c in range(NV):
            st.bsum[j, c] += row[c]
    iv[I_HEAD] = head + 1
    iv[I_LAST_TS] = ts
    iv[I_EPOCH] = epoch
    iv[I_HAVE_PREV] = 1
    for lvl in range(K):
        st.prev_px[0, lvl] = bid_px[lvl]
        st.prev_qty[0, lvl] = bid_qty[lvl]
        st.prev_px[1, lvl] = ask_px[lvl]
        st.prev_qty[1, lvl] = ask_qty[lvl]
    f[S_LAST_MID] = mid
    f[S_BUY_SINCE] = 0.0
    f[S_SELL_SINCE] = 0.0
    # trade windows, as of ts
    _evict(st.tring_ts, st.tring, st.tsum, st.ttail, TW, iv[I_THEAD], ts)
    _write(st, ts, bid_px, bid_qty, ask_px, ask_qty, out)
    return OK


@nb.njit(cache=True, inline="always")
def _ratio(a: float, b: float) -> float:
    s = a + b
    return (a - b) / s if s > 0.0 else 0.0


@nb.njit(cache=True)
def _walk(px: np.ndarray, qty: np.ndarray, size: float, mid: float) -> float:
    left = size
    cost = 0.0
    last = px[0]
    for k in range(px.shape[0]):
        if not _present(px[k], qty[k]):
            break
        take = min(left, qty[k])
        cost += take * px[k]
        left -= take
        last = px[k]
        if left <= 0.0:
            break
    if left > 0.0:
        cost += left * last
    return abs(cost / size - mid) / mid * 1e4


@nb.njit(cache=True)
def _asof_mid(st: State, j: int) -> float:
    """The mid as of ts - window j: the newest update the window just evicted, if still held."""
    t = st.btail[j] - 1
    cap = st.ring_ts.shape[0]
    if t < 0 or st.i[I_HEAD] - t > cap:
        return np.nan
    return float(st.ring[t % cap, C_MID])


@nb.njit(cache=True)
def _write(
    st: State,
    ts: int,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    out: np.ndarray,
) -> None:
    b1, a1, qb1, qa1 = bid_px[0], ask_px[0], bid_qty[0], ask_qty[0]
    mid = 0.5 * (a1 + b1)
    k = 0
    # -- instantaneous ------------------------------------------------------------------------
    out[k] = (a1 - b1) / mid * 1e4
    out[k + 1] = (a1 - b1) / st.tick[0]
    k += 2
    sb = 0.0
    sa = 0.0
    lvl = 0
    for depth in (1, 3, 5, MIN_LEVELS):
        while lvl < depth:
            if _present(bid_px[lvl], bid_qty[lvl]):
                sb += bid_qty[lvl]
            if _present(ask_px[lvl], ask_qty[lvl]):
                sa += ask_qty[lvl]
            lvl += 1
        out[k] = _ratio(sb, sa)
        k += 1
    w = (b1 * qa1 + a1 * qb1) / (qa1 + qb1)
    out[k] = (w - mid) / mid * 1e4
    k += 1
    # depth within 2 / 5 / 10 bps: one walk per side (levels are sorted, missing ones come last)
    d2b = d5b = d10b = 0.0
    lo2, lo5, lo10 = mid * (1.0 - 2e-4), mid * (1.0 - 5e-4), mid * (1.0 - 10e-4)
    for lvl in range(bid_px.shape[0]):
        p = bid_px[lvl]
        if not _present(p, bid_qty[lvl]) or p < lo10:
            break
        d10b += bid_qty[lvl]
        if p >= lo5:
            d5b += bid_qty[lvl]
        if p >= lo2:
            d2b += bid_qty[lvl]
    d2a = d5a = d10a = 0.0
    hi2, hi5, hi10 = mid * (1.0 + 2e-4), mid * (1.0 + 5e-4), mid * (1.0 + 10e-4)
    for lvl in range(ask_px.shape[0]):
        p = ask_px[lvl]
        if not _present(p, ask_qty[lvl]) or p > hi10:
            break
        d10a += ask_qty[lvl]
        if p <= hi5:
            d5a += ask_qty[lvl]
        if p <= hi2:
            d2a += ask_qty[lvl]
    out[k] = d2b
    out[k + 1] = d2a
    out[k + 2] = d5b
    out[k + 3] = d5a
    out[k + 4] = d10b
    out[k + 5] = d10a
    k += 6
    out[k] = _ratio(d5b, d5a)
    out[k + 1] = _ratio(d10b, d10a)
    k += 2
    for side in range(2):
        px = bid_px if side == 0 else ask_px
        qty = bid_qty if side == 0 else ask_qty
        cum = 0.0
        far = px[0]
        for lvl in range(MIN_LEVELS):
            if _present(px[lvl], qty[lvl]):
                cum += qty[lvl]
                far = px[lvl]
        out[k] = cum / (abs(far - mid) / mid * 1e4)
        k += 1
    for size in (1.0, 5.0):
        out[k] = _walk(ask_px, ask_qty, size, mid)
        out[k + 1] = _walk(bid_px, bid_qty, size, mid)
        k += 2
    out[k] = math.log(qb1)
    out[k + 1] = math.log(qa1)
    k += 2
    # -- order flow (window index: 0 1s, 1 10s, 2 60s, 3 300s) ---------------------------------
    bs = st.bsum
    out[k] = bs[0, C_OFI]
    out[k + 1] = bs[1, C_OFI]
    out[k + 2] = bs[2, C_OFI]
    k += 3
    for lvl in range(1, K):
        out[k] = bs[0, C_OFI + lvl]
        out[k + 1] = bs[1, C_OFI + lvl]
        k += 2
    mean_depth = bs[1, C_DEPTH1] / bs[1, C_ONE]
    out[k] = bs[1, C_OFI] / mean_depth if mean_depth > 0.0 else 0.0
    k += 1
    s = 0.0
    for lvl in range(K):
        s += bs[1, C_OFI + lvl]
    out[k] = s
    k += 1
    for j in range(2):
        out[k] = bs[j, C_ADD_BID]
        out[k + 1] = bs[j, C_CANCEL_BID]
        out[k + 2] = bs[j, C_ADD_ASK]
        out[k + 3] = bs[j, C_CANCEL_ASK]
        k += 4
    # -- prices and volatility -------------------------------------------------------------------
    for j in range(3):
        past = _asof_mid(st, j)
        out[k] = math.log(mid / past) * 1e4 if not math.isnan(past) else np.nan
        k += 1
    for j in range(1, 4):
        out[k] = math.sqrt(max(bs[j, C_SQRET], 0.0)) * 1e4
        k += 1
    out[k] = bs[1, C_MIDCHG]
    k += 1
    n = bs[2, C_ONE]
    sx, sy, sxy, sxx = bs[2, C_X], bs[2, C_Y], bs[2, C_XY], bs[2, C_XX]
    den = n * sxx - sx * sx
    out[k] = (n * sxy - sx * sy) / den if den > 1e-9 * max(n * sxx, 1.0) else 0.0
    k += 1
    # -- trades ------------------------------------------------------------------------------------
    ts_ = st.tsum
    for j in range(3):
        out[k] = _ratio(ts_[j, T_BUY], ts_[j, T_SELL])
        k += 1
    out[k] = ts_[0, T_ONE]
    out[k + 1] = ts_[1, T_ONE]
    vol10 = ts_[1, T_BUY] + ts_[1, T_SELL]
    out[k + 2] = vol10
    out[k + 3] = vol10 / ts_[1, T_ONE] if ts_[1, T_ONE] > 0.0 else 0.0
    k += 4
    # -- time ---------------------------------------------------------------------------------------
    out[k] = min(ts - st.i[I_LAST_MIDCHG_TS], CAP_NS) / NS
    last_trade = st.i[I_LAST_TRADE_TS]
    out[k + 1] = min(ts - last_trade, CAP_NS) / NS if st.i[I_THEAD] > 0 else TIME_CAP_S
    phase = 2.0 * math.pi * (ts % DAY_NS) / DAY_NS
    out[k + 2] = math.sin(phase)
    out[k + 3] = math.cos(phase)
    k += 4
    st.i[I_WRITTEN] = k  # the number of features written: checked against the catalog


@nb.njit(cache=True)
def run(
    st: State,
    ts: np.ndarray,
    epoch: np.ndarray,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    t_ts: np.ndarray,
    t_px: np.ndarray,
    t_qty: np.ndarray,
    t_side: np.ndarray,
    out: np.ndarray,
) -> tuple:
    """Every book update and trade in exchange-time order (a trade at the same time as a book
    update first); ``out[n]`` is the vector after book update n. Returns (error, book index, trade index).
    """
    n = ts.shape[0]
    m = t_ts.shape[0]
    j = 0
    for i in range(n):
        while j < m and t_ts[j] <= ts[i]:
            e = on_trade(st, t_ts[j], t_px[j], t_qty[j], int(t_side[j]))
            if e != OK:
                return e, i, j
            j += 1
        e = on_book(st, ts[i], epoch[i], bid_px[i], bid_qty[i], ask_px[i], ask_qty[i], out[i])
        if e != OK:
            return e, i, j
    return OK, n, j


assert N_FEATURES == 63, "the kernel writes 63 features; update _write with the catalog"
