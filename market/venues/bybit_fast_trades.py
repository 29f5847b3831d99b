"""The byte-level fast path for Bybit ``publicTrade`` messages (numba); the book fast path and the
shared number readers are in ``bybit_fast``. Same contract: anything unexpected goes to the general
orjson path, so the fast path changes speed only, never what is accepted.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)
from market.venues.bybit_fast import _at, _decimal, _int

# -- trades ------------------------------------------------------------------------------------
#
# ``{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy",
# "v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-...","BT":false}]}``: a strict walk of
# that shape (no whitespace, no escapes, the topic first). Any other shape, a repeated key, a
# missing field, a side other than Buy/Sell, a size or price that is not a positive decimal the
# fast path reads exactly: the message goes to the general path, which decides and reports.

_T, _SYM, _SIDE, _QTY, _PX, _ID = 1, 2, 4, 8, 16, 32
_TRADE_REQUIRED = _T | _SIDE | _QTY | _PX | _ID
_TRUE = np.frombuffer(b"true", np.uint8)
_FALSE = np.frombuffer(b"false", np.uint8)
_NULL = np.frombuffer(b"null", np.uint8)
_BUY = np.frombuffer(b'"Buy"', np.uint8)
_SELL = np.frombuffer(b'"Sell"', np.uint8)
_DATA = np.frombuffer(b'"data"', np.uint8)
_TOPIC = np.frombuffer(b'"topic"', np.uint8)


@nb.njit(cache=True)
def _string(buf: np.ndarray, pos: int, end: int) -> int:
    """A JSON string without escapes at pos (the opening quote): the position after it, or -1."""
    if pos >= end or buf[pos] != 34:
        return -1
    pos += 1
    while pos < end:
        c = buf[pos]
        if c == 34:
            return pos + 1
        if c == 92 or c < 32 or c >= 128:  # an escape, a control character, not ASCII
            return -1
        pos += 1
    return -1


@nb.njit(cache=True)
def _json_int(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """A non-negative JSON integer (no leading zero) at pos: (value, position after it) or position -1."""
    v, p = _int(buf, pos, end)
    if p < 0 or (buf[pos] == 48 and p > pos + 1):
        return 0, -1
    if p < end and (buf[p] == 46 or buf[p] == 101 or buf[p] == 69):  # . e E: not an integer
        return 0, -1
    return v, p


@nb.njit(cache=True)
def _scalar(buf: np.ndarray, pos: int, end: int) -> int:
    """A value the fast path skips: string, non-negative integer, true, false or null; position after it or -1."""
    if pos >= end:
        return -1
    c = buf[pos]
    if c == 34:
        return _string(buf, pos, end)
    if 48 <= c <= 57:
        return _json_int(buf, pos, end)[1]
    for word in (_TRUE, _FALSE, _NULL):
        if c == word[0] and _at(buf, pos, end, word):
            return pos + int(word.shape[0])
    return -1


@nb.njit(cache=True)
def _key1(buf: np.ndarray, ks: int, ke: int) -> int:
    """The one-letter key of a string token buf[ks:ke] (quotes included), or 0."""
    return int(buf[ks + 1]) if ke - ks == 3 else 0


class TradeScan(NamedTuple):
    """What the trade scanner found: ``ok[i]`` False sends message i to the general path; the
    trades of message i are rows ``trade_off[i]:trade_off[i + 1]``, the id of trade k is the text
    ``buf[id_start[k]:id_end[k]]``."""

    ok: np.ndarray  # bool
    trade_off: np.ndarray  # int64, n + 1
    t_ms: np.ndarray  # int64
    side: np.ndarray  # int8: +1 taker buy, -1 taker sell
    px: np.ndarray  # float64
    qty: np.ndarray
    id_start: np.ndarray  # int64
    id_end: np.ndarray


@nb.njit(cache=True)
def _trade(buf: np.ndarray, pos: int, end: int, symbol: np.ndarray, k: int, out: TradeScan) -> int:
    """One trade object at pos, written at row k: the position after its '}', or -1."""
    t_ms, side, px, qty = out.t_ms, out.side, out.px, out.qty
    if k >= t_ms.shape[0] or pos >= end or buf[pos] != 123:
        return -1
    pos += 1
    seen = 0
    while True:
        ks = pos
        pos = _string(buf, pos, end)
        if pos < 0 or pos >= end or buf[pos] != 58:
            return -1
        key = _key1(buf, ks, pos)
        pos += 1
        if key == 84:  # T
            flag = _T
            t, pos = _json_int(buf, pos, end)
            t_ms[k] = t
        elif key == 115:  # s
            flag = _SYM
            vs = pos
            pos = _string(buf, pos, end)
            if pos - vs - 2 != symbol.shape[0]:
                return -1
            for j in range(symbol.shape[0]):
                if buf[vs + 1 + j] != symbol[j]:
                    return -1
        elif key == 83:  # S
            flag = _SIDE
            if _at(buf, pos, end, _BUY) and buf[pos] == 34:
                side[k] = 1
                pos += _BUY.shape[0]
            elif _at(buf, pos, end, _SELL) and buf[pos] == 34:
                side[k] = -1
                pos += _SELL.shape[0]
            else:
                return -1
        elif key == 118:  # v
            flag = _QTY
            value, pos = _decimal(buf, pos, end)
            qty[k] = value
            if not value > 0.0:
                return -1
        elif key == 112:  # p
            flag = _PX
            value, pos = _decimal(buf, pos, end)
            px[k] = value
            if not value > 0.0:
                return -1
        elif key == 105:  # i
            flag = _ID
            out.id_start[k] = pos + 1
            pos = _string(buf, pos, end)
            out.id_end[k] = pos - 1
        else:
            flag = 0
            pos = _scalar(buf, pos, end)
        if pos < 0 or pos >= end or (seen & flag) != 0:
            return -1
        seen |= flag
        c = buf[pos]
        pos += 1
        if c == 125:  # }
            break
        if c != 44:  # ,
            return -1
    if (seen & _TRADE_REQUIRED) != _TRADE_REQUIRED:
        return -1
    return pos


@nb.njit(cache=True, nogil=True)  # releases the GIL: the warehouse writer thread runs meanwhile
def scan_trades(buf: np.ndarray, offsets: np.ndarray, head: np.ndarray, symbol: np.ndarray, out: TradeScan) -> None:
    """Trade messages starting with head (``{"topic":"publicTrade.SYM"``) into ``out``."""
    ok, trade_off = out.ok, out.trade_off
    n = offsets.shape[0] - 1
    m = 0
    for i in range(n):
        trade_off[i] = m
        ok[i] = False
        s = offsets[i]
        e = offsets[i + 1]
        if not (_at(buf, s, e, head) and buf[s] == head[0]):
            continue
        pos = s + head.shape[0]
        k = m
        data = False
        good = True
        while good:
            if pos >= e:
                good = False
            elif buf[pos] == 125:  # } the end of the message
                good = data and pos + 1 == e
                break
            elif buf[pos] != 44:
                good = False
            else:
                ks = pos + 1
                pos = _string(buf, ks, e)
                if pos < 0 or pos >= e or buf[pos] != 58 or _at(buf, ks, pos, _TOPIC):
                    good = False  # not "key": or a second topic
                elif _at(buf, ks, pos, _DATA) and pos - ks == _DATA.shape[0]:
                    pos += 1
                    if data or pos + 1 >= e or buf[pos] != 91:
                        good = False
                    elif buf[pos + 1] == 93:  # []
                        pos += 2
                        data = True
                    else:
                        pos += 1
                        while True:
                            pos = _trade(buf, pos, e, symbol, k, out)
                            if pos < 0 or pos >= e:
                                good = False
                                break
                            k += 1
                            c = buf[pos]
                            pos += 1
                            if c == 93:  # ]
                                data = True
                                break
                            if c != 44:
                                good = False
                                break
                else:
                    pos = _scalar(buf, pos + 1, e)
                    good = pos >= 0
        if good:
            ok[i] = True
            m = k
    trade_off[n] = m


def scan_trade_messages(data: bytes, offsets: np.ndarray, symbol: str) -> TradeScan:
    """Scan the messages data[offsets[i]:offsets[i + 1]] for trades; ``ok`` marks the messages handled."""
    buf = np.frombuffer(data, np.uint8)
    n = offsets.shape[0] - 1
    cap = buf.size // 40 + 1  # a trade object takes at least 40 bytes: {"T":0,"S":"Buy","v":"1","p":"1","i":""}
    out = TradeScan(
        ok=np.zeros(n, np.bool_),
        trade_off=np.zeros(n + 1, np.int64),
        t_ms=np.zeros(cap, np.int64),
        side=np.zeros(cap, np.int8),
        px=np.zeros(cap),
        qty=np.zeros(cap),
        id_start=np.zeros(cap, np.int64),
        id_end=np.zeros(cap, np.int64),
    )
    head = np.frombuffer(f'{{"topic":"publicTrade.{symbol}"'.encode("ascii"), np.uint8)
    scan_trades(buf, offsets, head, np.frombuffer(symbol.encode("ascii"), np.uint8), out)
    m = int(out.trade_off[-1])
    return out._replace(
        t_ms=out.t_ms[:m],
        side=out.side[:m],
        px=out.px[:m],
        qty=out.qty[:m],
        id_start=out.id_start[:m],
        id_end=out.id_end[:m],
    )
