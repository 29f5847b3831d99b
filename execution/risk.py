"""The risk manager: checked before every order, by the backtester and the live runner alike.

States (NautilusTrader's trading states): ACTIVE trades normally; REDUCING accepts only orders
that shrink the position; HALTED accepts nothing but cancels. REDUCING and HALTED are entered on
drawdown from the equity peak and on the day's loss (UTC days); HALTED is left only by
``reset()`` (a restart or an explicit command), never by itself. Independent of the state, a new
order is refused on stale or invalid market data, a wide spread or a thin book, and trimmed to the
position and notional limits.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum

from execution.sizing import floor_lot

DAY_NS = 86_400 * 1_000_000_000


class RiskState(IntEnum):
    ACTIVE = 0
    REDUCING = 1  # no new exposure
    HALTED = 2  # cancel-only


@dataclass(frozen=True)
class RiskLimits:
    max_position_btc: float = 1.0
    max_notional: float = 100_000.0
    daily_loss_limit: float = 0.03
    reduce_drawdown: float = 0.03
    halt_drawdown: float = 0.05
    stale_after_ns: int = 2_000_000_000
    max_spread_bps: float = 5.0
    min_depth_btc: float = 0.5
    lot: float = 0.001


@dataclass(frozen=True)
class MarketState:
    """What the risk checks read of the market at decision time (the local view)."""

    now_ns: int
    book_ts_ns: int  # local time of the last book update
    bid: float
    ask: float
    depth: float  # BTC within the sizing band on the side the order would trade


@dataclass(frozen=True)
class Verdict:
    qty: float  # what may be sent (0: refused)
    reason: str = ""  # why refused or trimmed, empty if accepted as asked

    @property
    def ok(self) -> bool:
        return self.qty > 0


@dataclass
class RiskManager:
    limits: RiskLimits
    state: RiskState = RiskState.ACTIVE
    reason: str = ""  # why the state is not ACTIVE
    peak: float = float("nan")
    day: int = -1
    day_start: float = float("nan")
    refused: Counter[str] = field(default_factory=Counter)
    transitions: list[tuple[int, RiskState, str]] = field(default_factory=list)

    def update(self, now_ns: int, equity: float) -> RiskState:
        """Track the peak and the day's start; move to REDUCING / HALTED when a limit is hit."""
        day = now_ns // DAY_NS
        if day != self.day:
            self.day, self.day_start = day, equity
        if not equity <= self.peak:  # also true while peak is NaN
            self.peak = equity
        drawdown = 1.0 - equity / self.peak if self.peak > 0 else 0.0
        day_loss = 1.0 - equity / self.day_start if self.day_start > 0 else 0.0
        if drawdown >= self.limits.halt_drawdown:
            self._enter(now_ns, RiskState.HALTED, f"drawdown {drawdown:.2%} >= {self.limits.halt_drawdown:.2%}")
        elif day_loss >= self.limits.daily_loss_limit:
            self._enter(now_ns, RiskState.HALTED, f"daily loss {day_loss:.2%} >= {self.limits.daily_loss_limit:.2%}")
        elif drawdown >= self.limits.reduce_drawdown:
            self._enter(now_ns, RiskState.REDUCING, f"drawdown {drawdown:.2%} >= {self.limits.reduce_drawdown:.2%}")
        elif self.state == RiskState.REDUCING:
            self._enter(now_ns, RiskState.ACTIVE, "drawdown back under the limit")
        return self.state

    def halt(self, now_ns: int, reason: str) -> None:
        """Go HALTED from outside (a silent feed, an exchange error burst, an operator)."""
        self._enter(now_ns, RiskState.HALTED, reason)

    def reset(self, now_ns: int) -> None:
        """Leave HALTED: only a restart or an explicit command does this."""
        self.peak = float("nan")
        self._enter(now_ns, RiskState.ACTIVE, "reset")

    def _enter(self, now_ns: int, state: RiskState, reason: str) -> None:
        if self.state == RiskState.HALTED and state != RiskState.HALTED and reason != "reset":
            return  # sticky
        if state != self.state:
            self.transitions.append((now_ns, state, reason))
            self.state, self.reason = state, ("" if state == RiskState.ACTIVE else reason)

    def check(self, side: int, qty: float, position: float, pending: float, mkt: MarketState) -> Verdict:
        """May an order of ``side`` and ``qty`` be sent now? ``pending``: our resting qty on that side."""
        verdict = self._check(side, qty, position, pending, mkt)
        if not verdict.ok:
            self.refused[verdict.reason.split(":")[0]] += 1
        return verdict

    def _check(self, side: int, qty: float, position: float, pending: float, mkt: MarketState) -> Verdict:
        lim = self.limits
        reduces = side * position < 0
        reducible = abs(position) if reduces else 0.0
        if self.state == RiskState.HALTED:
            return Verdict(0.0, f"halted: {self.reason}")
        if not (math.isfinite(mkt.bid) and math.isfinite(mkt.ask) and 0 < mkt.bid < mkt.ask):
            return Verdict(0.0, "invalid book: no two-sided uncrossed quote")
        if mkt.now_ns - mkt.book_ts_ns > lim.stale_after_ns:
            return Verdict(0.0, f"stale data: no book update for {(mkt.now_ns - mkt.book_ts_ns) / 1e9:.1f} s")
        if not reduces:
            if self.state == RiskState.REDUCING:
                return Verdict(0.0, f"reducing: {self.reason}")
            mid = 0.5 * (mkt.bid + mkt.ask)
            spread_bps = (mkt.ask - mkt.bid) / mid * 1e4
            if spread_bps > lim.max_spread_bps:
                return Verdict(0.0, f"spread guard: {spread_bps:.2f} bps > {lim.max_spread_bps}")
            if mkt.depth < lim.min_depth_btc:
                return Verdict(0.0, f"depth guard: {mkt.depth:.3f} BTC < {lim.min_depth_btc}")
        # never beyond the limits: what the position could become if every resting order filled
        worst = abs(position + side * (pending + qty))
        price = mkt.ask if side > 0 else mkt.bid
        cap = min(lim.max_position_btc, lim.max_notional / price)
        allowed = qty if worst <= cap else max(0.0, qty - (worst - cap))
        if reduces:
            allowed = max(allowed, min(qty, max(0.0, reducible - pending)))
        allowed = floor_lot(allowed, lim.lot)
        if allowed <= 0:
            return Verdict(0.0, f"position limit: {abs(position):.3f} BTC held, {pending:.3f} resting")
        return Verdict(allowed, "" if allowed >= qty - 1e-12 else f"trimmed to the position limit ({allowed:.3f} BTC)")

    def headroom(self, side: int, position: float, pending: float, price: float) -> float:
        """BTC that may still be added on ``side`` before the position or notional limit."""
        cap = min(self.limits.max_position_btc, self.limits.max_notional / price) if price > 0 else 0.0
        return max(0.0, cap - side * position - pending)
