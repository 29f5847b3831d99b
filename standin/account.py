"""The stand-in's trading account: orders, their matching against the public feed, position, wallet.

One account, one-way mode, one linear symbol, all in memory. The rules (docs/standin.md, "Private
endpoints"):

- Market orders (and the crossing part of a non-post-only limit order) walk the server's current
  book level by level and pay the taker fee; what the visible book cannot fill is cancelled
  (market) or rests (GTC limit) or is cancelled (IOC).
- A PostOnly order that would take liquidity is accepted and at once Cancelled with
  ``rejectReason`` ``EC_PostOnlyWillTakeLiquidity`` (what Bybit does); amending one to a crossing
  price cancels it the same way.
- A resting order fills, as maker at its own price, when a public trade prints at or through its
  price (the trade's size, used once across our orders: best price first, then time priority)
  or when the book's opposite best moves to or through it (the whole remainder).
- Our orders are not added to the public book (no self-impact).

Quantities and prices are validated against the instrument's grid like Bybit (retCode 10001).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

EPS = 1e-9
POST_ONLY_REASON = "EC_PostOnlyWillTakeLiquidity"


class BookLike(Protocol):
    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]: ...


class OrderError(Exception):
    """A request the exchange refuses: Bybit's retCode and retMsg."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg


@dataclass(eq=False)
class Order:
    order_id: str
    link_id: str
    side: str  # Buy | Sell
    order_type: str  # Limit | Market
    tif: str  # GTC | IOC | FOK | PostOnly
    price: float
    qty: float
    reduce_only: bool
    created_ms: int
    priority: int  # time priority among our orders (reset by a price change or a size increase)
    filled: float = 0.0
    value: float = 0.0
    fee: float = 0.0
    status: str = "New"
    reject_reason: str = "EC_NoError"
    cancel_type: str = "UNKNOWN"
    updated_ms: int = 0
    crossed: bool = False  # took the visible book on entry: book moves fill it only once it stops crossing

    @property
    def sign(self) -> int:
        return 1 if self.side == "Buy" else -1

    @property
    def remaining(self) -> float:
        return max(0.0, round(self.qty - self.filled, 9))

    @property
    def open(self) -> bool:
        return self.status in ("New", "PartiallyFilled")


@dataclass(frozen=True)
class Execution:
    exec_id: str
    order: Order
    qty: float
    price: float
    fee: float
    fee_rate: float
    maker: bool
    closed: float  # the part of it that reduced the position
    leaves: float  # the order's remaining size after it
    mark: float
    time_ms: int
    seq: int  # Bybit's cross sequence: the position row carries the last one applied


@dataclass
class Position:
    size: float = 0.0  # signed: short negative
    avg: float = 0.0
    realised: float = 0.0
    updated_ms: int = 0


@dataclass
class Account:
    """Orders, executions, position and USDT wallet of the one stand-in account."""

    symbol: str
    book: BookLike
    tick: float
    price_dec: int
    lot: float = 0.001
    min_qty: float = 0.001
    min_notional: float = 5.0
    maker_fee: float = 0.0002
    taker_fee: float = 0.00055
    balance: float = 100_000.0  # USDT wallet balance (cash + realised PnL - fees)
    orders: list[Order] = field(default_factory=list)  # every order, oldest first
    resting: list[Order] = field(default_factory=list)  # the open limit orders (pruned as they close)
    by_link: dict[str, Order] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    position: Position = field(default_factory=Position)
    seq: int = 0  # of the last execution
    _priority: int = 0

    # -- the book ----------------------------------------------------------------------------

    def best(self) -> tuple[float, float]:
        bids, asks = self.book.top(1)
        bid = float(bids[0][0]) if bids else float("nan")
        ask = float(asks[0][0]) if asks else float("nan")
        return bid, ask

    def mark(self) -> float:
        bid, ask = self.best()
        mid = 0.5 * (bid + ask)
        return mid if math.isfinite(mid) else self.position.avg

    # -- requests ----------------------------------------------------------------------------

    def create(self, p: dict[str, Any], now_ms: int) -> Order:
        side, order_type = p.get("side"), p.get("orderType")
        if side not in ("Buy", "Sell") or order_type not in ("Limit", "Market"):
            raise OrderError(10001, "params error: side or orderType invalid")
        qty = self._qty(p.get("qty"))
        tif = str(p.get("timeInForce") or ("IOC" if order_type == "Market" else "GTC"))
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise OrderError(10001, "params error: timeInForce invalid")
        price = self._price(p.get("price")) if order_type == "Limit" else 0.0
        link = str(p.get("orderLinkId") or "")
        if link and link in self.by_link:
            raise OrderError(110072, "OrderLinkedID is duplicate")
        if len(link) > 36 or not all(c.isalnum() or c in "-_" for c in link):
            raise OrderError(10001, "params error: orderLinkId invalid")
        notional = qty * (price or self.mark())
        if notional < self.min_notional:
            raise OrderError(110094, "Order does not meet minimum order value 5USDT")
        reduce_only = p.get("reduceOnly") in (True, "true", "True", 1)
        if reduce_only and self.position.size * (1 if side == "Buy" else -1) >= 0:
            raise OrderError(110017, "Reduce-only rule not satisfied")
        self._priority += 1
        o = Order(uuid.uuid4().hex, link, side, order_type, tif, price, qty, reduce_only, now_ms, self._priority)
        o.updated_ms = now_ms
        self.orders.append(o)
        if link:
            self.by_link[link] = o
        self._enter(o, now_ms)
        if o.open:
            self.resting.append(o)
        return o

    def amend(self, p: dict[str, Any], now_ms: int) -> Order:
        o = self.find(p.get("orderId"), p.get("orderLinkId"))
        if o is None or not o.open:
            raise OrderError(110001, "order not exists or too late to replace")
        qty = self._qty(p["qty"]) if p.get("qty") not in (None, "") else o.qty
        price = self._price(p["price"]) if p.get("price") not in (None, "") and o.order_type == "Limit" else o.price
        if qty == o.qty and price == o.price:
            raise OrderError(10001, "The order remains unchanged as the parameters entered match the existing ones.")
        if qty <= o.filled + EPS:
            raise OrderError(110002, "qty must be greater than the filled quantity")
        if price != o.price or qty > o.qty:  # loses time priority (Bybit: a size decrease keeps it)
            self._priority += 1
            o.priority = self._priority
        o.price, o.qty, o.updated_ms = price, qty, now_ms
        self._enter(o, now_ms)
        return o

    def cancel(self, p: dict[str, Any], now_ms: int) -> Order:
        o = self.find(p.get("orderId"), p.get("orderLinkId"))
        if o is None or not o.open:
            raise OrderError(110001, "order not exists or too late to cancel")
        self._close(o, "CancelByUser", "EC_PerCancelRequest", now_ms)
        return o

    def cancel_all(self, now_ms: int) -> list[Order]:
        done = self.live()
        for o in done:
            self._close(o, "CancelByUser", "EC_PerCancelRequest", now_ms)
        return done

    def live(self) -> list[Order]:
        """The open orders (market orders never rest: only limit orders are here)."""
        self.resting = [o for o in self.resting if o.open]
        return list(self.resting)

    def find(self, order_id: Any, link_id: Any) -> Order | None:
        if link_id:
            return self.by_link.get(str(link_id))
        if order_id:
            return next((o for o in self.orders if o.order_id == order_id), None)
        return None

    # -- matching ----------------------------------------------------------------------------

    def _enter(self, o: Order, now_ms: int) -> None:
        """A new or amended order meets the book: take, rest, or be cancelled."""
        bid, ask = self.best()
        crosses = o.order_type == "Market" or (o.price >= ask if o.sign > 0 else o.price <= bid)
        if not crosses:
            return
        if o.tif == "PostOnly":
            self._close(o, "UNKNOWN", POST_ONLY_REASON, now_ms)
            return
        if o.tif == "FOK" and self._available(o) < o.remaining - EPS:
            self._close(o, "UNKNOWN", "EC_CancelForNoFullFill", now_ms)
            return
        self._take(o, now_ms)
        if o.remaining > EPS and (o.order_type == "Market" or o.tif in ("IOC", "FOK")):
            reason = "EC_NoImmediateQtyToFill" if o.filled <= EPS else "EC_CancelForNoFullFill"
            self._close(o, "UNKNOWN", reason, now_ms)
        o.crossed = o.open  # the public book does not show what we took: do not take it twice

    def _levels(self, o: Order) -> list[tuple[float, float]]:
        bids, asks = self.book.top(1000)
        out = []
        for px_s, qty_s in asks if o.sign > 0 else bids:
            px = float(px_s)
            if o.order_type == "Limit" and (px > o.price if o.sign > 0 else px < o.price):
                break
            out.append((px, float(qty_s)))
        return out

    def _available(self, o: Order) -> float:
        return sum(q for _, q in self._levels(o))

    def _take(self, o: Order, now_ms: int) -> None:
        for px, avail in self._levels(o):
            q = self._cap(o, min(avail, o.remaining))
            if q <= EPS:
                break
            self._fill(o, q, px, False, now_ms)

    def on_trades(self, trades: list[dict[str, Any]], now_ms: int) -> None:
        """Public prints fill resting orders at or behind them (each print's size used once)."""
        for t in trades:
            price, left, taker = float(t["p"]), float(t["v"]), t.get("S")
            hit = [
                o
                for o in self.live()
                if (
                    (o.sign > 0 and taker == "Sell" and price <= o.price)
                    or (o.sign < 0 and taker == "Buy" and price >= o.price)
                )
            ]
            hit.sort(key=lambda o: (-o.sign * o.price, o.priority))
            for o in hit:
                q = self._cap(o, min(left, o.remaining))
                if q <= EPS:
                    continue
                self._fill(o, q, o.price, True, now_ms)
                left = round(left - q, 9)
                if left <= EPS:
                    break

    def on_book(self, now_ms: int) -> None:
        """The opposite best moved to or through a resting order: it fills (maker, at its price)."""
        resting = self.live()
        if not resting:
            return
        bid, ask = self.best()
        for o in sorted(resting, key=lambda o: o.priority):
            through = (o.sign > 0 and ask <= o.price) or (o.sign < 0 and bid >= o.price)
            if o.crossed:
                o.crossed = through
            elif through:
                q = self._cap(o, o.remaining)
                if q > EPS:
                    self._fill(o, q, o.price, True, now_ms)

    def fill_oldest(self, lots: int, now_ms: int) -> Order | None:
        """A fault's fill: the oldest resting order fills ``lots`` lots (at most its remainder) as maker."""
        resting = self.live()
        if not resting:
            return None
        o = resting[0]  # kept in the order they were created
        q = self._cap(o, min(o.remaining, round(lots * self.lot, 9)))
        if q > EPS:
            self._fill(o, q, o.price, True, now_ms)
        return o

    def _cap(self, o: Order, q: float) -> float:
        """Reduce-only orders never make the position bigger (nor flip it)."""
        if not o.reduce_only:
            return round(q, 9)
        room = abs(self.position.size) if self.position.size * o.sign < 0 else 0.0
        if room <= EPS:
            self._close(o, "UNKNOWN", "EC_ReduceOnlyOrderCancelled", o.updated_ms)
        return round(min(q, room), 9)

    def _fill(self, o: Order, q: float, px: float, maker: bool, now_ms: int) -> None:
        rate = self.maker_fee if maker else self.taker_fee
        value = q * px
        fee = value * rate
        closed = self._book_position(o.sign * q, px, fee, now_ms)
        o.filled = round(o.filled + q, 9)
        o.value += value
        o.fee += fee
        o.updated_ms = now_ms
        o.status = "Filled" if o.remaining <= EPS else "PartiallyFilled"
        self.seq += 1
        self.executions.append(
            Execution(str(uuid.uuid4()), o, q, px, fee, rate, maker, closed, o.remaining, self.mark(), now_ms, self.seq)
        )

    def _book_position(self, signed: float, px: float, fee: float, now_ms: int) -> float:
        """Apply a fill to the one-way position and the wallet; returns the size it closed."""
        pos = self.position
        closed = 0.0
        if pos.size * signed >= 0:  # opening or adding
            total = abs(pos.size) + abs(signed)
            pos.avg = (abs(pos.size) * pos.avg + abs(signed) * px) / total
        else:
            closed = min(abs(signed), abs(pos.size))
            pnl = closed * (px - pos.avg) * (1 if pos.size > 0 else -1)
            pos.realised += pnl
            self.balance += pnl
            if abs(signed) > abs(pos.size) + EPS:  # flipped: the rest opens at this price
                pos.avg = px
        pos.size = round(pos.size + signed, 9)
        if abs(pos.size) <= EPS:
            pos.size, pos.avg = 0.0, 0.0
        pos.realised -= fee
        self.balance -= fee
        pos.updated_ms = now_ms
        return closed

    def _close(self, o: Order, cancel_type: str, reason: str, now_ms: int) -> None:
        o.status = "PartiallyFilledCanceled" if o.filled > EPS and o.order_type == "Market" else "Cancelled"
        o.cancel_type, o.reject_reason, o.updated_ms = cancel_type, reason, now_ms

    # -- validation --------------------------------------------------------------------------

    def _qty(self, text: Any) -> float:
        qty = _grid(text, self.lot)
        if qty is None or qty <= 0:
            raise OrderError(10001, "params error: Qty invalid")
        if qty < self.min_qty - EPS:
            raise OrderError(10001, "The number of contracts exceeds minimum limit allowed")
        return qty

    def _price(self, text: Any) -> float:
        price = _grid(text, self.tick)
        if price is None or price <= 0:
            raise OrderError(10001, "params error: price invalid")
        return price


def _grid(text: Any, step: float) -> float | None:
    """The number if it is on the grid of ``step``, else None (Bybit refuses off-grid values)."""
    try:
        value = Decimal(str(text))
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or value % Decimal(repr(step)) != 0:
        return None
    return float(value)


def decimals(step: float) -> int:
    """Decimal places of a tick or lot size (0.1 -> 1)."""
    return max(0, -int(Decimal(repr(step)).normalize().as_tuple().exponent))
