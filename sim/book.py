"""The simulated book's mechanics: random sizes, a side moving to a new best price, the spread
closing again, and the window re-centring (numba; the model is described in ``sim.kernel``).

``st`` is the ``STATE_DTYPE`` row and ``par`` the ``PARAM_DTYPE`` row (``sim.state``); a side
is a dense int64 array of lots per tick, index 0 at tick ``st.base_tick``.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)

Row = Any  # a numpy record (one row of a structured array), read by field name


@nb.njit(cache=True)
def lognormal_lots(median_lots: float, sigma: float, cap_lots: float) -> int:
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
def thin(par: Row) -> int:
    """A level behind the best: empty, or a log-normal size."""
    if np.random.random() >= par.depth_occ:
        return 0
    return lognormal_lots(par.depth_med * par.lots_per_btc, par.depth_sigma, 1e9)


@nb.njit(cache=True)
def _big(par: Row) -> int:
    return lognormal_lots(par.q * par.lots_per_btc, par.q_sigma, 1e12)


@nb.njit(cache=True)
def _refill_range(q: np.ndarray, lo: int, hi: int, par: Row) -> None:
    for i in range(max(lo, 0), min(hi, q.shape[0])):
        q[i] = thin(par)


@nb.njit(cache=True)
def _clear_range(q: np.ndarray, lo: int, hi: int) -> None:
    for i in range(max(lo, 0), min(hi, q.shape[0])):
        q[i] = 0


@nb.njit(cache=True)
def _move_ask(st: Row, par: Row, asks: np.ndarray, new_ba: int, scale: float) -> None:
    """The best ask moves to new_ba (up or down); keep the thin book behind it in range."""
    base = st.base_tick
    old = st.best_ask
    d = int(par.depth_ticks)
    if new_ba > old:
        _clear_range(asks, old - base, new_ba - base)
        _refill_range(asks, max(old + d + 1, new_ba + 1) - base, new_ba + d + 1 - base, par)
    else:
        _refill_range(asks, new_ba + 1 - base, old - base, par)
        if old > new_ba:
            asks[old - base] = thin(par)  # the old deep queue mostly leaves
        _clear_range(asks, new_ba + d + 1 - base, old + d + 1 - base)
    asks[new_ba - base] += max(1, int(scale * _big(par)))
    st.best_ask = new_ba


@nb.njit(cache=True)
def _move_bid(st: Row, par: Row, bids: np.ndarray, new_bb: int, scale: float) -> None:
    base = st.base_tick
    old = st.best_bid
    d = int(par.depth_ticks)
    if new_bb < old:
        _clear_range(bids, new_bb + 1 - base, old + 1 - base)
        _refill_range(bids, new_bb - d - base, min(old - d, new_bb) - base, par)
    else:
        _refill_range(bids, old + 1 - base, new_bb - base, par)
        if new_bb > old:
            bids[old - base] = thin(par)
        _clear_range(bids, old - d - base, new_bb - d - base)
    bids[new_bb - base] += max(1, int(scale * _big(par)))
    st.best_bid = new_bb


@nb.njit(cache=True)
def _next_level(q: np.ndarray, idx: int, step: int, limit: int) -> int:
    i = idx + step
    k = 0
    while k < limit and 0 <= i + step < q.shape[0] and q[i] == 0:
        i += step
        k += 1
    return i


@nb.njit(cache=True)
def deplete(st: Row, par: Row, bids: np.ndarray, asks: np.ndarray, side: int) -> None:
    """The best queue of ``side`` (+1 ask, -1 bid) emptied: move that side, schedule the other."""
    base = st.base_tick
    limit = int(par.depth_ticks)
    extra = _geometric(par.pullback)
    if side > 0:
        nxt = _next_level(asks, st.best_ask - base, 1, limit) + base
        _move_ask(st, par, asks, min(nxt + extra, base + asks.shape[0] - 1), par.away_scale)
        st.reform_side = 1
    else:
        nxt = _next_level(bids, st.best_bid - base, -1, limit) + base
        _move_bid(st, par, bids, max(nxt - extra, base), par.away_scale)
        st.reform_side = -1
    st.reform_at = st.t_ns + int(np.random.exponential(par.reform_ns)) + 1
    keep_centred(st, par, bids, asks)  # several depletions may come before the next publish


@nb.njit(cache=True)
def reform(st: Row, par: Row, bids: np.ndarray, asks: np.ndarray) -> None:
    """The other side follows to one tick from the side that moved: the spread closes."""
    if st.reform_side == 1 and st.best_ask - st.best_bid > 1:
        _move_bid(st, par, bids, st.best_ask - 1, 1.0)
    elif st.reform_side == -1 and st.best_ask - st.best_bid > 1:
        _move_ask(st, par, asks, st.best_bid + 1, 1.0)
    st.reform_side = 0


@nb.njit(cache=True)
def keep_centred(st: Row, par: Row, bids: np.ndarray, asks: np.ndarray) -> None:
    """Re-centre the window when the mid comes within 3 x depth_ticks of an edge."""
    mid_idx = (st.best_bid + st.best_ask) // 2 - st.base_tick
    room = int(par.depth_ticks) * 3
    if mid_idx < room or mid_idx > bids.shape[0] - room:
        _recenter(st, bids, asks)


@nb.njit(cache=True)
def _recenter(st: Row, bids: np.ndarray, asks: np.ndarray) -> None:
    """Shift the window so the mid sits in its middle (rare: the window is wide)."""
    w = bids.shape[0]
    mid_idx = (st.best_bid + st.best_ask) // 2 - st.base_tick
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
    st.base_tick += shift
