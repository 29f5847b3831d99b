"""The matching engine's event loop: one numba kernel over plain arrays (REFERENCE section 2).

Both clocks run on one axis (int64 ns since the epoch). ``run`` merges, in time order:
- on the exchange: trades and book events at their ``ts_ex``, our requests at send time + entry
  latency, sample and funding boundaries (multiples of their interval);
- on our side: book events at their ``ts_local`` (in order, never before the exchange saw them)
  and reports (acks, rejects, fills, funding) at exchange time + response latency.
Fixed tie-breaks at equal times: exchange before local; on the exchange trades, then book
events, then request arrivals, then boundaries; locally book events before reports.
Requests and reports keep their order because both latencies are constant.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.jit import kernel_jit
from execution import exchange, queue, types
from execution import records as r
from execution.exchange import arrive
from execution.queue import on_book, on_trade
from execution.records import Arrays
from execution.types import FillRule

CAPPED = int(FillRule.CAPPED)


@kernel_jit()
def _consume(e: Arrays, row: int, k: int) -> None:
    """Trade ``k`` took the passive side of book ``row`` from its best up to its price: until the
    next book event, a market order walks, and a new order queues behind, what is left
    (FillRule.CAPPED; the recorded book shows the prints only at its next event)."""
    buy = e.trade_side[k] > 0  # a taker buy lifted the asks, a sell hit the bids
    px, qty, dep = (e.ask_px[row], e.ask_qty[row], e.dep[1]) if buy else (e.bid_px[row], e.bid_qty[row], e.dep[0])
    tick_size = e.config[0].tick
    t = r.to_tick(e.trade_price[k], tick_size)
    volume = e.trade_qty[k]
    for i in range(px.shape[0]):
        if volume <= 1e-12 or np.isnan(px[i]):
            return
        level = r.to_tick(px[i], tick_size)
        if (level > t) if buy else (level < t):
            return
        a = qty[i] - dep[i]
        if a > 1e-12:
            u = min(a, volume)
            dep[i] += u
            volume -= u
            e.state[0].depleted = 1


@kernel_jit(inline="always")
def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


@kernel_jit()
def _ceil_to(x: int, step: int) -> int:
    return -(-x // step) * step if step > 0 else r.INF


def _sources_digest() -> int:
    """A number that changes with the source of every module compiled into ``run``. Numba's cache
    checks only the file that defines a cached function, not the files of the functions it calls,
    so ``run`` is the one cached function and carries this number in its closure (closure values
    are part of numba's cache key: numba.core.caching ``_CacheImpl._index_key``)."""
    h = hashlib.sha256()
    for module in (r, queue, exchange, types, sys.modules[__name__]):
        h.update(Path(str(module.__file__)).read_bytes())
    return int.from_bytes(h.digest()[:7], "big")


@kernel_jit(inline="always")
def advance(t: int, wake: int, e: Arrays) -> int:
    """Advance both clocks to local time ``t``; stop early at the first local delivery that raises
    a flag in ``wake`` (or at the end of finite data when W_END is asked). Returns the flags raised
    (0 = reached ``t``); W_SPACE asks the caller for bigger output arrays and to call again."""
    s, bts, blt, tts = e.state[0], e.book_ts_ex, e.book_ts_local, e.trade_ts_ex
    capped = e.config[0].fill_rule == CAPPED
    flags = 0
    stop = r.INF
    last = s.now
    while True:
        eb, lb = s.ex_book, s.local_book
        if (wake & r.W_END) != 0 and s.finite == 1 and _all_delivered(s):
            flags |= r.W_END
            stop = last
            break
        t_book = bts[eb] if eb < s.n_books else r.INF
        t_trade = tts[s.ex_trade] if s.ex_trade < s.n_trades else r.INF
        t_req = e.requests[s.req_head].ts if s.req_head < s.req_n else r.INF
        t_ex = min(t_book, t_trade, t_req, _boundary_time(e, min(t_book, t_trade, t_req)))
        t_lbook = max(blt[lb], bts[lb], s.last_delivery) if lb < eb else r.INF
        t_rep = e.reports[s.rep_head].ts if s.rep_head < s.rep_n else r.INF
        t_loc = min(t_lbook, t_rep)
        horizon = min(t, stop)
        if t_ex <= t_loc:
            if t_ex > horizon:
                break
            if not _room(e):
                flags |= r.W_SPACE
                break
            s.ex_now = max(s.ex_now, t_ex)
            if t_trade == t_ex:  # trades before the book update at the same exchange time
                k = s.ex_trade
                if capped and eb > 0:  # a taker buy lifted the asks, a sell hit the bids
                    _consume(e, eb - 1, k)
                on_trade(e, k)
                s.ex_trade = k + 1
            elif t_book == t_ex:
                if s.depleted == 1:  # a new book replaces what our taker fills consumed
                    e.dep[:] = 0.0
                    s.depleted = 0
                on_book(e, eb)
                s.ex_book = eb + 1
            elif t_req == t_ex:
                arrive(e)
            else:
                r.boundary(e)
            last = max(last, t_ex)
        else:
            if t_loc > horizon:
                break
            if t_lbook <= t_rep:
                bpx, apx = e.bid_px, e.ask_px
                changed = lb == 0 or not (_same(bpx[lb, 0], bpx[lb - 1, 0]) and _same(apx[lb, 0], apx[lb - 1, 0]))
                s.local_book = lb + 1
                s.last_delivery = t_lbook
                raised = r.W_BOOK if changed else 0
            else:
                raised = r.deliver_report(e)
            if (raised & wake) != 0:
                flags |= raised & wake
                stop = t_loc
            last = max(last, t_loc)
    if (flags & r.W_SPACE) != 0 or (flags & r.W_END) != 0:
        s.now = last
    elif stop < r.INF:
        s.now = stop
    else:
        s.now = max(t, s.now)
    return flags


@kernel_jit(inline="always")
def _all_delivered(s: Any) -> bool:
    """Every book event and trade held was processed, and every book event delivered (``s``: the
    state row)."""
    return bool(s.ex_book >= s.n_books and s.ex_trade >= s.n_trades and s.local_book >= s.ex_book)


@kernel_jit(inline="always")
def _boundary_time(e: Arrays, first: int) -> int:
    """The next sample or funding time (the first are set from the first event's time)."""
    s = e.state[0]
    if s.started == 0:
        if first == r.INF:
            return r.INF
        s.next_sample = _ceil_to(first, e.config[0].sample_ns)
        s.next_funding = _ceil_to(first, e.config[0].funding_ns)
        s.started = 1
    return int(min(s.next_sample, s.next_funding))


@kernel_jit(inline="always")
def _room(e: Arrays) -> bool:
    """Room for what one exchange event can write: a fill and two reports per open order and
    level, and one equity sample."""
    s = e.state[0]
    need = s.n_open[0] + s.n_open[1] + e.bid_px.shape[1] + 2
    return bool(
        s.n_fills + need <= e.fills.shape[0]
        and s.rep_n + 2 * need + 2 <= e.reports.shape[0]
        and s.n_samples + 1 <= e.samples.shape[0]
    )


def _compile(version: int) -> Callable[[int, int, Arrays], int]:
    def run(t: int, wake: int, e: Arrays) -> int:
        """``advance``, compiled once and cached on disk."""
        _ = version  # keeps the sources' digest in the closure, hence in the cache key
        return advance(t, wake, e)

    return kernel_jit(cache=True)(run)


run = _compile(_sources_digest())
