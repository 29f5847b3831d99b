"""A Bybit v5 stand-in: the REST market endpoints, the public linear WebSocket and a private
trading account (signed REST: orders, position, executions, wallet), on 127.0.0.1.

It answers what ccxt / ccxt.pro need to load the BTCUSDT perpetual, watch its order book and
trades, and trade it, fed by the simulator or a recorded file, and it can be told to misbehave
(fault injection) the ways a real exchange connection does. Nothing here is a mock of ccxt:
tests run the real client against this server over TCP.

    GET  /v5/market/time                 server time                         (market.py)
    GET  /v5/market/instruments-info     category=linear[&symbol=BTCUSDT]
    GET  /v5/market/orderbook            category=linear&symbol=BTCUSDT&limit=1..500
    WS   /v5/public/linear               op subscribe / unsubscribe / ping;
                                         orderbook.{depth}.BTCUSDT, publicTrade.BTCUSDT
    POST /_standin/fault                 {"kind": "...", "seconds": 3}  (faults.py: FAULTS);
                                         private API faults also "on": endpoint, "count": n
    GET  /_standin/stats                 counters, current update id, connections, the account
    GET  /_standin/history?after=N       the server's best bid/ask after every book update
    private, signed (X-BAPI-* headers; private.py, matching rules in account.py):
    POST /v5/order/create | amend | cancel | cancel-all     category=linear, symbol=BTCUSDT
    GET  /v5/order/realtime              open orders; one recent order by orderId / orderLinkId
    GET  /v5/execution/list              our fills, newest first
    GET  /v5/position/list               the one-way position
    GET  /v5/account/wallet-balance      accountType=UNIFIED (USDT)
    GET  /v5/account/fee-rate, /v5/account/info, /v5/user/query-api, /v5/asset/coin/query-info

The server keeps its own book (from the feed's messages): a new subscriber gets a snapshot of
it with the current update id, and then the deltas everyone gets. The private account's resting
orders fill from the same feed (its trades and book moves); market orders walk this book.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from aiohttp import WSMsgType, web

from standin.faults import CORRUPT, FAULTS, corrupt_frame
from standin.feeds import Feed
from standin.market import Book, MarketApi, error, json_text, ok
from standin.private import PRIVATE_FAULTS, PrivateApi, PrivateSpec, fault_target

_COUNTERS = ("connections_total", "book_messages", "trade_messages", "frames_sent", "bad_requests", "feed_bad_json")

log = logging.getLogger(__name__)

WS_PATH = "/v5/public/linear"

_QUEUE_LIMIT = 50_000  # frames waiting for a slow subscriber before it is disconnected
_HISTORY = 200_000


class History:
    """The best bid/ask after each of the last ``size`` book updates, as ``GET /_standin/history``
    returns them: ``[u, cts_ms, bid, bid_qty, ask, ask_qty]``, prices and sizes as the book's strings.

    Held in one array made and written in full at start (22.4 MB for 200,000 updates: 112 bytes each), not as
    a list per update (about 400 bytes each, 80 MB when full): at speed 5 the deque took an hour to
    fill, and the stand-in's memory rose all that hour, which a soak's memory check must not mistake
    for a leak of the box."""

    _ROW = np.dtype([("u", "i8"), ("cts", "i8"), ("bb", "S24"), ("bq", "S24"), ("ba", "S24"), ("aq", "S24")])

    def __init__(self, size: int = _HISTORY) -> None:
        self._rows = np.zeros(size, self._ROW)
        self._rows.view(np.uint8)[:] = 0  # written now: the pages are the process's from the start
        self._n = 0  # updates appended in all; the last min(n, size) are kept

    def __len__(self) -> int:
        return min(self._n, len(self._rows))

    def append(self, u: int, cts: int, bb: str, bq: str, ba: str, aq: str) -> None:
        texts = [t.encode() for t in (bb, bq, ba, aq)]
        if max(map(len, texts)) > 24:
            raise ValueError(f"a price or size longer than 24 characters: {texts}")
        self._rows[self._n % len(self._rows)] = (u, cts, *texts)
        self._n += 1

    def rows(self, after: int = -1) -> list[list[Any]]:
        """The kept updates, oldest first; with ``after`` >= 0 only those with a later update id."""
        size = len(self._rows)
        start = self._n % size if self._n > size else 0
        kept = np.concatenate([self._rows[start : len(self)], self._rows[:start]]) if start else self._rows[: self._n]
        if after >= 0:
            kept = kept[kept["u"] > after]
        return [
            [int(r["u"]), int(r["cts"]), r["bb"].decode(), r["bq"].decode(), r["ba"].decode(), r["aq"].decode()]
            for r in kept
        ]


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    conn_id: str
    topics: set[str] = field(default_factory=set)
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def send(self, frame: str) -> bool:
        if self.queue.qsize() >= _QUEUE_LIMIT:
            return False
        self.queue.put_nowait(frame)
        return True

    def cut(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class StandinServer:
    """The stand-in. ``await start()`` binds and starts the feed; ``await stop()`` ends both."""

    def __init__(self, feed: Feed, host: str = "127.0.0.1", port: int = 0, private: PrivateSpec | None = None) -> None:
        self.feed = feed
        self.host = host
        self.port = port
        self.symbol = feed.symbol
        self.depth = feed.depth
        self.book_topic = f"orderbook.{feed.depth}.{feed.symbol}"
        self.trade_topic = f"publicTrade.{feed.symbol}"
        self.book = Book()
        self.u_offset = 0
        # every counter is in the stats from the start, at 0: a reader compares before and after
        self.stats: Counter[str] = Counter(dict.fromkeys(_COUNTERS + tuple(f"fault_{k}" for k in FAULTS), 0))
        self.history = History()
        self._conns: set[_Conn] = set()
        self._faults: deque[dict[str, Any]] = deque()
        self._stall_until = 0.0
        self.behind_ms = self.behind_max_ms = 0  # how late the last message was published, and the most
        self._runner: web.AppRunner | None = None
        self.publisher: asyncio.Task[None] | None = None
        self._starts_with_subscriber = getattr(feed, "history_ns", 0) > 0  # the feed waits for the first subscriber
        self._subscribed = asyncio.Event()
        self.private = PrivateApi(self.symbol, self.book, self.feed.tick_size, private or PrivateSpec())
        self.app = self._make_app()

    # -- lifecycle -------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application()
        MarketApi(self.symbol, self.book, self.feed.tick_size).register(app)
        app.router.add_get(WS_PATH, self._ws)
        app.router.add_post("/_standin/fault", self._fault)
        app.router.add_get("/_standin/stats", self._stats)
        app.router.add_get("/_standin/history", self._history)
        self.private.register(app)
        return app

    async def start(self) -> str:
        """Bind, start publishing the feed; return the base URL (http://host:port)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.publisher = asyncio.create_task(self._publish())
        return self.url

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    async def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.publisher
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the feed has produced a book (the first snapshot); a feed with a history to
        publish is ready at once: it starts with its first subscriber, who sees the history."""
        deadline = time.monotonic() + timeout
        while not self.book.ready and not self._starts_with_subscriber:
            if self.publisher is not None and self.publisher.done():
                self.publisher.result()  # the feed failed: raise its error
                raise RuntimeError("the feed ended before producing a book")
            if time.monotonic() > deadline:
                raise TimeoutError("the feed produced no book in time")
            await asyncio.sleep(0.01)

    # -- the feed --------------------------------------------------------------------------

    async def _publish(self) -> None:
        loads = orjson.loads
        if self._starts_with_subscriber:
            await self._subscribed.wait()
        async for due_ns, payload in self.feed.messages(time.time_ns()):
            wait = (due_ns - time.time_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            self.behind_ms = max(0, int(-wait * 1000))  # behind the feed's schedule: clients' lag starts here
            self.behind_max_ms = max(self.behind_max_ms, self.behind_ms)
            try:
                msg = loads(payload)
            except orjson.JSONDecodeError:
                self.stats["feed_bad_json"] += 1
                continue
            topic = msg.get("topic") if isinstance(msg, dict) else None
            if topic == self.book_topic:
                self._on_book(msg)
            elif topic == self.trade_topic:
                self._on_trades(msg)
            await asyncio.sleep(0)

    def _stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    def _on_trades(self, msg: dict[str, Any]) -> None:
        wall = self.feed.wall_ms
        msg["ts"] = wall(msg["ts"])
        for t in msg.get("data", []):
            t["T"] = wall(t["T"])
        self.stats["trade_messages"] += 1
        self.private.on_trades(msg.get("data", []))
        if not self._stalled():
            self._broadcast(self.trade_topic, json_text(msg))

    def _on_book(self, msg: dict[str, Any]) -> None:
        data = msg["data"]
        book = self.book
        # a fault waits for someone to see it: a subscribed book stream on a ready book
        watched = book.ready and any(self.book_topic in c.topics for c in self._conns)
        fault = self._faults.popleft() if self._faults and watched else None
        feed_u = int(data["u"])
        snapshot = msg.get("type") == "snapshot"
        if snapshot:
            book.bids.clear()
            book.asks.clear()
            if book.ready:  # the feed restarted (a looped file): keep update ids increasing
                self.u_offset = feed_u - (book.u + 1)
            else:
                self.u_offset = 0
        kind = fault["kind"] if fault else None
        if kind in CORRUPT:
            frame = corrupt_frame(kind, msg, feed_u - self.u_offset, book, self.book_topic, self.feed.tick_size)
            self._broadcast(self.book_topic, frame)
        book.apply(data["b"], book.bids)
        book.apply(data["a"], book.asks)
        book.seq = int(data["seq"])
        book.ts = self.feed.wall_ms(int(msg["ts"]))
        book.cts = self.feed.wall_ms(int(msg.get("cts", msg["ts"])))
        book.ready = True
        send_as = "snapshot" if snapshot else "delta"
        if kind == "restart":
            bids, _ = book.top(1)
            if bids:
                book.bids.pop(bids[0][0])
            self.u_offset = feed_u - 1
            send_as = "full_delta"
        elif kind == "snapshot":
            send_as = "snapshot"
        book.u = feed_u - self.u_offset
        self.stats["book_messages"] += 1
        bb, bq, ba, aq = book.best()
        self.history.append(book.u, book.cts, bb, bq, ba, aq)
        self.private.on_book()
        if kind == "skip_update" or self._stalled():
            return
        if send_as == "delta":
            out = {
                "topic": self.book_topic,
                "type": "delta",
                "ts": book.ts,
                "data": {"s": self.symbol, "b": data["b"], "a": data["a"], "u": book.u, "seq": book.seq},
                "cts": book.cts,
            }
            self._broadcast(self.book_topic, json_text(out))
        else:
            frame = self._snapshot_frame("delta" if send_as == "full_delta" else "snapshot")
            self._broadcast(self.book_topic, frame)

    def _snapshot_frame(self, typ: str = "snapshot") -> str:
        book = self.book
        bids, asks = book.top(self.depth)
        out = {
            "topic": self.book_topic,
            "type": typ,
            "ts": book.ts,
            "data": {"s": self.symbol, "b": bids, "a": asks, "u": book.u, "seq": book.seq},
            "cts": book.cts,
        }
        return json_text(out)

    def _broadcast(self, topic: str, frame: str) -> None:
        for conn in list(self._conns):
            if topic in conn.topics:
                self.stats["frames_sent"] += 1
                if not conn.send(frame):
                    log.warning("stand-in: subscriber %s is too slow: disconnecting it", conn.conn_id)
                    conn.cut()

    # -- control ---------------------------------------------------------------------------

    async def _fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
        except (orjson.JSONDecodeError, ValueError):
            return error(10001, "body must be JSON", status=400)
        kind = body.get("kind") if isinstance(body, dict) else None
        if kind not in FAULTS:
            return error(10001, f"unknown fault {kind!r} (known: {', '.join(FAULTS)})", status=400)
        try:
            self.inject(kind, float(body.get("seconds", 5.0)), body.get("on"), int(body.get("count", 1)))
        except (TypeError, ValueError) as err:
            return error(10001, str(err), status=400)
        return ok({"kind": kind})

    def inject(self, kind: str, seconds: float = 5.0, on: str | None = None, count: int = 1) -> None:
        """Apply a fault now (drop, stall), with the next book update (the feed's others), or to the
        private API's next requests (``on`` and ``count``: private.py's PRIVATE_FAULTS)."""
        if kind in PRIVATE_FAULTS:
            fault_target(kind, on)  # an unknown endpoint fails before anything is counted
        self.stats[f"fault_{kind}"] += 1
        log.info("stand-in fault: %s (%s)", kind, FAULTS[kind])
        if kind == "drop":
            for conn in list(self._conns):
                conn.cut()
        elif kind == "stall":
            self._stall_until = time.monotonic() + seconds
        elif kind in PRIVATE_FAULTS:
            self.private.inject(kind, seconds, on, count)
        else:
            self._faults.append({"kind": kind})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(text=json_text(self.stats_dict()), content_type="application/json")

    def stats_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.stats)
        out.update(
            connections=len(self._conns),
            u=self.book.u,
            depth=self.depth,
            symbol=self.symbol,
            feed=self.feed.name,
            pending_faults=len(self._faults),
            behind_ms=self.behind_ms,
            behind_max_ms=self.behind_max_ms,
            private=self.private.stats_dict(),
        )
        return out

    async def _history(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "-1"))
        except ValueError:
            return error(10001, "after must be an integer", status=400)
        return web.Response(text=json_text(self.history.rows(after)), content_type="application/json")

    # -- WebSocket -------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request, uuid.uuid4().hex[:20])
        self._conns.add(conn)
        self.stats["connections_total"] += 1
        writer = asyncio.create_task(self._writer(conn))
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    self._on_request(conn, frame.data)
                elif frame.type == WSMsgType.ERROR:
                    break
        finally:
            self._conns.discard(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _writer(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                frame = await conn.queue.get()
                await conn.ws.send_str(frame)

    def _on_request(self, conn: _Conn, text: str) -> None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            req = None
        if not isinstance(req, dict):
            conn.send(json_text({"success": False, "ret_msg": "error:invalid op", "conn_id": conn.conn_id}))
            return
        op = req.get("op")
        base = {"conn_id": conn.conn_id, "req_id": req.get("req_id", ""), "op": op}
        if op == "ping":
            conn.send(json_text({"success": True, "ret_msg": "pong", **base}))
            return
        if op not in ("subscribe", "unsubscribe"):
            conn.send(json_text({"success": False, "ret_msg": f"error:invalid op {op}", **base}))
            return
        args = req.get("args")
        topics = [a for a in args if isinstance(a, str)] if isinstance(args, list) else []
        bad = [t for t in topics if t not in (self.book_topic, self.trade_topic)]
        if not topics or bad:
            self.stats["bad_requests"] += 1
            conn.send(json_text({"success": False, "ret_msg": f"error:handler not found,topics:{bad}", **base}))
            return
        if op == "unsubscribe":
            self.stats["unsubscribes"] += 1
            conn.topics.difference_update(topics)
            conn.send(json_text({"success": True, "ret_msg": "", **base}))
            return
        self.stats["subscribes"] += 1
        conn.send(json_text({"success": True, "ret_msg": "subscribe", **base}))
        for t in topics:
            if t == self.book_topic and t not in conn.topics and self.book.ready:
                conn.send(self._snapshot_frame())
            conn.topics.add(t)
        if self.book_topic in topics:
            self._subscribed.set()
