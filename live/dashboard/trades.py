"""Round trips: the account's fills matched first in, first out, with realized and unrealized PnL.

A round trip runs from a flat position to the next flat one (a fill that reverses the position
closes one round trip and opens the next with its remainder). Within it, each closing fill is
matched against the oldest open quantity first (FIFO), so a partial exit realizes the PnL of the
first entries. Fees belong to the round trip of their fill (a reversing fill's fee is split by
quantity). For a linear USDT contract, with ``realized`` the matched PnL less every fee and the
funding paid, and ``unrealized`` the open lots marked at the mid::

    realized + unrealized = equity - starting equity

(cash = start - sum side*qty*price - fees - funding, equity = cash + position * mid).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

EPS = 1e-9  # BTC; lots are 0.001


@dataclass
class Lot:
    qty: float  # open quantity (positive)
    price: float
    ts: int


@dataclass
class RoundTrip:
    side: int  # +1 long, -1 short
    opened: int
    session: int  # the session of its last fill
    closed: int | None = None
    qty: float = 0.0  # the largest position held
    entry_qty: float = 0.0
    entry_notional: float = 0.0
    exit_qty: float = 0.0
    exit_notional: float = 0.0
    gross: float = 0.0  # matched PnL, before fees
    fees: float = 0.0
    fills: int = 0

    @property
    def net(self) -> float:
        return self.gross - self.fees

    @property
    def entry(self) -> float:
        return self.entry_notional / self.entry_qty if self.entry_qty > EPS else math.nan

    @property
    def exit(self) -> float:
        return self.exit_notional / self.exit_qty if self.exit_qty > EPS else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side, "opened": self.opened, "closed": self.closed, "qty": self.qty,
            "entry": self.entry, "exit": self.exit, "gross": self.gross, "fees": self.fees, "net": self.net,
            "fills": self.fills, "open_qty": self.entry_qty - self.exit_qty,
        }  # fmt: skip


@dataclass
class RoundTrips:
    """Fold fills in (``add``); ``closed`` round trips, the ``current`` one and its open ``lots``."""

    lots: deque[Lot] = field(default_factory=deque)
    closed: list[RoundTrip] = field(default_factory=list)
    current: RoundTrip | None = None
    gross: float = 0.0  # every matched PnL so far
    fees: float = 0.0  # every fee so far

    def seed(self, position: float, price: float, ts: int, session: int) -> None:
        """A position held before the first fill this journal has (its entry at ``price``)."""
        if abs(position) > EPS and self.current is None and math.isfinite(price):
            side = 1 if position > 0 else -1
            self.current = RoundTrip(side, ts, session, qty=abs(position))
            self.current.entry_qty, self.current.entry_notional = abs(position), abs(position) * price
            self.lots.append(Lot(abs(position), price, ts))

    def add(self, ts: int, side: int, price: float, qty: float, fee: float, session: int) -> float:
        """One fill (``side`` +1 buy / -1 sell); returns the PnL it realized, before fees."""
        fee_per = fee / qty if qty > 0 else 0.0
        self.fees += fee
        remaining, realized = qty, 0.0
        rt = self.current
        if rt is not None and side != rt.side:  # closing, first in first out
            while remaining > EPS and self.lots:
                lot = self.lots[0]
                m = min(lot.qty, remaining)
                realized += rt.side * (price - lot.price) * m
                rt.exit_qty += m
                rt.exit_notional += price * m
                rt.fees += fee_per * m
                lot.qty -= m
                remaining -= m
                if lot.qty <= EPS:
                    self.lots.popleft()
            rt.gross += realized
            rt.fills += 1
            rt.session = session
            if not self.lots:
                rt.closed = ts
                self.closed.append(rt)
                self.current = rt = None
        if remaining > EPS:  # opening or adding (a reversal's remainder opens the next round trip)
            if rt is None:
                rt = self.current = RoundTrip(side, ts, session)
            rt.entry_qty += remaining
            rt.entry_notional += price * remaining
            rt.fees += fee_per * remaining
            rt.fills += 1
            rt.session = session
            self.lots.append(Lot(remaining, price, ts))
            rt.qty = max(rt.qty, self.open_qty())
        self.gross += realized
        return realized

    def open_qty(self) -> float:
        return sum(lot.qty for lot in self.lots)

    def position(self) -> float:
        return self.current.side * self.open_qty() if self.current is not None else 0.0

    def unrealized(self, mid: float) -> float:
        """The open lots marked at ``mid`` (0 when flat, NaN without a mid)."""
        if self.current is None:
            return 0.0
        if not math.isfinite(mid):
            return math.nan
        return self.current.side * sum((mid - lot.price) * lot.qty for lot in self.lots)

    def realized(self, funding: float = 0.0) -> float:
        """Every matched PnL less every fee and the funding paid."""
        return self.gross - self.fees - funding
