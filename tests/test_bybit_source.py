"""The Bybit source's frame hook on a real ccxt.pro client (no connection needed to hand it frames):
only an order-book snapshot answers a pending resubscribe request.

Bybit sends every publicTrade frame as ``"type":"snapshot"`` too. The hook took those for book
snapshots: at the chaos soak's speed 24 (about 2,800 trade frames a second) a trade frame cleared
each resubscribe request before the book loop could send it, and the feeds spent tens of seconds
asking again (hundreds of 'resubscribing' lines, the runners halted on a silent feed)."""

from __future__ import annotations

import asyncio

import orjson

from core.config import AppConfig
from market.sources.bybit import BybitSource, point_at

TRADE = {
    "topic": "publicTrade.BTCUSDT",
    "type": "snapshot",
    "ts": 1_700_000_000_000,
    "data": [
        {"T": 1_700_000_000_000, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "50000.0", "i": "t1", "BT": False}
    ],
}
BOOK = {
    "topic": "orderbook.50.BTCUSDT",
    "type": "snapshot",
    "ts": 1_700_000_000_001,
    "data": {"s": "BTCUSDT", "b": [["50000.0", "1"]], "a": [["50000.1", "1"]], "u": 7, "seq": 7},
    "cts": 1_700_000_000_000,
}


def test_a_trade_frame_does_not_answer_a_resubscribe_request_and_a_book_snapshot_does() -> None:
    asyncio.run(_hand_frames())


async def _hand_frames() -> None:
    import ccxt.pro as ccxtpro

    cfg = AppConfig()
    src = BybitSource(cfg, None)
    src.exchange = ccxtpro.bybit()
    point_at(src.exchange, "http://127.0.0.1:9", "ws://127.0.0.1:9/v5/public/linear")
    src._hook()
    handle = src.exchange.client(cfg.bybit.ws_public_url).handle_text_or_binary_message
    src.request_resync("book invalid after gap")
    assert src._resync == "book invalid after gap"
    for _ in range(3):
        handle(orjson.dumps(TRADE).decode())
    assert src._resync == "book invalid after gap" and not src._snapshot_buffered  # still to be sent
    handle(orjson.dumps(BOOK).decode())
    assert src._resync is None and src._snapshot_buffered  # the book's snapshot answers it
    assert len(src._frames) == 4  # every frame kept for the warehouse, as received
    await src.exchange.close()
