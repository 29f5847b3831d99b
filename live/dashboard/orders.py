"""Our orders with their lifecycle, as the journal tells it: submit, amends, cancel, fills, the end.

The paper gateway ends an order with ``done`` (status FILLED, CANCELLED, REJECTED, EXPIRED; a
post-only order that would have taken is REJECTED), the live gateway with ``filled`` or
``cancelled`` (Bybit's reject reason in its detail, e.g. EC_PostOnlyWillTakeLiquidity). A live
``reject`` refuses one request (an amend or a cancel too late): the order itself goes on.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

ORDERS = 20_000  # orders kept (the oldest dropped)
# an order's last record (live: what Bybit said); "refused" is one request turned down, the order stays
_ENDS = {"done": "", "filled": "FILLED", "cancelled": "CANCELLED", "reject": "REJECTED"}


@dataclass
class Order:
    id: int
    session: int
    ts: int  # submitted
    side: int
    kind: str  # LIMIT, MARKET
    tag: int
    price: float  # as last asked (amends included)
    qty: float
    first_price: float = math.nan
    filled: float = 0.0
    amends: int = 0
    events: list[tuple[int, str, float]] = field(default_factory=list)  # (ts, what, price) after the submit
    status: str = "OPEN"
    ended: int | None = None
    detail: str = ""

    @property
    def post_only_reject(self) -> bool:
        return (self.status == "REJECTED" and self.kind == "LIMIT") or "PostOnly" in self.detail

    def lifecycle(self) -> str:
        """ "submit 64,971.2 > amend 64,971.3 > fill 0.010 > FILLED"."""
        steps = [f"submit {_px(self.first_price)}"]
        for _, what, price in self.events[-6:]:
            steps.append(f"{what} {_px(price)}" if what == "amend" else what)
        if len(self.events) > 6:
            steps.insert(1, f"({len(self.events) - 6} earlier)")
        if self.ended is not None:
            steps.append(self.status + (" (post-only)" if self.post_only_reject else ""))
        return " > ".join(steps)

    def as_row(self) -> dict[str, Any]:
        return {
            "id": self.id, "ts": self.ts, "side": self.side, "kind": self.kind, "price": self.price,
            "qty": self.qty, "filled": self.filled, "amends": self.amends, "status": self.status,
            "ended": self.ended, "post_only_reject": self.post_only_reject, "lifecycle": self.lifecycle(),
            "detail": self.detail,
        }  # fmt: skip


def _px(p: float) -> str:
    return f"{p:,.1f}" if math.isfinite(p) else "market"


class OrderHistory:
    def __init__(self) -> None:
        self.orders: OrderedDict[int, Order] = OrderedDict()

    def open(self) -> list[Order]:
        return [o for o in self.orders.values() if o.ended is None]

    def on(self, kind: str, ts: int, oid: int | None, session: int, d: dict[str, Any]) -> None:
        """Fold one journal record (records of other kinds are ignored)."""
        if oid is None:
            if kind == "cancel_all":
                for o in self.open():
                    o.events.append((ts, "cancel all", math.nan))
            return
        oid = int(oid)
        if kind == "submit":
            price = float(d.get("price", math.nan) if d.get("price") is not None else math.nan)
            kind_name = str(d.get("order_kind") or d.get("detail") or "LIMIT").upper()
            side, tag, qty = int(d.get("side", 0)), int(d.get("tag", 0)), float(d.get("qty", 0.0))
            self.orders[oid] = Order(oid, session, ts, side, kind_name, tag, price, qty, first_price=price)
            if len(self.orders) > ORDERS:
                self.orders.popitem(last=False)
            return
        if oid not in self.orders:
            return
        o = self.orders[oid]
        if kind == "amend":
            o.amends += 1
            if d.get("price") is not None:
                o.price = float(d["price"])
            if d.get("qty") is not None:
                o.qty = float(d["qty"])
            o.events.append((ts, "amend", o.price))
        elif kind == "cancel":
            o.events.append((ts, "cancel", math.nan))
        elif kind == "refused":
            o.events.append((ts, "refused: " + str(d.get("detail", "")), math.nan))
        elif kind == "fill":
            o.filled += float(d.get("qty", 0.0))
            qty, price = float(d.get("qty", 0.0)), float(d.get("price", math.nan))
            o.events.append((ts, f"fill {qty:.3f} @ {_px(price)}", price))
        elif kind in _ENDS:
            o.ended = ts
            o.status = _ENDS[kind] or str(d.get("status", "DONE"))
            o.detail = str(d.get("detail", ""))
            if d.get("price") is not None and math.isfinite(float(d["price"])):
                o.price = float(d["price"])
            if d.get("filled") is not None:
                o.filled = max(o.filled, float(d["filled"]))
