"""Bybit v5 live public data through ccxt.pro: order book (depth N) and trades for one perpetual.

ccxt does the transport: loading the market (tick size, lot step) over REST, the WebSocket
connection, subscribe / unsubscribe, keep-alive pings. It does not check Bybit's update-id
continuity, so its own book is not used: every frame is taken as received (a hook on the ccxt
client, with the local receive time) and goes through the same parser and book kernel as the
simulator and recorded files. When that book goes invalid (a gap, a rejected frame), the
source unsubscribes and resubscribes the order book, and Bybit answers with a fresh snapshot.

Connections that drop, error or go silent for ``ingest.stall_timeout`` are reopened with
exponential backoff (``ingest.reconnect_initial`` .. ``reconnect_max``); each reconnect and
resubscribe is noted in ``sync_events``. Endpoint URLs come from the ``bybit`` config section,
so the same code talks to Bybit, its testnet, or the stand-in server (standin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from core.clock import Clock, SystemClock
from core.config import AppConfig
from core.errors import UnavailableError, UserError
from market.events import RawMessage
from market.sources.base import Note, Progress
from market.venues.bybit import BYBIT, VENUE

log = logging.getLogger(__name__)

_HEARTBEAT_S = 0.05  # batches are handed to the ingest at least this often
_SNAPSHOT_HEAD = '"type":"snapshot"'  # an order-book snapshot, when the frame's topic is the book's:
_BOOK_TOPIC = '"topic":"orderbook.'  # Bybit sends every publicTrade frame as "type":"snapshot" too


class StallError(Exception):
    """No frame for longer than the stall timeout."""


def point_at(exchange: Any, rest_url: str, ws_url: str) -> None:
    """Send every REST call to ``rest_url`` and the public linear stream to ``ws_url``.

    Every REST entry of ``urls["api"]`` is replaced (ccxt picks one per endpoint group); do not
    call ``set_sandbox_mode`` afterwards, it would overwrite them.
    """
    api = exchange.urls["api"]
    for key in list(api):
        if key != "ws":
            api[key] = rest_url.rstrip("/")
    api["ws"]["public"]["linear"] = ws_url


def short_error(exc: BaseException) -> str:
    """One line from an exception, whatever ccxt / aiohttp put into it, with its cause when that says
    more (ccxt's "bybit GET <url>" hides aiohttp's "Cannot connect to host ... Connect call failed")."""
    text = _first_line(exc)
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and (why := _first_line(cause)) not in text:
        text = f"{text}: {why}"
    return text if len(text) <= 300 else text[:297] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class BybitSource:
    """Live order book + trades of ``instrument.symbol`` from the ``bybit`` endpoints."""

    name = "bybit"
    segment = "session"
    local_time = True  # every message is stamped when it arrives

    def __init__(self, cfg: AppConfig, duration_ns: int | None, clock: Clock | None = None) -> None:
        self.endpoints = cfg.bybit
        self.ingest = cfg.ingest
        self.venue = BYBIT
        self.unified = cfg.instrument.symbol
        self.symbol = cfg.instrument.venue_symbol
        self.tick_size = cfg.instrument.tick_size
        self.depth = cfg.ingest.depth
        self.duration_ns = duration_ns
        self.clock = clock or SystemClock()
        self.exchange: Any = None
        self._frames: list[RawMessage] = []
        self._notes: list[Note] = []
        self._resync: str | None = None
        self._resync_deadline = 0
        self._snapshot_buffered = False
        self._stopped = False
        self._started_ns = 0
        self._last_frame_ns = 0
        self._frames_since_connect = 0
        self.frames_received = 0  # every frame taken, over every connection
        self._hooked: set[int] = set()

    # -- connection ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the market over REST and open the streams; unreachable endpoints: one line."""
        import ccxt.pro as ccxtpro

        timeout_s = self.endpoints.timeout / 1e9
        ex = ccxtpro.bybit(
            {"timeout": int(timeout_s * 1000), "enableRateLimit": True, "options": {"fetchMarkets": ["linear"]}}
        )
        point_at(ex, self.endpoints.rest_url, self.endpoints.ws_public_url)
        self.exchange = ex
        try:
            await asyncio.wait_for(ex.load_markets(), timeout_s)
        except Exception as exc:  # ccxt, aiohttp and OS errors all mean: not reachable as configured
            await self.aclose()
            raise UnavailableError(
                f"bybit: cannot load markets from {self.endpoints.rest_url}: {short_error(exc)}"
            ) from None
        if self.unified not in ex.markets:
            await self.aclose()
            raise UserError(f"bybit: {self.unified} is not listed at {self.endpoints.rest_url}")
        market = ex.market(self.unified)
        tick = float(market["precision"]["price"])
        if abs(tick - self.tick_size) > 1e-12:
            log.warning("bybit: tick size is %s (config says %s): using the exchange's", tick, self.tick_size)
        self.tick_size = tick
        self._started_ns = self.clock.monotonic_ns()
        try:
            await asyncio.wait_for(self._subscribe_all(), timeout_s)
        except Exception as exc:
            await self.aclose()
            raise UnavailableError(
                f"bybit: cannot subscribe at {self.endpoints.ws_public_url}: {short_error(exc)}"
            ) from None
        log.info(
            "bybit: streaming %s orderbook.%d + trades from %s", self.symbol, self.depth, self.endpoints.ws_public_url
        )

    async def _subscribe_all(self) -> None:
        self._hook()
        self._last_frame_ns = self.clock.monotonic_ns()
        self._frames_since_connect = 0
        await self.exchange.watch_order_book(self.unified, self.depth)
        await self.exchange.watch_trades(self.unified)

    def _hook(self) -> None:
        """Take every frame of the public stream as received, before ccxt parses it."""
        client = self.exchange.client(self.endpoints.ws_public_url)
        if id(client) in self._hooked:
            return
        original: Callable[[Any], None] = client.handle_text_or_binary_message
        clock = self.clock

        def handle(data: Any) -> None:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else str(data)
            self._frames.append(RawMessage(VENUE, "", clock.now_ns(), text))
            self._last_frame_ns = clock.monotonic_ns()
            self._frames_since_connect += 1
            self.frames_received += 1
            head = text[:80]
            if _SNAPSHOT_HEAD in head and _BOOK_TOPIC in head:
                self._snapshot_buffered = True
                self._resync_deadline = 0  # the snapshot asked for (or any) arrived
                self._resync = None  # a request not yet sent was made on older data: this snapshot answers it
            try:
                original(data)
            except Exception as exc:  # ccxt choking on a bad frame: our parser rejects and counts it
                log.debug("ccxt could not handle a frame: %s", short_error(exc))

        client.handle_text_or_binary_message = handle
        self._hooked.add(id(client))

    async def _close_ws(self) -> None:
        clients = getattr(self.exchange, "clients", {}) or {}
        client = clients.pop(self.endpoints.ws_public_url, None)
        if client is not None:
            self._hooked.discard(id(client))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)

    async def _book_loop(self) -> None:
        ex = self.exchange
        import ccxt

        while True:
            if self._resync is not None:
                reason, self._resync = self._resync, None
                await asyncio.wait_for(ex.un_watch_order_book(self.unified, {"limit": self.depth}), 10)
                self._note("resubscribe", f"order book resubscribed for a fresh snapshot ({reason})")
            try:
                await ex.watch_order_book(self.unified, self.depth)
            except ccxt.UnsubscribeError:
                continue

    async def _trade_loop(self) -> None:
        while True:
            await self.exchange.watch_trades(self.unified)

    async def _watchdog(self) -> None:
        limit = self.ingest.stall_timeout
        while True:
            await asyncio.sleep(min(0.25, limit / 4e9))
            silent = self.clock.monotonic_ns() - self._last_frame_ns
            if silent > limit:
                raise StallError(f"no market data for {silent / 1e9:.1f}s")

    async def _supervise(self) -> None:
        """Keep the streams open: on any failure reconnect with backoff, until stopped."""
        backoff = self.ingest.reconnect_initial / 1e9
        first = True
        while not self._stopped:
            tasks: set[asyncio.Task[None]] = set()
            try:
                if not first:
                    await asyncio.wait_for(self._subscribe_all(), self.endpoints.timeout / 1e9)
                first = False
                tasks = {
                    asyncio.create_task(self._book_loop()),
                    asyncio.create_task(self._trade_loop()),
                    asyncio.create_task(self._watchdog()),
                }
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                error: BaseException | None = next((t.exception() for t in done if t.exception()), None)
                reason = short_error(error) if error else "stream ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = short_error(exc)
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(BaseException):
                        await t
            if self._stopped:
                return
            if self._frames_since_connect > 0:
                backoff = self.ingest.reconnect_initial / 1e9
            self._note("reconnect", f"{reason}; reconnecting in {backoff:.1f}s")
            log.warning("bybit: %s; reconnecting in %.1fs", reason, backoff)
            await self._close_ws()
            self._frames_since_connect = 0
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.ingest.reconnect_max / 1e9)

    async def _sleep(self, seconds: float) -> None:
        end = self.clock.monotonic_ns() + int(seconds * 1e9)
        while not self._stopped and self.clock.monotonic_ns() < end:
            await asyncio.sleep(min(0.05, seconds))

    # -- Source ----------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[list[RawMessage]]:
        supervisor = asyncio.create_task(self._supervise())
        try:
            while not self._stopped:
                await asyncio.sleep(_HEARTBEAT_S)
                if supervisor.done():
                    supervisor.result()
                    return
                frames, self._frames = self._frames, []
                self._snapshot_buffered = False
                yield frames
                if self.duration_ns is not None and self.clock.monotonic_ns() - self._started_ns >= self.duration_ns:
                    return
        finally:
            self._stopped = True
            supervisor.cancel()
            with contextlib.suppress(BaseException):
                await supervisor

    def request_resync(self, reason: str) -> None:
        now = self.clock.monotonic_ns()
        if self._resync is not None or self._snapshot_buffered or now < self._resync_deadline:
            return  # a snapshot is on its way (or waiting in the buffer): one resubscribe at a time
        self._resync = reason
        self._resync_deadline = now + self.ingest.stall_timeout
        log.warning("bybit: %s: resubscribing to the order book", reason)

    def _note(self, kind: str, detail: str) -> None:
        self._notes.append(Note(kind, detail, self.clock.now_ns()))

    def take_notes(self) -> list[Note]:
        notes, self._notes = self._notes, []
        return notes

    def progress(self) -> Progress:
        elapsed = (self.clock.monotonic_ns() - self._started_ns) / 1e9 if self._started_ns else 0.0
        total = self.duration_ns / 1e9 if self.duration_ns is not None else None
        return Progress(min(elapsed, total) if total is not None else elapsed, total, "s")

    def stop(self) -> None:
        self._stopped = True

    async def aclose(self) -> None:
        self._stopped = True
        if self.exchange is not None:
            with contextlib.suppress(Exception):
                await self.exchange.close()
            self.exchange = None
