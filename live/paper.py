"""The paper gateway: the execution engine's simulated exchange, fed by the live ticks.

The same matching engine (queue position, latency, fees, funding) as the backtester, driven by
``push_book`` / ``push_trade`` instead of recorded blocks, so a paper run and a backtest of the
same data trade alike (tests/test_runner.py proves it on a replay). The engine never runs ahead
of the feed: before a tick is pushed it is run up to just before the tick's exchange time, so every
exchange event is in the engine before the simulated exchange reaches its time. Decisions happen
on the local clock at their time (the runner's rows: grid time + delay in a replay, the arrival
of the tick that made them due on a live feed), so an order reaches the paper exchange an entry
latency after the runner decided to send it (tests/test_paper_clock.py).

Order ids continue across sessions (the journal's last id + the engine's id), and every request,
report and fill becomes a journal event (``take_events``). The account opens from the journal's
last ``account`` record: a restart keeps position, cash, fees and funding. Orders resting on the
paper exchange when the process died died with it; the runner records them as cancelled.
"""

from __future__ import annotations

import math
from typing import Any

from core.config import AppConfig
from core.records import Book
from execution.backtest import engine_config
from execution.engine import Engine, Wake
from execution.types import OrderKind, OrderStatus
from execution.venue import BookView, OpenOrder
from live.feed import Tick
from warehouse.journal import Restored

WAKE = Wake.FILL | Wake.ORDER | Wake.BOOK


class PaperGateway:
    """A ``RunnerGateway`` (live/gateway.py): the runner feeds it ticks and runs it to its decisions."""

    name = "paper"

    def __init__(self, cfg: AppConfig, account: dict[str, Any] | None, first_id: int, sample_ns: int) -> None:
        a = account or {}
        self.engine = Engine(
            engine_config(cfg),
            cfg.features.levels,
            sample_ns,
            cash=float(a.get("cash", cfg.live.equity)),
            position=float(a.get("position", 0.0)),
        )
        self.offset = first_id  # journal order id = offset + engine id
        self.fees_before = float(a.get("fees", 0.0))
        self.funding_before = float(a.get("funding", 0.0))
        self._fills_seen = 0
        self._open: dict[int, OpenOrder] = {}
        self._events: list[dict[str, Any]] = []
        self.errors = 0
        self.rate_limited = 0
        self.post_only_rejects = 0  # new orders and amends refused because they would have taken
        self._counted_rl = 0

    # -- the market ----------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        if isinstance(tick, Book):
            self.engine.push_book(tick.ts_ex, tick.ts_local, tick.bid_px, tick.bid_qty, tick.ask_px, tick.ask_qty)
        else:
            self.engine.push_trade(tick.ts_ex, tick.ts_local, tick.price, tick.qty, tick.side)

    def run_to(self, t: int) -> bool:
        """Run the simulated exchange and our local view up to ``t`` or the first wake on the way."""
        if t <= self.engine.now:
            return False
        hit = self.engine.run_until(t, WAKE)
        if hit != Wake.NONE:
            self._collect()
        return hit != Wake.NONE

    def ready_until(self, ts: int) -> int:
        return ts - 1  # the exchange never runs ahead of the feed: the tick stamped ts is not in yet

    def passed(self, t: int) -> bool:
        return t <= self.engine.now

    async def pause(self, ns: int) -> None:
        return  # the data's clock: the loop runs the exchange on with run_to

    # -- the session ---------------------------------------------------------------------------

    async def begin(self, restored: Restored, now_ns: int) -> None:
        """Orders that rested on the paper exchange of a dead process died with it: cancelled."""
        for oid in restored.open_orders:
            self._events.append(
                {"kind": "done", "ts_ns": now_ns, "order_id": oid, "status": "CANCELLED",
                 "detail": "the paper exchange restarted with the runner"}
            )  # fmt: skip

    async def sync(self) -> bool:
        return False  # nothing to send: the simulated exchange answers as it is run

    async def aclose(self) -> None:
        return None

    # -- Gateway -------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.engine.now

    def book(self) -> BookView:
        return self.engine.book()

    def position(self) -> float:
        return self.engine.position()

    def equity(self) -> float:
        return self.engine.equity()

    def open_orders(self) -> list[OpenOrder]:
        k = self.offset
        return [OpenOrder(o.order_id + k, o.tag, o.side, o.price, o.qty, o.filled) for o in self.engine.open_orders()]

    def submit(
        self, side: int, qty: float, price: float = math.nan, kind: OrderKind = OrderKind.LIMIT, *, tag: int = 0
    ) -> int:
        oid = self.engine.submit(side, qty, price, kind, post_only=kind == OrderKind.LIMIT, tag=tag) + self.offset
        self._open[oid] = OpenOrder(oid, tag, side, price, qty, 0.0)
        self._event("submit", oid, side=side, qty=qty, price=price, order_kind=OrderKind(kind).name, tag=tag)
        return oid

    def amend(self, order_id: int, price: float | None = None, qty: float | None = None) -> None:
        self.engine.amend(order_id - self.offset, price, qty)
        self._event("amend", order_id, price=price, qty=qty)

    def cancel(self, order_id: int) -> None:
        self.engine.cancel(order_id - self.offset)
        self._event("cancel", order_id)

    def cancel_all(self) -> None:
        self.engine.cancel_all()
        self._event("cancel_all", None)

    # -- reports -------------------------------------------------------------------------------

    def _event(self, what: str, order_id: int | None, **data: Any) -> None:
        self._events.append({**data, "kind": what, "ts_ns": self.engine.now, "order_id": order_id})

    def _collect(self) -> None:
        e = self.engine
        for f in e.fills(self._fills_seen):
            if f["ts_local"] > e.now:
                break  # not delivered yet
            self._fills_seen += 1
            self._event(
                "fill",
                int(f["order_id"]) + self.offset,
                ts_ex=int(f["ts_ex"]),
                side=int(f["side"]),
                price=float(f["price"]),
                qty=float(f["qty"]),
                fee=float(f["fee"]),
                maker=bool(f["maker"]),
                tag=int(f["tag"]),
            )
        still = {o.order_id + self.offset for o in e.open_orders()}
        for oid in [k for k in self._open if k not in still]:
            status = e.order_status(oid - self.offset)
            price, qty, filled = e.order_terms(oid - self.offset)
            del self._open[oid]
            self._event("done", oid, status=OrderStatus(status).name, price=price, qty=qty, filled=filled)
        c = e.counters()
        self.post_only_rejects = c.post_only_rejects
        if c.rate_limit_rejects > self._counted_rl:
            self.rate_limited += c.rate_limit_rejects - self._counted_rl
            self._counted_rl = c.rate_limit_rejects

    def take_events(self) -> list[dict[str, Any]]:
        self._collect()
        out, self._events = self._events, []
        return out

    def account(self) -> dict[str, float]:
        """The account as the delivered reports tell it, with the earlier sessions' fees and funding."""
        e = self.engine
        return {
            "position": e.position(),
            "cash": e.cash(),
            "equity": e.equity(),
            "fees": self.fees_before + e.fees_paid(),
            "funding": self.funding_before + e.funding_paid(),
        }
