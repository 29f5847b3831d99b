"""Bybit v5, linear perpetuals: facts and the parser for public WebSocket / archive messages.

Order book (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook)::

    {"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1672304484978,
     "data":{"s":"BTCUSDT","b":[["16493.50","0.006"]],"a":[["16611.00","0.029"]],
             "u":18521288,"seq":7961638724},"cts":1672304484976}

``u`` is consecutive within a subscription; ``u == 1`` is a snapshot after a service restart and
overwrites the book whatever its ``type``; size "0" deletes a level. ``cts`` is the matching-engine
time (lines up with trade ``T``) and is the exchange clock; ``ts`` is the push time. Bybit's daily
order-book archives have the same line shape without a local receive time: their ``ts`` is used.

Trades (https://bybit-exchange.github.io/docs/v5/websocket/public/trade)::

    {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,
     "data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50",
              "L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}

``S`` is the taker side.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from market.events import RawMessage
from market.parsing import (
    NS_PER_MS,
    BookRows,
    Parsed,
    Rejection,
    TradeRows,
    finish_book,
    finish_trades,
    is_int,
)
from market.venues.base import Venue, register

VENUE = "bybit"
DEPTHS = (1, 50, 200, 1000)  # orderbook.{depth}; pushed every 10 / 20 / 100 / 200 ms


@dataclass(frozen=True)
class Endpoints:
    """REST paths the adapter and the stand-in server speak."""

    instruments: str = "/v5/market/instruments-info"
    time: str = "/v5/market/time"
    orderbook: str = "/v5/market/orderbook"
    ws_public_linear: str = "/v5/public/linear"


ENDPOINTS = Endpoints()


def book_topic(depth: int, symbol: str) -> str:
    return f"orderbook.{depth}.{symbol}"


def trade_topic(symbol: str) -> str:
    return f"publicTrade.{symbol}"


def parse(messages: list[RawMessage], symbol: str, tick: float) -> Parsed:
    """Parse Bybit public linear messages for one symbol."""
    streams: list[str] = [""] * len(messages)
    book = BookRows()
    trades = TradeRows()
    rejections: list[Rejection] = []
    loads = orjson.loads
    trade_topic_ = trade_topic(symbol)
    book_suffix = "." + symbol
    for k, m in enumerate(messages):
        try:
            d = loads(m.payload)
        except orjson.JSONDecodeError:
            rejections.append(Rejection(k, "bad_json", m.payload[:80]))
            continue
        if not isinstance(d, dict):
            rejections.append(Rejection(k, "bad_json", "not a JSON object"))
            continue
        topic = d.get("topic")
        if topic is None:
            streams[k] = str(d.get("op") or d.get("ret_msg") or "control")
            continue
        if not isinstance(topic, str):
            rejections.append(Rejection(k, "bad_value", "topic is not a string"))
            continue
        if topic.startswith("orderbook.") and topic.endswith(book_suffix):
            try:
                data = d["data"]
                u = data["u"]
                seq = data["seq"]
                bids = data["b"]
                asks = data["a"]
                typ = d["type"]
                ts_ms = d["cts"] if "cts" in d else d["ts"]
                s = data["s"]
            except (KeyError, TypeError):
                rejections.append(Rejection(k, "missing_field", f"{topic}: incomplete book message"))
                continue
            if not (
                is_int(u)
                and is_int(seq)
                and is_int(ts_ms)
                and isinstance(bids, list)
                and isinstance(asks, list)
                and typ in ("snapshot", "delta")
            ):
                rejections.append(Rejection(k, "bad_value", f"{topic}: wrong field types"))
                continue
            if s != symbol:
                rejections.append(Rejection(k, "wrong_symbol", f"{topic}: data.s={s!r}"))
                continue
            streams[k] = topic
            snap = typ == "snapshot" or u == 1
            book.index.append(k)
            book.ts_exchange_ns.append(ts_ms * NS_PER_MS)
            book.ts_local_ns.append(m.ts_local_ns)
            book.first_id.append(u)
            book.last_id.append(u)
            book.prev_id.append(-1 if snap else u - 1)
            book.seq.append(seq)
            book.is_snap.append(snap)
            book.bids.extend(bids)
            book.asks.extend(asks)
            book.n_bids.append(len(bids))
            book.n_asks.append(len(asks))
        elif topic == trade_topic_:
            data = d.get("data")
            if not isinstance(data, list):
                rejections.append(Rejection(k, "missing_field", f"{topic}: data is not a list"))
                continue
            streams[k] = topic
            for t in data:
                try:
                    side = t["S"]
                    ts_ms = t["T"]
                    tid = t["i"]
                    px = t["p"]
                    qty = t["v"]
                except (KeyError, TypeError):
                    rejections.append(Rejection(k, "missing_field", f"{topic}: incomplete trade"))
                    continue
                if side not in ("Buy", "Sell") or not is_int(ts_ms) or t.get("s", symbol) != symbol:
                    rejections.append(Rejection(k, "bad_value", f"{topic}: trade side/time/symbol"))
                    continue
                trades.index.append(k)
                trades.ts_exchange_ns.append(ts_ms * NS_PER_MS)
                trades.ts_local_ns.append(m.ts_local_ns)
                trades.trade_id.append(str(tid))
                trades.price.append(px)
                trades.qty.append(qty)
                trades.side.append(1 if side == "Buy" else -1)
        else:
            streams[k] = topic
    return Parsed(
        streams=streams,
        book=finish_book(book, tick, rejections),
        trades=finish_trades(trades, tick, rejections),
        rejections=rejections,
    )


BYBIT = register(
    Venue(
        name=VENUE,
        parse=parse,
        tick_size=0.1,
        lot_size=0.001,
        replay_pending_on_snapshot=False,
        doc="Bybit v5 linear perpetuals (WebSocket orderbook.N / publicTrade, archive lines)",
    )
)
