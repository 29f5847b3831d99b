"""The live order gateway: a ``RunnerGateway`` (live/gateway.py) over ccxt's Bybit v5 REST client.

Strategies are synchronous: the Gateway calls only change local state and queue a request, and
``await sync()`` sends the queue in order, then polls open orders and executions (every
``poll_ns``, and at once after a request). A ``submit`` event exists from the moment the order
is queued: journal ``take_events()`` before ``sync()`` too, and the client id is on disk first.
The requests, their retries and the polls are ``BybitRest``'s (live/bybit_rest.py: client ids,
lost answers and pacing are described there); our books are the ``Ledger`` (live/bybit_ledger.py).

``start()`` takes the exchange as the truth: USDT wallet, position, our open orders (adopted under
their journaled ids) and the executions newer than the position (Bybit's ``seq``). After that,
position and cash follow the executions. Keys are never logged, journaled or put into errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import Any

import ccxt
import ccxt.pro
import numpy as np

from core.clock import Clock, SystemClock
from core.config import AppConfig
from core.errors import UnavailableError, UserError
from core.records import Book
from execution.types import OrderKind
from execution.venue import BookView, OpenOrder
from live.bybit_ledger import Ledger, LiveOrder, Redact
from live.bybit_rest import BybitRest, log, transient
from live.feed import Tick
from market.sources.bybit import point_at
from warehouse.journal import Restored

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,26}$")  # orderLinkId: <= 36 characters of [A-Za-z0-9_-]
_AUTH = {
    "10003": "the API key is invalid",
    "10004": "the signature was refused (wrong secret?)",
    "10005": "the API key lacks permissions",
    "10010": "this IP is not bound to the API key",
}
_CCXT_LOG = logging.getLogger(__name__ + ".ccxt")  # ccxt's debug lines carry the request headers (the key)
_CCXT_LOG.setLevel(logging.WARNING)
_NO_LIMIT = 2**63 - 1


class BybitGateway(BybitRest):
    """Bybit linear perpetual orders through ccxt: a ``RunnerGateway`` (``start`` / ``sync`` / ``aclose``).

    It runs on the exchange's clock: the ticks only tell it the book, and a decision is taken at once."""

    name = "bybit"

    def __init__(
        self,
        cfg: AppConfig,
        api_key: str,
        secret: str,
        run_id: str,
        clock: Clock | None = None,
        *,
        poll_ns: int = 200_000_000,
        backoff_ns: int = 1_000_000_000,
    ) -> None:
        if not _RUN_ID.match(run_id):
            raise UserError(f"run id {run_id!r}: 1-26 characters of A-Z a-z 0-9 _ - (it prefixes Bybit orderLinkIds)")
        clock = clock or SystemClock()
        ledger, redact = Ledger(run_id, clock), Redact(api_key, secret)
        super().__init__(ledger, cfg.instrument.symbol, cfg.instrument.venue_symbol, clock, redact, poll_ns, backoff_ns)
        self.cfg = cfg
        self._key, self._secret = api_key, secret
        nan = np.full(1, math.nan)
        self._book = BookView(-1, nan, np.zeros(1), nan.copy(), np.zeros(1))

    # -- the runner's clock ------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        if isinstance(tick, Book):
            self.set_book(BookView(tick.ts_local, tick.bid_px, tick.bid_qty, tick.ask_px, tick.ask_qty))

    def run_to(self, t: int) -> bool:
        return False  # the exchange runs by itself: reports come back in sync()

    def ready_until(self, ts: int) -> int:
        return _NO_LIMIT  # a decision is taken as soon as it is due

    def passed(self, t: int) -> bool:
        return False

    async def pause(self, ns: int) -> None:
        await asyncio.sleep(ns / 1e9)

    def set_book(self, book: BookView) -> None:
        self._book = book

    # -- the Gateway -------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.clock.now_ns()

    def book(self) -> BookView:
        return self._book

    def position(self) -> float:
        return self.ledger.position

    def equity(self) -> float:
        """Wallet balance less the position's cost, plus the position at the local mid."""
        return self.ledger.equity(self._book.mid)

    def open_orders(self) -> list[OpenOrder]:
        return self.ledger.open_orders()

    def account(self) -> dict[str, float]:
        """What the journal's account records hold (the exchange is the truth: see ``start``)."""
        return {
            "position": self.ledger.position,
            "cash": self.ledger.cash,
            "equity": self.equity(),
            "fees": self.ledger.fees,
            "funding": 0.0,  # not tracked live: the wallet balance read at start includes it
        }

    def submit(
        self, side: int, qty: float, price: float = math.nan, kind: OrderKind = OrderKind.LIMIT, *, tag: int = 0
    ) -> int:
        """Queue a post-only limit order (or a market order); returns its local id."""
        kind = OrderKind(kind)
        if side not in (1, -1) or not qty > 0 or (kind == OrderKind.LIMIT and not math.isfinite(price)):
            raise ValueError(f"bad order: side {side}, qty {qty}, price {price}, {kind.name}")
        px = math.nan if kind == OrderKind.MARKET else float(price)
        o = self.ledger.new_order(side, float(qty), px, kind, tag)
        self._queue.append(("submit", o.oid, None, None))
        self.ledger.event("submit", o, detail=kind.name.lower())
        return o.oid

    def amend(self, order_id: int, price: float | None = None, qty: float | None = None) -> None:
        o = self._known(order_id)
        if price is None and qty is None:
            raise ValueError("amend needs a price or a qty")
        self._queue.append(("amend", order_id, price, qty))
        asked = {k: v for k, v in (("price", price), ("qty", qty)) if v is not None}
        self.ledger.event("amend", o, **asked)

    def cancel(self, order_id: int) -> None:
        o = self._known(order_id)
        self._queue.append(("cancel", order_id, None, None))
        self.ledger.event("cancel", o)

    def cancel_all(self) -> None:
        self._queue.append(("cancel_all", 0, None, None))
        self.ledger.event("cancel_all")

    def take_events(self) -> list[dict[str, Any]]:
        return self.ledger.take_events()

    def _known(self, order_id: int) -> LiveOrder:
        if order_id not in self.ledger.orders:
            raise ValueError(f"unknown order id {order_id}")
        return self.ledger.orders[order_id]

    # -- start and stop ----------------------------------------------------------------------

    async def begin(self, restored: Restored, now_ns: int) -> None:
        await self.start(restored.client_ids)
        await self._closed_while_down(restored.open_orders)

    async def _closed_while_down(self, journaled: dict[int, dict[str, Any]]) -> None:
        """The journal's open orders the exchange no longer has open ended while the runner was down:
        each gets its end (as Bybit tells it) in the journal, so no restart finds it open again."""
        for oid, submit in journaled.items():
            cid = str(submit.get("client_id") or "")
            if oid in self.ledger.orders or not cid:
                continue  # adopted (still open), or never sent
            try:
                row = await self._lookup(cid)
            except ccxt.BaseError as exc:
                self._failed(exc, None, "lookup")
                continue  # the next restart asks again
            status = row["orderStatus"] if row is not None else "not known to the exchange"
            kind = "filled" if status == "Filled" else "cancelled"
            detail = f"ended while the runner was down: {status}"
            self.ledger.event(kind, None, order_id=oid, client_id=cid, detail=detail)

    async def start(self, known: dict[str, int] | None = None) -> None:
        """Load the market; take wallet, position, our open orders and new executions from Bybit.

        A transient failure (no answer, a rate limit, Bybit's 10016) is tried again up to
        ``bybit.start_tries`` times in all, ``start_backoff`` apart and doubling: nothing is kept of a
        failed try (the ledger takes the exchange's word only once every read has answered)."""
        url, b = self.cfg.bybit.rest_url, self.cfg.bybit
        for attempt in range(1, b.start_tries + 1):
            try:
                await self._start_once(url, known or {})
                return
            except Exception as exc:
                await self.aclose()
                if attempt == b.start_tries or isinstance(exc, UserError) or not transient(exc):
                    raise self._start_error(exc, url, attempt) from None
                wait = b.start_backoff * 2 ** (attempt - 1)
                log.warning("bybit: start try %d of %d at %s failed (%s); trying again in %g s",
                            attempt, b.start_tries, url, self._scrub(exc), wait / 1e9)  # fmt: skip
                await asyncio.sleep(wait / 1e9)

    async def _start_once(self, url: str, known: dict[str, int]) -> None:
        # ccxt.pro's bybit is ccxt.async_support's REST client, with the ws URLs point_at sets
        self.exchange = ccxt.pro.bybit(
            {
                "apiKey": self._key,
                "secret": self._secret,
                "timeout": max(1, self.cfg.bybit.timeout // 1_000_000),
                "enableRateLimit": False,
                "options": {"fetchMarkets": ["linear"]},
            }
        )
        self.exchange.logger = _CCXT_LOG
        _CCXT_LOG.addFilter(self._redact)
        point_at(self.exchange, url, self.cfg.bybit.ws_public_url)
        await self.exchange.load_markets()  # with keys, ccxt also asks /v5/asset/coin/query-info
        if self.symbol not in self.exchange.markets:
            raise UserError(f"bybit: {self.symbol} is not listed at {url}")
        await self._restore(known)

    def _start_error(self, exc: Exception, url: str, tries: int) -> Exception:
        if isinstance(exc, UserError):
            return exc
        if isinstance(exc, ccxt.AuthenticationError):
            code = re.search(r'"retCode":\s*(\d+)', str(exc))
            why = _AUTH.get(code.group(1) if code else "", "authentication failed")
            return UserError(f"bybit: {url} refused the API key: {why} (check BYBIT_API_KEY / BYBIT_API_SECRET)")
        after = f" (after {tries} tries)" if tries > 1 else ""
        return UnavailableError(f"bybit: cannot start at {url}{after}: {self._scrub(exc)}")

    async def aclose(self) -> None:
        if self.exchange is not None:
            ex, self.exchange = self.exchange, None
            await ex.close()
            _CCXT_LOG.removeFilter(self._redact)
