"""Strategies: how a model signal becomes orders. Shared by the backtester and the live runner.

Both strategies hold a target position. A signal (a calibrated probability clearing the model's
threshold) sets the target to a sized position in its direction for the model's horizon; a
renewed signal extends the hold; when the hold runs out without a new signal the target is flat.
The difference between target and position is one *parent* order (a flip is two: the exit to
flat, then the new entry), worked by:

- ``baseline`` (the user's current system): market orders, a fixed share of equity per trade.
- ``passive``: post-only limit orders. Confidence sets the urgency: below ``improve_confidence``
  it joins the best price (back of the queue); from there it quotes one tick inside the spread
  when the spread allows; only from ``cross_confidence`` does it take liquidity. A quote that the
  best price has left by ``reprice_ticks`` is amended to the new best (losing priority, as on
  Bybit); a remainder larger than needed is amended down (keeping priority). An entry not filled
  within ``order_timeout``, or whose signal fades first (an opposite signal, or the probability
  of its direction below ``fade_ratio`` times its value at the start), is cancelled and the target becomes
  whatever filled; an exit not
  filled within ``exit_timeout`` crosses the spread for the rest. Sizing is the net-of-cost Kelly
  bet capped by volatility, depth and risk headroom (execution/sizing.py).

An execution study (``study_notional`` > 0) compares execution, not sizing: both strategies then
trade the same size on the same signals, ``study_notional / mid`` rounded down to the lot (the
mid at the decision: the same for both).

Every order passes the risk manager first, and requests are self-throttled below the venue's
rate limit. Strategies talk to a ``Gateway`` only, so backtest, paper and live are the same code.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from execution.risk import MarketState, RiskManager, RiskState
from execution.sizing import SizingParams, depth_within, floor_lot, size
from execution.types import PARENT_DTYPE, OrderKind
from execution.venue import BookView, Gateway, OpenOrder


@dataclass(frozen=True)
class Signal:
    ts_ns: int  # the grid time the features are as of
    p_up: float  # calibrated P(the forward return beats +tau)
    p_down: float
    direction: int  # +1 / -1 / 0: the model's thresholds applied
    sigma_1s: float  # trailing std of 1 s log returns (a fraction), for sizing


@dataclass(frozen=True)
class StrategyParams:
    horizon_ns: int  # how long a signal holds the target
    baseline_fraction: float = 0.05
    improve_confidence: float = 0.6
    cross_confidence: float = 0.85
    order_timeout_ns: int = 10_000_000_000
    exit_timeout_ns: int = 5_000_000_000
    reprice_ticks: int = 1
    fade_ratio: float = 0.5  # an entry is dropped when its direction's probability falls below this x its start
    tick: float = 0.1
    rate_limit: int = 10
    rate_window_ns: int = 1_000_000_000
    own_in_book: bool = False  # the book we read holds our own orders (a live exchange's; never a recording)
    study_notional: float = 0.0  # > 0: an execution study, every entry this notional (USDT) whatever the strategy
    fixed_hold: bool = False  # each position held for horizon_ns from its entry decision, then flat (training's runs)


@dataclass
class Parent:
    tag: int
    side: int
    qty: float
    ts_decision: int
    decision_mid: float
    confidence: float  # NaN for exits: they carry no model confidence
    exit: bool
    ts_end: int = -1
    end_mid: float = float("nan")


@dataclass
class Strategy:
    """The target-position logic shared by both strategies; subclasses choose how to execute."""

    params: StrategyParams
    sizing: SizingParams
    risk: RiskManager
    name: str = "strategy"
    target: float = 0.0
    hold_until: int = -1
    confidence: float = float("nan")
    active: Parent | None = None
    parents: list[Parent] = field(default_factory=list)
    cancelling: set[int] = field(default_factory=set)
    # order id -> (price, size, when) of an amend in flight: held until the order shows it (or 1 s passed)
    amending: dict[int, tuple[float, float, int]] = field(default_factory=dict)
    requests: deque[int] = field(default_factory=deque)
    throttled: int = 0
    decisions: int = 0

    # -- the two entry points --------------------------------------------------------------

    def on_decision(self, v: Gateway, s: Signal) -> None:
        """A new model prediction: update the target, then work the orders."""
        self.decisions += 1
        now, book = v.now, v.book()
        if self.risk.update(now, v.equity()) == RiskState.HALTED:
            self.stop(v)
            return
        pos = v.position()
        if self.active is not None and not self.active.exit and self._faded(s, self.active):
            self.target = pos  # the signal faded before the entry filled: keep what filled, cancel the rest
        if self.params.fixed_hold:
            self._fixed(v, book, s, now, pos)
        elif s.direction != 0:
            if self.target * s.direction <= 0:  # a new position (or a flip): size it once
                qty, p_win = self._size(v, book, s, pos)
                if qty > 0:
                    self.target, self.confidence = s.direction * qty, p_win
            if self.target * s.direction > 0:
                self.hold_until = now + self.params.horizon_ns
        elif now >= self.hold_until:
            self.target = 0.0
        if self.risk.state == RiskState.REDUCING and abs(self.target) > abs(pos):
            self.target = pos if self.target * pos > 0 else 0.0
        self.work(v)

    def _fixed(self, v: Gateway, book: BookView, s: Signal, now: int, pos: float) -> None:
        """``fixed_hold``: one bet at a time, as the training labels are. A signal while flat opens
        a position held ``horizon_ns`` from its decision (renewed signals neither extend nor add to
        it, an opposite one does not flip it); then the target is flat, and the next signal after
        the exit opens the next bet."""
        if self.target != 0.0:
            if now >= self.hold_until:
                self.target = 0.0
            return
        if s.direction == 0 or abs(pos) >= self.sizing.lot / 2:  # no signal, or the last exit still working
            return
        qty, p_win = self._size(v, book, s, pos)
        if qty > 0:
            self.target, self.confidence = s.direction * qty, p_win
            self.hold_until = now + self.params.horizon_ns

    def _size(self, v: Gateway, book: BookView, s: Signal, pos: float) -> tuple[float, float]:
        """(quantity, probability of the signalled direction) of a new entry: the study's fixed size,
        or the Kelly sizing net of cost."""
        p_win, p_loss = (s.p_up, s.p_down) if s.direction > 0 else (s.p_down, s.p_up)
        if self.params.study_notional > 0:
            return self.study_size(book), p_win
        return self.entry_size(v, book, s.direction, p_win, p_loss, s.sigma_1s, pos), p_win

    def _faded(self, s: Signal, parent: Parent) -> bool:
        """An opposite signal, or the parent's direction now far less likely than when it started."""
        p_dir = s.p_up if parent.side > 0 else s.p_down
        return s.direction == -parent.side or p_dir < self.params.fade_ratio * parent.confidence

    def on_wake(self, v: Gateway) -> None:
        """A fill, an order report or a move of the best price: keep the orders right."""
        if self.risk.state == RiskState.HALTED:
            self.stop(v)
            return
        self.work(v)

    def stop(self, v: Gateway) -> None:
        """Cancel everything and end the active parent (HALTED, shutdown, end of data)."""
        for o in v.open_orders():
            if o.order_id not in self.cancelling:
                self.cancelling.add(o.order_id)
                v.cancel(o.order_id)
        self._end(v)

    # -- sizing ------------------------------------------------------------------------------

    def study_size(self, book: BookView) -> float:
        """An execution study's size: ``study_notional`` at the decision mid, rounded down to the lot."""
        qty = floor_lot(self.params.study_notional / book.mid, self.sizing.lot) if book.mid > 0 else 0.0
        return qty if qty >= self.sizing.min_qty and qty * book.mid >= self.sizing.min_notional else 0.0

    def pending(self, v: Gateway, side: int) -> float:
        """What our orders on ``side`` may still add: resting and in flight (cancels not yet confirmed too)."""
        return sum(o.remaining for o in v.open_orders() if o.side == side)

    def entry_size(
        self, v: Gateway, book: BookView, side: int, p_win: float, p_loss: float, sigma: float, pos: float
    ) -> float:
        raise NotImplementedError

    # -- working the parent ------------------------------------------------------------------

    def work(self, v: Gateway) -> None:
        now, book = v.now, v.book()
        orders = v.open_orders()
        live = {o.order_id for o in orders}
        self.cancelling &= live
        self.amending = {k: a for k, a in self.amending.items() if k in live and not self._amended(orders, k, a, now)}
        pos = v.position()
        flip = self.target * pos < 0  # a flip is two parents: the exit to flat, then the new entry
        need = -pos if flip else self.target - pos
        side = 1 if need > 0 else -1
        flat = abs(pos) < self.sizing.lot / 2
        if self.active is not None and (
            self.active.side != side or abs(need) < self.sizing.lot / 2 or (self.active.exit and flat)
        ):
            self._end(v)  # done, the exit reached flat, or the target moved the other way
        if abs(need) < self.sizing.lot / 2:
            for o in orders:
                self._cancel(v, o)
            return
        if self.active is None:
            exiting = flip or abs(self.target) < abs(pos)  # the parent only reduces exposure
            self.active = Parent(
                tag=len(self.parents) + 1,
                side=side,
                qty=abs(need),
                ts_decision=now,
                decision_mid=book.mid,
                confidence=float("nan") if exiting else self.confidence,
                exit=exiting,
            )
            self.parents.append(self.active)
        mine = [o for o in orders if o.tag == self.active.tag]
        for o in orders:
            if o.tag != self.active.tag:
                self._cancel(v, o)
        self.execute(v, book, self.active, mine, abs(need))

    def execute(self, v: Gateway, book: BookView, parent: Parent, mine: list[OpenOrder], need: float) -> None:
        raise NotImplementedError

    def _amended(self, orders: list[OpenOrder], oid: int, asked: tuple[float, float, int], now: int) -> bool:
        """The order shows the amend's price and size (or its report is overdue): it may be amended again."""
        price, qty, when = asked
        if now - when >= self.params.rate_window_ns:
            return True
        o = next(o for o in orders if o.order_id == oid)
        return abs(o.price - price) < 0.5 * self.params.tick and abs(o.qty - qty) < self.sizing.lot / 2

    # -- helpers -----------------------------------------------------------------------------

    def _end(self, v: Gateway) -> None:
        if self.active is not None:
            self.active.ts_end = v.now
            self.active.end_mid = v.book().mid
            self.active = None

    def _cancel(self, v: Gateway, o: OpenOrder) -> None:
        if o.order_id not in self.cancelling and self._budget(v.now):
            self.cancelling.add(o.order_id)
            v.cancel(o.order_id)

    def _budget(self, now: int) -> bool:
        """Self-throttle: stay two requests under the venue's limit per window."""
        while self.requests and self.requests[0] <= now - self.params.rate_window_ns:
            self.requests.popleft()
        if len(self.requests) >= max(1, self.params.rate_limit - 2):
            self.throttled += 1
            return False
        self.requests.append(now)
        return True

    def _send(self, v: Gateway, book: BookView, side: int, qty: float, price: float, kind: OrderKind) -> None:
        """One order for the active parent, after the risk check (the parent has nothing working)."""
        mid = book.mid
        depth = depth_within(
            book.ask_px if side > 0 else book.bid_px,
            book.ask_qty if side > 0 else book.bid_qty,
            mid,
            self.sizing.depth_bps,
        )
        verdict = self.risk.check(
            side, qty, v.position(), self.pending(v, side), MarketState(v.now, book.ts_local, book.bid, book.ask, depth)
        )
        if verdict.ok and self._budget(v.now):
            assert self.active is not None
            v.submit(side, verdict.qty, price, kind, tag=self.active.tag)

    def records(self) -> np.ndarray:
        """The parents as PARENT_DTYPE rows (fills, VWAP and end filled in by whoever has the fills)."""
        out = np.zeros(len(self.parents), PARENT_DTYPE)
        for i, p in enumerate(self.parents):
            out[i] = (
                p.tag,
                p.ts_decision,
                p.side,
                p.qty,
                p.decision_mid,
                p.confidence,
                0.0,
                math.nan,
                p.ts_end,
                p.end_mid,
                self.name,
            )
        return out


def _working(mine: list[OpenOrder], cancelling: set[int]) -> float:
    return sum(o.remaining for o in mine if o.order_id not in cancelling)


class Baseline(Strategy):
    """Market orders, a fixed share of equity per trade (the user's current system)."""

    def entry_size(
        self, v: Gateway, book: BookView, side: int, p_win: float, p_loss: float, sigma: float, pos: float
    ) -> float:
        qty = floor_lot(self.params.baseline_fraction * v.equity() / book.mid, self.sizing.lot)
        return qty if qty >= self.sizing.min_qty and qty * book.mid >= self.sizing.min_notional else 0.0

    def execute(self, v: Gateway, book: BookView, parent: Parent, mine: list[OpenOrder], need: float) -> None:
        if mine:  # a market order is in flight: wait for its report
            return
        self._send(v, book, parent.side, need, math.nan, OrderKind.MARKET)


class Passive(Strategy):
    """Post-only quotes at or inside the best, repriced as the book moves; crosses only when sure."""

    def entry_size(
        self, v: Gateway, book: BookView, side: int, p_win: float, p_loss: float, sigma: float, pos: float
    ) -> float:
        mid, band = book.mid, self.sizing.depth_bps
        orders = v.open_orders() if self.params.own_in_book else []  # a recorded book never held ours

        def own(s: int) -> float:  # our orders within the band on side s
            return sum(o.remaining for o in orders if o.side == s and abs(o.price - mid) <= mid * band * 1e-4)

        near = min(
            depth_within(book.bid_px, book.bid_qty, mid, band, own(1)),
            depth_within(book.ask_px, book.ask_qty, mid, band, own(-1)),
        )
        headroom = self.risk.headroom(side, pos, self.pending(v, side), book.ask if side > 0 else book.bid)
        return size(p_win, p_loss, v.equity(), mid, sigma, near, headroom, self.sizing).qty

    def price(self, book: BookView, side: int, confidence: float) -> float:
        """Join the best, or one tick inside when confident and the spread leaves room."""
        tick = self.params.tick
        inside = book.ask - book.bid > 1.5 * tick and confidence >= self.params.improve_confidence
        if side > 0:
            return round((book.bid + (tick if inside else 0.0)) / tick) * tick
        return round((book.ask - (tick if inside else 0.0)) / tick) * tick

    def execute(self, v: Gateway, book: BookView, parent: Parent, mine: list[OpenOrder], need: float) -> None:
        now = v.now
        working = _working(mine, self.cancelling)
        timeout = self.params.exit_timeout_ns if parent.exit else self.params.order_timeout_ns
        urgent = not parent.exit and parent.confidence >= self.params.cross_confidence
        if now - parent.ts_decision >= timeout and not urgent:
            if parent.exit:  # cross for the rest
                for o in mine:
                    self._cancel(v, o)
                if not any(o.order_id not in self.cancelling for o in mine) and not self.cancelling:
                    self._send(v, book, parent.side, need, math.nan, OrderKind.MARKET)
            else:  # give up the entry: keep what filled
                for o in mine:
                    self._cancel(v, o)
                self.target = v.position()
                self._end(v)
            return
        if urgent:
            if not mine:
                self._send(v, book, parent.side, need, math.nan, OrderKind.MARKET)
            return
        want = self.price(book, parent.side, parent.confidence if not parent.exit else 0.0)
        if not mine:
            if not self.cancelling:
                self._send(v, book, parent.side, need, want, OrderKind.LIMIT)
            return
        for o in mine:
            if o.order_id in self.cancelling or o.order_id in self.amending:
                continue
            moved = abs(o.price - want) >= (self.params.reprice_ticks - 0.5) * self.params.tick
            too_big = o.remaining > need + self.sizing.lot / 2
            if (moved or too_big) and self._budget(now):
                new_qty = o.filled + min(o.remaining, need) if too_big else None
                self.amending[o.order_id] = (want if moved else o.price, o.qty if new_qty is None else new_qty, now)
                v.amend(o.order_id, price=want if moved else None, qty=new_qty)
            need -= min(o.remaining, need)
        if working < 1e-12 and not self.cancelling:
            self._send(v, book, parent.side, need, want, OrderKind.LIMIT)
