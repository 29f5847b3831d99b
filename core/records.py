"""The two market-data records of the house: book tops and trades, from the parser to the live loop.

One record per kind, in two shapes, and the same field names everywhere in memory:

- ``Books`` / ``Trades``: many events as arrays (one row per event), what the normalizer gives
  (``market.normalize.Normalized.books`` / ``.trades``), the feature build and the feature kernels
  read, the matching engine holds (``execution.market.Market``) and the replay loads;
- ``Book`` / ``Trade``: one event, what the live feed hands the loop and the online feature engine
  takes (``Books.row(i)`` / ``Trades.row(i)``).

Time fields, all int64 nanoseconds since the epoch (REFERENCE section 2, point 2):

- ``ts_ex``: the exchange's matching-engine time (Bybit ``cts`` of a book message, ``T`` of a trade);
- ``ts_local``: when the message reached us (a recording's receive time; -1 where a source has none);
- ``epoch``: the ``ts_ex`` of the snapshot the book was last rebuilt from (a new epoch = a resync).

The warehouse stores these under its own column names (``ts_exchange_ns``, ``ts_local_ns``,
``epoch_ns``: the on-disk schema of market.events, which stored data keeps); its readers and writers
map them, and no record in memory uses them.

A book side holds the best ``L`` levels, best first; a missing level has price NaN and size 0.
A trade's ``side`` is the taker's: +1 a buy (lifted the asks), -1 a sell.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, TypeVar

import numpy as np

_C = TypeVar("_C", bound=tuple)


class Book(NamedTuple):
    """The book after one update."""

    ts_ex: int
    ts_local: int
    epoch: int
    bid_px: np.ndarray  # float64[L]
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


class Trade(NamedTuple):
    """One public trade."""

    ts_ex: int
    ts_local: int
    price: float
    qty: float
    side: int  # the taker's: +1 buy, -1 sell


def _make_columns(cls: type[_C], iterable: Iterable[Any]) -> _C:
    """NamedTuple's ``_make`` (under ``_replace``) checks the field count with ``len``, which the
    records below define as their number of rows: theirs counts the fields without it."""
    made = tuple.__new__(cls, iterable)
    if tuple.__len__(made) != len(cls._fields):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: {len(cls._fields)} fields expected, got {tuple.__len__(made)}")  # type: ignore[attr-defined]
    return made


class _BookColumns(NamedTuple):
    ts_ex: np.ndarray  # int64[n]
    ts_local: np.ndarray  # int64[n]
    epoch: np.ndarray  # int64[n]
    bid_px: np.ndarray  # float64[n, L]
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


class Books(_BookColumns):
    """Book updates, one row per applied update, in ``ts_ex`` order: ``ts_ex``, ``ts_local``, ``epoch``
    int64[n]; ``bid_px``, ``bid_qty``, ``ask_px``, ``ask_qty`` float64[n, L]."""

    __slots__ = ()
    _make = classmethod(_make_columns)  # type: ignore[assignment,var-annotated]

    def __len__(self) -> int:  # rows, not fields (see _make_columns)
        return int(self.ts_ex.shape[0])

    @property
    def levels(self) -> int:
        return int(self.bid_px.shape[1])

    def row(self, i: int) -> Book:
        return Book(
            int(self.ts_ex[i]),
            int(self.ts_local[i]),
            int(self.epoch[i]),
            self.bid_px[i],
            self.bid_qty[i],
            self.ask_px[i],
            self.ask_qty[i],
        )

    def take(self, rows: slice | np.ndarray) -> Books:
        """The updates at ``rows`` (a slice gives views, an index array copies)."""
        return Books(*(a[rows] for a in self))

    def top(self, levels: int) -> Books:
        """The same updates with only the best ``levels`` levels per side (C-ordered)."""
        if levels > self.levels:
            raise ValueError(f"the data holds {self.levels} levels, {levels} asked")
        if levels == self.levels:
            return self
        cut = (np.ascontiguousarray(a[:, :levels]) for a in self[3:])
        return Books(self.ts_ex, self.ts_local, self.epoch, *cut)

    def contiguous(self) -> Books:
        """The same updates as C-ordered int64 / float64 arrays (copies only where needed)."""
        return Books(
            *(np.ascontiguousarray(a, np.int64) for a in self[:3]),
            *(np.ascontiguousarray(a, np.float64) for a in self[3:]),
        )

    @staticmethod
    def empty(levels: int) -> Books:
        return Books.alloc(0, levels)

    @staticmethod
    def alloc(n: int, levels: int) -> Books:
        """Room for ``n`` updates (times zero, levels not initialised): what a kernel writes into."""
        return Books(*(np.zeros(n, np.int64) for _ in range(3)), *(np.empty((n, levels)) for _ in range(4)))

    @staticmethod
    def concat(parts: list[Books]) -> Books:
        return Books(*(np.concatenate(column) for column in zip(*parts, strict=True)))


class _TradeColumns(NamedTuple):
    ts_ex: np.ndarray  # int64[m]
    ts_local: np.ndarray  # int64[m]
    price: np.ndarray  # float64[m]
    qty: np.ndarray  # float64[m]
    side: np.ndarray  # int8[m]


class Trades(_TradeColumns):
    """Public trades, one row per trade, in ``ts_ex`` order: ``ts_ex``, ``ts_local`` int64[m]; ``price``,
    ``qty`` float64[m]; ``side`` int8[m]."""

    __slots__ = ()
    _make = classmethod(_make_columns)  # type: ignore[assignment,var-annotated]

    def __len__(self) -> int:  # rows, not fields (see _make_columns)
        return int(self.ts_ex.shape[0])

    def row(self, i: int) -> Trade:
        t = self
        return Trade(int(t.ts_ex[i]), int(t.ts_local[i]), float(t.price[i]), float(t.qty[i]), int(t.side[i]))

    def take(self, rows: slice | np.ndarray) -> Trades:
        """The trades at ``rows`` (a slice gives views, an index array copies)."""
        return Trades(*(a[rows] for a in self))

    def contiguous(self) -> Trades:
        """The same trades as C-ordered int64 / float64 / int8 arrays (copies only where needed)."""
        return Trades(
            np.ascontiguousarray(self.ts_ex, np.int64),
            np.ascontiguousarray(self.ts_local, np.int64),
            np.ascontiguousarray(self.price, np.float64),
            np.ascontiguousarray(self.qty, np.float64),
            np.ascontiguousarray(self.side, np.int8),
        )

    @staticmethod
    def empty() -> Trades:
        return Trades(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int8))

    @staticmethod
    def concat(parts: list[Trades]) -> Trades:
        return Trades(*(np.concatenate(column) for column in zip(*parts, strict=True)))
