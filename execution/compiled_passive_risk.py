"""The risk manager and the Kelly sizing of the compiled passive strategy: execution/risk.py and
execution/sizing.py line for line, as numba functions over one parameter row and one state row.

The arithmetic is the Python's, operation for operation, so that a compiled run equals a Python
one bit for bit: Python's ``min``/``max`` keep their first argument unless the second is strictly
smaller/larger (``_min``, ``_max``: numba's own differ on NaN), and ``numpy.sum`` adds in its
pairwise order (``_np_sum``). The refusal reasons and the state transitions are kept as codes and
numbers; ``transition_reason`` writes them as the Python risk manager does.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from core.jit import kernel_jit
from execution.risk import DAY_NS, RiskLimits
from execution.sizing import SECONDS_PER_YEAR

ACTIVE, REDUCING, HALTED = 0, 1, 2  # execution.risk.RiskState
# refusals, by the part of the Python verdict's reason before its ":"
REFUSALS = ("halted", "invalid book", "stale data", "reducing", "spread guard", "depth guard", "position limit")
R_HALTED, R_INVALID, R_STALE, R_REDUCING, R_SPREAD, R_DEPTH, R_POSITION = range(7)
# why the state moved (RiskManager.update's four reasons)
T_HALT_DRAWDOWN, T_HALT_DAY, T_REDUCE, T_BACK = range(4)
SQRT_YEAR = math.sqrt(SECONDS_PER_YEAR)
Row = Any  # a numpy record (one row of an np.record array), read and written by field name

MAX_LEVELS = 128  # numpy sums up to 128 numbers in one block (beyond, it splits them: not done here)
TRANSITION_DTYPE = np.dtype(
    (np.record, [("ts", np.int64), ("state", np.int64), ("why", np.int64), ("value", np.float64)])
)


@kernel_jit(inline="always")
def _min(a: float, b: float) -> float:
    """Python's ``min(a, b)``."""
    return b if b < a else a


@kernel_jit(inline="always")
def _max(a: float, b: float) -> float:
    """Python's ``max(a, b)``."""
    return b if b > a else a


# --- sizing (execution/sizing.py) ----------------------------------------------------------------


@kernel_jit()
def _np_sum(a: np.ndarray, n: int) -> float:
    """``numpy.sum`` of ``a[:n]`` (n <= MAX_LEVELS), in numpy's pairwise order (float64, contiguous)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    while i < n - n % 8:
        r0, r1, r2, r3 = r0 + a[i], r1 + a[i + 1], r2 + a[i + 2], r3 + a[i + 3]
        r4, r5, r6, r7 = r4 + a[i + 4], r5 + a[i + 5], r6 + a[i + 6], r7 + a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return float(res)


@kernel_jit()
def depth_within(px: np.ndarray, qty: np.ndarray, mid: float, bps: float, own: float, scratch: np.ndarray) -> float:
    """sizing.depth_within: visible size within ``bps`` of ``mid`` on one side, minus our own there."""
    band = mid * bps * 1e-4
    m = 0
    for i in range(px.shape[0]):
        if abs(px[i] - mid) <= band and np.isfinite(px[i]):
            scratch[m] = qty[i]
            m += 1
    return _max(0.0, _np_sum(scratch, m) - own)


@kernel_jit()
def floor_lot(qty: float, lot: float) -> float:
    """sizing.floor_lot."""
    if qty <= 0:
        return 0.0
    return math.floor(qty / lot + 1e-9) * lot


@kernel_jit()
def move_beyond(tau: float, sigma_h: float) -> float:
    """sizing.move_beyond."""
    if not sigma_h > 0.0:
        return tau
    k = tau / sigma_h
    tail = 0.5 * math.erfc(k / math.sqrt(2.0))
    if tail < 1e-300:
        return tau + sigma_h * sigma_h / tau
    return sigma_h * math.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi) / tail


@kernel_jit()
def _slope(f: float, p_win: float, p_loss: float, p_push: float, win: float, loss: float, cost: float) -> float:
    return p_win * win / (1.0 + f * win) - p_loss * loss / (1.0 - f * loss) - p_push * cost / (1.0 - f * cost)


@kernel_jit()
def kelly_leverage(p_win: float, p_loss: float, move: float, cost: float) -> float:
    """sizing.kelly_leverage."""
    p_push = _max(0.0, 1.0 - p_win - p_loss)
    win, loss = move - cost, move + cost
    edge = p_win * win - p_loss * loss - p_push * cost
    if not edge > 0.0:
        return 0.0
    worst = _max(loss if p_loss > 0 else 0.0, cost if p_push > 0 else 0.0)
    if worst <= 0.0:
        return math.inf
    lo, hi = 0.0, 1.0 / worst
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _slope(mid, p_win, p_loss, p_push, win, loss, cost) > 0.0:
            lo = mid
        else:
            hi = mid
    return lo


@kernel_jit()
def size(
    p_win: float, p_loss: float, equity: float, mid: float, sigma_1s: float, depth: float, headroom: float, par: Row
) -> float:
    """sizing.size(...).qty, with the sizing parameters of the row ``par`` (compiled_passive.PARAM_DTYPE)."""
    if not (mid > 0 and equity > 0 and math.isfinite(sigma_1s)):
        return 0.0
    sigma_1s = _max(sigma_1s, 1e-8)
    sigma_year = sigma_1s * SQRT_YEAR
    vol = equity * par.vol_target / sigma_year / mid
    move = move_beyond(par.tau, sigma_1s * math.sqrt(par.horizon_s))
    kelly = par.kelly_fraction * kelly_leverage(p_win, p_loss, move, par.round_trip_cost) * equity / mid
    least = _min(_min(_min(kelly, vol), par.depth_fraction * _max(depth, 0.0)), _max(headroom, 0.0))
    qty = floor_lot(least, par.lot)
    if kelly <= 0.0 or qty < par.min_qty or qty * mid < par.min_notional:
        return 0.0
    return qty


# --- the risk manager (execution/risk.py) --------------------------------------------------------


@kernel_jit()
def _enter(st: Row, trans: np.ndarray, now: int, state: int, why: int, value: float) -> None:
    if st.risk == HALTED and state != HALTED:
        return  # sticky
    if state != st.risk:
        row = trans[st.n_trans]
        row.ts, row.state, row.why, row.value = now, state, why, value
        st.n_trans += 1
        st.risk = state


@kernel_jit()
def risk_update(par: Row, st: Row, trans: np.ndarray, now: int, equity: float) -> int:
    """RiskManager.update: track the peak and the day's start, move to REDUCING / HALTED."""
    day = now // DAY_NS
    if day != st.day:
        st.day, st.day_start = day, equity
    if not equity <= st.peak:
        st.peak = equity
    drawdown = 1.0 - equity / st.peak if st.peak > 0 else 0.0
    day_loss = 1.0 - equity / st.day_start if st.day_start > 0 else 0.0
    if drawdown >= par.halt_drawdown:
        _enter(st, trans, now, HALTED, T_HALT_DRAWDOWN, drawdown)
    elif day_loss >= par.daily_loss_limit:
        _enter(st, trans, now, HALTED, T_HALT_DAY, day_loss)
    elif drawdown >= par.reduce_drawdown:
        _enter(st, trans, now, REDUCING, T_REDUCE, drawdown)
    elif st.risk == REDUCING:
        _enter(st, trans, now, ACTIVE, T_BACK, np.nan)
    return int(st.risk)


class Market(NamedTuple):
    """execution.risk.MarketState as the compiled check reads it (the same fields)."""

    now_ns: int
    book_ts_ns: int  # local time of the last book update
    bid: float
    ask: float
    depth: float  # BTC within the sizing band on the side the order would trade


@kernel_jit()
def _check(par: Row, st: Row, side: int, qty: float, position: float, pending: float, mkt: Market) -> tuple[float, int]:
    """RiskManager._check, line for line: (the quantity allowed, the refusal code or -1)."""
    bid, ask = mkt.bid, mkt.ask
    reduces = side * position < 0
    reducible = abs(position) if reduces else 0.0
    if st.risk == HALTED:
        return 0.0, R_HALTED
    if not (math.isfinite(bid) and math.isfinite(ask) and 0 < bid < ask):
        return 0.0, R_INVALID
    if mkt.now_ns - mkt.book_ts_ns > par.stale_after_ns:
        return 0.0, R_STALE
    if not reduces:
        if st.risk == REDUCING:
            return 0.0, R_REDUCING
        mid = 0.5 * (bid + ask)
        if (ask - bid) / mid * 1e4 > par.max_spread_bps:
            return 0.0, R_SPREAD
        if mkt.depth < par.min_depth_btc:
            return 0.0, R_DEPTH
    worst = abs(position + side * (pending + qty))
    price = ask if side > 0 else bid
    cap = _min(par.max_position_btc, par.max_notional / price)
    allowed = qty if worst <= cap else _max(0.0, qty - (worst - cap))
    if reduces:
        allowed = _max(allowed, _min(qty, _max(0.0, reducible - pending)))
    allowed = floor_lot(allowed, par.risk_lot)
    if allowed <= 0:
        return 0.0, R_POSITION
    return allowed, -1


@kernel_jit()
def risk_check(
    par: Row, st: Row, refused: np.ndarray, side: int, qty: float, position: float, pending: float, mkt: Market
) -> float:
    """RiskManager.check: the quantity that may be sent (0: refused, and counted by reason).
    ``refused`` rows: [count, rank of the first refusal of that kind (its place in the Counter)]."""
    allowed, why = _check(par, st, side, qty, position, pending, mkt)
    if why >= 0:
        if refused[why, 0] == 0:
            refused[why, 1] = st.n_refusal_kinds
            st.n_refusal_kinds += 1
        refused[why, 0] += 1
    return allowed


@kernel_jit()
def headroom(par: Row, side: int, position: float, pending: float, price: float) -> float:
    """RiskManager.headroom: BTC that may still be added on ``side``."""
    cap = _min(par.max_position_btc, par.max_notional / price) if price > 0 else 0.0
    return _max(0.0, cap - side * position - pending)


def transition_reason(why: int, value: float, limits: RiskLimits) -> str:
    """The Python risk manager's reason for a transition (RiskManager.update's wording)."""
    if why == T_HALT_DRAWDOWN:
        return f"drawdown {value:.2%} >= {limits.halt_drawdown:.2%}"
    if why == T_HALT_DAY:
        return f"daily loss {value:.2%} >= {limits.daily_loss_limit:.2%}"
    if why == T_REDUCE:
        return f"drawdown {value:.2%} >= {limits.reduce_drawdown:.2%}"
    return "drawdown back under the limit"
