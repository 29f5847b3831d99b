"""The stand-in's public market side: its own L2 book and the REST market endpoints.

    GET  /v5/market/time                 server time
    GET  /v5/market/instruments-info     category=linear[&symbol=BTCUSDT]
    GET  /v5/market/orderbook            category=linear&symbol=BTCUSDT&limit=1..500

The book is kept as the feed's text (price text -> size text), so what the server sends back is
what the feed said, digit for digit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


def json_text(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def ok(result: Any) -> web.Response:
    body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": time.time_ns() // 1_000_000}
    return web.Response(text=json_text(body), content_type="application/json")


def error(code: int, msg: str, status: int = 200) -> web.Response:
    body = {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": time.time_ns() // 1_000_000}
    return web.Response(text=json_text(body), content_type="application/json", status=status)


def price_decimals(step: float) -> int:
    """Decimal places of a tick (0.1 -> 1), at most 10."""
    for dec in range(10):
        if abs(step * 10**dec - round(step * 10**dec)) < 1e-9:
            return dec
    return 10


@dataclass
class Book:
    """The server's own L2 book (price text -> size text), with Bybit's update id and times."""

    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    u: int = 0
    seq: int = 0
    ts: int = 0
    cts: int = 0
    ready: bool = False

    def apply(self, levels: list[list[str]], side: dict[str, str]) -> None:
        for px, qty in levels:
            if float(qty) == 0.0:
                side.pop(px, None)
            else:
                side[px] = qty

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:depth]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:depth]
        return [list(b) for b in bids], [list(a) for a in asks]

    def best(self) -> tuple[str, str, str, str]:
        bids, asks = self.top(1)
        bb = bids[0] if bids else ["", ""]
        ba = asks[0] if asks else ["", ""]
        return bb[0], bb[1], ba[0], ba[1]


class MarketApi:
    """The REST market endpoints for one linear perpetual, answered from ``book``."""

    def __init__(self, symbol: str, book: Book, tick: float) -> None:
        self.symbol = symbol
        self.book = book
        self.tick = tick

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v5/market/time", self._time)
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        app.router.add_get("/v5/market/orderbook", self._orderbook)

    async def _time(self, request: web.Request) -> web.Response:
        now = time.time_ns()
        return ok({"timeSecond": str(now // 1_000_000_000), "timeNano": str(now)})

    async def _instruments(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("category") != "linear":
            return ok({"category": q.get("category", ""), "list": [], "nextPageCursor": ""})
        symbol, status = q.get("symbol"), q.get("status")
        listed = symbol in (None, self.symbol) and status in (None, "Trading")
        items = [self._instrument()] if listed else []
        return ok({"category": "linear", "list": items, "nextPageCursor": ""})

    def _instrument(self) -> dict[str, Any]:
        tick = self.tick
        dec = price_decimals(tick)
        return {
            "symbol": self.symbol,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": self.symbol.removesuffix("USDT"),
            "quoteCoin": "USDT",
            "settleCoin": "USDT",
            "launchTime": "1584230400000",
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": str(dec),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": f"{tick:.{dec}f}", "maxPrice": "1999999.80", "tickSize": f"{tick:.{dec}f}"},
            "lotSizeFilter": {
                "maxOrderQty": "1190.000",
                "minOrderQty": "0.001",
                "qtyStep": "0.001",
                "postOnlyMaxOrderQty": "1190.000",
                "maxMktOrderQty": "500.000",
                "minNotionalValue": "5",
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
            "copyTrading": "both",
            "upperFundingRate": "0.005",
            "lowerFundingRate": "-0.005",
            "isPreListing": False,
            "preListingInfo": None,
        }

    async def _orderbook(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("category") != "linear" or q.get("symbol") != self.symbol:
            return error(10001, "params error: category=linear and symbol=" + self.symbol + " required")
        try:
            limit = int(q.get("limit", "25"))
        except ValueError:
            return error(10001, "params error: limit")
        if not 1 <= limit <= 500:
            return error(10001, "params error: limit must be 1..500")
        if not self.book.ready:
            return error(10016, "service not ready")
        bids, asks = self.book.top(limit)
        b = self.book
        return ok({"s": self.symbol, "b": bids, "a": asks, "ts": b.ts, "u": b.u, "seq": b.seq, "cts": b.cts})
