"""The records the feature engine takes: one book update or trade (online), a recording's arrays (batch).

The batch records are also what the kernels' ``run`` walks (features/kernels.py), after
``contiguous()`` gave each array the layout and dtype the compiled code was built for.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class BookEvent(NamedTuple):
    """The book after one update: exchange time, book epoch, and the top levels per side."""

    ts_ns: int
    epoch_ns: int
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


class TradeEvent(NamedTuple):
    ts_ns: int
    price: float
    qty: float
    side: int  # +1 taker buy, -1 taker sell


class BookArrays(NamedTuple):
    """Book updates of a recording, one row per update (as stored in the warehouse's snapshots)."""

    ts_ns: np.ndarray  # int64[n]
    epoch_ns: np.ndarray  # int64[n]
    bid_px: np.ndarray  # float64[n, L]
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def contiguous(self) -> BookArrays:
        """The same updates as C-ordered int64 / float64 arrays (copies only where needed)."""
        return BookArrays(
            np.ascontiguousarray(self.ts_ns, np.int64),
            np.ascontiguousarray(self.epoch_ns, np.int64),
            np.ascontiguousarray(self.bid_px, np.float64),
            np.ascontiguousarray(self.bid_qty, np.float64),
            np.ascontiguousarray(self.ask_px, np.float64),
            np.ascontiguousarray(self.ask_qty, np.float64),
        )


class TradeArrays(NamedTuple):
    ts_ns: np.ndarray  # int64[m]
    price: np.ndarray  # float64[m]
    qty: np.ndarray  # float64[m]
    side: np.ndarray  # int8[m]

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def take(self, start: int, stop: int | None = None) -> TradeArrays:
        s = slice(start, stop)
        return TradeArrays(self.ts_ns[s], self.price[s], self.qty[s], self.side[s])

    def contiguous(self) -> TradeArrays:
        """The same trades as C-ordered int64 / float64 / int8 arrays (copies only where needed)."""
        return TradeArrays(
            np.ascontiguousarray(self.ts_ns, np.int64),
            np.ascontiguousarray(self.price, np.float64),
            np.ascontiguousarray(self.qty, np.float64),
            np.ascontiguousarray(self.side, np.int8),
        )

    @staticmethod
    def empty() -> TradeArrays:
        return TradeArrays(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int8))
