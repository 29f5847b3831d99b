"""The compiled passive strategy's state and its small parts (execution/compiled_passive.py is the
step): the throttle, the cancelling set, the risk-checked send, the sizing of a new entry, each the
method of execution/strategy.py of the same name, operation for operation.

Everything the Python ``Passive`` remembers is in ``PassiveState``, a NamedTuple of numpy arrays: one
parameter row, one row of scalars, the parents, the cancelling set, the amending table, the
self-throttle's request times, the risk manager's refusals and transitions, the signals to decide
on and the arrival times of the market loaded so far (for the ``arrived_by`` rule). Rows are
np.record dtypes, so ``row.field`` reads and writes the same compiled and interpreted.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from core.jit import kernel_jit
from execution import compiled as c
from execution.compiled_passive_risk import (
    Market,
    Row,
    _min,
    depth_within,
    floor_lot,
    headroom,
    risk_check,
    size,
)
from execution.records import Arrays

I8, F8 = np.int64, np.float64
FAR_PAST = -(1 << 62)

# StrategyParams, SizingParams (lot: the sizing's) and RiskLimits (risk_lot: the risk manager's)
PARAM_DTYPE = np.dtype(
    (
        np.record,
        [
            *[(n, I8) for n in ("horizon_ns", "order_timeout_ns", "exit_timeout_ns", "reprice_ticks")],
            *[(n, I8) for n in ("rate_limit", "rate_window_ns", "own_in_book", "fixed_hold", "stale_after_ns")],
            *[(n, F8) for n in ("improve_confidence", "cross_confidence", "fade_ratio", "tick", "study_notional")],
            *[(n, F8) for n in ("kelly_fraction", "vol_target", "depth_fraction", "depth_bps", "lot", "min_qty")],
            *[(n, F8) for n in ("min_notional", "tau", "horizon_s", "round_trip_cost")],
            *[(n, F8) for n in ("max_position_btc", "max_notional", "daily_loss_limit", "reduce_drawdown")],
            *[(n, F8) for n in ("halt_drawdown", "max_spread_bps", "min_depth_btc", "risk_lot")],
        ],
    )
)
# the strategy's and the risk manager's scalars, and the run's cursors
STATE_DTYPE = np.dtype(
    (
        np.record,
        [
            ("target", F8),
            ("hold_until", I8),
            ("confidence", F8),
            ("active", I8),  # row of the active parent, -1: none
            *[(n, I8) for n in ("n_parents", "throttled", "decisions", "n_cancelling", "n_amending")],
            ("req_head", I8),  # the self-throttle's ring of request times
            ("req_n", I8),
            ("risk", I8),  # compiled_passive_risk.ACTIVE / REDUCING / HALTED
            ("peak", F8),
            ("day", I8),
            ("day_start", F8),
            ("n_trans", I8),
            ("n_refusal_kinds", I8),
            ("cursor", I8),  # next signal to decide on
            ("unarrived", I8),  # signals not decided on: their events arrived after the decision time
            ("feed_done", I8),  # no market block left to load
            ("n_blocks", I8),  # market blocks loaded (their arrivals: arrived_ex / arrived_at)
        ],
    )
)
PARENT_ROW = np.dtype(
    (
        np.record,
        [
            *[(n, I8) for n in ("tag", "ts_decision", "side")],
            *[(n, F8) for n in ("qty", "decision_mid", "confidence")],
            ("exiting", I8),
            ("ts_end", I8),
            ("end_mid", F8),
        ],
    )
)
SIGNAL_ROW = np.dtype(
    (np.record, [("ts", I8), ("t", I8), ("p_up", F8), ("p_down", F8), ("direction", I8), ("sigma_1s", F8)])
)
AMEND_ROW = np.dtype((np.record, [("oid", I8), ("price", F8), ("qty", F8), ("when", I8)]))


class PassiveState(NamedTuple):
    par: np.ndarray  # PARAM_DTYPE[1]
    st: np.ndarray  # STATE_DTYPE[1]
    signals: np.ndarray  # SIGNAL_ROW[n]: the signals to decide on, in order (t: the decision time)
    parents: np.ndarray  # PARENT_ROW[cap]
    cancelling: np.ndarray  # int64[cap]: ids of the orders we asked to cancel
    amending: np.ndarray  # AMEND_ROW[cap]: amends in flight, in the order asked
    requests: np.ndarray  # int64[max(1, rate_limit - 2)]: times of our recent requests (a ring)
    refused: np.ndarray  # int64[7, 2]: per refusal reason, count and rank of its first occurrence
    transitions: np.ndarray  # compiled_passive_risk.TRANSITION_DTYPE[cap]
    arrived_ex: np.ndarray  # int64: per block, its events' exchange times in order (feed._Feed)
    arrived_at: np.ndarray  # int64: when the last event up to each reached us
    block_start: np.ndarray  # int64[blocks + 1]: where each block starts in arrived_ex / arrived_at
    scratch: np.ndarray  # float64[levels]


# --- small helpers ----------------------------------------------------------------------------------


@kernel_jit()
def _mid(e: Arrays) -> float:
    return 0.5 * (c.best_bid(e) + c.best_ask(e))


@kernel_jit()
def _equity(e: Arrays) -> float:
    """Engine.equity: cash + position * mid (the local view)."""
    pos = c.position(e)
    return c.cash(e) + (pos * _mid(e) if pos != 0.0 else 0.0)


@kernel_jit()
def _pending(e: Arrays, side: int) -> float:
    """Strategy.pending: what our orders on ``side`` may still add."""
    total = 0.0
    first, end = c.live_orders(e)
    for row in range(first, end):
        if c.is_live(e, row) and c.order_side(e, row) == side:
            total += c.order_qty(e, row) - c.order_filled(e, row)
    return total


@kernel_jit()
def _is_cancelling(s: PassiveState, oid: int) -> bool:
    for k in range(s.st[0].n_cancelling):  # noqa: SIM110 (a loop compiles; a generator in any() does not)
        if s.cancelling[k] == oid:
            return True
    return False


@kernel_jit()
def _amend_row(s: PassiveState, oid: int) -> int:
    for k in range(s.st[0].n_amending):
        if s.amending[k].oid == oid:
            return k
    return -1


@kernel_jit()
def _budget(s: PassiveState, now: int) -> bool:
    """Strategy._budget: stay two requests under the venue's limit per window."""
    st, req, par = s.st[0], s.requests, s.par[0]
    while st.req_n > 0 and req[st.req_head] <= now - par.rate_window_ns:
        st.req_head = (st.req_head + 1) % req.shape[0]
        st.req_n -= 1
    if st.req_n >= max(1, par.rate_limit - 2):
        st.throttled += 1
        return False
    req[(st.req_head + st.req_n) % req.shape[0]] = now
    st.req_n += 1
    return True


@kernel_jit()
def _cancel(e: Arrays, s: PassiveState, row: int) -> None:
    """Strategy._cancel."""
    st = s.st[0]
    if not _is_cancelling(s, row + 1) and _budget(s, c.now(e)):
        if st.n_cancelling == s.cancelling.shape[0]:
            raise ValueError("compiled passive: too many orders being cancelled at once")
        s.cancelling[st.n_cancelling] = row + 1
        st.n_cancelling += 1
        c.cancel(e, row + 1)


@kernel_jit()
def _end(e: Arrays, s: PassiveState) -> None:
    """Strategy._end: the active parent ends now."""
    st = s.st[0]
    if st.active >= 0:
        p = s.parents[st.active]
        p.ts_end, p.end_mid = c.now(e), _mid(e)
        st.active = -1


@kernel_jit()
def _stop(e: Arrays, s: PassiveState) -> None:
    """Strategy.stop: cancel everything (no throttle) and end the active parent."""
    st = s.st[0]
    first, end = c.live_orders(e)
    for row in range(first, end):
        if c.is_live(e, row) and not _is_cancelling(s, row + 1):
            if st.n_cancelling == s.cancelling.shape[0]:
                raise ValueError("compiled passive: too many orders being cancelled at once")
            s.cancelling[st.n_cancelling] = row + 1
            st.n_cancelling += 1
            c.cancel(e, row + 1)
    _end(e, s)


@kernel_jit()
def _send(e: Arrays, s: PassiveState, side: int, qty: float, price: float, kind: int) -> None:
    """Strategy._send: one order for the active parent, after the risk check and the throttle."""
    par, st = s.par[0], s.st[0]
    mid = _mid(e)
    px, q = c.book_side(e, -side)  # the side the order would trade against or join
    depth = depth_within(px, q, mid, par.depth_bps, 0.0, s.scratch)
    bid, ask, now = c.best_bid(e), c.best_ask(e), c.now(e)
    mkt = Market(now, c.book_time(e), bid, ask, depth)
    allowed = risk_check(par, st, s.refused, side, qty, c.position(e), _pending(e, side), mkt)
    if allowed > 0 and _budget(s, now):
        c.submit(e, side, allowed, price, kind, True, s.parents[st.active].tag)


# --- sizing (Passive.entry_size, Strategy.study_size) ------------------------------------------------


@kernel_jit()
def _entry_size(e: Arrays, s: PassiveState, side: int, p_win: float, p_loss: float, sigma: float, pos: float) -> float:
    par = s.par[0]
    mid, band = _mid(e), par.depth_bps
    own_bid, own_ask = 0.0, 0.0  # ours within the band, where the book holds them (a live exchange's)
    if par.own_in_book:
        first, end = c.live_orders(e)
        for row in range(first, end):
            if c.is_live(e, row) and abs(c.order_price(e, row) - mid) <= mid * band * 1e-4:
                if c.order_side(e, row) == 1:
                    own_bid += c.order_qty(e, row) - c.order_filled(e, row)
                elif c.order_side(e, row) == -1:
                    own_ask += c.order_qty(e, row) - c.order_filled(e, row)
    bpx, bqx = c.book_side(e, 1)
    near_bid = depth_within(bpx, bqx, mid, band, own_bid, s.scratch)
    apx, aqx = c.book_side(e, -1)
    near = _min(near_bid, depth_within(apx, aqx, mid, band, own_ask, s.scratch))
    room = headroom(par, side, pos, _pending(e, side), c.best_ask(e) if side > 0 else c.best_bid(e))
    return size(p_win, p_loss, _equity(e), mid, sigma, near, room, par)


@kernel_jit()
def _size(e: Arrays, s: PassiveState, sig: Row, pos: float) -> tuple[float, float]:
    """Strategy._size: (quantity, probability of the signalled direction) of a new entry."""
    par = s.par[0]
    p_win, p_loss = (sig.p_up, sig.p_down) if sig.direction > 0 else (sig.p_down, sig.p_up)
    if par.study_notional > 0:
        mid = _mid(e)
        qty = floor_lot(par.study_notional / mid, par.lot) if mid > 0 else 0.0
        return (qty if qty >= par.min_qty and qty * mid >= par.min_notional else 0.0), p_win
    return _entry_size(e, s, sig.direction, p_win, p_loss, sig.sigma_1s, pos), p_win
