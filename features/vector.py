"""The feature vector as of one book update, written family by family in the catalog's order.

``write`` runs after the kernels (features/kernels.py) took the update into the state: the
instantaneous families read the update's top levels, the windowed ones the window sums. Each
family writes from index ``k`` on and returns the index after it; the total is kept in the state
(``scalars.written``) so a test can hold it against the catalog.
"""

from __future__ import annotations

import math

import numpy as np

from core.jit import kernel_jit
from features.catalog import MIN_LEVELS, N_FEATURES, TIME_CAP_S
from features.state import (
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
    CAP_NS,
    DAY_NS,
    NS,
    T_BUY,
    T_ONE,
    T_SELL,
    K,
    State,
    present,
)


@kernel_jit(cache=True, inline="always")
def write(
    st: State,
    ts: int,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write the vector after the update at ``ts`` (its top levels given) into ``out``."""
    mid = 0.5 * (ask_px[0] + bid_px[0])
    k = _top(bid_px, bid_qty, ask_px, ask_qty, mid, st.tick[0], out)
    k = _depth(bid_px, bid_qty, ask_px, ask_qty, mid, out, k)
    k = _order_flow(st.bsum, out, k)
    k = _prices(st, mid, out, k)
    k = _trades(st.tsum, out, k)
    k = _time(st, ts, out, k)
    st.scalars[0].written = k  # the number of features written: checked against the catalog


@kernel_jit(cache=True, inline="always")
def _ratio(a: float, b: float) -> float:
    s = a + b
    return (a - b) / s if s > 0.0 else 0.0


@kernel_jit(cache=True, inline="always")
def _top(
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    mid: float,
    tick: float,
    out: np.ndarray,
) -> int:
    """Spread, queue imbalance over the best 1 / 3 / 5 / 10 levels, micro-price offset."""
    b1, a1, qb1, qa1 = bid_px[0], ask_px[0], bid_qty[0], ask_qty[0]
    k = 0
    out[k] = (a1 - b1) / mid * 1e4
    out[k + 1] = (a1 - b1) / tick
    k += 2
    sb = 0.0
    sa = 0.0
    lvl = 0
    for depth in (1, 3, 5, MIN_LEVELS):
        while lvl < depth:
            if present(bid_px[lvl], bid_qty[lvl]):
                sb += bid_qty[lvl]
            if present(ask_px[lvl], ask_qty[lvl]):
                sa += ask_qty[lvl]
            lvl += 1
        out[k] = _ratio(sb, sa)
        k += 1
    w = (b1 * qa1 + a1 * qb1) / (qa1 + qb1)
    out[k] = (w - mid) / mid * 1e4
    return k + 1


@kernel_jit(cache=True)
def _walk(px: np.ndarray, qty: np.ndarray, size: float, mid: float) -> float:
    left = size
    cost = 0.0
    last = px[0]
    for k in range(px.shape[0]):
        if not present(px[k], qty[k]):
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


@kernel_jit(cache=True, inline="always")
def _depth(
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
    mid: float,
    out: np.ndarray,
    k: int,
) -> int:
    """Depth within 2 / 5 / 10 bps and its imbalance, book slope, walk costs, log best sizes."""
    # one walk per side (levels are sorted, missing ones come last)
    d2b = d5b = d10b = 0.0
    lo2, lo5, lo10 = mid * (1.0 - 2e-4), mid * (1.0 - 5e-4), mid * (1.0 - 10e-4)
    for lvl in range(bid_px.shape[0]):
        p = bid_px[lvl]
        if not present(p, bid_qty[lvl]) or p < lo10:
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
        if not present(p, ask_qty[lvl]) or p > hi10:
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
            if present(px[lvl], qty[lvl]):
                cum += qty[lvl]
                far = px[lvl]
        out[k] = cum / (abs(far - mid) / mid * 1e4)
        k += 1
    for size in (1.0, 5.0):
        out[k] = _walk(ask_px, ask_qty, size, mid)
        out[k + 1] = _walk(bid_px, bid_qty, size, mid)
        k += 2
    out[k] = math.log(bid_qty[0])
    out[k + 1] = math.log(ask_qty[0])
    return k + 2


@kernel_jit(cache=True, inline="always")
def _order_flow(bs: np.ndarray, out: np.ndarray, k: int) -> int:
    """OFI per level, normalised OFI, multi-level sum, add / cancel flow (window 0 1s, 1 10s, 2 60s)."""
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
    return k


@kernel_jit(cache=True)
def _asof_mid(st: State, j: int) -> float:
    """The mid as of ts - window j: the newest update the window just evicted, if still held."""
    t = st.btail[j] - 1
    cap = st.ring_ts.shape[0]
    if t < 0 or st.scalars[0].head - t > cap:
        return np.nan
    return float(st.ring[t % cap, C_MID])


@kernel_jit(cache=True, inline="always")
def _prices(st: State, mid: float, out: np.ndarray, k: int) -> int:
    """Returns over 1 / 10 / 60 s, realized volatility, mid changes, Kyle's lambda."""
    for j in range(3):
        past = _asof_mid(st, j)
        out[k] = math.log(mid / past) * 1e4 if not math.isnan(past) else np.nan
        k += 1
    bs = st.bsum
    for j in range(1, 4):
        out[k] = math.sqrt(max(bs[j, C_SQRET], 0.0)) * 1e4
        k += 1
    out[k] = bs[1, C_MIDCHG]
    k += 1
    n = bs[2, C_ONE]
    sx, sy, sxy, sxx = bs[2, C_X], bs[2, C_Y], bs[2, C_XY], bs[2, C_XX]
    den = n * sxx - sx * sx
    out[k] = (n * sxy - sx * sy) / den if den > 1e-9 * max(n * sxx, 1.0) else 0.0
    return k + 1


@kernel_jit(cache=True, inline="always")
def _trades(tsum: np.ndarray, out: np.ndarray, k: int) -> int:
    """Trade-flow imbalance, counts, volume and mean size over the trade windows."""
    for j in range(3):
        out[k] = _ratio(tsum[j, T_BUY], tsum[j, T_SELL])
        k += 1
    out[k] = tsum[0, T_ONE]
    out[k + 1] = tsum[1, T_ONE]
    vol10 = tsum[1, T_BUY] + tsum[1, T_SELL]
    out[k + 2] = vol10
    out[k + 3] = vol10 / tsum[1, T_ONE] if tsum[1, T_ONE] > 0.0 else 0.0
    return k + 4


@kernel_jit(cache=True, inline="always")
def _time(st: State, ts: int, out: np.ndarray, k: int) -> int:
    """Time since the last mid change and the last trade (capped), time of day."""
    sc = st.scalars[0]
    out[k] = min(ts - sc.last_midchg_ts, CAP_NS) / NS
    last_trade = sc.last_trade_ts
    out[k + 1] = min(ts - last_trade, CAP_NS) / NS if sc.thead > 0 else TIME_CAP_S
    phase = 2.0 * math.pi * (ts % DAY_NS) / DAY_NS
    out[k + 2] = math.sin(phase)
    out[k + 3] = math.cos(phase)
    return k + 4


assert N_FEATURES == 63, "write() writes 63 features; update it with the catalog"
