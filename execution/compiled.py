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
    return int(e.state[0].now)


@kernel_jit(inline="always")
def best_bid(e: Arrays) -> float:
    """Best bid of the last book received (NaN before the first)."""
    i = e.state[0].local_book - 1
    return float(e.bid_px[i, 0]) if i >= 0 else np.nan


@kernel_jit(inline="always")
def best_ask(e: Arrays) -> float:
    """Best ask of the last book received (NaN before the first)."""
    i = e.state[0].local_book - 1
    return float(e.ask_px[i, 0]) if i >= 0 else np.nan


@kernel_jit(inline="always")
def book_time(e: Arrays) -> int:
    """Local time of the last book received (-1 before the first)."""
    i = e.state[0].local_book - 1
    return int(e.book_ts_local[i]) if i >= 0 else -1


@kernel_jit(inline="always")  # returns views: inlined, it takes its caller's NRT mode
def book_side(e: Arrays, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(prices, sizes) of one side of the last book received, best first (side > 0: the bids);
    views, not copies: read them before the step returns. Before the first book: empty."""
    i = e.state[0].local_book - 1
    if i < 0:
        return e.bid_px[0, :0], e.bid_qty[0, :0]
    return (e.bid_px[i], e.bid_qty[i]) if side > 0 else (e.ask_px[i], e.ask_qty[i])


@kernel_jit(inline="always")
def tick_size(e: Arrays) -> float:
    return float(e.config[0].tick)


@kernel_jit(inline="always")
def lot_size(e: Arrays) -> float:
    return float(e.config[0].lot)


@kernel_jit(inline="always")
def position(e: Arrays) -> float:
    """BTC held, as reported by ``now``."""
    return float(e.accounts[r.LOCAL].position)


@kernel_jit(inline="always")
def cash(e: Arrays) -> float:
    """Cash as reported by ``now``."""
    return float(e.accounts[r.LOCAL].cash)


@kernel_jit(inline="always")
def live_orders(e: Arrays) -> tuple[int, int]:
    """(first, end): the rows to scan for orders sent and not reported done (``is_live``), in the
    order they were sent; order id = row + 1."""
    s = e.state[0]
    i = s.first_live
    while i < s.n_orders and e.orders[i].local_status > r.OPEN:  # a done order never comes back
        i += 1
    s.first_live = i
    return i, s.n_orders


@kernel_jit(inline="always")
def is_live(e: Arrays, row: int) -> bool:
    """Order row ``row`` is pending or open in the local view."""
    return bool(e.orders[row].local_status <= r.OPEN)


@kernel_jit(inline="always")
def order_side(e: Arrays, row: int) -> int:
    return int(e.orders[row].side)


@kernel_jit(inline="always")
def order_tag(e: Arrays, row: int) -> int:
    return int(e.orders[row].tag)


@kernel_jit(inline="always")
def order_price(e: Arrays, row: int) -> float:
    """The price as last reported (OpenOrder.price)."""
    return float(e.orders[row].local_price)


@kernel_jit(inline="always")
def order_qty(e: Arrays, row: int) -> float:
    return float(e.orders[row].local_qty)


@kernel_jit(inline="always")
def order_filled(e: Arrays, row: int) -> float:
    return float(e.orders[row].local_filled)


# --- requests ------------------------------------------------------------------------------------


@kernel_jit()
def _to_front(rows: np.ndarray, head: int, n: int) -> None:
    """Move rows head..n of ``rows`` to the front, row by row (no temporary copy: kernels run
    without NRT, core.jit)."""
    for i in range(n - head):
        rows[i] = rows[head + i]


@kernel_jit(inline="always")
def _request(e: Arrays, kind: int, oid: int, price: float, qty: float) -> None:
    s, requests = e.state[0], e.requests
    n = s.req_n
    if n == requests.shape[0]:  # move the requests in flight to the front
        _to_front(requests, s.req_head, n)
        n -= s.req_head
        s.req_head = 0
        if n == requests.shape[0]:
            raise ValueError("a compiled step sent more requests than execution.compiled.MAX_REQUESTS")
    req = requests[n]
    req.ts = s.now + e.config[0].entry_ns
    req.kind = kind
    req.order_id = oid
    req.price = price
    req.qty = qty
    s.req_n = n + 1


@kernel_jit(inline="always")
def submit(e: Arrays, side: int, qty: float, price: float, kind: int, post_only: bool, tag: int) -> int:
    """Send a new order now (``price`` NaN for a market order); returns its id."""
    s = e.state[0]
    idx = s.n_orders
    if idx == e.orders.shape[0]:
        raise ValueError("a compiled step sent more orders than execution.compiled.MAX_REQUESTS")
    s.n_orders = idx + 1
    market = kind == MARKET
    px = np.nan if market else price
    o = e.orders[idx]
    o.side, o.kind, o.tag = side, kind, tag
    o.post_only = 1 if post_only and not market else 0
    o.status = o.local_status = PENDING
    o.reject = o.local_reject = o.amends = o.tick = o.seq = o.known = 0
    o.ts_submit_local, o.ts_arrive_ex, o.ts_done_ex = s.now, -1, -1
    o.price = o.local_price = px
    o.qty = o.local_qty = qty
    o.filled = o.local_filled = o.ahead = o.level = o.traded = 0.0
    o.queue_ahead = np.nan
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
    e.state[0].next_timer = t


# --- the driver ----------------------------------------------------------------------------------


@kernel_jit()
def _room(e: Arrays) -> bool:
    """Room for a step's requests and orders, and for the reports of the next events, after moving
    what is in flight to the front (else the caller grows the arrays)."""
    s, requests, reports = e.state[0], e.requests, e.reports
    if requests.shape[0] - s.req_n < MAX_REQUESTS and s.req_head > 0:
        _to_front(requests, s.req_head, s.req_n)
        s.req_head, s.req_n = 0, s.req_n - s.req_head
    if reports.shape[0] - s.rep_n < reports.shape[0] // 2 and s.rep_head > 0:
        _to_front(reports, s.rep_head, s.rep_n)
        s.rep_head, s.rep_n = 0, s.rep_n - s.rep_head
    return bool(
        e.orders.shape[0] - s.n_orders >= MAX_REQUESTS
        and requests.shape[0] - s.req_n >= MAX_REQUESTS
        and reports.shape[0] - s.rep_n >= reports.shape[0] // 2
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
    s = e.state[0]
    while True:
        if not _room(e):
            return r.W_SPACE
        timer = every_ns != 0 and s.next_timer < t_end
        flags = advance(s.next_timer if timer else t_end, wake, e)
        if (flags & r.W_SPACE) != 0:
            return flags
        if flags == 0 and not timer:
            return 0
        if timer and s.now == s.next_timer:  # the timer, with what was delivered at its time
            s.next_timer = s.next_timer + every_ns if every_ns > 0 else r.INF
            flags |= r.W_TIMER
        step(e, state, flags)
        if (flags & r.W_END) != 0:
            return flags
