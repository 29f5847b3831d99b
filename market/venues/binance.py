"""Binance USD-M futures raw recordings (as in ../shared/data/binance-usdm-btcusdt).

One message per line, ``<local_receive_ts> <json>``; the local stamp is in ns, or in us in the
2023 ``.dat.gz`` files (told apart by magnitude). Streams:

- depth diff ``{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":..,"T":..,"s":"BTCUSDT",
  "U":first,"u":last,"pu":previous last,"b":[[px,qty],..],"a":[..]}}``
- REST snapshot ``{"lastUpdateId":L,"E":..,"T":..,"bids":[[px,qty],..],"asks":[..]}``
- trade ``{"stream":"btcusdt@trade","data":{"e":"trade","T":..,"t":id,"p":..,"q":..,"X":"MARKET","m":true}}``
  (``m``: the buyer is the maker, so the taker sold)
- ``btcusdt@bookTicker`` and ``btcusdt@markPrice@1s`` are kept raw only.

Sync (Binance "How to manage a local order book correctly"): diffs received before the snapshot are
buffered and replayed after it; those with ``u < lastUpdateId`` are dropped; the first applied
diff spans the snapshot; afterwards every ``pu`` equals the previous ``u``. The exchange clock is
``T`` (transaction time).
"""

from __future__ import annotations

from typing import Any

import orjson

from market.events import RawBatch, RawInput
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

VENUE = "binance-usdm"
SNAPSHOT_STREAM = "rest/depth"


def local_ts_to_ns(ts: int) -> int:
    """The recordings stamp in ns (2024) or us (2023): tell them apart by magnitude."""
    return ts * 1_000 if ts < 100_000_000_000_000_000 else ts


def parse(messages: RawInput, symbol: str, tick: float) -> Parsed:
    """Parse Binance USD-M combined-stream messages and REST depth snapshots for one symbol."""
    batch = RawBatch.of(messages)
    streams: list[str] = [""] * len(batch)
    book = BookRows()
    trades = TradeRows()
    rejections: list[Rejection] = []
    loads = orjson.loads
    lower = symbol.lower()
    depth_prefix = f"{lower}@depth"
    trade_stream = f"{lower}@trade"
    view = memoryview(batch.data)
    offsets = batch.offsets.tolist()
    for k, ts_local in enumerate(batch.ts_local.tolist()):
        try:
            d = loads(view[offsets[k] : offsets[k + 1]])
        except orjson.JSONDecodeError:
            rejections.append(Rejection(k, "bad_json", batch.payload(k)[:80]))
            continue
        if not isinstance(d, dict):
            rejections.append(Rejection(k, "bad_json", "not a JSON object"))
            continue
        stream = d.get("stream")
        if stream is None and "lastUpdateId" in d:
            if _snapshot(d, k, ts_local, book, rejections):
                streams[k] = SNAPSHOT_STREAM
            continue
        if not isinstance(stream, str):
            rejections.append(Rejection(k, "missing_field", "no stream name"))
            continue
        data = d.get("data")
        if not isinstance(data, dict):
            rejections.append(Rejection(k, "missing_field", f"{stream}: no data"))
            continue
        if stream.startswith(depth_prefix):
            ok = _diff(stream, data, k, ts_local, book, rejections)
        elif stream == trade_stream:
            ok = _trade(stream, data, k, ts_local, trades, rejections)
        else:
            ok = True
        if ok:
            streams[k] = stream
    return Parsed(
        streams=streams,
        book=finish_book(book, tick, rejections),
        trades=finish_trades(trades, tick, rejections),
        rejections=rejections,
    )


def _snapshot(d: dict[str, Any], k: int, ts_local: int, book: BookRows, rejections: list[Rejection]) -> bool:
    """Add the REST depth snapshot d (message k) to book; False if it is rejected."""
    try:
        last = d["lastUpdateId"]
        ts_ms = d["T"]
        bids = d["bids"]
        asks = d["asks"]
    except KeyError:
        rejections.append(Rejection(k, "missing_field", "depth snapshot incomplete"))
        return False
    if not _book_fields_ok(ts_ms, last, last, -1, bids, asks):
        rejections.append(Rejection(k, "bad_value", "depth snapshot: wrong field types"))
        return False
    _add_book(book, k, ts_local, ts_ms, last, last, -1, True, bids, asks)
    return True


def _diff(
    stream: str, data: dict[str, Any], k: int, ts_local: int, book: BookRows, rejections: list[Rejection]
) -> bool:
    """Add the depth diff data (message k) to book; False if it is rejected."""
    try:
        first, last, prev = data["U"], data["u"], data["pu"]
        ts_ms = data["T"]
        bids, asks = data["b"], data["a"]
    except KeyError:
        rejections.append(Rejection(k, "missing_field", f"{stream}: incomplete diff"))
        return False
    if not _book_fields_ok(ts_ms, first, last, prev, bids, asks):
        rejections.append(Rejection(k, "bad_value", f"{stream}: wrong field types"))
        return False
    _add_book(book, k, ts_local, ts_ms, first, last, prev, False, bids, asks)
    return True


def _trade(
    stream: str, data: dict[str, Any], k: int, ts_local: int, trades: TradeRows, rejections: list[Rejection]
) -> bool:
    """Add the trade data (message k) to trades unless it is not a market trade; False if it is rejected."""
    try:
        ts_ms, tid, px, qty, maker = data["T"], data["t"], data["p"], data["q"], data["m"]
    except KeyError:
        rejections.append(Rejection(k, "missing_field", f"{stream}: incomplete trade"))
        return False
    if not (is_int(ts_ms) and isinstance(maker, bool)):
        rejections.append(Rejection(k, "bad_value", f"{stream}: wrong field types"))
        return False
    if data.get("X", "MARKET") != "MARKET":
        return True  # insurance-fund and ADL prints are not market trades
    trades.index.append(k)
    trades.ts_ex.append(ts_ms * NS_PER_MS)
    trades.ts_local.append(ts_local)
    trades.trade_id.append(str(tid))
    trades.price.append(px)
    trades.qty.append(qty)
    trades.side.append(-1 if maker else 1)
    return True


def _book_fields_ok(ts_ms: object, first: object, last: object, prev: object, bids: object, asks: object) -> bool:
    return (
        is_int(ts_ms)
        and is_int(first)
        and is_int(last)
        and is_int(prev)
        and isinstance(bids, list)
        and isinstance(asks, list)
    )


def _add_book(
    book: BookRows,
    k: int,
    ts_local: int,
    ts_ms: int,
    first: int,
    last: int,
    prev: int,
    snap: bool,
    bids: list[list[str]],
    asks: list[list[str]],
) -> None:
    book.index.append(k)
    book.ts_ex.append(ts_ms * NS_PER_MS)
    book.ts_local.append(ts_local)
    book.first_id.append(first)
    book.last_id.append(last)
    book.prev_id.append(prev)
    book.seq.append(-1)
    book.is_snap.append(snap)
    book.bids.extend(bids)
    book.asks.extend(asks)
    book.n_bids.append(len(bids))
    book.n_asks.append(len(asks))


BINANCE_USDM = register(
    Venue(
        name=VENUE,
        parse=parse,
        tick_size=0.1,
        lot_size=0.001,
        replay_pending_on_snapshot=True,
        doc="Binance USD-M futures raw recordings: <local ts> <combined-stream json>",
    )
)
