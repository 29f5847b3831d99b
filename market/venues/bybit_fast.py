"""A byte-level fast path for Bybit ``orderbook`` and ``publicTrade`` messages (numba): no Python
object per message or level.

Bybit's book messages have one fixed shape::

    {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT",
     "b":[["65000.1","0.010"],...],"a":[...],"u":2,"seq":3},"cts":1}

The scanner finds the keys it needs (one pass over the message), reads integers and the quoted
decimal strings of the levels straight from the bytes, and converts a decimal exactly as
``float(text)`` does (an integer mantissa of at most 15 digits divided by a power of ten is
correctly rounded). Trade messages are walked strictly (``bybit_fast_trades``). Anything it does not expect
(text that is not ASCII, escapes, exponents, a minus sign, a missing key, a bad separator, more
digits) marks the message for the general orjson path, which decides whether it is valid and why
not, so the fast path changes speed only, never what is accepted.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)

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


class BookScan(NamedTuple):
    """What the book scanner found: ``ok[i]`` False sends message i to the general path; for an ok
    message the topic is ``buf[offsets[i] + 10:topic_end[i]]`` (``same_topic[i]``: equal to the
    previous ok message's) and its levels are ``bid_px[bid_off[i]:bid_off[i + 1]]`` and so on."""

    ok: np.ndarray  # bool
    is_snap: np.ndarray  # bool
    u: np.ndarray  # int64
    seq: np.ndarray
    ts_ms: np.ndarray
    topic_end: np.ndarray
    same_topic: np.ndarray  # bool
    bid_off: np.ndarray  # int64, n + 1
    bid_px: np.ndarray  # float64
    bid_qty: np.ndarray
    ask_off: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


@nb.njit(cache=True)
def _header(buf: np.ndarray, e: int, symbol: np.ndarray, pos: np.ndarray) -> tuple[bool, bool, int, int, int]:
    """The fields of a book message around its levels (key positions from ``_keys``):
    (recognised, snapshot, u, seq, time in ms); not recognised if a level list is missing too."""
    fail = (False, False, 0, 0, 0)
    p = pos[_K_TYPE]
    if p < 0:
        return fail
    if buf[p] == 115 and _find(buf, p, min(p + 9, e), KEY_SNAPSHOT) == p + 9:
        snap = True
    elif buf[p] == 100 and _find(buf, p, min(p + 6, e), KEY_DELTA) == p + 6:
        snap = False
    else:
        return fail
    p = pos[_K_S]
    if p < 0 or p + symbol.shape[0] >= e:
        return fail
    for j in range(symbol.shape[0]):
        if buf[p + j] != symbol[j]:
            return fail
    if buf[p + symbol.shape[0]] != 34 or pos[_K_U] < 0 or pos[_K_SEQ] < 0:
        return fail
    uid, p = _int(buf, pos[_K_U], e)
    if p < 0:
        return fail
    sq, p = _int(buf, pos[_K_SEQ], e)
    if p < 0:
        return fail
    p = pos[_K_CTS] if pos[_K_CTS] >= 0 else pos[_K_TS]
    if p < 0:
        return fail
    t, p = _int(buf, p, e)
    if p < 0 or pos[_K_B] < 0 or pos[_K_A] < 0:
        return fail
    return True, snap, uid, sq, t


@nb.njit(cache=True)
def _topic_end(buf: np.ndarray, s: int, e: int) -> int:
    """The position of the quote closing the topic of the message starting at s."""
    q = s + 10
    while q < e and buf[q] != 34:
        q += 1
    return q


@nb.njit(cache=True, nogil=True)  # releases the GIL: the warehouse writer thread runs meanwhile
def scan_books(buf: np.ndarray, offsets: np.ndarray, symbol: np.ndarray, out: BookScan) -> None:
    """Scan message i = buf[offsets[i]:offsets[i + 1]] into row i of ``out``.

    Only ASCII messages starting with ``{"topic":"orderbook.`` are candidates.
    """
    n = offsets.shape[0] - 1
    pos = np.empty(8, np.int64)
    nb_ = 0
    na = 0
    prev_s = -1
    prev_len = 0
    for i in range(n):
        out.bid_off[i] = nb_
        out.ask_off[i] = na
        out.ok[i] = False
        s = offsets[i]
        e = offsets[i + 1]
        if not (_at(buf, s, e, BOOK_PREFIX) and buf[s] == BOOK_PREFIX[0]) or not _keys(buf, s, e, pos):
            continue
        good, snap, uid, sq, t = _header(buf, e, symbol, pos)
        if not good:
            continue
        n2, p = _levels(buf, pos[_K_B], e, out.bid_px, out.bid_qty, nb_)
        if p < 0:
            continue
        m2, p = _levels(buf, pos[_K_A], e, out.ask_px, out.ask_qty, na)
        if p < 0:
            continue
        nb_ = n2
        na = m2
        out.ok[i] = True
        out.is_snap[i] = snap or uid == 1
        out.u[i] = uid
        out.seq[i] = sq
        out.ts_ms[i] = t
        q = _topic_end(buf, s, e)
        out.topic_end[i] = q
        length = q - s - 10
        same = length == prev_len and prev_s >= 0
        j = 0
        while same and j < length:
            same = buf[s + 10 + j] == buf[prev_s + 10 + j]
            j += 1
        out.same_topic[i] = same
        prev_s = s
        prev_len = length
    out.bid_off[n] = nb_
    out.ask_off[n] = na


def scan(data: bytes, offsets: np.ndarray, symbol: str) -> BookScan:
    """Scan the messages data[offsets[i]:offsets[i + 1]]; ``ok`` marks the messages handled."""
    buf = np.frombuffer(data, np.uint8)
    n = offsets.shape[0] - 1
    cap = buf.size // 9 + 1  # a level takes at least 9 bytes: ["1","1"]
    out = BookScan(
        ok=np.zeros(n, np.bool_),
        is_snap=np.zeros(n, np.bool_),
        u=np.zeros(n, np.int64),
        seq=np.zeros(n, np.int64),
        ts_ms=np.zeros(n, np.int64),
        topic_end=np.zeros(n, np.int64),
        same_topic=np.zeros(n, np.bool_),
        bid_off=np.zeros(n + 1, np.int64),
        bid_px=np.empty(cap),
        bid_qty=np.empty(cap),
        ask_off=np.zeros(n + 1, np.int64),
        ask_px=np.empty(cap),
        ask_qty=np.empty(cap),
    )
    scan_books(buf, offsets, np.frombuffer(symbol.encode("ascii"), np.uint8), out)
    nb_, na = out.bid_off[-1], out.ask_off[-1]
    return out._replace(
        bid_px=out.bid_px[:nb_], bid_qty=out.bid_qty[:nb_], ask_px=out.ask_px[:na], ask_qty=out.ask_qty[:na]
    )
