"""The matching engine's market input: top-L book snapshots and trades as plain numpy arrays.

Every event carries two int64 ns clocks (REFERENCE section 2, point 2): ``ts_ex``, the exchange's
matching-engine time (Bybit ``cts`` / trade ``T``), and ``ts_local``, when we received it. The
engine knows nothing of where the arrays come from (pipelines.replay builds them from the
warehouse; the paper broker pushes live events one at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class MarketData(NamedTuple):
    """Book events (the top-L book after every update, best first; a missing level has price NaN
    and size 0) and trades (``trade_side`` is the taker's: +1 buy, -1 sell), each in ``ts_ex`` order."""

    book_ts_ex: np.ndarray  # int64[n]
    book_ts_local: np.ndarray  # int64[n]
    bid_px: np.ndarray  # float64[n, L]
    bid_qty: np.ndarray  # float64[n, L]
    ask_px: np.ndarray  # float64[n, L]
    ask_qty: np.ndarray  # float64[n, L]
    trade_ts_ex: np.ndarray  # int64[m]
    trade_ts_local: np.ndarray  # int64[m]
    trade_price: np.ndarray  # float64[m]
    trade_qty: np.ndarray  # float64[m]
    trade_side: np.ndarray  # int8[m]

    @property
    def levels(self) -> int:
        return int(self.bid_px.shape[1])

    @property
    def n_events(self) -> int:
        return len(self.book_ts_ex) + len(self.trade_ts_ex)

    def top(self, levels: int) -> MarketData:
        """The same events with only the best ``levels`` levels per side."""
        if levels > self.levels:
            raise ValueError(f"the data holds {self.levels} levels, {levels} asked")
        cut = [np.ascontiguousarray(a[:, :levels]) for a in (self.bid_px, self.bid_qty, self.ask_px, self.ask_qty)]
        return self._replace(bid_px=cut[0], bid_qty=cut[1], ask_px=cut[2], ask_qty=cut[3])

    def validate(self) -> MarketData:
        """Raise ValueError on wrong dtypes or shapes, time going backwards, or bad sizes/prices."""
        n, m = len(self.book_ts_ex), len(self.trade_ts_ex)
        for name, arr, dtype, shape in (
            ("book_ts_ex", self.book_ts_ex, np.int64, (n,)),
            ("book_ts_local", self.book_ts_local, np.int64, (n,)),
            ("bid_px", self.bid_px, np.float64, (n, self.levels)),
            ("bid_qty", self.bid_qty, np.float64, (n, self.levels)),
            ("ask_px", self.ask_px, np.float64, (n, self.levels)),
            ("ask_qty", self.ask_qty, np.float64, (n, self.levels)),
            ("trade_ts_ex", self.trade_ts_ex, np.int64, (m,)),
            ("trade_ts_local", self.trade_ts_local, np.int64, (m,)),
            ("trade_price", self.trade_price, np.float64, (m,)),
            ("trade_qty", self.trade_qty, np.float64, (m,)),
            ("trade_side", self.trade_side, np.int8, (m,)),
        ):
            if arr.dtype != dtype or arr.shape != shape:
                raise ValueError(
                    f"MarketData.{name}: expected {np.dtype(dtype)}{list(shape)}, got {arr.dtype}{list(arr.shape)}"
                )
        if np.any(np.diff(self.book_ts_ex) < 0) or np.any(np.diff(self.trade_ts_ex) < 0):
            raise ValueError("MarketData: exchange time goes backwards")
        for qty in (self.bid_qty, self.ask_qty):
            if not (qty >= 0).all():
                raise ValueError("MarketData: negative or NaN book sizes")
        if (self.bid_px[:, :1] >= self.ask_px[:, :1]).any():  # NaN compares False: one-sided books pass
            raise ValueError("MarketData: crossed book (best bid >= best ask)")
        if not (np.isfinite(self.trade_price).all() and (self.trade_qty > 0).all()):
            raise ValueError("MarketData: trades need a finite price and a positive size")
        if not np.isin(self.trade_side, (-1, 1)).all():
            raise ValueError("MarketData: trade side must be +1 or -1")
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
) -> MarketData:
    """A validated MarketData from anything array-like (the dtypes are converted)."""
    bp = np.asarray(bid_px, np.float64)
    levels = bp.shape[1] if bp.ndim == 2 else 0

    def book(x: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(x, np.float64).reshape(-1, levels))

    return MarketData(
        np.asarray(book_ts_ex, np.int64),
        np.asarray(book_ts_local, np.int64),
        book(bp),
        book(bid_qty),
        book(ask_px),
        book(ask_qty),
        np.asarray(trade_ts_ex, np.int64),
        np.asarray(trade_ts_local, np.int64),
        np.asarray(trade_price, np.float64),
        np.asarray(trade_qty, np.float64),
        np.asarray(trade_side, np.int8),
    ).validate()


def empty_market(levels: int) -> MarketData:
    """No events."""
    z = np.zeros((0, levels))
    return market_data([], [], z, z, z, z)
