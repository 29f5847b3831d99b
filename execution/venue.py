"""What a strategy sees and does: the local market view and the order gateway, as one protocol.

The matching engine satisfies ``Gateway`` for backtests, the paper gateway (the same engine fed by
the runner) for paper trading and the Bybit gateway (ccxt) for real orders; a strategy never knows
which one it talks to. What the runner adds (reports, the account, the clock) is
``live.gateway.RunnerGateway``, a ``Gateway`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from execution.types import OrderKind


@dataclass(frozen=True)
class OpenOrder:
    order_id: int
    tag: int
    side: int
    price: float
    qty: float  # requested size
    filled: float

    @property
    def remaining(self) -> float:
        return self.qty - self.filled


@dataclass(frozen=True)
class BookView:
    """The top of the book as we know it locally (best first; missing levels NaN / 0)."""

    ts_local: int
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray

    @property
    def bid(self) -> float:
        return float(self.bid_px[0])

    @property
    def ask(self) -> float:
        return float(self.ask_px[0])

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid + self.ask)


class Gateway(Protocol):
    """The order gateway a strategy talks to: the local book and account, and order requests."""

    @property
    def now(self) -> int: ...

    def book(self) -> BookView: ...

    def position(self) -> float: ...

    def equity(self) -> float: ...

    def open_orders(self) -> list[OpenOrder]: ...

    def submit(
        self, side: int, qty: float, price: float = float("nan"), kind: OrderKind = OrderKind.LIMIT, *, tag: int = 0
    ) -> int: ...

    def amend(self, order_id: int, price: float | None = None, qty: float | None = None) -> None: ...

    def cancel(self, order_id: int) -> None: ...

    def cancel_all(self) -> None: ...
