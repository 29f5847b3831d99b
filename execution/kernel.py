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

import numba as nb
import numpy as np

from execution import queue, types
from execution import records as r
from execution.queue import on_book, on_trade, remove_open, rest
from execution.types import FillRule, OrderKind, RejectReason

MARKET = int(OrderKind.MARKET)
CAPPED = int(FillRule.CAPPED)
POST_ONLY_WOULD_TAKE = int(RejectReason.POST_ONLY_WOULD_TAKE)
RATE_LIMIT = int(RejectReason.RATE_LIMIT)
INVALID = int(RejectReason.INVALID)
TOO_LATE = int(RejectReason.TOO_LATE)


@nb.njit()
def _rate_ok(si: np.ndarray, rl: np.ndarray) -> bool:
    """Per-account sliding window at arrival (Bybit ~10 order requests/s, retCode 10006): ``rl``
    holds the arrival times of the last ``rate_limit`` accepted requests, oldest at the head."""
    if si[r.K_RATE_LIMIT] <= 0:
        return True
    h = si[r.S_RATE_HEAD]
    now = si[r.S_EX_NOW]
    if rl[h] > now - si[r.K_RATE_WINDOW]:
        return False
    rl[h] = now
    si[r.S_RATE_HEAD] = (h + 1) % rl.shape[0]
    return True


@nb.njit()
def _opposite_best(side: int, px: np.ndarray, qty: np.ndarray, dep: np.ndarray, tick_size: float) -> int:
    """Best opposite price in ticks for an order of ``side`` (net of our taker fills), or -1."""
    for i in range(px.shape[0]):
        if np.isnan(px[i]):
            break
        if qty[i] - dep[i] > 1e-12:
            return r.to_tick(px[i], tick_size)
    return -1


@nb.njit()
def _consume(
    si: np.ndarray,
    sf: np.ndarray,
    px: np.ndarray,
    qty: np.ndarray,
    dep: np.ndarray,
    price: float,
    volume: float,
    buy: bool,
) -> None:
    """A print of ``volume`` at ``price`` took the passive side ``px``/``qty`` from its best up to
    ``price``: until the next book event, a market order walks, and a new order queues behind, what
    is left (FillRule.CAPPED; the recorded book shows the prints only at its next event)."""
    tick_size = sf[r.K_TICK]
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
            si[r.S_DEPLETED] = 1


@nb.njit()
def _crosses(side: int, tick: int, opp: int) -> bool:
    return opp >= 0 and ((opp <= tick) if side > 0 else (opp >= tick))


@nb.njit()
def _take(
    si: np.ndarray,
    sf: np.ndarray,
    oi: np.ndarray,
    of: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    fi: np.ndarray,
    ff: np.ndarray,
    px: np.ndarray,
    qty: np.ndarray,
    dep: np.ndarray,
    idx: int,
    cap: int,
    capped: bool,
) -> bool:
    """Walk the visible opposite levels as taker (net of earlier taker fills and, under
    FillRule.CAPPED, of the prints since the book event), up to ``cap`` when ``capped``; what we
    take stays consumed until the next book event. True when filled."""
    side = oi[idx, r.O_SIDE]
    tick_size = sf[r.K_TICK]
    for i in range(px.shape[0]):
        p = px[i]
        if np.isnan(p):
            break
        if capped and ((r.to_tick(p, tick_size) > cap) if side > 0 else (r.to_tick(p, tick_size) < cap)):
            break
        avail = qty[i] - dep[i]
        if avail <= 1e-12:
            continue
        q = min(of[idx, r.F_QTY] - of[idx, r.F_FILLED], avail)
        dep[i] += q
        si[r.S_DEPLETED] = 1
        if r.record_fill(si, sf, oi, of, ri, rf, fi, ff, idx, p, q, False):
            return True
    return False


@nb.njit()
def _reject(
    si: np.ndarray, oi: np.ndarray, of: np.ndarray, ri: np.ndarray, rf: np.ndarray, idx: int, reason: int, counter: int
) -> None:
    """Refuse an amend or cancel of order ``idx``: the order stays as it is; the reason is reported."""
    si[counter] += 1
    oi[idx, r.O_REJECT] = reason
    r.report_order(si, oi, of, ri, rf, idx, reason)


@nb.njit()
def _place(
    si: np.ndarray,
    sf: np.ndarray,
    oi: np.ndarray,
    of: np.ndarray,
    opn: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    fi: np.ndarray,
    ff: np.ndarray,
    bpx: np.ndarray,
    bqx: np.ndarray,
    apx: np.ndarray,
    aqx: np.ndarray,
    dep: np.ndarray,
    idx: int,
    crosses: bool,
) -> None:
    """A limit order that passed the post-only check: take what crosses, rest the remainder."""
    row = si[r.S_EX_BOOK] - 1
    side = oi[idx, r.O_SIDE]
    s = 0 if side > 0 else 1
    if crosses and _take(
        si, sf, oi, of, ri, rf, fi, ff, apx[row] if side > 0 else bpx[row], aqx[row] if side > 0 else bqx[row],
        dep[1 - s], idx, oi[idx, r.O_TICK], True,
    ):  # fmt: skip
        return
    if row < 0:
        rest(si, sf, oi, of, opn, np.empty(0), np.empty(0), dep[s], idx)
    else:
        rest(si, sf, oi, of, opn, bpx[row] if side > 0 else apx[row], bqx[row] if side > 0 else aqx[row], dep[s], idx)
    r.report_order(si, oi, of, ri, rf, idx, 0)


@nb.njit()
def _arrive(
    si: np.ndarray,
    sf: np.ndarray,
    oi: np.ndarray,
    of: np.ndarray,
    opn: np.ndarray,
    qi: np.ndarray,
    qf: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    fi: np.ndarray,
    ff: np.ndarray,
    bpx: np.ndarray,
    bqx: np.ndarray,
    apx: np.ndarray,
    aqx: np.ndarray,
    dep: np.ndarray,
    rl: np.ndarray,
) -> None:
    """One request reaches the exchange: rate limit, then new / amend / cancel / cancel-all."""
    h = si[r.S_REQ_HEAD]
    si[r.S_REQ_HEAD] = h + 1
    kind = qi[h, r.Q_KIND]
    idx = qi[h, r.Q_OID] - 1
    si[r.C_REQUESTS] += 1
    tick_size, lot = sf[r.K_TICK], sf[r.K_LOT]
    row = si[r.S_EX_BOOK] - 1
    if kind == r.REQ_NEW:
        oi[idx, r.O_TS_ARRIVE] = si[r.S_EX_NOW]
    if not _rate_ok(si, rl):
        si[r.C_RATE_LIMIT] += 1
        if kind == r.REQ_NEW:
            r.finish(si, oi, of, ri, rf, idx, r.REJECTED, RATE_LIMIT)
        elif idx >= 0:
            oi[idx, r.O_REJECT] = RATE_LIMIT
            r.report_order(si, oi, of, ri, rf, idx, RATE_LIMIT)
        else:
            r.push_report(si, ri, rf, si[r.S_EX_NOW] + si[r.K_RESPONSE], r.REP_ORDER, 0, 0, RATE_LIMIT, 0.0, 0.0, 0.0)
        return
    if kind == r.REQ_NEW:
        side = oi[idx, r.O_SIDE]
        market = oi[idx, r.O_KIND] == MARKET
        if not r.on_grid(of[idx, r.F_QTY], lot) or not (market or r.on_grid(of[idx, r.F_PRICE], tick_size)):
            si[r.C_INVALID] += 1
            r.finish(si, oi, of, ri, rf, idx, r.REJECTED, INVALID)
            return
        oi[idx, r.O_STATUS] = r.OPEN
        s_opp = 1 if side > 0 else 0
        if row < 0:
            opx, oqx = np.empty(0), np.empty(0)
        else:
            opx, oqx = (apx[row], aqx[row]) if side > 0 else (bpx[row], bqx[row])
        if market:
            of[idx, r.F_QA0] = 0.0
            if not _take(si, sf, oi, of, ri, rf, fi, ff, opx, oqx, dep[s_opp], idx, 0, False):
                r.finish(si, oi, of, ri, rf, idx, r.EXPIRED, 0)  # beyond the visible book: not modelled
            return
        tick = r.to_tick(of[idx, r.F_PRICE], tick_size)
        oi[idx, r.O_TICK] = tick
        crosses = _crosses(side, tick, _opposite_best(side, opx, oqx, dep[s_opp], tick_size))
        if crosses and oi[idx, r.O_POST] == 1:  # Bybit EC_PostOnlyWillTakeLiquidity: reject, never take
            si[r.C_POST_ONLY] += 1
            r.finish(si, oi, of, ri, rf, idx, r.REJECTED, POST_ONLY_WOULD_TAKE)
            return
        _place(si, sf, oi, of, opn, ri, rf, fi, ff, bpx, bqx, apx, aqx, dep, idx, crosses)
        return
    if kind == r.REQ_CANCEL_ALL:  # one request
        for s in range(2):
            while si[r.S_N_OPEN + s] > 0:
                o = opn[s, si[r.S_N_OPEN + s] - 1]
                remove_open(si, oi, opn, o)
                r.finish(si, oi, of, ri, rf, o, r.CANCELLED, 0)
        r.push_report(si, ri, rf, si[r.S_EX_NOW] + si[r.K_RESPONSE], r.REP_ORDER, 0, 0, 0, 0.0, 0.0, 0.0)
        return
    status = oi[idx, r.O_STATUS]
    if status != r.OPEN:  # filled, cancelled or expired meanwhile: too late
        late = status != r.REJECTED  # filled, cancelled or expired (a pending order cannot be here)
        counter = r.C_INVALID if not late else (r.C_LATE_CANCEL if kind == r.REQ_CANCEL else r.C_LATE_AMEND)
        _reject(si, oi, of, ri, rf, idx, TOO_LATE if late else INVALID, counter)
        return
    if kind == r.REQ_CANCEL:
        remove_open(si, oi, opn, idx)
        r.finish(si, oi, of, ri, rf, idx, r.CANCELLED, 0)
        return
    price = of[idx, r.F_PRICE] if np.isnan(qf[h, r.Q_PRICE]) else qf[h, r.Q_PRICE]  # NaN: unchanged
    qty = of[idx, r.F_QTY] if np.isnan(qf[h, r.Q_QTY]) else qf[h, r.Q_QTY]
    if not (r.on_grid(price, tick_size) and r.on_grid(qty, lot)):
        _reject(si, oi, of, ri, rf, idx, INVALID, r.C_INVALID)
        return
    side = oi[idx, r.O_SIDE]
    tick = r.to_tick(price, tick_size)
    moved = tick != oi[idx, r.O_TICK]
    crosses = False
    if moved and row >= 0:
        opx, oqx = (apx[row], aqx[row]) if side > 0 else (bpx[row], bqx[row])
        crosses = _crosses(side, tick, _opposite_best(side, opx, oqx, dep[1 if side > 0 else 0], tick_size))
        if crosses and oi[idx, r.O_POST] == 1:  # the amend is refused, the order stays as it was
            _reject(si, oi, of, ri, rf, idx, POST_ONLY_WOULD_TAKE, r.C_POST_ONLY)
            return
    oi[idx, r.O_AMENDS] += 1
    grew = qty > of[idx, r.F_QTY] + 1e-6 * lot
    of[idx, r.F_QTY] = qty
    of[idx, r.F_PRICE] = price
    oi[idx, r.O_TICK] = tick
    if qty <= of[idx, r.F_FILLED] + 1e-6 * lot:  # down to what already filled: the rest is cancelled
        remove_open(si, oi, opn, idx)
        r.finish(si, oi, of, ri, rf, idx, r.CANCELLED, 0)
    elif moved or grew:  # a new price or a bigger size loses priority: back of the queue
        remove_open(si, oi, opn, idx)
        _place(si, sf, oi, of, opn, ri, rf, fi, ff, bpx, bqx, apx, aqx, dep, idx, crosses)
    else:  # smaller at the same price: keeps its place
        r.report_order(si, oi, of, ri, rf, idx, 0)


@nb.njit(inline="always")
def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


@nb.njit()
def _ceil_to(x: int, step: int) -> int:
    return -(-x // step) * step if step > 0 else r.INF


def _sources_digest() -> int:
    """A number that changes with the source of every module compiled into ``run``. Numba's cache
    checks only the file that defines a cached function, not the files of the functions it calls,
    so ``run`` is the one cached function and carries this number in its closure (closure values
    are part of numba's cache key: numba.core.caching ``_CacheImpl._index_key``)."""
    h = hashlib.sha256()
    for module in (r, queue, types, sys.modules[__name__]):
        h.update(Path(str(module.__file__)).read_bytes())
    return int.from_bytes(h.digest()[:7], "big")


@nb.njit()
def advance(
    t: int,
    wake: int,
    si: np.ndarray,
    sf: np.ndarray,
    bts: np.ndarray,
    blt: np.ndarray,
    bpx: np.ndarray,
    bqx: np.ndarray,
    apx: np.ndarray,
    aqx: np.ndarray,
    tts: np.ndarray,
    tlt: np.ndarray,
    tpx: np.ndarray,
    tqx: np.ndarray,
    tsd: np.ndarray,
    dep: np.ndarray,
    oi: np.ndarray,
    of: np.ndarray,
    opn: np.ndarray,
    qi: np.ndarray,
    qf: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    fi: np.ndarray,
    ff: np.ndarray,
    smi: np.ndarray,
    smf: np.ndarray,
    rl: np.ndarray,
) -> int:
    """Advance both clocks to local time ``t``; stop early at the first local delivery that raises
    a flag in ``wake`` (or at the end of finite data when W_END is asked). Returns the flags raised
    (0 = reached ``t``); W_SPACE asks the caller for bigger output arrays and to call again."""
    levels = bpx.shape[1]
    flags = 0
    stop = r.INF
    last = si[r.S_NOW]
    while True:
        eb, et, lb = si[r.S_EX_BOOK], si[r.S_EX_TRADE], si[r.S_LOC_BOOK]
        nb_, nt = si[r.S_N_BOOK], si[r.S_N_TRADE]
        if (wake & r.W_END) != 0 and si[r.S_FINITE] == 1 and eb >= nb_ and et >= nt and lb >= eb:
            flags |= r.W_END
            stop = last
            break
        t_book = bts[eb] if eb < nb_ else r.INF
        t_trade = tts[et] if et < nt else r.INF
        t_req = qi[si[r.S_REQ_HEAD], r.Q_TS] if si[r.S_REQ_HEAD] < si[r.S_REQ_N] else r.INF
        if si[r.S_STARTED] == 0 and min(t_book, t_trade, t_req) < r.INF:
            first = min(t_book, t_trade, t_req)
            si[r.S_NEXT_SAMPLE] = _ceil_to(first, si[r.K_SAMPLE])
            si[r.S_NEXT_FUNDING] = _ceil_to(first, si[r.K_FUNDING])
            si[r.S_STARTED] = 1
        t_bound = min(si[r.S_NEXT_SAMPLE], si[r.S_NEXT_FUNDING]) if si[r.S_STARTED] == 1 else r.INF
        t_ex = min(t_book, t_trade, t_req, t_bound)
        t_lbook = max(blt[lb], bts[lb], si[r.S_LAST_DELIVERY]) if lb < eb else r.INF
        t_rep = ri[si[r.S_REP_HEAD], r.R_TS] if si[r.S_REP_HEAD] < si[r.S_REP_N] else r.INF
        t_loc = min(t_lbook, t_rep)
        horizon = min(t, stop)
        if t_ex <= t_loc:
            if t_ex > horizon:
                break
            need = si[r.S_N_OPEN] + si[r.S_N_OPEN + 1] + levels + 2
            if (
                si[r.S_N_FILLS] + need > fi.shape[0]
                or si[r.S_REP_N] + 2 * need + 2 > ri.shape[0]
                or si[r.S_N_SAMPLES] + 1 > smi.shape[0]
            ):
                flags |= r.W_SPACE
                break
            si[r.S_EX_NOW] = max(si[r.S_EX_NOW], t_ex)
            if t_trade == t_ex:  # trades before the book update at the same exchange time
                row = eb - 1
                if si[r.K_FILL_RULE] == CAPPED and row >= 0:
                    if tsd[et] > 0:  # a taker buy lifted the asks
                        _consume(si, sf, apx[row], aqx[row], dep[1], tpx[et], tqx[et], True)
                    else:
                        _consume(si, sf, bpx[row], bqx[row], dep[0], tpx[et], tqx[et], False)
                on_trade(si, sf, oi, of, opn, ri, rf, fi, ff, tpx[et], tqx[et], tsd[et])
                si[r.S_EX_TRADE] = et + 1
            elif t_book == t_ex:
                if si[r.S_DEPLETED] == 1:  # a new book replaces what our taker fills consumed
                    dep[:] = 0.0
                    si[r.S_DEPLETED] = 0
                on_book(si, sf, oi, of, opn, ri, rf, fi, ff, bpx[eb], bqx[eb], apx[eb], aqx[eb], dep)
                si[r.S_EX_BOOK] = eb + 1
            elif t_req == t_ex:
                _arrive(si, sf, oi, of, opn, qi, qf, ri, rf, fi, ff, bpx, bqx, apx, aqx, dep, rl)
            else:
                r.boundary(si, sf, bpx, apx, ri, rf, smi, smf)
            last = max(last, t_ex)
        else:
            if t_loc > horizon:
                break
            if t_lbook <= t_rep:
                changed = lb == 0 or not (_same(bpx[lb, 0], bpx[lb - 1, 0]) and _same(apx[lb, 0], apx[lb - 1, 0]))
                si[r.S_LOC_BOOK] = lb + 1
                si[r.S_LAST_DELIVERY] = t_lbook
                if changed and (wake & r.W_BOOK) != 0:
                    flags |= r.W_BOOK
                    stop = t_loc
            else:
                raised = r.deliver_report(si, sf, oi, of, ri, rf) & wake
                if raised != 0:
                    flags |= raised
                    stop = t_loc
            last = max(last, t_loc)
    if (flags & r.W_SPACE) != 0 or (flags & r.W_END) != 0:
        si[r.S_NOW] = last
    elif stop < r.INF:
        si[r.S_NOW] = stop
    else:
        si[r.S_NOW] = max(t, si[r.S_NOW])
    return flags


def _compile(version: int) -> Callable[..., int]:
    def run(
        t: int,
        wake: int,
        si: np.ndarray,
        sf: np.ndarray,
        bts: np.ndarray,
        blt: np.ndarray,
        bpx: np.ndarray,
        bqx: np.ndarray,
        apx: np.ndarray,
        aqx: np.ndarray,
        tts: np.ndarray,
        tlt: np.ndarray,
        tpx: np.ndarray,
        tqx: np.ndarray,
        tsd: np.ndarray,
        dep: np.ndarray,
        oi: np.ndarray,
        of: np.ndarray,
        opn: np.ndarray,
        qi: np.ndarray,
        qf: np.ndarray,
        ri: np.ndarray,
        rf: np.ndarray,
        fi: np.ndarray,
        ff: np.ndarray,
        smi: np.ndarray,
        smf: np.ndarray,
        rl: np.ndarray,
    ) -> int:
        """``advance``, compiled once and cached on disk."""
        _ = version  # keeps the sources' digest in the closure, hence in the cache key
        return advance(
            t, wake, si, sf, bts, blt, bpx, bqx, apx, aqx, tts, tlt, tpx, tqx, tsd,
            dep, oi, of, opn, qi, qf, ri, rf, fi, ff, smi, smf, rl,
        )  # fmt: skip

    return nb.njit(cache=True)(run)


run = _compile(_sources_digest())
