"""The feature kernels: one numba step per book update and per trade, shared by batch and live.

State lives in explicit arrays (``State``, features/state.py), so the same step functions serve
the batch driver (``run``: a whole recording in one call, or chunk after chunk) and the online
engine (one event per call): the two can only differ if their inputs differ. Windowed sums use
ring buffers of per-update contributions with one tail per window; a window that empties is
reset to exactly 0.

Definitions are in features/catalog.py (features/vector.py writes the vector in the catalog's
order). Inputs are validated here and reported as error codes (no exceptions inside numba); the
Python drivers turn them into one-line errors.
"""

from __future__ import annotations

import math

import numpy as np

from core.jit import kernel_jit
from core.records import Books, Trades
from features.state import (
    BW,
    C_ADD_ASK,
    C_ADD_BID,
    C_CANCEL_ASK,
    C_CANCEL_BID,
    C_DEPTH1,
    C_MID,
    C_MIDCHG,
    C_OFI,
    C_ONE,
    C_SQRET,
    C_X,
    C_XX,
    C_XY,
    C_Y,
    ERR_BACKWARDS,
    ERR_BAD_TRADE,
    ERR_CROSSED,
    ERR_EMPTY_SIDE,
    ERR_NAN,
    ERR_OVERFLOW,
    ERR_TRADE_BACKWARDS,
    NV,
    OK,
    T_BUY,
    T_ONE,
    T_SELL,
    TW,
    K,
    State,
    present,
)
from features.vector import write


@kernel_jit(cache=True)
def on_trade(st: State, ts: int, px: float, qty: float, side: int) -> int:
    """Take one trade (side +1 taker buy, -1 taker sell) into the trade windows."""
    sc, tring_ts, tring = st.scalars[0], st.tring_ts, st.tring
    if not (px > 0.0 and qty > 0.0) or abs(side) != 1:
        return ERR_BAD_TRADE
    if ts < sc.last_trade_ts:
        return ERR_TRADE_BACKWARDS
    cap = tring_ts.shape[0]
    head = sc.thead
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
    sc.thead = head + 1
    sc.last_trade_ts = ts
    sc.buy_since += buy
    sc.sell_since += sell
    return OK


@kernel_jit(cache=True)
def _check_side(px: np.ndarray, qty: np.ndarray) -> int:
    if not present(px[0], qty[0]):
        return ERR_NAN if (math.isnan(qty[0]) or qty[0] < 0.0) else ERR_EMPTY_SIDE
    for k in range(px.shape[0]):
        q = qty[k]
        if math.isnan(q) or q < 0.0 or (q > 0.0 and math.isnan(px[k])) or math.isinf(px[k]):
            return ERR_NAN
    return OK


@kernel_jit(cache=True)
def _add_cancel(prev_px: np.ndarray, prev_qty: np.ndarray, px: np.ndarray, qty: np.ndarray, is_bid: bool) -> tuple:
    """(added, removed) size on the best K levels of one side between two updates."""
    added = 0.0
    removed = 0.0
    # the previous visible range: prices at least as good as its K-th (or last present) level
    prev_worst = np.nan
    for j in range(K):
        if present(prev_px[j], prev_qty[j]):
            prev_worst = prev_px[j]
    cur_worst = np.nan
    n_cur = 0
    for i in range(K):
        if present(px[i], qty[i]):
            cur_worst = px[i]
            n_cur += 1
    for i in range(K):
        if not present(px[i], qty[i]):
            continue
        found = False
        for j in range(K):
            if prev_px[j] == px[i] and present(prev_px[j], prev_qty[j]):
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
        if not present(prev_px[j], prev_qty[j]):
            continue
        found = False
        for i in range(K):
            if px[i] == prev_px[j] and present(px[i], qty[i]):
                found = True
                break
        if not found:
            inside = n_cur < K or (prev_px[j] > cur_worst if is_bid else prev_px[j] < cur_worst)
            if inside:
                removed += prev_qty[j]
    return added, removed


@kernel_jit(cache=True)
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


@kernel_jit(cache=True)
def _ofi(
    pp: np.ndarray,
    pq: np.ndarray,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    row: np.ndarray,
) -> None:
    """Each of the best K levels' order-flow imbalance e_n against the previous update (pp, pq)."""
    for lvl in range(K):
        b, qb, a, qa = bid_px[lvl], bid_qty[lvl], ask_px[lvl], ask_qty[lvl]
        pb, pqb, pa, pqa = pp[0, lvl], pq[0, lvl], pp[1, lvl], pq[1, lvl]
        ev = 0.0
        if present(b, qb) and present(pb, pqb):
            if b >= pb:
                ev += qb
            if b <= pb:
                ev -= pqb
        if present(a, qa) and present(pa, pqa):
            if a <= pa:
                ev -= qa
            if a >= pa:
                ev += pqa
        row[C_OFI + lvl] = ev


@kernel_jit(cache=True)
def _check(st: State, ts: int, bid_px: np.ndarray, bid_qty: np.ndarray, ask_px: np.ndarray, ask_qty: np.ndarray) -> int:
    """Whether the update is a valid book (both sides present, not crossed) that does not go back in time."""
    e = _check_side(bid_px, bid_qty)
    if e == OK:
        e = _check_side(ask_px, ask_qty)
    if e != OK:
        return e
    if bid_px[0] >= ask_px[0]:
        return ERR_CROSSED
    if ts < st.scalars[0].last_ts:
        return ERR_BACKWARDS
    return OK


@kernel_jit(cache=True)
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
    e = _check(st, ts, bid_px, bid_qty, ask_px, ask_qty)
    if e != OK:
        return e
    sc = st.scalars[0]
    b1, a1, qb1, qa1 = bid_px[0], ask_px[0], bid_qty[0], ask_qty[0]
    cap = st.ring_ts.shape[0]
    head = sc.head
    _evict(st.ring_ts, st.ring, st.bsum, st.btail, BW, head, ts)  # before checking the ring has room
    if head - st.btail[len(BW) - 1] + 1 >= cap:
        return ERR_OVERFLOW
    mid = 0.5 * (a1 + b1)
    first = head == 0
    same_epoch = sc.have_prev == 1 and epoch == sc.epoch
    slot = head % cap
    row = st.ring[slot]
    row[:] = 0.0
    if same_epoch:
        pp, pq = st.prev_px, st.prev_qty
        _ofi(pp, pq, bid_px, bid_qty, ask_px, ask_qty, row)
        add_b, rem_b = _add_cancel(pp[0], pq[0], bid_px, bid_qty, True)
        add_a, rem_a = _add_cancel(pp[1], pq[1], ask_px, ask_qty, False)
        row[C_ADD_BID] = add_b
        row[C_CANCEL_BID] = max(rem_b - sc.sell_since, 0.0)
        row[C_ADD_ASK] = add_a
        row[C_CANCEL_ASK] = max(rem_a - sc.buy_since, 0.0)
    if not first:
        last_mid = sc.last_mid
        r = math.log(mid / last_mid)
        row[C_SQRET] = r * r
        if mid != last_mid:
            row[C_MIDCHG] = 1.0
            sc.last_midchg_ts = ts
        x = sc.buy_since - sc.sell_since
        y = r * 1e4
        row[C_X] = x
        row[C_Y] = y
        row[C_XY] = x * y
        row[C_XX] = x * x
    else:
        sc.last_midchg_ts = ts
    row[C_DEPTH1] = 0.5 * (qb1 + qa1)
    row[C_ONE] = 1.0
    row[C_MID] = mid
    st.ring_ts[slot] = ts
    for j in range(len(BW)):
        for c in range(NV):
            st.bsum[j, c] += row[c]
    sc.head = head + 1
    sc.last_ts = ts
    sc.epoch = epoch
    sc.have_prev = 1
    for lvl in range(K):
        st.prev_px[0, lvl] = bid_px[lvl]
        st.prev_qty[0, lvl] = bid_qty[lvl]
        st.prev_px[1, lvl] = ask_px[lvl]
        st.prev_qty[1, lvl] = ask_qty[lvl]
    sc.last_mid = mid
    sc.buy_since = 0.0
    sc.sell_since = 0.0
    # trade windows, as of ts
    _evict(st.tring_ts, st.tring, st.tsum, st.ttail, TW, sc.thead, ts)
    write(st, ts, bid_px, bid_qty, ask_px, ask_qty, out)
    return OK


@kernel_jit(cache=True)
def run(st: State, book: Books, trades: Trades, out: np.ndarray) -> tuple:
    """Every book update and trade in exchange-time order (a trade at the same time as a book
    update first); ``out[n]`` is the vector after book update n. Returns (error, book index, trade index).
    """
    n = book.ts_ex.shape[0]
    m = trades.ts_ex.shape[0]
    j = 0
    for i in range(n):
        while j < m and trades.ts_ex[j] <= book.ts_ex[i]:
            e = on_trade(st, trades.ts_ex[j], trades.price[j], trades.qty[j], int(trades.side[j]))
            if e != OK:
                return e, i, j
            j += 1
        e = on_book(
            st,
            book.ts_ex[i],
            book.epoch[i],
            book.bid_px[i],
            book.bid_qty[i],
            book.ask_px[i],
            book.ask_qty[i],
            out[i],
        )
        if e != OK:
            return e, i, j
    return OK, n, j
