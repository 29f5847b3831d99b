"""The market an engine holds: recorded blocks appended (``load``) or live events pushed one at
a time (``push_book`` / ``push_trade``), as the arrays the kernels read (a Market's fields but the book epoch).
A fresh engine's first block is held as it is, not copied (a replay of hours loads hundreds of MB).

The engine's state row (records.STATE_ROW, shared with the engine) counts the rows held
(``n_books``, ``n_trades``) and where the kernels are (``ex_book``, ``local_book``, ``ex_trade``);
when the buffers grow, the rows the kernels are done with are dropped and the cursors moved with them.
"""

from __future__ import annotations

import math

import numpy as np

from core.jit import read_only
from execution.market import Market, empty_market
from execution.records import Row

# Rows a held buffer has at least when it is made again. Live events arrive one at a time while the
# kernels keep up, so the rows kept are few: without a floor each push made six new buffers of twice
# a handful of rows (a 90-minute replay through the runner: 2 million np.zeros for 260,000 books).
HELD_MIN = 4096


def grow(a: np.ndarray, rows: int, fill: float = 0) -> np.ndarray:
    """``a`` in a bigger array of at least ``rows`` rows (at least twice its size), the rest ``fill``."""
    shape = (max(rows, 2 * a.shape[0]), *a.shape[1:])
    out = np.zeros(shape, a.dtype) if fill == 0 else np.full(shape, fill, a.dtype)  # zeros: any record dtype
    if a.dtype.names and a.flags.c_contiguous:  # records: their bytes (numpy assigns them field by field)
        out[: a.shape[0]].view(np.uint8)[:] = a.view(np.uint8)
    else:
        out[: a.shape[0]] = a
    return out


class HeldMarket:
    """Book events and trades held for the kernels, in exchange-time order."""

    def __init__(self, levels: int, state: np.ndarray) -> None:
        self.levels, self.s = levels, Row(state)  # the engine's state row, its fields written in place
        none = empty_market(levels)  # the buffers, in the order of records.Arrays' market fields
        b = none.books
        self.books: list[np.ndarray] = [b.ts_ex, b.ts_local, b.bid_px, b.bid_qty, b.ask_px, b.ask_qty]
        self.trades: list[np.ndarray] = list(none.trades)
        self.read_only: tuple[np.ndarray, ...] = ()
        self._hold()

    def _hold(self, books: list[np.ndarray] | None = None, trades: list[np.ndarray] | None = None) -> None:
        """Take new buffers (the only way they change) and make ``read_only``, the views of the books'
        then the trades' buffers that the kernels get: always one array type, whether a buffer is the
        engine's own or a block adopted from the warehouse reader (whose arrays are read-only), so
        nothing compiles twice and no loaded block is copied; a kernel that wrote into the market
        would not compile."""
        self.books = self.books if books is None else books
        self.trades = self.trades if trades is None else trades
        self.read_only = read_only(*self.books, *self.trades)

    def load(self, market: Market) -> None:
        """Append a recorded block (events after everything already held); the data ends with it."""
        b, t = market.validate().top(self.levels)
        self._append_books(b.ts_ex, b.ts_local, b.bid_px, b.bid_qty, b.ask_px, b.ask_qty)
        self._append_trades(*t)
        self.s.finite[0] = 1

    def push_book(
        self,
        ts_ex: int,
        ts_local: int,
        bid_px: np.ndarray,
        bid_qty: np.ndarray,
        ask_px: np.ndarray,
        ask_qty: np.ndarray,
    ) -> None:
        """One live book event (top levels, best first; fewer than ``levels`` are padded as missing)."""
        bq, aq = np.asarray(bid_qty, np.float64), np.asarray(ask_qty, np.float64)
        if not ((bq >= 0).all() and (aq >= 0).all()):
            raise ValueError("book event: negative or NaN sizes")
        if len(bid_px) and len(ask_px) and bid_px[0] >= ask_px[0]:
            raise ValueError("book event: crossed")
        n = self._reserve_books(int(ts_ex))
        b, k = self.books, self.levels
        b[0][n], b[1][n] = ts_ex, ts_local
        for dst, src, fill in ((b[2], bid_px, math.nan), (b[3], bq, 0.0), (b[4], ask_px, math.nan), (b[5], aq, 0.0)):
            m = min(len(src), k)
            dst[n, :m] = src[:m]
            dst[n, m:] = fill
        self.s.n_books[0] = n + 1
        self.s.finite[0] = 0

    def push_trade(self, ts_ex: int, ts_local: int, price: float, qty: float, side: int) -> None:
        """One live trade (``side``: the taker's, +1 buy / -1 sell)."""
        if not (price > 0 and qty > 0 and side in (1, -1)):
            raise ValueError(f"trade: bad price, size or side ({price}, {qty}, {side})")
        n = self._reserve_trades(int(ts_ex))
        t = self.trades
        t[0][n], t[1][n], t[2][n], t[3][n], t[4][n] = ts_ex, ts_local, price, qty, side
        self.s.n_trades[0] = n + 1
        self.s.finite[0] = 0

    def _reserve_books(self, first_ts: int, k: int = 1) -> int:
        """Room for ``k`` more book rows after the held ones; returns the first free row."""
        s = self.s
        n = int(s.n_books[0])
        if n and first_ts < self.books[0][n - 1]:
            raise ValueError("book events go back in exchange time")
        if n + k > len(self.books[0]):
            keep = max(min(int(s.ex_book[0]), int(s.local_book[0])) - 1, 0)  # the current rows stay
            self._hold(books=[grow(a[keep:n], max(n - keep + k, HELD_MIN)) for a in self.books])
            s.ex_book[0] -= keep
            s.local_book[0] -= keep
            s.n_books[0] = n - keep
        return int(s.n_books[0])

    def _reserve_trades(self, first_ts: int, k: int = 1) -> int:
        s = self.s
        n = int(s.n_trades[0])
        if n and first_ts < self.trades[0][n - 1]:
            raise ValueError("trades go back in exchange time")
        if n + k > len(self.trades[0]):
            keep = int(s.ex_trade[0])
            self._hold(trades=[grow(a[keep:n], max(n - keep + k, HELD_MIN)) for a in self.trades])
            s.ex_trade[0] = 0
            s.n_trades[0] = n - keep
        return int(s.n_trades[0])

    def _append_books(self, *cols: np.ndarray) -> None:
        k = len(cols[0])
        if k == 0:
            return
        if self._empty("n_books", "ex_book", "local_book"):  # the first block: kept as it is, no copy
            self._hold(books=_adopt(self.books, cols))
            self.s.n_books[0] = k
            return
        n = self._reserve_books(int(cols[0][0]), k)
        for a, c in zip(self.books, cols, strict=True):
            a[n : n + k] = c
        self.s.n_books[0] = n + k

    def _append_trades(self, *cols: np.ndarray) -> None:
        k = len(cols[0])
        if k == 0:
            return
        if self._empty("n_trades", "ex_trade"):
            self._hold(trades=_adopt(self.trades, cols))
            self.s.n_trades[0] = k
            return
        n = self._reserve_trades(int(cols[0][0]), k)
        for a, c in zip(self.trades, cols, strict=True):
            a[n : n + k] = c
        self.s.n_trades[0] = n + k

    def _empty(self, held: str, *cursors: str) -> bool:
        """Nothing held and nothing processed yet (a fresh engine, before its first block)."""
        return bool(getattr(self.s, held)[0] == 0 and all(getattr(self.s, c)[0] == 0 for c in cursors))


def _adopt(buffers: list[np.ndarray], cols: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """A block's columns as the buffers, without a copy when each is already of the engine's own
    buffers' dtype and C-contiguous (read-only or not: the kernels get read-only views of every
    buffer), else a copy. The kernels only read them; a later append or push copies into a bigger
    buffer first. The caller must not write into a block it loaded."""
    return [
        c if c.dtype == a.dtype and c.flags.c_contiguous else np.array(c, a.dtype, order="C")
        for a, c in zip(buffers, cols, strict=True)
    ]
