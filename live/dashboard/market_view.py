"""The market and our fills as the journal tells them: the mid over time, and per fill its arrival
slippage and markouts.

The mid comes from two kinds of record: a decision that carries the best ``bid`` and ``ask``
(the book at the decision), and an ``account`` record while a position is held, whose
``(equity - cash) / position`` is the mid the runner marked it at (the paper engine's and the live
gateway's equity are cash + position x mid). Per fill, as the backtest report defines them
(execution/quality.py), with the mids the journal holds:

- arrival slippage ``side * (price - M_a) / M_a`` in bp, ``M_a`` the mid at the parent's first
  order (its decision), when the journal has a mid at most ``ARRIVAL_TOL_NS`` before it;
- markout at D ``side * (M_{t+D} - price) / price`` in bp, ``M_{t+D}`` the journal's mid nearest
  to ``t + D`` within D / 2 either side (none there: the fill has no markout at D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

NS = 1_000_000_000
BPS = 1e4
PRICES = 20_000  # mid points kept (older ones thinned)
FILLS = 50_000  # fills kept
ARRIVAL_TOL_NS = 2 * NS


@dataclass
class Price:
    ts: int
    session: int
    mid: float
    bid: float = math.nan  # NaN: a mark from the account, not the book
    ask: float = math.nan


@dataclass
class Fill:
    ts: int
    session: int
    order_id: int | None
    side: int
    price: float
    qty: float
    fee: float
    maker: bool
    slippage_bps: float = math.nan
    markouts_bps: list[float] = field(default_factory=list)  # per horizon; NaN: none (yet)


class _Due:
    """A fill waiting for the mid near ``due`` (the nearest one within ``half`` either side)."""

    __slots__ = ("best", "due", "fill", "gap", "half", "k")

    def __init__(self, fill: Fill, k: int, due: int, half: int) -> None:
        self.fill, self.k, self.due, self.half = fill, k, due, half
        self.best, self.gap = math.nan, half + 1


class MarketView:
    def __init__(self, horizons_ns: Sequence[int]) -> None:
        self.horizons_ns = tuple(horizons_ns)
        self.prices: list[Price] = []
        self.has_book = False
        self.fills: list[Fill] = []
        self._waiting: list[_Due] = []  # fills waiting for a mid (a few per fill of the last minute)
        self._arrival: dict[tuple[int, int], float] = {}  # (session, tag) -> the mid at its first order
        self._session = -1

    @property
    def last(self) -> Price | None:
        return self.prices[-1] if self.prices else None

    def on_book(self, ts: int, session: int, bid: float, ask: float) -> None:
        if math.isfinite(bid) and math.isfinite(ask) and bid > 0 and ask > 0:
            self.has_book = True
            self._add(Price(ts, session, 0.5 * (bid + ask), bid, ask))

    def on_account(self, ts: int, session: int, equity: float, cash: float, position: float) -> None:
        if abs(position) > 1e-9 and all(math.isfinite(v) for v in (equity, cash, position)):
            mark = (equity - cash) / position
            if mark > 0:
                self._add(Price(ts, session, mark))

    def _add(self, p: Price) -> None:
        self._new_session(p.session)
        self.prices.append(p)
        if len(self.prices) > PRICES + PRICES // 4:
            half = len(self.prices) - PRICES // 2  # every other point of the older part
            self.prices = self.prices[:half:2] + self.prices[half:]
        if self._waiting:
            still = []
            for d in self._waiting:
                gap = abs(p.ts - d.due)
                if gap <= d.half and gap < d.gap:
                    d.best, d.gap = p.mid, gap
                if p.ts > d.due + d.half:
                    self._resolve(d)
                else:
                    still.append(d)
            self._waiting = still

    def _new_session(self, session: int) -> None:
        """A new session's clock may start anywhere (a replay): what still waits gets no markout."""
        if session != self._session:
            self._session = session
            for d in self._waiting:
                self._resolve(d)
            self._waiting = []

    def _resolve(self, d: _Due) -> None:
        f = d.fill
        if math.isfinite(d.best):
            f.markouts_bps[d.k] = f.side * (d.best - f.price) / f.price * BPS

    def on_submit(self, ts: int, session: int, tag: int) -> None:
        """An order of parent ``tag``: its first one fixes the parent's arrival mid."""
        key = (session, tag)
        if tag > 0 and key not in self._arrival:
            p = self.last
            ok = p is not None and p.session == session and 0 <= ts - p.ts <= ARRIVAL_TOL_NS
            self._arrival[key] = p.mid if p is not None and ok else math.nan
            if len(self._arrival) > 4 * FILLS:
                for k in list(self._arrival)[:FILLS]:
                    del self._arrival[k]

    def on_fill(self, f: Fill, tag: int) -> None:
        self._new_session(f.session)
        arrival = self._arrival.get((f.session, tag), math.nan)
        if math.isfinite(arrival) and arrival > 0:
            f.slippage_bps = f.side * (f.price - arrival) / arrival * BPS
        f.markouts_bps = [math.nan] * len(self.horizons_ns)
        self.fills.append(f)
        if len(self.fills) > FILLS + FILLS // 4:
            del self.fills[: len(self.fills) - FILLS]
        self._waiting += [_Due(f, k, f.ts + h, h // 2) for k, h in enumerate(self.horizons_ns)]
