"""The live gateway's conversation with Bybit's v5 REST API: the queued requests sent in order, the
polls that reconcile our orders and executions, and the restore at start.

``BybitGateway`` (live/bybit_gateway.py) is this plus the strategies' side: its Gateway calls only
change local state and queue a request, and ``sync`` here sends the queue in order, then polls
open orders and executions (every ``poll_ns``, and at once after a request). Our books are the
``Ledger`` (live/bybit_ledger.py); this module feeds it what the exchange answers.

Client order ids are ``{run_id}-{n}`` (n = the local int id). A create whose answer is lost
(timeout, dropped connection) is never sent blind: the order is looked up by its orderLinkId,
adopted if the exchange has it, sent again (same id) only if the exchange says it does not exist.
Bybit refuses a second order with an orderLinkId it knows (retCode 110072): that also means "it
exists", and it is looked up. Cancels that fail for a transient reason (no answer, a rate limit,
Bybit's 10016 system error) are retried until done. A cancel-all is a cancel of each of our open
orders (and of an order whose create is unanswered, once it is found), never Bybit's
/v5/order/cancel-all: that takes every order on the symbol, another run's on the same account and
one a person placed by hand included, and would take orders sent after it if retried.

ccxt's throttle is off: its one bucket (50 units/s, 5 per order or execution query) would be
spent on polling alone and hold orders behind polls. The gateway paces itself: polls every
``poll_ns``, the strategies keep orders under Bybit's 10/s, and a 10006 stops polling for ``backoff_ns``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import ccxt

from core.clock import Clock
from execution.types import OrderKind
from live.bybit_ledger import EPS, Ledger, LiveOrder, Redact, Request
from market.sources.bybit import short_error

log = logging.getLogger("live.bybit_gateway")  # the gateway's logger: one name to filter or raise

_DAY_MS = 24 * 3_600_000  # executions are asked for at most this far back (Bybit: startTime + 7 days)
_SYSTEM_ERROR = '"retCode":10016'  # Bybit's "System error. Please try again later." (ccxt: ExchangeError)
_DONE = ("Filled", "Cancelled", "PartiallyFilledCanceled", "Rejected", "Deactivated")


class BybitRest:
    """Requests to Bybit and the reconciliation of their answers; counts errors and rate limits."""

    def __init__(
        self,
        ledger: Ledger,
        symbol: str,
        venue_symbol: str,
        clock: Clock,
        redact: Redact,
        poll_ns: int,
        backoff_ns: int,
    ) -> None:
        self.ledger = ledger
        self.symbol = symbol
        self.venue_symbol = venue_symbol
        self.clock = clock
        self.poll_ns = poll_ns
        self.backoff_ns = backoff_ns
        self.errors = 0
        self.rate_limited = 0
        self.post_only_rejects = 0  # Bybit's EC_PostOnlyWillTakeLiquidity
        self.exchange: Any = None  # ccxt.pro.bybit, from start() to aclose()
        self._redact = redact
        self._queue: deque[Request] = deque()
        self._retry: list[Request] = []
        self._next_poll = -(2**62)
        self._quiet_until = -(2**62)  # no polling before this (monotonic ns): backing off a rate limit
        self._lock = asyncio.Lock()

    async def sync(self) -> bool:
        """Send the queued requests in order, then poll; True if the strategy should look again."""
        if self.exchange is None:
            raise RuntimeError("BybitGateway.sync() before start() (or after aclose())")
        async with self._lock:
            changed = False
            for o in self.ledger.active("unknown"):
                changed |= await self._resolve(o)
            waiting = len(self._retry)  # what failed before this pass: what fails in it waits for the next
            sent = bool(self._queue)
            while self._queue:
                changed |= await self._send(*self._queue.popleft())
            now = self.clock.monotonic_ns()
            due = now >= self._next_poll and now >= self._quiet_until
            if due and waiting:
                retry, self._retry = self._retry[:waiting], self._retry[waiting:]
                for req in retry:
                    changed |= await self._send(*req)
            if (sent or due) and self.clock.monotonic_ns() >= self._quiet_until:
                changed |= await self._poll()
            return changed

    async def _restore(self, known: dict[str, int]) -> None:
        """Wallet, position, our open orders and the executions of the last day, into the ledger."""
        ex = self.exchange
        balance = await ex.fetch_balance()
        wallet = next(c for a in balance["info"]["result"]["list"] for c in a["coin"] if c["coin"] == "USDT")
        rows = [p["info"] for p in await ex.fetch_positions([self.symbol])]
        position: dict[str, Any] = next((p for p in rows if p.get("symbol") == self.venue_symbol), {})
        orders = [o["info"] for o in await ex.fetch_open_orders(self.symbol, None, 50)]
        executions = await self._executions(self.clock.now_ns() // 1_000_000 - _DAY_MS)
        self.ledger.restore(float(wallet["walletBalance"]), position, orders, executions, known)

    # -- requests ----------------------------------------------------------------------------

    async def _send(self, what: str, oid: int, price: float | None, qty: float | None) -> bool:
        if what == "cancel_all":  # ours, one by one: Bybit's cancel-all would take every order on the symbol
            for o in self.ledger.active("unknown"):
                o.deferred.append(("cancel", o.oid, None, None))
            changed = False
            for o in self.ledger.active("open"):
                changed |= await self._send("cancel", o.oid, None, None)
            return changed
        o = self.ledger.orders[oid]
        if o.state == "done":
            if what == "amend":
                self.ledger.event("refused", o, detail="amend: the order is no longer open")
            return False
        if o.state == "unknown":
            o.deferred.append((what, oid, price, qty))
            return False
        if what == "submit":
            return await self._create(o)
        if what == "amend" and o.kind == OrderKind.MARKET:
            self.ledger.event("refused", o, detail="amend: a market order cannot be amended")
            return False
        try:
            if what == "amend":
                await self.exchange.edit_order(o.exchange_id, self.symbol, "limit", o.ccxt_side, qty, price)
                o.price, o.qty = (o.price if price is None else price), (o.qty if qty is None else qty)
                self.ledger.event("ack", o, detail="amend")
                return True
            await self.exchange.cancel_order(o.exchange_id, self.symbol)
            self.ledger.event("ack", o, detail="cancel")
        except ccxt.OrderNotFound:  # filled or cancelled meanwhile: the poll says which
            self.ledger.event("refused", o, detail=f"{what}: too late, the order is no longer open")
        except ccxt.BaseError as exc:
            if "remains unchanged" in str(exc):  # Bybit 10001 for an amend to the same price and size
                self.ledger.event("refused", o, detail=f"{what}: nothing to change")
                return False
            self._failed(exc, o, what)
            if what == "cancel" and transient(exc):
                self._retry.append((what, oid, price, qty))  # a cancel is never given up
        return False

    async def _create(self, o: LiveOrder, note: str = "") -> bool:
        market = o.kind == OrderKind.MARKET
        params: dict[str, Any] = {"orderLinkId": o.client_id} | ({} if market else {"timeInForce": "PostOnly"})
        try:
            res = await self.exchange.create_order(
                self.symbol, "market" if market else "limit", o.ccxt_side, o.qty, None if market else o.price, params
            )
        except ccxt.InvalidOrder as exc:
            if "110072" not in str(exc):  # 110072: OrderLinkedID is duplicate, i.e. it exists
                return self._reject(o, exc)
            o.state = "unknown"
            return await self._resolve(o)
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.InvalidNonce) as exc:
            return self._reject(o, exc)  # refused before the matching engine saw it
        except ccxt.NetworkError as exc:  # no answer: it may or may not exist
            self._failed(exc, o, "submit")
            o.state = "unknown"
            return await self._resolve(o)
        except ccxt.BaseError as exc:
            return self._reject(o, exc)
        o.exchange_id, o.state = str(res["id"]), "open"
        self.ledger.event("ack", o, detail=f"orderId={o.exchange_id}{note}")
        return await self._replay(o)

    async def _resolve(self, o: LiveOrder) -> bool:
        """A create without an answer: adopt the order if the exchange has it, else send it again."""
        try:
            row = await self._lookup(o.client_id)
        except ccxt.BaseError as exc:
            self._failed(exc, o, "lookup")
            return False  # still unknown: looked up again at the next sync, never sent blind
        if row is None:
            later = [*o.deferred, *(r for r in self._queue if r[0] == "cancel_all" or r[1] == o.oid)]
            if any(req[0] in ("cancel", "cancel_all") for req in later):  # never sent again to be cancelled
                return self.ledger.finish(o, "cancelled", "cancelled before it reached the exchange")
            if o.resends >= 3:
                self.errors += 1
                return self.ledger.finish(o, "reject", "the exchange does not know it after 3 sends: given up")
            o.resends += 1
            o.state = "open"  # _create marks it unknown again if this answer is lost too
            return await self._create(o, " (sent again: the exchange did not have it)")
        if row["side"] != o.ccxt_side.capitalize() or abs(float(row["qty"]) - o.qty) > EPS:
            self.errors += 1
            return self.ledger.finish(o, "reject", f"client id {o.client_id} belongs to another order on the exchange")
        o.exchange_id, o.state = row["orderId"], "open"
        self.ledger.event("ack", o, detail=f"recovered orderId={o.exchange_id}")
        return await self._replay(o)

    async def _replay(self, o: LiveOrder) -> bool:
        deferred, o.deferred = o.deferred, []
        changed = False
        for req in deferred:
            changed |= await self._send(*req)
        return changed

    async def _lookup(self, client_id: str) -> dict[str, Any] | None:
        """Bybit's row of one order, open or recently closed, by client id (None: no such order)."""
        res = await self.exchange.privateGetV5OrderRealtime(
            {"category": "linear", "symbol": self.venue_symbol, "orderLinkId": client_id}
        )
        rows = res.get("result", {}).get("list") or []
        return rows[0] if rows else None

    # -- polling -----------------------------------------------------------------------------

    async def _poll(self) -> bool:
        led = self.ledger
        since = max(led.exec_since_ms, self.clock.now_ns() // 1_000_000 - _DAY_MS)
        try:
            rows = [o["info"] for o in await self.exchange.fetch_open_orders(self.symbol, None, 50)]
            execs = await self._executions(since)
        except ccxt.BaseError as exc:
            self._failed(exc, None, "poll")
            return False
        self._next_poll = self.clock.monotonic_ns() + self.poll_ns
        changed = False
        for e in execs:
            changed |= led.apply(e)
        listed = {r.get("orderLinkId"): r for r in rows}
        for o in led.active("open"):
            r = listed.get(o.client_id)
            if r is not None:
                price, qty = float(r["price"]), float(r["qty"])
                if o.kind == OrderKind.LIMIT and (price, qty) != (o.price, o.qty):
                    o.price, o.qty, changed = price, qty, True
            elif o.filled >= o.qty - EPS:
                changed |= led.finish(o, "filled")
            else:
                changed |= await self._vanished(o)
        return changed

    async def _vanished(self, o: LiveOrder) -> bool:
        """Not open any more and not fully filled: ask the exchange what became of it."""
        try:
            row = await self._lookup(o.client_id)
        except ccxt.BaseError as exc:
            self._failed(exc, o, "lookup")
            return False
        if row is None or row["orderStatus"] not in _DONE or float(row["cumExecQty"] or 0) > o.filled + EPS:
            return False  # not visible yet, or fills still to come: the next poll
        if row["orderStatus"] == "Filled":
            return self.ledger.finish(o, "filled")
        reason = row.get("rejectReason") or ""
        self.post_only_rejects += reason == "EC_PostOnlyWillTakeLiquidity"
        why = reason if reason not in ("", "EC_NoError", "EC_PerCancelRequest") else row.get("cancelType") or "cancel"
        return self.ledger.finish(o, "cancelled", why)

    async def _executions(self, since_ms: int) -> list[dict[str, Any]]:
        """Bybit's execution rows of the symbol since ``since_ms`` (every page), oldest first."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        for _ in range(10):
            trades = await self.exchange.fetch_my_trades(self.symbol, since_ms, 100, params)
            out.extend(t["info"] for t in trades)
            cursor = next((t["info"]["nextPageCursor"] for t in trades if t["info"].get("nextPageCursor")), "")
            if not cursor or len(trades) < 100:
                break
            params = {"cursor": cursor}
        out.sort(key=lambda e: (int(e["execTime"]), int(e.get("seq") or 0)))
        return out

    # -- failures ----------------------------------------------------------------------------

    def _reject(self, o: LiveOrder, exc: Exception) -> bool:
        self._count(exc)
        return self.ledger.finish(o, "reject", self._scrub(exc))

    def _failed(self, exc: Exception, o: LiveOrder | None, what: str) -> None:
        self._count(exc)
        text = f"{what}: {self._scrub(exc)}"
        log.warning("bybit: %s", text)
        self.ledger.event("error", o, detail=text)

    def _count(self, exc: Exception) -> None:
        if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            self.rate_limited += 1
            self._quiet_until = self.clock.monotonic_ns() + self.backoff_ns
        else:
            self.errors += 1

    def _scrub(self, exc: Exception) -> str:
        """One line without the key or the secret (Bybit echoes the signed text on a 10004)."""
        return self._redact.scrub(f"{type(exc).__name__}: {short_error(exc)}")


def transient(exc: Exception) -> bool:
    """A failure worth sending the same request again for: no answer, a rate limit, a system error."""
    return isinstance(exc, ccxt.NetworkError) or _SYSTEM_ERROR in str(exc)
