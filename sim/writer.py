"""The simulator kernel's output: Bybit v5 public messages as JSON bytes written into a buffer.

Fixed text comes from a table of pieces built once per simulator (``simulator._pieces``: topic,
symbol, trade-id prefix); numbers are written digit by digit; a book delta is the merge of the
levels published last time with the current top levels (changed or new levels with their size,
levels that left with size ``"0"``, as Bybit sends them).

numba compiles these functions and constants into the cached kernel; its on-disk cache is keyed on
every source a kernel can depend on (core/jit.py), this module included: an edit here compiles it
again.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from core.jit import typed_int  # (also: an on-disk cache of an older version is a miss, not a crash)
from sim.book import Row
from sim.state import Book, Out

# text pieces (index into the pieces table)
(
    S_BOOK_SNAP,  # {"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":
    S_BOOK_DELTA,  # {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":
    S_DATA_S,  # ,"data":{"s":"BTCUSDT","b":[
    S_ASKS,  # ],"a":[
    S_U,  # ],"u":
    S_SEQ,  # ,"seq":
    S_CTS,  # },"cts":
    S_TRADE_HEAD,  # {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":
    S_TRADE_DATA,  # ,"data":[
    S_T,  # {"T":
    S_SYM_SIDE,  # ,"s":"BTCUSDT","S":"
    S_TRADE_ID,  # the trade id prefix, e.g. sim1a2b3c4d-
    S_BUY,  # Buy
    S_SELL,  # Sell
    S_V,  # ","v":"
    S_P,  # ","p":"
    S_L,  # ","L":"
    S_PLUS,  # PlusTick
    S_MINUS,  # MinusTick
    S_ZPLUS,  # ZeroPlusTick
    S_ZMINUS,  # ZeroMinusTick
    S_I,  # ","i":"
    S_BT_END,  # ","BT":false}
) = tuple(typed_int(i) for i in range(23))  # numpy ints: one compile of ``_put`` for all (core.jit)

SEQ_OFFSET = 7_000_000_000


@nb.njit(cache=True)
def _put(buf: np.ndarray, pos: int, pieces: np.ndarray, offsets: np.ndarray, k: int) -> int:
    """Copy text piece k (``Out.pieces``, ``Out.offsets``)."""
    for i in range(offsets[k], offsets[k + 1]):
        buf[pos] = pieces[i]
        pos += 1
    return pos


@nb.njit(cache=True)
def _put_byte(buf: np.ndarray, pos: int, c: int) -> int:
    buf[pos] = c
    return pos + 1


@nb.njit(cache=True)
def _put_uint(buf: np.ndarray, pos: int, v: int) -> int:
    if v == 0:
        buf[pos] = 48
        return pos + 1
    n = 0
    x = v
    while x > 0:
        n += 1
        x //= 10
    end = pos + n
    x = v
    for i in range(end - 1, pos - 1, -1):
        buf[i] = 48 + x % 10
        x //= 10
    return end


@nb.njit(cache=True)
def _put_decimal(buf: np.ndarray, pos: int, units: int, decimals: int) -> int:
    """A non-negative fixed-point number: units * 10^-decimals, with exactly ``decimals`` digits."""
    scale = 1
    for _ in range(decimals):
        scale *= 10
    pos = _put_uint(buf, pos, units // scale)
    if decimals > 0:
        buf[pos] = 46  # '.'
        pos += 1
        frac = units % scale
        for i in range(decimals - 1, -1, -1):
            buf[pos + i] = 48 + frac % 10
            frac //= 10
        pos += decimals
    return pos


@nb.njit(cache=True)
def _put_level(buf: np.ndarray, pos: int, tick: int, lots: int, par: Row, first: bool) -> int:
    if not first:
        pos = _put_byte(buf, pos, 44)  # ,
    pos = _put_byte(buf, pos, 91)  # [
    pos = _put_byte(buf, pos, 34)  # "
    pos = _put_decimal(buf, pos, tick * int(par.px_mult), int(par.px_dec))
    pos = _put_byte(buf, pos, 34)
    pos = _put_byte(buf, pos, 44)
    pos = _put_byte(buf, pos, 34)
    pos = _put_decimal(buf, pos, lots, int(par.qty_dec))
    pos = _put_byte(buf, pos, 34)
    return _put_byte(buf, pos, 93)  # ]


@nb.njit(cache=True)
def _collect_top(q: np.ndarray, best_idx: int, step: int, par: Row, base: int, top: np.ndarray) -> int:
    """Top ``depth`` non-empty levels from best_idx walking by step into top (ticks, lots); how many."""
    depth = int(par.depth)
    limit = int(par.depth_ticks) * 3
    px, qty = top[0], top[1]
    n = 0
    i = best_idx
    k = 0
    while n < depth and k < limit and 0 <= i < q.shape[0]:
        if q[i] > 0:
            px[n] = base + i
            qty[n] = q[i]
            n += 1
        i += step
        k += 1
    return n


@nb.njit(cache=True)
def _diff_side(
    buf: np.ndarray, pos: int, cur: np.ndarray, n_cur: int, pub: np.ndarray, n_pub: int, descending: bool, par: Row
) -> tuple[int, int]:
    """Write the changed levels (merge of two sorted lists of (ticks, lots) rows); (pos, levels written)."""
    cur_px, cur_q, pub_px, pub_q = cur[0], cur[1], pub[0], pub[1]
    i = 0
    j = 0
    written = 0
    while i < n_cur or j < n_pub:
        take_cur = False
        take_pub = False
        if i < n_cur and j < n_pub:
            a = cur_px[i]
            b = pub_px[j]
            if a == b:
                take_cur = True
                take_pub = True
            elif (a > b) == descending:
                take_cur = True
            else:
                take_pub = True
        elif i < n_cur:
            take_cur = True
        else:
            take_pub = True
        if take_cur and take_pub:
            if cur_q[i] != pub_q[j]:
                pos = _put_level(buf, pos, cur_px[i], cur_q[i], par, written == 0)
                written += 1
            i += 1
            j += 1
        elif take_cur:
            pos = _put_level(buf, pos, cur_px[i], cur_q[i], par, written == 0)
            written += 1
            i += 1
        else:
            pos = _put_level(buf, pos, pub_px[j], 0, par, written == 0)
            written += 1
            j += 1
    return pos, written


@nb.njit(cache=True)
def publish(b: Book, par: Row, o: Out, pos: int) -> tuple[int, bool]:
    """Write a snapshot or the delta of the top levels since the last publish; (pos, written)."""
    st, pub, scratch = b.state[0], b.pub, b.scratch
    buf, pieces, offsets = o.buf, o.pieces, o.offsets
    base = st.base_tick
    nb_ = _collect_top(b.bids, st.best_bid - base, -1, par, base, scratch[0:2])
    na = _collect_top(b.asks, st.best_ask - base, 1, par, base, scratch[2:4])
    snapshot = st.snapshot_due == 1
    start = pos
    ms = st.next_publish // 1_000_000
    pos = _put(buf, pos, pieces, offsets, S_BOOK_SNAP if snapshot else S_BOOK_DELTA)
    pos = _put_uint(buf, pos, ms)
    pos = _put(buf, pos, pieces, offsets, S_DATA_S)
    if snapshot:
        for k in range(nb_):
            pos = _put_level(buf, pos, scratch[0, k], scratch[1, k], par, k == 0)
        pos = _put(buf, pos, pieces, offsets, S_ASKS)
        for k in range(na):
            pos = _put_level(buf, pos, scratch[2, k], scratch[3, k], par, k == 0)
        changed = 1
    else:
        pos, w1 = _diff_side(buf, pos, scratch[0:2], nb_, pub[0:2], st.n_pub_bid, True, par)
        pos = _put(buf, pos, pieces, offsets, S_ASKS)
        pos, w2 = _diff_side(buf, pos, scratch[2:4], na, pub[2:4], st.n_pub_ask, False, par)
        changed = w1 + w2
    if changed == 0:
        return start, False
    st.update_id += 1
    st.snapshot_due = 0
    pos = _put(buf, pos, pieces, offsets, S_U)
    pos = _put_uint(buf, pos, st.update_id)
    pos = _put(buf, pos, pieces, offsets, S_SEQ)
    pos = _put_uint(buf, pos, st.update_id + SEQ_OFFSET)
    pos = _put(buf, pos, pieces, offsets, S_CTS)
    pos = _put_uint(buf, pos, ms)
    pos = _put_byte(buf, pos, 125)  # }
    for k in range(nb_):
        pub[0, k] = scratch[0, k]
        pub[1, k] = scratch[1, k]
    for k in range(na):
        pub[2, k] = scratch[2, k]
        pub[3, k] = scratch[3, k]
    st.n_pub_bid = nb_
    st.n_pub_ask = na
    return pos, True


@nb.njit(cache=True)
def put_trade_head(o: Out, pos: int, ms: int) -> int:
    """Open a publicTrade message: ``{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":<ms>,"data":[``."""
    buf, pieces, offsets = o.buf, o.pieces, o.offsets
    pos = _put(buf, pos, pieces, offsets, S_TRADE_HEAD)
    pos = _put_uint(buf, pos, ms)
    return _put(buf, pos, pieces, offsets, S_TRADE_DATA)


@nb.njit(cache=True)
def put_print(o: Out, pos: int, st: Row, par: Row, side: int, tick: int, lots: int, first: bool) -> int:
    """One print of the open publicTrade message (a market order fills one level), stamped ``st.t_ns``."""
    buf, pieces, offsets = o.buf, o.pieces, o.offsets
    if not first:
        pos = _put_byte(buf, pos, 44)  # ,
    pos = _put(buf, pos, pieces, offsets, S_T)
    pos = _put_uint(buf, pos, st.t_ns // 1_000_000)
    pos = _put(buf, pos, pieces, offsets, S_SYM_SIDE)
    return _put_trade_fields(o, pos, st, par, side, tick, lots)


@nb.njit(cache=True)
def put_trade_end(buf: np.ndarray, pos: int) -> int:
    """Close the publicTrade message."""
    pos = _put_byte(buf, pos, 93)  # ]
    return _put_byte(buf, pos, 125)  # }


@nb.njit(cache=True)
def _put_trade_fields(o: Out, pos: int, st: Row, par: Row, side: int, tick: int, lots: int) -> int:
    # Buy","v":"0.012","p":"65000.1","L":"PlusTick","i":"<id>","BT":false}
    buf, pieces, offsets = o.buf, o.pieces, o.offsets
    pos = _put(buf, pos, pieces, offsets, S_BUY if side > 0 else S_SELL)
    pos = _put(buf, pos, pieces, offsets, S_V)
    pos = _put_decimal(buf, pos, lots, int(par.qty_dec))
    pos = _put(buf, pos, pieces, offsets, S_P)
    pos = _put_decimal(buf, pos, tick * int(par.px_mult), int(par.px_dec))
    pos = _put(buf, pos, pieces, offsets, S_L)
    last = st.last_trade_tick
    if tick != last and last != 0:  # noqa: PLR1714 (numba)
        st.last_trade_dir = 1 if tick > last else -1
    st.last_trade_tick = tick
    up = st.last_trade_dir >= 0
    if tick == last:
        pos = _put(buf, pos, pieces, offsets, S_ZPLUS if up else S_ZMINUS)
    else:
        pos = _put(buf, pos, pieces, offsets, S_PLUS if up else S_MINUS)
    pos = _put(buf, pos, pieces, offsets, S_I)
    pos = _put(buf, pos, pieces, offsets, S_TRADE_ID)
    st.trade_count += 1
    pos = _put_uint(buf, pos, st.trade_count)
    pos = _put(buf, pos, pieces, offsets, S_BT_END)
    return pos
