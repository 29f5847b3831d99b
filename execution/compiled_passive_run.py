"""A backtest of the built-in ``Passive`` strategy with no per-event Python: its compiled step
(execution/compiled_passive.py) inside the engine's loop, driven block by block.

``replay_passive`` is ``execution.backtest.replay``'s loop for a ``Passive``: the same signals
skipped, the same wakes, the same end (stop, then one more second for the cancels to land). Python
runs once per market block (load it, append its arrival times) and once at the end, where it
writes the run back into the ``Passive`` object (parents, target, counters, the risk manager's
state, refusals and transitions), so that ``backtest.record`` reports it as it reports a Python run.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from execution import compiled
from execution import records as r
from execution.compiled import CompiledStrategy
from execution.compiled_passive import passive_step
from execution.compiled_passive_risk import MAX_LEVELS, REFUSALS, TRANSITION_DTYPE, transition_reason
from execution.compiled_passive_state import (
    AMEND_ROW,
    PARAM_DTYPE,
    PARENT_ROW,
    SIGNAL_ROW,
    STATE_DTYPE,
    PassiveState,
    _stop,
)
from execution.engine import Engine, Wake
from execution.risk import RiskState
from execution.strategy import Parent, Passive

if TYPE_CHECKING:
    from execution.backtest import Signals, _Feed

NS = 1_000_000_000
CANCELLING_CAP = 1024  # orders being cancelled at once (the throttle keeps it to a few)


def compilable(strategy: object, levels: int) -> bool:
    """The strategy is exactly the built-in ``Passive`` (not a subclass), not yet run, on a book of
    at most MAX_LEVELS levels."""
    if type(strategy) is not Passive or levels > MAX_LEVELS:
        return False
    s = strategy
    fresh = not (s.parents or s.active or s.cancelling or s.amending or s.requests)
    return fresh and not (s.risk.refused or s.risk.transitions)


def _params(s: Passive) -> np.ndarray:
    p, z, k = s.params, s.sizing, s.risk.limits
    par = np.zeros(1, PARAM_DTYPE)[0]
    for name in ("horizon_ns", "order_timeout_ns", "exit_timeout_ns", "reprice_ticks", "rate_limit"):
        setattr(par, name, getattr(p, name))
    for name in ("rate_window_ns", "own_in_book", "fixed_hold", "improve_confidence", "cross_confidence"):
        setattr(par, name, getattr(p, name))
    for name in ("fade_ratio", "tick", "study_notional"):
        setattr(par, name, getattr(p, name))
    for name in ("kelly_fraction", "vol_target", "depth_fraction", "depth_bps", "lot", "min_qty", "min_notional"):
        setattr(par, name, getattr(z, name))
    for name in ("tau", "horizon_s", "round_trip_cost"):
        setattr(par, name, getattr(z, name))
    for name in ("max_position_btc", "max_notional", "daily_loss_limit", "reduce_drawdown", "halt_drawdown"):
        setattr(par, name, getattr(k, name))
    par.stale_after_ns, par.max_spread_bps, par.min_depth_btc, par.risk_lot = (
        k.stale_after_ns,
        k.max_spread_bps,
        k.min_depth_btc,
        k.lot,
    )
    return np.array([par], PARAM_DTYPE)


def _state(s: Passive, signals: Signals, chosen: np.ndarray, delay_ns: int, levels: int) -> PassiveState:
    """The compiled state of a fresh ``Passive`` that will decide on the signals ``chosen``."""
    st = np.zeros(1, STATE_DTYPE)
    row = st[0]
    row.target, row.hold_until, row.confidence, row.active = s.target, s.hold_until, s.confidence, -1
    row.decisions, row.throttled = s.decisions, s.throttled
    row.risk, row.peak, row.day, row.day_start = int(s.risk.state), s.risk.peak, s.risk.day, s.risk.day_start
    sig = np.zeros(len(chosen), SIGNAL_ROW)
    sig["ts"] = signals.ts[chosen]
    sig["t"] = sig["ts"] + delay_ns
    sig["p_up"], sig["p_down"] = signals.p_up[chosen], signals.p_down[chosen]
    sig["direction"], sig["sigma_1s"] = signals.direction[chosen], signals.sigma_1s[chosen]
    return PassiveState(
        par=_params(s),
        st=st,
        signals=sig,
        parents=np.zeros(2 * len(chosen) + 1024, PARENT_ROW),
        cancelling=np.zeros(CANCELLING_CAP, np.int64),
        amending=np.zeros(CANCELLING_CAP, AMEND_ROW),
        requests=np.zeros(max(1, s.params.rate_limit - 2), np.int64),
        refused=np.zeros((len(REFUSALS), 2), np.int64),
        transitions=np.zeros(len(chosen) + 1, TRANSITION_DTYPE),
        arrived_ex=np.zeros(0, np.int64),
        arrived_at=np.zeros(0, np.int64),
        block_start=np.zeros(1, np.int64),
        scratch=np.zeros(max(levels, 1)),
    )


def _with_block(state: PassiveState, ex: np.ndarray, arrived: np.ndarray) -> PassiveState:
    """The state with one more loaded block's arrival times (and room for more parents)."""
    st = state.st[0]
    parents = state.parents
    if parents.shape[0] - st.n_parents < len(state.signals) - st.cursor + 1024:
        parents = np.zeros(2 * parents.shape[0], PARENT_ROW)
        parents[: state.parents.shape[0]] = state.parents
    st.n_blocks += 1
    return state._replace(
        parents=parents,
        arrived_ex=np.concatenate([state.arrived_ex, ex]),
        arrived_at=np.concatenate([state.arrived_at, arrived]),
        block_start=np.append(state.block_start, state.block_start[-1] + len(ex)),
    )


def replay_passive(
    engine: Engine,
    feed: _Feed,
    signals: Signals,
    strategy: Passive,
    decision_delay_ns: int,
    progress: Callable[[float, str], None] | None = None,
) -> int:
    """``backtest.replay``'s loop for a fresh ``Passive`` (``feed`` has loaded its first block),
    compiled; the strategy object is left as the Python loop leaves it. Returns the signals not
    decided on because their events had not arrived (``rows_not_arrived``)."""
    t = signals.ts.astype(np.int64) + decision_delay_ns
    earlier = np.maximum.accumulate(np.concatenate([[engine.now], t[:-1]]))  # replay skips t <= now
    chosen = np.flatnonzero(t > earlier)
    state = _with_block(_state(strategy, signals, chosen, decision_delay_ns, engine.levels), *feed.arrivals())
    end = int(t[-1])
    e = engine.arrays()
    if len(chosen):
        compiled.set_timer(e, int(t[chosen[0]]))
        t_end = max(end, int(t[chosen[-1]])) + NS
    else:
        _stop(e, state)
        compiled.set_timer(e, r.INF)
        t_end = max(end, engine.now) + NS
    wake = Wake.FILL | Wake.ORDER | Wake.BOOK | Wake.END
    while True:
        hit = engine.drive(CompiledStrategy(passive_step, state, compiled.OWN_TIMER, 0, int(wake)), t_end)
        if progress is not None:
            progress(state.st[0].cursor / max(len(chosen), 1), f"{len(engine.fills()):,} fills")
        if not hit & Wake.END:
            break
        if feed.next():
            state = _with_block(state, *feed.arrivals())
            continue
        wake &= ~Wake.END
        state.st[0].feed_done = 1
        timer = int(engine.arrays().state[0]["next_timer"])
        if engine.book().ts_local < 0 and timer != r.INF:  # the next decision ends the loop (replay's break)
            t_end = max(end, timer) + NS
    _write_back(strategy, state)
    return int(state.st[0].unarrived)


def _write_back(s: Passive, state: PassiveState) -> None:
    """Leave ``s`` as the Python loop would have: its parents, target, counters and risk manager."""
    st = state.st[0]
    s.target, s.hold_until, s.confidence = float(st.target), int(st.hold_until), float(st.confidence)
    s.decisions, s.throttled = int(st.decisions), int(st.throttled)
    s.parents = [
        Parent(
            int(p.tag),
            int(p.side),
            float(p.qty),
            int(p.ts_decision),
            float(p.decision_mid),
            float(p.confidence),
            bool(p.exiting),
            int(p.ts_end),
            float(p.end_mid),
        )
        for p in state.parents[: st.n_parents]
    ]
    s.active = s.parents[st.active] if st.active >= 0 else None
    s.cancelling = {int(i) for i in state.cancelling[: st.n_cancelling]}
    s.amending = {int(a.oid): (float(a.price), float(a.qty), int(a.when)) for a in state.amending[: st.n_amending]}
    ring = state.requests
    s.requests = deque(int(ring[(st.req_head + k) % len(ring)]) for k in range(st.req_n))
    risk = s.risk
    risk.state, risk.peak, risk.day, risk.day_start = (
        RiskState(int(st.risk)),
        float(st.peak),
        int(st.day),
        float(st.day_start),
    )
    kinds = sorted((int(rank), why) for why, (n, rank) in enumerate(state.refused) if n > 0)
    risk.refused = Counter({REFUSALS[why]: int(state.refused[why, 0]) for _, why in kinds})
    for row in state.transitions[: st.n_trans]:
        reason = transition_reason(int(row.why), float(row.value), risk.limits)
        risk.transitions.append((int(row.ts), RiskState(int(row.state)), reason))
        risk.reason = "" if row.state == int(RiskState.ACTIVE) else reason
