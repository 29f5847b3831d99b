"""The live gateway's local books: our orders, position and cash from executions, journal events.

No I/O here: ``live.bybit_gateway`` feeds it what the exchange answers (Bybit's rows). Orders carry both ids,
the local int the strategy knows and Bybit's client order id ``{run_id}-{n}``; every change is
an event the runner journals (``take_events``), in order, as plain JSON.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from core.clock import Clock
from execution.types import OrderKind
from execution.venue import OpenOrder

log = logging.getLogger(__name__)

EPS = 1e-9
Request = tuple[str, int, float | None, float | None]  # (what, order id, price, qty)


class Redact(logging.Filter):
    """Takes the key and the secret out of text, and out of the log records it filters (ccxt's)."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.scrub(record.getMessage()), ()
        return True


@dataclass
class LiveOrder:
    oid: int
    client_id: str
    side: int
    qty: float  # requested size (Bybit: the total, filled part included)
    price: float  # NaN for market orders
    kind: OrderKind
    tag: int
    filled: float = 0.0
    exchange_id: str = ""
    state: str = "queued"  # queued -> open -> done; "unknown" while a create without answer is looked up
    resends: int = 0
    deferred: list[Request] = field(default_factory=list)  # requests waiting for an unknown create

    @property
    def ccxt_side(self) -> str:
        return "buy" if self.side > 0 else "sell"


class Ledger:
    """Orders by local and client id, the position and cash they built, and the events."""

    def __init__(self, run_id: str, clock: Clock) -> None:
        self.run_id = run_id
        self.prefix = run_id + "-"
        self.clock = clock
        self.orders: dict[int, LiveOrder] = {}
        self.by_client: dict[str, LiveOrder] = {}
        self.position = 0.0
        self.cash = 0.0  # wallet balance less what the position cost: equity = cash + position x mid
        self.mark = math.nan  # last fill price: values the position while there is no book
        self.fees = 0.0  # paid on this session's executions
        self.next_id = 1
        self.exec_since_ms = 0
        self._events: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()

    def new_order(self, side: int, qty: float, price: float, kind: OrderKind, tag: int) -> LiveOrder:
        oid = self.next_id
        self.next_id += 1
        o = LiveOrder(oid, f"{self.prefix}{oid}", side, qty, price, kind, tag)
        self.orders[oid] = self.by_client[o.client_id] = o
        return o

    def adopt(self, row: dict[str, Any], oid: int) -> LiveOrder:
        """An order the exchange has open (Bybit's order row) under its journaled local id."""
        kind = OrderKind.MARKET if row["orderType"] == "Market" else OrderKind.LIMIT
        side = 1 if row["side"] == "Buy" else -1
        price = float(row["price"]) if kind == OrderKind.LIMIT else math.nan
        o = LiveOrder(oid, row["orderLinkId"], side, float(row["qty"]), price, kind, 0)
        o.filled, o.exchange_id, o.state = float(row.get("cumExecQty") or 0.0), row["orderId"], "open"
        self.orders[oid] = self.by_client[o.client_id] = o
        self.next_id = max(self.next_id, oid + 1)
        return o

    def restore(
        self,
        wallet_balance: float,
        position: dict[str, Any],
        orders: list[dict[str, Any]],
        executions: list[dict[str, Any]],
        known: dict[str, int],
    ) -> None:
        """Start from the exchange's word (Bybit rows): wallet, position, open orders, executions.

        ``known`` maps the client ids the journal says were sent to their local ids. Open orders
        of this run are adopted under those ids; executions newer than the position (Bybit's
        ``seq``) are applied, older ones only remembered; no client id seen is ever used again.
        """
        size = float(position.get("size") or 0.0) * (-1.0 if position.get("side") == "Sell" else 1.0)
        seq = str(position.get("seq", ""))
        pos_seq = int(seq) if seq.lstrip("-").isdigit() else None  # the last execution in the position
        self.position, self.mark = size, float(position.get("avgPrice") or 0.0)
        self.cash = wallet_balance - size * self.mark
        self.next_id = max([self.next_id, *(n + 1 for n in known.values())])
        trades = [e for e in executions if e.get("execType", "Trade") == "Trade"]
        newer = [e for e in trades if pos_seq is not None and int(e.get("seq") or 0) > pos_seq]
        for row in orders:
            cid = row.get("orderLinkId") or ""
            oid = known.get(cid) or self.local_id(cid)
            if oid is None:
                log.warning("bybit: open order %s is not this run's: left alone", row.get("orderId"))
                continue
            o = self.adopt(row, oid)
            # the row's cumExecQty may or may not hold the fills after the position (read before the
            # rows): its fills read last (all of them if it is younger than the executions asked for)
            # say what it has, the newer ones are added back as they are applied below
            listed = sum(float(e["execQty"]) for e in trades if e.get("orderLinkId") == cid)
            added = sum(float(e["execQty"]) for e in newer if e.get("orderLinkId") == cid)
            o.filled = round(max(o.filled, listed) - added, 9)
            self.event("ack", o, detail=f"adopted orderId={o.exchange_id}")
        for e in executions:
            self.next_id = max(self.next_id, (self.local_id(e.get("orderLinkId") or "") or 0) + 1)
            if pos_seq is not None and int(e.get("seq") or 0) > pos_seq:
                self.apply(e)  # filled after the position was read
            else:
                self.remember(e["execId"])
        if executions:  # all read: the polls ask from the newest on, not for the whole day again each time
            self.exec_since_ms = max(self.exec_since_ms, max(int(e["execTime"]) for e in executions) - 5_000)
        log.info("bybit: position %s, %d open orders adopted", size, len(self.orders))

    def local_id(self, client_id: str) -> int | None:
        """n of one of this run's client ids ``{run_id}-{n}``, else None."""
        tail = client_id[len(self.prefix) :] if client_id.startswith(self.prefix) else ""
        return int(tail) if tail.isdigit() else None

    def open_orders(self) -> list[OpenOrder]:
        return [
            OpenOrder(o.oid, o.tag, o.side, o.price, o.qty, o.filled) for o in self.orders.values() if o.state != "done"
        ]

    def active(self, state: str) -> list[LiveOrder]:
        return [o for o in self.orders.values() if o.state == state]

    def equity(self, mid: float) -> float:
        if self.position == 0.0:
            return self.cash
        return self.cash + self.position * (mid if math.isfinite(mid) else self.mark)

    # -- executions --------------------------------------------------------------------------

    def apply(self, e: dict[str, Any]) -> bool:
        """One execution (Bybit's row), once: position, cash, the order's fill, a fill event."""
        if e["execId"] in self._seen or e.get("execType", "Trade") != "Trade":
            return False
        self.remember(e["execId"])
        self.exec_since_ms = max(self.exec_since_ms, int(e["execTime"]) - 5_000)
        side = 1 if e["side"] == "Buy" else -1
        qty, price, fee = float(e["execQty"]), float(e["execPrice"]), float(e["execFee"] or 0.0)
        self.position = round(self.position + side * qty, 9)
        self.cash -= side * qty * price + fee
        self.fees += fee
        self.mark = price
        o = self.by_client.get(e.get("orderLinkId") or "")
        if o is not None:
            o.filled = round(o.filled + qty, 9)
        maker = e.get("isMaker") in (True, "true", "True")
        detail = "" if o is not None else f"no order of ours open: orderLinkId={e.get('orderLinkId') or '-'}"
        self.event("fill", o, side=side, price=price, qty=qty, fee=fee, maker=maker, detail=detail)
        return True

    def remember(self, exec_id: str) -> None:
        self._seen.add(exec_id)
        self._seen_order.append(exec_id)
        if len(self._seen_order) > 100_000:
            self._seen.discard(self._seen_order.popleft())

    # -- events ------------------------------------------------------------------------------

    def finish(self, o: LiveOrder, kind: str, detail: str = "") -> bool:
        o.state = "done"
        self.event(kind, o, detail=detail)
        return True

    def event(self, kind: str, o: LiveOrder | None = None, **fields: Any) -> None:
        ev: dict[str, Any] = {"kind": kind, "ts_ns": self.clock.now_ns()}
        if o is not None:
            ev.update(order_id=o.oid, client_id=o.client_id, side=o.side, qty=o.qty, filled=o.filled, tag=o.tag)
            if math.isfinite(o.price):
                ev["price"] = o.price
        ev.update({k: v for k, v in fields.items() if not (isinstance(v, float) and not math.isfinite(v))})
        self._events.append(ev)

    def take_events(self) -> list[dict[str, Any]]:
        out, self._events = self._events, []
        return out
