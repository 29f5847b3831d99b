"""Compiled strategies: a numba function the engine calls at its wake points, so that a whole
replay runs inside one compiled call with no Python per event.

A ``CompiledStrategy`` is a step function, compiled with ``core.jit.kernel_jit`` (the loop runs
without numba's reference counting: the step allocates nothing), and its own state (a NamedTuple
of numpy arrays, allocated before the run: whatever it remembers between steps). ``Engine.drive`` runs the event
loop (execution.kernel.advance) and calls ``step(e, state, why)`` at every wake point: its timer
(every ``every_ns`` of local time from ``start_ns``), and the deliveries in ``wake`` (a fill, any
order report, a move of the local best price, the end of the data). ``why`` holds the flags that
woke it (records.W_TIMER, W_FILL, W_ORDER, W_BOOK, W_END). The step sees what a Python strategy
sees through a Gateway, the local view at ``now``, through the functions below, and sends requests
with them; they behave as ``Engine``'s methods of the same name (same latencies, same records).

A step may send at most ``MAX_REQUESTS`` requests; the driver keeps room for them. A step that
wakes at times of its own choosing (the backtest's decisions) runs with ``every_ns = OWN_TIMER``:
each timer wake fires once, and the step sets the next with ``set_timer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from core.jit import kernel_jit
from execution import records as r
from execution.kernel import advance
from execution.records import Arrays
from execution.types import OrderKind, OrderStatus

MAX_REQUESTS = 64
MARKET = int(OrderKind.MARKET)
LIMIT = int(OrderKind.LIMIT)
PENDING = int(OrderStatus.PENDING)
OWN_TIMER = -1  # every_ns for a step that sets its own timer (set_timer)


class CompiledStrategy(NamedTuple):
    """A strategy the engine runs inside its compiled loop (see the module docstring)."""

    step: Callable[..., None]  # numba.njit: (e: records.Arrays, state, why: int) -> None
    state: Any  # a NamedTuple of numpy arrays, the step's own memory
    every_ns: int  # the timer's period (0: no timer; OWN_TIMER: the step sets it)
    start_ns: int  # the first timer wake (local clock)
    wake: int  # deliveries that also wake it: records.W_FILL | W_ORDER | W_BOOK | W_END


# --- the local view ------------------------------------------------------------------------------


@kernel_jit(inline="always")
def now(e: Arrays) -> int:
    """The local clock (ns)."""
    return int(e.si[r.S_NOW])


@kernel_jit(inline="always")
def best_bid(e: Arrays) -> float:
    """Best bid of the last book received (NaN before the first)."""
    i = e.si[r.S_LOC_BOOK] - 1
    return float(e.bid_px[i, 0]) if i >= 0 else np.nan


@kernel_jit(inline="always")
def best_ask(e: Arrays) -> float:
    """Best ask of the last book received (NaN before the first)."""
    i = e.si[r.S_LOC_BOOK] - 1
    return float(e.ask_px[i, 0]) if i >= 0 else np.nan


@kernel_jit(inline="always")
def book_time(e: Arrays) -> int:
    """Local time of the last book received (-1 before the first)."""
    i = e.si[r.S_LOC_BOOK] - 1
    return int(e.book_ts_local[i]) if i >= 0 else -1


@kernel_jit(inline="always")  # returns views: inlined, it takes its caller's NRT mode
def book_side(e: Arrays, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(prices, sizes) of one side of the last book received, best first (side > 0: the bids);
    views, not copies: read them before the step returns. Before the first book: empty."""
    i = e.si[r.S_LOC_BOOK] - 1
    if i < 0:
        return e.bid_px[0, :0], e.bid_qty[0, :0]
    return (e.bid_px[i], e.bid_qty[i]) if side > 0 else (e.ask_px[i], e.ask_qty[i])


@kernel_jit(inline="always")
def tick_size(e: Arrays) -> float:
    return float(e.sf[r.K_TICK])


@kernel_jit(inline="always")
def lot_size(e: Arrays) -> float:
    return float(e.sf[r.K_LOT])


@kernel_jit(inline="always")
def position(e: Arrays) -> float:
    """BTC held, as reported by ``now``."""
    return float(e.sf[r.L_POS])


@kernel_jit(inline="always")
def cash(e: Arrays) -> float:
    """Cash as reported by ``now``."""
    return float(e.sf[r.L_CASH])


@kernel_jit(inline="always")
def live_orders(e: Arrays) -> tuple[int, int]:
    """(first, end): the rows to scan for orders sent and not reported done (``is_live``), in the
    order they were sent; order id = row + 1."""
    si = e.si
    i = si[r.S_FIRST_LIVE]
    while i < si[r.S_N_ORDERS] and e.oi[i, r.O_L_STATUS] > r.OPEN:  # a done order never comes back
        i += 1
    si[r.S_FIRST_LIVE] = i
    return i, si[r.S_N_ORDERS]


@kernel_jit(inline="always")
def is_live(e: Arrays, row: int) -> bool:
    """Order row ``row`` is pending or open in the local view."""
    return bool(e.oi[row, r.O_L_STATUS] <= r.OPEN)


@kernel_jit(inline="always")
def order_side(e: Arrays, row: int) -> int:
    return int(e.oi[row, r.O_SIDE])


@kernel_jit(inline="always")
def order_tag(e: Arrays, row: int) -> int:
    return int(e.oi[row, r.O_TAG])


@kernel_jit(inline="always")
def order_price(e: Arrays, row: int) -> float:
    """The price as last reported (OpenOrder.price)."""
    return float(e.of[row, r.F_L_PRICE])


@kernel_jit(inline="always")
def order_qty(e: Arrays, row: int) -> float:
    return float(e.of[row, r.F_L_QTY])


@kernel_jit(inline="always")
def order_filled(e: Arrays, row: int) -> float:
    return float(e.of[row, r.F_L_FILLED])


# --- requests ------------------------------------------------------------------------------------


@kernel_jit()
def _to_front(ai: np.ndarray, af: np.ndarray, head: int, n: int) -> None:
    """Move rows head..n of ``ai`` / ``af`` to the front, element by element (no temporary copy:
    kernels run without NRT, core.jit)."""
    for i in range(n - head):
        for j in range(ai.shape[1]):
            ai[i, j] = ai[head + i, j]
        for j in range(af.shape[1]):
            af[i, j] = af[head + i, j]


@kernel_jit(inline="always")
def _request(e: Arrays, kind: int, oid: int, price: float, qty: float) -> None:
    si, qi, qf = e.si, e.qi, e.qf
    n = si[r.S_REQ_N]
    if n == qi.shape[0]:  # move the requests in flight to the front
        head = si[r.S_REQ_HEAD]
        _to_front(qi, qf, head, n)
        n -= head
        si[r.S_REQ_HEAD] = 0
        if n == qi.shape[0]:
            raise ValueError("a compiled step sent more requests than execution.compiled.MAX_REQUESTS")
    qi[n, r.Q_TS], qi[n, r.Q_KIND], qi[n, r.Q_OID] = si[r.S_NOW] + si[r.K_ENTRY], kind, oid
    qf[n, r.Q_PRICE], qf[n, r.Q_QTY] = price, qty
    si[r.S_REQ_N] = n + 1


@kernel_jit(inline="always")
def submit(e: Arrays, side: int, qty: float, price: float, kind: int, post_only: bool, tag: int) -> int:
    """Send a new order now (``price`` NaN for a market order); returns its id."""
    si, oi, of = e.si, e.oi, e.of
    idx = si[r.S_N_ORDERS]
    if idx == oi.shape[0]:
        raise ValueError("a compiled step sent more orders than execution.compiled.MAX_REQUESTS")
    si[r.S_N_ORDERS] = idx + 1
    market = kind == MARKET
    px = np.nan if market else price
    oi[idx, :] = 0
    oi[idx, r.O_SIDE], oi[idx, r.O_KIND], oi[idx, r.O_TAG] = side, kind, tag
    oi[idx, r.O_POST] = 1 if post_only and not market else 0
    oi[idx, r.O_TS_SUBMIT], oi[idx, r.O_TS_ARRIVE], oi[idx, r.O_TS_DONE] = si[r.S_NOW], -1, -1
    oi[idx, r.O_STATUS] = oi[idx, r.O_L_STATUS] = PENDING
    of[idx, :] = 0.0
    of[idx, r.F_PRICE], of[idx, r.F_QTY], of[idx, r.F_L_PRICE], of[idx, r.F_L_QTY] = px, qty, px, qty
    of[idx, r.F_QA0] = np.nan
    _request(e, r.REQ_NEW, idx + 1, np.nan, np.nan)
    return int(idx + 1)


@kernel_jit(inline="always")
def amend(e: Arrays, order_id: int, price: float, qty: float) -> None:
    """Change price and/or size (NaN: unchanged)."""
    _request(e, r.REQ_AMEND, order_id, price, qty)


@kernel_jit(inline="always")
def cancel(e: Arrays, order_id: int) -> None:
    """Cancel on arrival; the order can still fill while the cancel is in flight."""
    _request(e, r.REQ_CANCEL, order_id, np.nan, np.nan)


@kernel_jit(inline="always")
def cancel_all(e: Arrays) -> None:
    """Cancel every order open when the request arrives (one request)."""
    _request(e, r.REQ_CANCEL_ALL, 0, np.nan, np.nan)


@kernel_jit(inline="always")
def set_timer(e: Arrays, t: int) -> None:
    """The next timer wake (local clock; r.INF: none) of a step run with ``every_ns = OWN_TIMER``."""
    e.si[r.S_NEXT_TIMER] = t


# --- the driver ----------------------------------------------------------------------------------


@kernel_jit()
def _compact(si: np.ndarray, head_at: int, n_at: int, ai: np.ndarray, af: np.ndarray) -> None:
    """Move the entries still in flight (``ai``/``af`` rows head..n) to the front."""
    head, n = si[head_at], si[n_at]
    if head > 0:
        _to_front(ai, af, head, n)
        si[head_at], si[n_at] = 0, n - head


@kernel_jit()
def _room(si: np.ndarray, oi: np.ndarray, qi: np.ndarray, qf: np.ndarray, ri: np.ndarray, rf: np.ndarray) -> bool:
    """Room for a step's requests and orders, and for the reports of the next events, after moving
    what is in flight to the front (else the caller grows the arrays)."""
    if qi.shape[0] - si[r.S_REQ_N] < MAX_REQUESTS:
        _compact(si, r.S_REQ_HEAD, r.S_REQ_N, qi, qf)
    if ri.shape[0] - si[r.S_REP_N] < ri.shape[0] // 2:
        _compact(si, r.S_REP_HEAD, r.S_REP_N, ri, rf)
    return bool(
        oi.shape[0] - si[r.S_N_ORDERS] >= MAX_REQUESTS
        and qi.shape[0] - si[r.S_REQ_N] >= MAX_REQUESTS
        and ri.shape[0] - si[r.S_REP_N] >= ri.shape[0] // 2
    )


_DRIVERS: dict[Any, Callable[..., int]] = {}


def register_driver(step: Any, driver: Callable[..., int]) -> None:
    """Let ``drive`` run ``step`` through ``driver``: ``drive_loop`` compiled for that one step, in
    the step's module, with ``cache=True`` (numba cannot cache a function that passes another as an
    argument, so the generic loop compiles again in every process: for a big step, minutes).
    ``driver(t_end, every_ns, wake, e, state)`` must be ``drive_loop(t_end, every_ns, wake, e, step, state)``."""
    _DRIVERS[step] = driver


def drive(t_end: int, every_ns: int, wake: int, e: Arrays, step: Any, state: Any) -> int:
    """``drive_loop``, through the step's registered driver if it has one."""
    driver = _DRIVERS.get(step)
    if driver is not None:
        return int(driver(t_end, every_ns, wake, e, state))
    return int(drive_loop(t_end, every_ns, wake, e, step, state))


@kernel_jit(inline="always")  # inlined into a registered driver: a step passed to a call is not cacheable
def drive_loop(t_end: int, every_ns: int, wake: int, e: Arrays, step: Any, state: Any) -> int:
    """Run to local time ``t_end``, calling ``step`` at each timer wake before ``t_end`` and at each
    delivery in ``wake`` (once for a delivery at the timer's time); ``every_ns`` OWN_TIMER: the timer
    fires once at each time the step sets (set_timer). Returns the flags that ended it
    (0: ``t_end`` reached; W_END: the data ended, after the step saw it; W_SPACE: grow the arrays
    and call again, it resumes)."""
    si, oi, qi, qf, ri, rf = e.si, e.oi, e.qi, e.qf, e.ri, e.rf  # bound once, not per wake
    while True:
        if not _room(si, oi, qi, qf, ri, rf):
            return r.W_SPACE
        timer = every_ns != 0 and si[r.S_NEXT_TIMER] < t_end
        flags = advance(si[r.S_NEXT_TIMER] if timer else t_end, wake, e)
        if (flags & r.W_SPACE) != 0:
            return flags
        if flags == 0 and not timer:
            return 0
        if timer and si[r.S_NOW] == si[r.S_NEXT_TIMER]:  # the timer, with what was delivered at its time
            si[r.S_NEXT_TIMER] = si[r.S_NEXT_TIMER] + every_ns if every_ns > 0 else r.INF
            flags |= r.W_TIMER
        step(e, state, flags)
        if (flags & r.W_END) != 0:
            return flags
