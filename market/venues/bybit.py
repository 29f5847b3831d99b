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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from market.events import RawBatch, RawInput
from market.parsing import (
    NS_PER_MS,
    BookMessages,
    BookRows,
    Parsed,
    Rejection,
    TradeMessages,
    TradeRows,
    check_levels,
    finish_book,
    finish_trades,
    is_int,
)
from market.venues import bybit_fast, bybit_fast_trades
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


def parse(messages: RawInput, symbol: str, tick: float, fast: bool = True) -> Parsed:
    """Parse Bybit public linear messages for one symbol.

    Well-formed book messages take the byte-level fast path (market/venues/bybit_fast.py);
    everything else, including every book message the fast path does not recognise, takes the
    general orjson path (``_general``), which is the one that decides and reports why a message is bad.
    """
    batch = RawBatch.of(messages)
    n = len(batch)
    streams = np.full(n, "", dtype=object)
    rejections: list[Rejection] = []
    fast_books = _fast_books(batch, symbol, tick, streams, rejections) if fast else None
    fast_trades = _fast_trades(batch, symbol, streams) if fast else None
    todo = np.flatnonzero(streams == "").tolist() if fast else range(n)
    book, trades = _general(batch, todo, symbol, streams, rejections)
    slow = finish_book(book, tick, rejections)
    if fast_books is not None and len(fast_books):
        merged = BookMessages.concat([fast_books, slow]) if len(slow) else fast_books
        slow = merged.take(np.argsort(merged.index, kind="stable")) if len(slow) else merged
    slow_trades = finish_trades(trades, tick, rejections)
    if fast_trades is not None:
        slow_trades = TradeMessages.in_order([fast_trades, slow_trades]) if len(slow_trades) else fast_trades
    return Parsed(
        streams=streams.tolist(),
        book=slow,
        trades=slow_trades,
        rejections=rejections,
    )


def _general(
    batch: RawBatch, todo: Iterable[int], symbol: str, streams: np.ndarray, rejections: list[Rejection]
) -> tuple[BookRows, TradeRows]:
    """The orjson path for the messages ``todo``: their rows; their streams are set (a rejected book
    message's stays "")."""
    book = BookRows()
    trades = TradeRows()
    loads = orjson.loads
    trade_topic_ = trade_topic(symbol)
    book_suffix = "." + symbol
    view = memoryview(batch.data)
    offsets = batch.offsets.tolist()
    ts_local = batch.ts_local
    for k in todo:
        try:
            d = loads(view[offsets[k] : offsets[k + 1]])
        except orjson.JSONDecodeError:
            rejections.append(Rejection(k, "bad_json", batch.payload(k)[:80]))
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
            if _book_message(d, k, int(ts_local[k]), symbol, book, rejections):
                streams[k] = topic
        elif topic == trade_topic_:
            if _trade_message(d, k, int(ts_local[k]), symbol, trades, rejections):
                streams[k] = topic
        else:
            streams[k] = topic
    return book, trades


def _book_message(
    d: dict[str, Any], k: int, ts_local: int, symbol: str, book: BookRows, rejections: list[Rejection]
) -> bool:
    """Add the orderbook message d (message k) to book; False if it is rejected."""
    topic = d["topic"]
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
        return False
    if not (
        is_int(u)
        and is_int(seq)
        and is_int(ts_ms)
        and isinstance(bids, list)
        and isinstance(asks, list)
        and typ in ("snapshot", "delta")
    ):
        rejections.append(Rejection(k, "bad_value", f"{topic}: wrong field types"))
        return False
    if s != symbol:
        rejections.append(Rejection(k, "wrong_symbol", f"{topic}: data.s={s!r}"))
        return False
    snap = typ == "snapshot" or u == 1
    book.index.append(k)
    book.ts_ex.append(ts_ms * NS_PER_MS)
    book.ts_local.append(ts_local)
    book.first_id.append(u)
    book.last_id.append(u)
    book.prev_id.append(-1 if snap else u - 1)
    book.seq.append(seq)
    book.is_snap.append(snap)
    book.bids.extend(bids)
    book.asks.extend(asks)
    book.n_bids.append(len(bids))
    book.n_asks.append(len(asks))
    return True


def _trade_message(
    d: dict[str, Any], k: int, ts_local: int, symbol: str, trades: TradeRows, rejections: list[Rejection]
) -> bool:
    """Add the trades of the publicTrade message d (message k); False if it has no list of trades
    (a bad trade in the list is rejected alone)."""
    topic = d["topic"]
    data = d.get("data")
    if not isinstance(data, list):
        rejections.append(Rejection(k, "missing_field", f"{topic}: data is not a list"))
        return False
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
        trades.ts_ex.append(ts_ms * NS_PER_MS)
        trades.ts_local.append(ts_local)
        trades.trade_id.append(str(tid))
        trades.price.append(px)
        trades.qty.append(qty)
        trades.side.append(1 if side == "Buy" else -1)
    return True


def _fast_books(
    batch: RawBatch, symbol: str, tick: float, streams: np.ndarray, rejections: list[Rejection]
) -> BookMessages | None:
    """Book messages through the fast path: their arrays; their streams are set (others stay "")."""
    c = bybit_fast.scan(batch.data, batch.offsets, symbol)
    ok = c.ok
    rows = np.flatnonzero(ok)
    if not rows.size:
        return None
    # runs of messages with the same topic share one str; another symbol's topic: the general path decides
    run = np.cumsum(~c.same_topic[rows]) - 1
    firsts = rows[np.flatnonzero(~c.same_topic[rows])].tolist()
    start, end = batch.offsets, c.topic_end
    topics = [batch.data[int(start[k]) + 10 : int(end[k])].decode("ascii") for k in firsts]
    keep = np.array([t.endswith("." + symbol) for t in topics])[run]
    streams[rows[keep]] = np.array(topics, dtype=object)[run[keep]]
    rows = rows[keep]
    u = c.u
    arrays = BookMessages(
        index=np.arange(len(batch), dtype=np.int64),
        ts_ex=c.ts_ms * NS_PER_MS,
        ts_local=batch.ts_local,
        first_id=u,
        last_id=u,
        prev_id=np.where(c.is_snap, -1, u - 1),
        seq=c.seq,
        is_snap=c.is_snap,
        skip=np.zeros(len(batch), np.bool_),
        bid_off=c.bid_off,
        bid_px=c.bid_px,
        bid_qty=c.bid_qty,
        ask_off=c.ask_off,
        ask_px=c.ask_px,
        ask_qty=c.ask_qty,
    ).take(rows)
    check_levels(
        arrays.index,
        arrays.skip,
        (arrays.bid_off, arrays.bid_px, arrays.bid_qty),
        (arrays.ask_off, arrays.ask_px, arrays.ask_qty),
        tick,
        rejections,
    )
    return arrays


def _fast_trades(batch: RawBatch, symbol: str, streams: np.ndarray) -> TradeMessages | None:
    """Trade messages through the fast path: their trades; their streams are set (others stay "")."""
    c = bybit_fast_trades.scan_trade_messages(batch.data, batch.offsets, symbol)
    rows = np.flatnonzero(c.ok)
    if not rows.size:
        return None
    streams[rows] = trade_topic(symbol)
    index = np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(c.trade_off))
    data = batch.data
    return TradeMessages(
        index=index,
        ts_ex=c.t_ms * NS_PER_MS,
        ts_local=batch.ts_local[index],
        trade_id=[data[a:b].decode("ascii") for a, b in zip(c.id_start.tolist(), c.id_end.tolist(), strict=True)],
        price=c.px,
        qty=c.qty,
        side=c.side,
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
