"""The passive strategy as a compiled step (execution.compiled): ``Strategy`` and ``Passive`` of
execution/strategy.py decision for decision, so that a backtest with it has no per-event Python.

``passive_step`` runs with its own timer (compiled.OWN_TIMER): it wakes at each decision time (a
signal's grid time + the decision delay, the signals skipped as ``execution.backtest.replay``
skips them) and at each fill, order report and move of the best price, where the Python strategy's
``on_decision`` and ``on_wake`` run. Its memory is a ``PassiveState`` (compiled_passive_state);
execution/compiled_passive_run.py builds it from a ``Passive``, drives the replay block by block
and writes the run back into the Python object, so that ``backtest.record`` reports it unchanged.

The engine's loop with this step compiles for minutes; ``driver`` is that loop compiled once and
cached on disk (compiled.register_driver), keyed by the sources of every module compiled into it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.jit import kernel_jit
from execution import compiled as c
from execution import records as r
from execution.compiled_passive_risk import HALTED, REDUCING, Row, _min, risk_update
from execution.compiled_passive_state import (
    FAR_PAST,
    PassiveState,
    _amend_row,
    _budget,
    _cancel,
    _end,
    _equity,
    _is_cancelling,
    _mid,
    _send,
    _size,
    _stop,
)
from execution.records import Arrays

WAKES = r.W_FILL | r.W_ORDER | r.W_BOOK  # Strategy.on_wake's


@kernel_jit()
def _amended(e: Arrays, s: PassiveState, k: int, now: int) -> bool:
    """Strategy._amended: the order shows the amend's price and size (or its report is overdue)."""
    par, a = s.par[0], s.amending[k]
    if now - a.when >= par.rate_window_ns:
        return True
    row = a.oid - 1
    return bool(
        abs(c.order_price(e, row) - a.price) < 0.5 * par.tick and abs(c.order_qty(e, row) - a.qty) < par.lot / 2
    )


@kernel_jit()
def _forget_done(e: Arrays, s: PassiveState, now: int) -> None:
    """Strategy.work's first lines: drop the cancels of orders done, and the amends shown or overdue."""
    st = s.st[0]
    n = 0
    for k in range(st.n_cancelling):
        if c.is_live(e, s.cancelling[k] - 1):
            s.cancelling[n] = s.cancelling[k]
            n += 1
    st.n_cancelling = n
    n = 0
    for k in range(st.n_amending):
        if c.is_live(e, s.amending[k].oid - 1) and not _amended(e, s, k, now):
            s.amending[n] = s.amending[k]
            n += 1
    st.n_amending = n


@kernel_jit()
def _price(e: Arrays, s: PassiveState, side: int, confidence: float) -> float:
    """Passive.price: join the best, or one tick inside when confident and the spread leaves room."""
    par = s.par[0]
    tick: float = par.tick
    bid, ask = c.best_bid(e), c.best_ask(e)
    inside = ask - bid > 1.5 * tick and confidence >= par.improve_confidence
    if side > 0:
        return round((bid + (tick if inside else 0.0)) / tick) * tick
    return round((ask - (tick if inside else 0.0)) / tick) * tick


@kernel_jit()
def _amend(e: Arrays, s: PassiveState, row: int, want: float, need: float, now: int) -> float:
    """One order of the parent in Passive.execute's loop: amended to the new price or down to what
    is needed (throttled); returns ``need`` less what the order still covers."""
    par, st = s.par[0], s.st[0]
    oid = row + 1
    price, qty, filled = c.order_price(e, row), c.order_qty(e, row), c.order_filled(e, row)
    rest = qty - filled
    moved = abs(price - want) >= (par.reprice_ticks - 0.5) * par.tick
    too_big = rest > need + par.lot / 2
    if (moved or too_big) and _budget(s, now):
        new_qty = filled + _min(rest, need) if too_big else np.nan
        k = _amend_row(s, oid)
        if k < 0:
            if st.n_amending == s.amending.shape[0]:
                raise ValueError("compiled passive: too many amends in flight")
            k = st.n_amending
            st.n_amending += 1
        a = s.amending[k]
        a.oid, a.price, a.qty, a.when = oid, want if moved else price, new_qty if too_big else qty, now
        c.amend(e, oid, want if moved else np.nan, new_qty)
    return need - _min(rest, need)


@kernel_jit()
def _execute(e: Arrays, s: PassiveState, first: int, end: int, need: float) -> None:
    """Passive.execute: work the active parent (``mine``: its live orders in rows first..end)."""
    par, st = s.par[0], s.st[0]
    p = s.parents[st.active]
    tag, now = p.tag, c.now(e)
    working, n_mine = 0.0, 0
    for row in range(first, end):
        if c.is_live(e, row) and c.order_tag(e, row) == tag:
            n_mine += 1
            if not _is_cancelling(s, row + 1):
                working += c.order_qty(e, row) - c.order_filled(e, row)
    timeout = par.exit_timeout_ns if p.exiting else par.order_timeout_ns
    urgent = not p.exiting and p.confidence >= par.cross_confidence
    if now - p.ts_decision >= timeout and not urgent:
        for row in range(first, end):
            if c.is_live(e, row) and c.order_tag(e, row) == tag:
                _cancel(e, s, row)
        if p.exiting:  # cross for the rest
            uncancelled = False
            for row in range(first, end):
                if c.is_live(e, row) and c.order_tag(e, row) == tag and not _is_cancelling(s, row + 1):
                    uncancelled = True
            if not uncancelled and st.n_cancelling == 0:
                _send(e, s, p.side, need, np.nan, c.MARKET)
        else:  # give up the entry: keep what filled
            st.target = c.position(e)
            _end(e, s)
        return
    if urgent:
        if n_mine == 0:
            _send(e, s, p.side, need, np.nan, c.MARKET)
        return
    want = _price(e, s, p.side, 0.0 if p.exiting else p.confidence)
    if n_mine == 0:
        if st.n_cancelling == 0:
            _send(e, s, p.side, need, want, c.LIMIT)
        return
    for row in range(first, end):
        if not (c.is_live(e, row) and c.order_tag(e, row) == tag):
            continue
        if _is_cancelling(s, row + 1) or _amend_row(s, row + 1) >= 0:
            continue
        need = _amend(e, s, row, want, need, now)
    if working < 1e-12 and st.n_cancelling == 0:
        _send(e, s, p.side, need, want, c.LIMIT)


@kernel_jit()
def _work(e: Arrays, s: PassiveState) -> None:
    """Strategy.work: the parent from target and position, the other orders cancelled, then execute."""
    par, st = s.par[0], s.st[0]
    now = c.now(e)
    first, end = c.live_orders(e)
    _forget_done(e, s, now)
    pos = c.position(e)
    flip = st.target * pos < 0  # a flip is two parents: the exit to flat, then the new entry
    need = -pos if flip else st.target - pos
    side = 1 if need > 0 else -1
    half = par.lot / 2
    if st.active >= 0:
        p = s.parents[st.active]
        if p.side != side or abs(need) < half or (p.exiting and abs(pos) < half):
            _end(e, s)
    if abs(need) < half:
        for row in range(first, end):
            if c.is_live(e, row):
                _cancel(e, s, row)
        return
    if st.active < 0:
        if st.n_parents == s.parents.shape[0]:
            raise ValueError("compiled passive: the parents' array is full")
        exiting = flip or abs(st.target) < abs(pos)  # the parent only reduces exposure
        p = s.parents[st.n_parents]
        p.tag, p.side, p.qty, p.ts_decision, p.decision_mid = st.n_parents + 1, side, abs(need), now, _mid(e)
        p.confidence, p.exiting, p.ts_end, p.end_mid = np.nan if exiting else st.confidence, exiting, -1, np.nan
        st.active = st.n_parents
        st.n_parents += 1
    tag = s.parents[st.active].tag
    for row in range(first, end):
        if c.is_live(e, row) and c.order_tag(e, row) != tag:
            _cancel(e, s, row)
    _execute(e, s, first, end, abs(need))


@kernel_jit()
def _faded(s: PassiveState, sig: Row, p: Row) -> bool:
    """Strategy._faded: an opposite signal, or the parent's direction now far less likely."""
    p_dir = sig.p_up if p.side > 0 else sig.p_down
    return bool(sig.direction == -p.side or p_dir < s.par[0].fade_ratio * p.confidence)


@kernel_jit()
def _fixed(e: Arrays, s: PassiveState, sig: Row, now: int, pos: float) -> None:
    """Strategy._fixed: one bet at a time, held ``horizon_ns`` from its decision."""
    par, st = s.par[0], s.st[0]
    if st.target != 0.0:
        if now >= st.hold_until:
            st.target = 0.0
        return
    if sig.direction == 0 or abs(pos) >= par.lot / 2:
        return
    qty, p_win = _size(e, s, sig, pos)
    if qty > 0:
        st.target, st.confidence = sig.direction * qty, p_win
        st.hold_until = now + par.horizon_ns


@kernel_jit()
def _on_decision(e: Arrays, s: PassiveState, sig: Row) -> None:
    """Strategy.on_decision: update the target, then work the orders."""
    par, st = s.par[0], s.st[0]
    st.decisions += 1
    now = c.now(e)
    if risk_update(par, st, s.transitions, now, _equity(e)) == HALTED:
        _stop(e, s)
        return
    pos = c.position(e)
    if st.active >= 0 and not s.parents[st.active].exiting and _faded(s, sig, s.parents[st.active]):
        st.target = pos  # the signal faded before the entry filled: keep what filled, cancel the rest
    if par.fixed_hold:
        _fixed(e, s, sig, now, pos)
    elif sig.direction != 0:
        if st.target * sig.direction <= 0:  # a new position (or a flip): size it once
            qty, p_win = _size(e, s, sig, pos)
            if qty > 0:
                st.target, st.confidence = sig.direction * qty, p_win
        if st.target * sig.direction > 0:
            st.hold_until = now + par.horizon_ns
    elif now >= st.hold_until:
        st.target = 0.0
    if st.risk == REDUCING and abs(st.target) > abs(pos):
        st.target = pos if st.target * pos > 0 else 0.0
    _work(e, s)


@kernel_jit()
def _arrived_by(s: PassiveState, ts: int) -> int:
    """backtest._Feed.arrived_by: when the last event stamped at or before ``ts`` reached us."""
    for b in range(s.st[0].n_blocks - 1, -1, -1):
        lo, hi = s.block_start[b], s.block_start[b + 1]
        k = np.searchsorted(s.arrived_ex[lo:hi], ts, side="right")
        if k:
            return int(s.arrived_at[lo + k - 1])
    return FAR_PAST


@kernel_jit()
def _decide(e: Arrays, s: PassiveState) -> None:
    """replay's loop body for the signal at the cursor, then the timer set to the next one (after
    the last, or when the data ended with no book ever received: stop, as replay does)."""
    st, n = s.st[0], s.signals.shape[0]
    sig = s.signals[st.cursor]
    if st.feed_done == 1 and c.book_time(e) < 0:
        st.cursor = n
    else:
        st.cursor += 1
        if _arrived_by(s, sig.ts) > sig.t:
            st.unarrived += 1  # an event the row's features used reaches us after t: no decision on it
        else:
            _on_decision(e, s, sig)
    if st.cursor < n:
        c.set_timer(e, s.signals[st.cursor].t)
    else:
        _stop(e, s)
        c.set_timer(e, r.INF)


@kernel_jit()
def passive_step(e: Arrays, s: PassiveState, why: int) -> None:
    """The compiled step: ``on_wake`` for deliveries, the decision for the timer. A timer that
    coincides with the end of a block waits for the next block (replay loads it first)."""
    if (why & WAKES) != 0:
        if s.st[0].risk == HALTED:
            _stop(e, s)
        else:
            _work(e, s)
    if (why & r.W_TIMER) == 0:
        return
    if (why & r.W_END) != 0:
        c.set_timer(e, c.now(e))
        return
    _decide(e, s)


def _sources_digest() -> int:
    """A number that changes with the source of every module of execution/ (the driver compiles in
    the engine's kernels and this step; numba's cache checks only the file of the cached function:
    execution.kernel._sources_digest explains)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return int.from_bytes(h.digest()[:7], "big")


def _compile(version: int) -> Callable[..., int]:
    def driver(t_end: int, every_ns: int, wake: int, e: Arrays, state: PassiveState) -> int:
        """compiled.drive_loop with ``passive_step``, compiled once and cached on disk."""
        _ = version  # keeps the sources' digest in the closure, hence in the cache key
        return c.drive_loop(t_end, every_ns, wake, e, passive_step, state)

    return kernel_jit(cache=True)(driver)


driver = _compile(_sources_digest())
c.register_driver(passive_step, driver)
