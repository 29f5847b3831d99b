"""The matching engine's event loop: one numba kernel over the engine's named arrays (REFERENCE section 2).

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

import numba as nb
import numpy as np

from execution import exchange, queue, types
from execution import records as r
from execution.exchange import arrive
from execution.queue import on_book, on_trade
from execution.records import Arrays
from execution.types import FillRule

CAPPED = int(FillRule.CAPPED)


@nb.njit()
def _consume(
    e: Arrays, px: np.ndarray, qty: np.ndarray, dep: np.ndarray, price: float, volume: float, buy: bool
) -> None:
    """A print of ``volume`` at ``price`` took the passive side ``px``/``qty`` from its best up to
    ``price``: until the next book event, a market order walks, and a new order queues behind, what
    is left (FillRule.CAPPED; the recorded book shows the prints only at its next event)."""
    tick_size = e.state[0].tick
    t = r.to_tick(price, tick_size)
    for i in range(px.shape[0]):
        if volume <= 1e-12 or np.isnan(px[i]):
            return
        k = r.to_tick(px[i], tick_size)
        if (k > t) if buy else (k < t):
            return
        a = qty[i] - dep[i]
        if a > 1e-12:
            u = min(a, volume)
            dep[i] += u
            volume -= u
            e.state[0].depleted = 1


@nb.njit()
def _trade(e: Arrays) -> None:
    """The next trade reaches the exchange (before a book event at the same exchange time)."""
    st, m = e.state[0], e.market
    et, row = st.ex_trade, st.ex_book - 1
    if st.fill_rule == CAPPED and row >= 0:
        if m.trade_side[et] > 0:  # a taker buy lifted the asks
            _consume(e, m.ask_px[row], m.ask_qty[row], e.dep[1], m.trade_price[et], m.trade_qty[et], True)
        else:
            _consume(e, m.bid_px[row], m.bid_qty[row], e.dep[0], m.trade_price[et], m.trade_qty[et], False)
    on_trade(e, m.trade_price[et], m.trade_qty[et], m.trade_side[et])
    st.ex_trade = et + 1


@nb.njit()
def _book(e: Arrays) -> None:
    """The next book event reaches the exchange; it replaces what our taker fills consumed."""
    st = e.state[0]
    if st.depleted == 1:
        e.dep[:] = 0.0
        st.depleted = 0
    on_book(e, st.ex_book)
    st.ex_book += 1


@nb.njit(inline="always")
def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


@nb.njit()
def _ceil_to(x: int, step: int) -> int:
    return -(-x // step) * step if step > 0 else r.INF


@nb.njit()
def _room(e: Arrays) -> bool:
    """The output arrays hold what one more exchange event can write (else W_SPACE)."""
    st = e.state[0]
    need = st.n_open[0] + st.n_open[1] + e.dep.shape[1] + 2
    return bool(
        st.n_fills + need <= e.fills.shape[0]
        and st.rep_n + 2 * need + 2 <= e.reports.shape[0]
        and st.n_samples + 1 <= e.samples.shape[0]
    )


@nb.njit()
def _next_exchange(e: Arrays) -> tuple[int, int, int, int]:
    """(time of the next exchange event, of the next book event, trade, request arrival); starts
    the sample and funding boundaries at the first event."""
    st, m = e.state[0], e.market
    t_book = m.book_ts_ex[st.ex_book] if st.ex_book < st.n_book else r.INF
    t_trade = m.trade_ts_ex[st.ex_trade] if st.ex_trade < st.n_trade else r.INF
    t_req = e.requests[st.req_head].ts if st.req_head < st.req_n else r.INF
    first = min(t_book, t_trade, t_req)
    if st.started == 0 and first < r.INF:
        st.next_sample = _ceil_to(first, st.sample_ns)
        st.next_funding = _ceil_to(first, st.funding_ns)
        st.started = 1
    t_bound = min(st.next_sample, st.next_funding) if st.started == 1 else r.INF
    return min(first, t_bound), t_book, t_trade, t_req


@nb.njit()
def _deliver_book(e: Arrays, t_lbook: int) -> bool:
    """The next book event reaches us; True when the best bid or ask changed."""
    st, m = e.state[0], e.market
    lb = st.loc_book
    changed = lb == 0 or not (
        _same(m.bid_px[lb, 0], m.bid_px[lb - 1, 0]) and _same(m.ask_px[lb, 0], m.ask_px[lb - 1, 0])
    )
    st.loc_book = lb + 1
    st.last_delivery = t_lbook
    return changed


def _sources_digest() -> int:
    """A number that changes with the source of every module compiled into ``run``. Numba's cache
    checks only the file that defines a cached function, not the files of the functions it calls,
    so ``run`` is the one cached function and carries this number in its closure (closure values
    are part of numba's cache key: numba.core.caching ``_CacheImpl._index_key``)."""
    h = hashlib.sha256()
    for module in (r, queue, exchange, types, sys.modules[__name__]):
        h.update(Path(str(module.__file__)).read_bytes())
    return int.from_bytes(h.digest()[:7], "big")


def _compile(version: int) -> Callable[[int, int, Arrays], int]:
    def run(t: int, wake: int, e: Arrays) -> int:
        """Advance both clocks to local time ``t``; stop early at the first local delivery that raises
        a flag in ``wake`` (or at the end of finite data when W_END is asked). Returns the flags raised
        (0 = reached ``t``); W_SPACE asks the caller for bigger output arrays and to call again."""
        _ = version  # keeps the sources' digest in the closure, hence in the cache key
        st, m = e.state[0], e.market
        flags = 0
        stop = r.INF
        last = st.now
        while True:
            eb, lb = st.ex_book, st.loc_book
            if (wake & r.W_END) != 0 and st.finite == 1 and eb >= st.n_book and st.ex_trade >= st.n_trade and lb >= eb:
                flags |= r.W_END
                stop = last
                break
            t_ex, t_book, t_trade, t_req = _next_exchange(e)
            t_lbook = max(m.book_ts_local[lb], m.book_ts_ex[lb], st.last_delivery) if lb < eb else r.INF
            t_rep = e.reports[st.rep_head].ts if st.rep_head < st.rep_n else r.INF
            t_loc = min(t_lbook, t_rep)
            horizon = min(t, stop)
            if t_ex <= t_loc:
                if t_ex > horizon:
                    break
                if not _room(e):
                    flags |= r.W_SPACE
                    break
                st.ex_now = max(st.ex_now, t_ex)
                if t_trade == t_ex:  # trades before the book update at the same exchange time
                    _trade(e)
                elif t_book == t_ex:
                    _book(e)
                elif t_req == t_ex:
                    arrive(e)
                else:
                    r.boundary(e)
                last = max(last, t_ex)
            else:
                if t_loc > horizon:
                    break
                if t_lbook <= t_rep:
                    if _deliver_book(e, t_lbook) and (wake & r.W_BOOK) != 0:
                        flags |= r.W_BOOK
                        stop = t_loc
                else:
                    raised = r.deliver_report(e) & wake
                    if raised != 0:
                        flags |= raised
                        stop = t_loc
                last = max(last, t_loc)
        if (flags & r.W_SPACE) != 0 or (flags & r.W_END) != 0:
            st.now = last
        elif stop < r.INF:
            st.now = stop
        else:
            st.now = max(t, st.now)
        return flags

    return nb.njit(cache=True)(run)


run = _compile(_sources_digest())
