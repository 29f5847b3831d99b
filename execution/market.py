"""The matching engine's market input: the house's book and trade records (core.records) as one value.

Every event carries two int64 ns clocks (REFERENCE section 2, point 2): ``ts_ex``, the exchange's
matching-engine time (Bybit ``cts`` / trade ``T``), and ``ts_local``, when we received it. The
engine knows nothing of where the arrays come from (pipelines.replay builds them from the
warehouse; the paper broker pushes live events one at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from core.records import Books, Trades


class Market(NamedTuple):
    """What the engine replays: book updates (``core.records.Books``: the top-L book after every update,
    best first; a missing level has price NaN and size 0) and trades (``core.records.Trades``: ``side`` is
    the taker's, +1 buy, -1 sell), each in ``ts_ex`` order."""

    books: Books
    trades: Trades

    @property
    def levels(self) -> int:
        return self.books.levels

    @property
    def n_events(self) -> int:
        return len(self.books) + len(self.trades)

    def top(self, levels: int) -> Market:
        """The same events with only the best ``levels`` levels per side."""
        return Market(self.books.top(levels), self.trades)

    def validate(self) -> Market:
        """Raise ValueError on wrong dtypes or shapes, time going backwards, or bad sizes/prices."""
        b, t = self.books, self.trades
        n, m = len(b), len(t)
        for name, arr, dtype, shape in (
            ("books.ts_ex", b.ts_ex, np.int64, (n,)),
            ("books.ts_local", b.ts_local, np.int64, (n,)),
            ("books.epoch", b.epoch, np.int64, (n,)),
            ("books.bid_px", b.bid_px, np.float64, (n, self.levels)),
            ("books.bid_qty", b.bid_qty, np.float64, (n, self.levels)),
            ("books.ask_px", b.ask_px, np.float64, (n, self.levels)),
            ("books.ask_qty", b.ask_qty, np.float64, (n, self.levels)),
            ("trades.ts_ex", t.ts_ex, np.int64, (m,)),
            ("trades.ts_local", t.ts_local, np.int64, (m,)),
            ("trades.price", t.price, np.float64, (m,)),
            ("trades.qty", t.qty, np.float64, (m,)),
            ("trades.side", t.side, np.int8, (m,)),
        ):
            if arr.dtype != dtype or arr.shape != shape:
                raise ValueError(
                    f"Market.{name}: expected {np.dtype(dtype)}{list(shape)}, got {arr.dtype}{list(arr.shape)}"
                )
        # each rule reads its arrays once, with no temporary as large as them (sizes: every level
        # of every update, a few hundred MB an hour; min() propagates NaN, which fails >= 0)
        if any(ts.size > 1 and not (ts[1:] >= ts[:-1]).all() for ts in (b.ts_ex, t.ts_ex)):
            raise ValueError("Market: exchange time goes backwards")
        if b.bid_qty.size and not (b.bid_qty.min() >= 0 and b.ask_qty.min() >= 0):
            raise ValueError("Market: negative or NaN book sizes")
        if b.bid_px.size and (b.bid_px[:, 0] >= b.ask_px[:, 0]).any():  # NaN compares False: one-sided pass
            raise ValueError("Market: crossed book (best bid >= best ask)")
        if t.price.size and not (np.isfinite(t.price).all() and t.qty.min() > 0):
            raise ValueError("Market: trades need a finite price and a positive size")
        if not (np.abs(t.side) == 1).all():
            raise ValueError("Market: trade side must be +1 or -1")
        return self


def market_data(
    book_ts_ex: Sequence[int] | np.ndarray,
    book_ts_local: Sequence[int] | np.ndarray,
    bid_px: Sequence[Sequence[float]] | np.ndarray,
    bid_qty: Sequence[Sequence[float]] | np.ndarray,
    ask_px: Sequence[Sequence[float]] | np.ndarray,
    ask_qty: Sequence[Sequence[float]] | np.ndarray,
    trade_ts_ex: Sequence[int] | np.ndarray = (),
    trade_ts_local: Sequence[int] | np.ndarray = (),
    trade_price: Sequence[float] | np.ndarray = (),
    trade_qty: Sequence[float] | np.ndarray = (),
    trade_side: Sequence[int] | np.ndarray = (),
    epoch: Sequence[int] | np.ndarray | None = None,
) -> Market:
    """A validated Market from anything array-like (the dtypes are converted; ``epoch`` defaults to 0:
    one book from the start)."""
    bp = np.asarray(bid_px, np.float64)
    levels = bp.shape[1] if bp.ndim == 2 else 0

    def book(x: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(x, np.float64).reshape(-1, levels))

    ts = np.asarray(book_ts_ex, np.int64)
    books = Books(
        ts,
        np.asarray(book_ts_local, np.int64),
        np.zeros(ts.shape, np.int64) if epoch is None else np.asarray(epoch, np.int64),
        book(bp),
        book(bid_qty),
        book(ask_px),
        book(ask_qty),
    )
    trades = Trades(
        np.asarray(trade_ts_ex, np.int64),
        np.asarray(trade_ts_local, np.int64),
        np.asarray(trade_price, np.float64),
        np.asarray(trade_qty, np.float64),
        np.asarray(trade_side, np.int8),
    )
    return Market(books, trades).validate()


def empty_market(levels: int) -> Market:
    """No events."""
    z = np.zeros((0, levels))
    return market_data([], [], z, z, z, z)
