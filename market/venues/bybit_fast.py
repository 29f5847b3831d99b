"""A byte-level fast path for Bybit ``orderbook`` and ``publicTrade`` messages (numba): no Python
object per message or level.

Bybit's book messages have one fixed shape::

    {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT",
     "b":[["65000.1","0.010"],...],"a":[...],"u":2,"seq":3},"cts":1}

The scanner finds the keys it needs (one pass over the message), reads integers and the quoted
decimal strings of the levels straight from the bytes, and converts a decimal exactly as
``float(text)`` does (an integer mantissa of at most 15 digits divided by a power of ten is
correctly rounded). Trade messages are walked strictly (see below). Anything it does not expect
(text that is not ASCII, escapes, exponents, a minus sign, a missing key, a bad separator, more
digits) marks the message for the general orjson path, which decides whether it is valid and why
not, so the fast path changes speed only, never what is accepted.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_POW10 = np.array([10.0**k for k in range(19)])

KEY_TYPE = np.frombuffer(b'"type":"', np.uint8)
KEY_TS = np.frombuffer(b'"ts":', np.uint8)
KEY_CTS = np.frombuffer(b'"cts":', np.uint8)
KEY_S = np.frombuffer(b'"s":"', np.uint8)
KEY_B = np.frombuffer(b'"b":[', np.uint8)
KEY_A = np.frombuffer(b'"a":[', np.uint8)
KEY_U = np.frombuffer(b'"u":', np.uint8)
KEY_SEQ = np.frombuffer(b'"seq":', np.uint8)
KEY_SNAPSHOT = np.frombuffer(b'snapshot"', np.uint8)
KEY_DELTA = np.frombuffer(b'delta"', np.uint8)
BOOK_PREFIX = np.frombuffer(b'{"topic":"orderbook.', np.uint8)


@nb.njit(cache=True)
def _find(buf: np.ndarray, start: int, end: int, key: np.ndarray) -> int:
    """Position just after the first occurrence of key in buf[start:end], or -1."""
    n = key.shape[0]
    first = key[0]
    i = start
    while i <= end - n:
        if buf[i] == first:
            ok = True
            for j in range(1, n):
                if buf[i + j] != key[j]:
                    ok = False
                    break
            if ok:
                return int(i + n)
        i += 1
    return -1


@nb.njit(cache=True)
def _int(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """A non-negative JSON integer at pos: (value, position after it); position -1 if none."""
    v = 0
    n = 0
    while pos < end and 48 <= buf[pos] <= 57:
        v = v * 10 + (int(buf[pos]) - 48)  # int(): uint8 arithmetic would wrap (interpreted mode)
        pos += 1
        n += 1
        if n > 18:
            return 0, -1
    if n == 0:
        return 0, -1
    return v, pos


@nb.njit(cache=True)
def _decimal(buf: np.ndarray, pos: int, end: int) -> tuple[float, int]:
    """A quoted decimal "123.45" at pos (pos at the opening quote): (value, position after the quote)."""
    if pos >= end or buf[pos] != 34:
        return 0.0, -1
    pos += 1
    mant = 0
    digits = 0
    frac = -1
    while pos < end:
        c = int(buf[pos])
        if 48 <= c <= 57:
            mant = mant * 10 + (c - 48)
            digits += 1
            if frac >= 0:
                frac += 1
        elif c == 46 and frac < 0:
            frac = 0
        elif c == 34:
            break
        else:
            return 0.0, -1
        pos += 1
    if pos >= end or digits == 0 or digits > 15 or frac == 0:
        return 0.0, -1
    value = float(mant) if frac <= 0 else mant / _POW10[frac]
    return value, pos + 1


@nb.njit(cache=True)
def _levels(buf: np.ndarray, pos: int, end: int, px: np.ndarray, qty: np.ndarray, n: int) -> tuple[int, int]:
    """Levels [["p","q"],...] after the opening '[': (levels written so far, position after ']')."""
    if pos < end and buf[pos] == 93:  # ]
        return n, pos + 1
    while pos < end:
        if buf[pos] != 91:  # [
            return n, -1
        p, pos = _decimal(buf, pos + 1, end)
        if pos < 0 or pos >= end or buf[pos] != 44:
            return n, -1
        q, pos = _decimal(buf, pos + 1, end)
        if pos < 0 or pos + 1 >= end or buf[pos] != 93:
            return n, -1
        if n >= px.shape[0]:
            return n, -1
        px[n] = p
        qty[n] = q
        n += 1
        c = buf[pos + 1]
        pos += 2
        if c == 93:  # end of the list
            return n, pos
        if c != 44:
            return n, -1
    return n, -1


_K_TYPE, _K_S, _K_U, _K_SEQ, _K_CTS, _K_TS, _K_B, _K_A = range(8)


@nb.njit(cache=True)
def _at(buf: np.ndarray, i: int, end: int, key: np.ndarray) -> bool:
    """Whether key occurs at buf[i] (within end)."""
    n = key.shape[0]
    if i + n > end:
        return False
    j = 1
    while j < n and buf[i + j] == key[j]:
        j += 1
    return bool(j == n)


@nb.njit(cache=True)
def _keys(buf: np.ndarray, s: int, e: int, pos: np.ndarray) -> bool:
    """One pass over a message: pos[k] = position after the first occurrence of key k, or -1.

    The same positions as searching each key from the start; False if a byte is not ASCII.
    """
    pos[:] = -1
    for i in range(s, e):
        c = buf[i]
        if c >= 128:
            return False
        if c != 34 or i + 1 >= e:  # every key starts with a quote
            continue
        c = buf[i + 1]
        if c == 116:  # t
            if pos[_K_TYPE] < 0 and _at(buf, i, e, KEY_TYPE):
                pos[_K_TYPE] = i + KEY_TYPE.shape[0]
            if pos[_K_TS] < 0 and _at(buf, i, e, KEY_TS):
                pos[_K_TS] = i + KEY_TS.shape[0]
        elif c == 115:  # s
            if pos[_K_S] < 0 and _at(buf, i, e, KEY_S):
                pos[_K_S] = i + KEY_S.shape[0]
            if pos[_K_SEQ] < 0 and _at(buf, i, e, KEY_SEQ):
                pos[_K_SEQ] = i + KEY_SEQ.shape[0]
        elif c == 117 and pos[_K_U] < 0 and _at(buf, i, e, KEY_U):  # u
            pos[_K_U] = i + KEY_U.shape[0]
        elif c == 99 and pos[_K_CTS] < 0 and _at(buf, i, e, KEY_CTS):  # c
            pos[_K_CTS] = i + KEY_CTS.shape[0]
        elif c == 98 and pos[_K_B] < 0 and _at(buf, i, e, KEY_B):  # b
            pos[_K_B] = i + KEY_B.shape[0]
        elif c == 97 and pos[_K_A] < 0 and _at(buf, i, e, KEY_A):  # a
            pos[_K_A] = i + KEY_A.shape[0]
    return True


@nb.njit(cache=True, nogil=True)  # releases the GIL: the warehouse writer thread runs meanwhile
def scan_books(
    buf: np.ndarray,
    offsets: np.ndarray,
    symbol: np.ndarray,
    ok: np.ndarray,
    is_snap: np.ndarray,
    u: np.ndarray,
    seq: np.ndarray,
    ts_ms: np.ndarray,
    topic_end: np.ndarray,
    same_topic: np.ndarray,
    bid_off: np.ndarray,
    bid_px: np.ndarray,
    bid_qty: np.ndarray,
    ask_off: np.ndarray,
    ask_px: np.ndarray,
    ask_qty: np.ndarray,
) -> None:
    """Scan message i = buf[offsets[i]:offsets[i + 1]]; ok[i] False sends it to the general path.

    Only ASCII messages starting with ``{"topic":"orderbook.`` are candidates. For an ok message the
    topic is buf[offsets[i] + 10:topic_end[i]]; same_topic[i] says it equals the previous ok one's.
    """
    n = offsets.shape[0] - 1
    pos = np.empty(8, np.int64)
    nb_ = 0
    na = 0
    prev_s = -1
    prev_len = 0
    for i in range(n):
        bid_off[i] = nb_
        ask_off[i] = na
        ok[i] = False
        s = offsets[i]
        e = offsets[i + 1]
        if not (_at(buf, s, e, BOOK_PREFIX) and buf[s] == BOOK_PREFIX[0]):
            continue
        if not _keys(buf, s, e, pos):
            continue
        p = pos[_K_TYPE]
        if p < 0:
            continue
        if buf[p] == 115 and _find(buf, p, min(p + 9, e), KEY_SNAPSHOT) == p + 9:
            snap = True
        elif buf[p] == 100 and _find(buf, p, min(p + 6, e), KEY_DELTA) == p + 6:
            snap = False
        else:
            continue
        p = pos[_K_S]
        if p < 0 or p + symbol.shape[0] >= e:
            continue
        same = True
        for j in range(symbol.shape[0]):
            if buf[p + j] != symbol[j]:
                same = False
                break
        if not same or buf[p + symbol.shape[0]] != 34:
            continue
        p = pos[_K_U]
        if p < 0:
            continue
        uid, p = _int(buf, p, e)
        if p < 0:
            continue
        p = pos[_K_SEQ]
        if p < 0:
            continue
        sq, p = _int(buf, p, e)
        if p < 0:
            continue
        p = pos[_K_CTS]
        if p < 0:
            p = pos[_K_TS]
        if p < 0:
            continue
        t, p = _int(buf, p, e)
        if p < 0:
            continue
        p = pos[_K_B]
        if p < 0:
            continue
        n2, p = _levels(buf, p, e, bid_px, bid_qty, nb_)
        if p < 0:
            continue
        p = pos[_K_A]
        if p < 0:
            continue
        m2, p = _levels(buf, p, e, ask_px, ask_qty, na)
        if p < 0:
            continue
        nb_ = n2
        na = m2
        ok[i] = True
        is_snap[i] = snap or uid == 1
        u[i] = uid
        seq[i] = sq
        ts_ms[i] = t
        q = s + 10
        while q < e and buf[q] != 34:
            q += 1
        topic_end[i] = q
        length = q - s - 10
        same = length == prev_len and prev_s >= 0
        j = 0
        while same and j < length:
            same = buf[s + 10 + j] == buf[prev_s + 10 + j]
            j += 1
        same_topic[i] = same
        prev_s = s
        prev_len = length
    bid_off[n] = nb_
    ask_off[n] = na


def scan(data: bytes, offsets: np.ndarray, symbol: str) -> dict[str, np.ndarray]:
    """Scan the messages data[offsets[i]:offsets[i + 1]]: columns, "ok" marks the messages handled."""
    buf = np.frombuffer(data, np.uint8)
    n = offsets.shape[0] - 1
    cap = buf.size // 9 + 1  # a level takes at least 9 bytes: ["1","1"]
    cols = {
        "ok": np.zeros(n, np.bool_),
        "is_snap": np.zeros(n, np.bool_),
        "u": np.zeros(n, np.int64),
        "seq": np.zeros(n, np.int64),
        "ts_ms": np.zeros(n, np.int64),
        "topic_end": np.zeros(n, np.int64),
        "same_topic": np.zeros(n, np.bool_),
        "bid_off": np.zeros(n + 1, np.int64),
        "bid_px": np.empty(cap),
        "bid_qty": np.empty(cap),
        "ask_off": np.zeros(n + 1, np.int64),
        "ask_px": np.empty(cap),
        "ask_qty": np.empty(cap),
    }
    sym = np.frombuffer(symbol.encode("ascii"), np.uint8)
    scan_books(
        buf,
        offsets,
        sym,
        cols["ok"],
        cols["is_snap"],
        cols["u"],
        cols["seq"],
        cols["ts_ms"],
        cols["topic_end"],
        cols["same_topic"],
        cols["bid_off"],
        cols["bid_px"],
        cols["bid_qty"],
        cols["ask_off"],
        cols["ask_px"],
        cols["ask_qty"],
    )
    cols["bid_px"] = cols["bid_px"][: cols["bid_off"][-1]]
    cols["bid_qty"] = cols["bid_qty"][: cols["bid_off"][-1]]
    cols["ask_px"] = cols["ask_px"][: cols["ask_off"][-1]]
    cols["ask_qty"] = cols["ask_qty"][: cols["ask_off"][-1]]
    return cols


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


@nb.njit(cache=True)
def _trade(
    buf: np.ndarray,
    pos: int,
    end: int,
    symbol: np.ndarray,
    k: int,
    t_ms: np.ndarray,
    side: np.ndarray,
    px: np.ndarray,
    qty: np.ndarray,
    id_start: np.ndarray,
    id_end: np.ndarray,
) -> int:
    """One trade object at pos, written at row k: the position after its '}', or -1."""
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
            id_start[k] = pos + 1
            pos = _string(buf, pos, end)
            id_end[k] = pos - 1
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
def scan_trades(
    buf: np.ndarray,
    offsets: np.ndarray,
    head: np.ndarray,
    symbol: np.ndarray,
    ok: np.ndarray,
    trade_off: np.ndarray,
    t_ms: np.ndarray,
    side: np.ndarray,
    px: np.ndarray,
    qty: np.ndarray,
    id_start: np.ndarray,
    id_end: np.ndarray,
) -> None:
    """Trade messages starting with head (``{"topic":"publicTrade.SYM"``): ok[i] False sends one to
    the general path; the trades of message i are rows trade_off[i]..trade_off[i + 1] - 1."""
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
                            pos = _trade(buf, pos, e, symbol, k, t_ms, side, px, qty, id_start, id_end)
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


def scan_trade_messages(data: bytes, offsets: np.ndarray, symbol: str) -> dict[str, np.ndarray]:
    """Scan the messages data[offsets[i]:offsets[i + 1]] for trades; "ok" marks the messages handled."""
    buf = np.frombuffer(data, np.uint8)
    n = offsets.shape[0] - 1
    cap = buf.size // 40 + 1  # a trade object takes at least 40 bytes: {"T":0,"S":"Buy","v":"1","p":"1","i":""}
    cols = {
        "ok": np.zeros(n, np.bool_),
        "trade_off": np.zeros(n + 1, np.int64),
        "t_ms": np.zeros(cap, np.int64),
        "side": np.zeros(cap, np.int8),
        "px": np.zeros(cap),
        "qty": np.zeros(cap),
        "id_start": np.zeros(cap, np.int64),
        "id_end": np.zeros(cap, np.int64),
    }
    head = np.frombuffer(f'{{"topic":"publicTrade.{symbol}"'.encode("ascii"), np.uint8)
    sym = np.frombuffer(symbol.encode("ascii"), np.uint8)
    scan_trades(
        buf,
        offsets,
        head,
        sym,
        cols["ok"],
        cols["trade_off"],
        cols["t_ms"],
        cols["side"],
        cols["px"],
        cols["qty"],
        cols["id_start"],
        cols["id_end"],
    )
    m = int(cols["trade_off"][-1])
    for name in ("t_ms", "side", "px", "qty", "id_start", "id_end"):
        cols[name] = cols[name][:m]
    return cols
