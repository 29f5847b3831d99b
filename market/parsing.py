"""Venue-neutral result of parsing a batch of raw messages, and the shared level conversion.

A venue parser walks the messages once in Python (orjson does the JSON), collects scalar fields
into lists and price levels into flat lists, then converts and validates all levels of the batch
with numpy at once. A message with a bad field is rejected with a reason; it never reaches the
book and is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from market.book import Updates
from market.events import RawBatch

NS_PER_MS = 1_000_000


@dataclass
class Rejection:
    index: int  # position of the message in the raw batch
    reason: str  # bad_json | missing_field | bad_value | negative_size | off_tick | wrong_symbol
    detail: str


@dataclass
class BookRows:
    """Columns of the book messages of a batch (n messages, levels flattened with offsets)."""

    index: list[int] = field(default_factory=list)  # position in the raw batch
    ts_ex: list[int] = field(default_factory=list)
    ts_local: list[int] = field(default_factory=list)
    first_id: list[int] = field(default_factory=list)
    last_id: list[int] = field(default_factory=list)
    prev_id: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    is_snap: list[bool] = field(default_factory=list)
    bids: list[list[str]] = field(default_factory=list)  # [[px, qty], ...] of all messages
    asks: list[list[str]] = field(default_factory=list)
    n_bids: list[int] = field(default_factory=list)
    n_asks: list[int] = field(default_factory=list)


@dataclass
class TradeRows:
    index: list[int] = field(default_factory=list)
    ts_ex: list[int] = field(default_factory=list)
    ts_local: list[int] = field(default_factory=list)
    trade_id: list[str] = field(default_factory=list)
    price: list[str] = field(default_factory=list)
    qty: list[str] = field(default_factory=list)
    side: list[int] = field(default_factory=list)


@dataclass
class BookMessages:
    """Numpy form of BookRows, ready for the book kernel."""

    index: np.ndarray
    ts_ex: np.ndarray
    ts_local: np.ndarray
    first_id: np.ndarray
    last_id: np.ndarray
    prev_id: np.ndarray
    seq: np.ndarray
    is_snap: np.ndarray
    skip: np.ndarray
    bid_off: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_off: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray

    def __len__(self) -> int:
        return int(self.is_snap.shape[0])

    def updates(self) -> Updates:
        """These messages as the book kernel reads them."""
        return Updates(
            self.skip,
            self.is_snap,
            self.first_id,
            self.last_id,
            self.prev_id,
            self.ts_ex,
            self.ts_local,
            self.bid_off,
            self.bid_px,
            self.bid_qty,
            self.ask_off,
            self.ask_px,
            self.ask_qty,
        )

    def take(self, rows: np.ndarray) -> BookMessages:
        """The messages at positions ``rows`` (levels re-flattened)."""
        bid_off, bid_sel = _take_lists(self.bid_off, rows)
        ask_off, ask_sel = _take_lists(self.ask_off, rows)
        return BookMessages(
            index=self.index[rows],
            ts_ex=self.ts_ex[rows],
            ts_local=self.ts_local[rows],
            first_id=self.first_id[rows],
            last_id=self.last_id[rows],
            prev_id=self.prev_id[rows],
            seq=self.seq[rows],
            is_snap=self.is_snap[rows],
            skip=self.skip[rows],
            bid_off=bid_off,
            bid_px=self.bid_px[bid_sel],
            bid_qty=self.bid_qty[bid_sel],
            ask_off=ask_off,
            ask_px=self.ask_px[ask_sel],
            ask_qty=self.ask_qty[ask_sel],
        )

    @staticmethod
    def concat(parts: list[BookMessages]) -> BookMessages:
        def cat_off(offs: list[np.ndarray]) -> np.ndarray:
            out = [np.zeros(1, np.int64)]
            total = 0
            for o in offs:
                out.append(o[1:] + total)
                total += int(o[-1])
            return np.concatenate(out)

        return BookMessages(
            index=np.concatenate([p.index for p in parts]),
            ts_ex=np.concatenate([p.ts_ex for p in parts]),
            ts_local=np.concatenate([p.ts_local for p in parts]),
            first_id=np.concatenate([p.first_id for p in parts]),
            last_id=np.concatenate([p.last_id for p in parts]),
            prev_id=np.concatenate([p.prev_id for p in parts]),
            seq=np.concatenate([p.seq for p in parts]),
            is_snap=np.concatenate([p.is_snap for p in parts]),
            skip=np.concatenate([p.skip for p in parts]),
            bid_off=cat_off([p.bid_off for p in parts]),
            bid_px=np.concatenate([p.bid_px for p in parts]),
            bid_qty=np.concatenate([p.bid_qty for p in parts]),
            ask_off=cat_off([p.ask_off for p in parts]),
            ask_px=np.concatenate([p.ask_px for p in parts]),
            ask_qty=np.concatenate([p.ask_qty for p in parts]),
        )


def _take_lists(off: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lengths = off[1:][rows] - off[:-1][rows]
    new_off = np.zeros(rows.shape[0] + 1, np.int64)
    np.cumsum(lengths, out=new_off[1:])
    if new_off[-1] == 0:
        return new_off, np.zeros(0, np.int64)
    starts = off[:-1][rows]
    sel = np.repeat(starts - new_off[:-1], lengths) + np.arange(new_off[-1])
    return new_off, sel


@dataclass
class TradeMessages:
    index: np.ndarray
    ts_ex: np.ndarray
    ts_local: np.ndarray
    trade_id: list[str]
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray

    def __len__(self) -> int:
        return int(self.price.shape[0])

    @staticmethod
    def in_order(parts: list[TradeMessages]) -> TradeMessages:
        """The trades of all parts by message (stable: the trades of one message keep their order)."""
        index = np.concatenate([p.index for p in parts])
        order = np.argsort(index, kind="stable")
        ids = [t for p in parts for t in p.trade_id]
        return TradeMessages(
            index=index[order],
            ts_ex=np.concatenate([p.ts_ex for p in parts])[order],
            ts_local=np.concatenate([p.ts_local for p in parts])[order],
            trade_id=[ids[i] for i in order.tolist()],
            price=np.concatenate([p.price for p in parts])[order],
            qty=np.concatenate([p.qty for p in parts])[order],
            side=np.concatenate([p.side for p in parts])[order],
        )


@dataclass
class Parsed:
    """Everything a venue parser extracted from one batch of raw messages."""

    streams: list[str]  # stream of each raw message ("" if it was rejected)
    book: BookMessages
    trades: TradeMessages
    rejections: list[Rejection]


@dataclass(frozen=True, eq=False)
class Decoded:
    """Messages a source decoded itself (column files: the CSV archives, market/sources/columns.py):
    the parsed messages, their raw lines (``raw``: what raw_messages stores; every index in
    ``parsed`` is a line of it) and each line's merge key (exchange time, never decreasing)."""

    raw: RawBatch
    parsed: Parsed
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.raw)

    def slice(self, start: int, stop: int) -> Decoded:
        """Lines ``start`` .. ``stop - 1`` and the messages that begin on them (indices re-based)."""
        p = self.parsed
        books = np.flatnonzero((p.book.index >= start) & (p.book.index < stop))
        book = p.book.take(books)
        book.index -= start
        t = p.trades
        keep = np.flatnonzero((t.index >= start) & (t.index < stop))
        trades = TradeMessages(
            t.index[keep] - start, t.ts_ex[keep], t.ts_local[keep], [t.trade_id[i] for i in keep.tolist()],
            t.price[keep], t.qty[keep], t.side[keep],
        )  # fmt: skip
        rejections = [Rejection(r.index - start, r.reason, r.detail) for r in p.rejections if start <= r.index < stop]
        parsed = Parsed(p.streams[start:stop], book, trades, rejections)
        return Decoded(self.raw.slice(start, stop), parsed, self.keys[start:stop])


def is_int(x: object) -> bool:
    """A JSON integer (bool is not one)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _levels_to_array(pairs: list[list[str]]) -> np.ndarray:
    if not pairs:
        return np.empty((0, 2))
    arr = np.array(pairs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError("levels must be [price, size] pairs")
    return arr


def _level_problem(px: np.ndarray, qty: np.ndarray, tick: float) -> np.ndarray:
    """Per level: 0 ok, 1 bad value (non-finite or non-positive price), 2 negative size, 3 off tick."""
    code = np.zeros(px.shape[0], np.int8)
    ticks = px / tick
    off_tick = np.abs(ticks - np.round(ticks)) > 1e-6
    code[off_tick] = 3
    code[~(qty >= 0) | np.signbit(qty)] = 2  # "-0" is a signed size too: malformed, not a delete
    code[~np.isfinite(qty)] = 1
    code[~(np.isfinite(px) & (px > 0))] = 1
    return code


_LEVEL_REASONS = {1: "bad_value", 2: "negative_size", 3: "off_tick"}


def check_levels(
    index: list[int] | np.ndarray,
    skip: np.ndarray,
    bids: tuple[np.ndarray, np.ndarray, np.ndarray],
    asks: tuple[np.ndarray, np.ndarray, np.ndarray],
    tick: float,
    rejections: list[Rejection],
) -> None:
    """Mark (skip) and reject every message with a level that is not a valid (price, size) on the tick grid."""
    for off, px, qty in (bids, asks):
        problem = _level_problem(px, qty, tick)
        bad = np.flatnonzero(problem)
        if bad.size:
            owners = np.searchsorted(off, bad, side="right") - 1
            for lvl, i in zip(bad.tolist(), owners.tolist(), strict=True):
                if not skip[i]:
                    skip[i] = True
                    reason = _LEVEL_REASONS[int(problem[lvl])]
                    rejections.append(
                        Rejection(int(index[i]), reason, f"level {float(px[lvl])!r} x {float(qty[lvl])!r}")
                    )


def finish_book(rows: BookRows, tick: float, rejections: list[Rejection]) -> BookMessages:
    """Convert collected book rows to arrays, rejecting messages whose levels are invalid."""
    n = len(rows.index)
    n_b = np.asarray(rows.n_bids, np.int64)
    n_a = np.asarray(rows.n_asks, np.int64)
    bid_off = np.zeros(n + 1, np.int64)
    ask_off = np.zeros(n + 1, np.int64)
    np.cumsum(n_b, out=bid_off[1:])
    np.cumsum(n_a, out=ask_off[1:])
    skip = np.zeros(n, np.bool_)
    try:
        bids = _levels_to_array(rows.bids)
        asks = _levels_to_array(rows.asks)
    except (ValueError, TypeError):
        # slow path: find the messages whose levels do not convert
        bids_parts, asks_parts = [], []
        for i in range(n):
            b = rows.bids[bid_off[i] : bid_off[i + 1]]
            a = rows.asks[ask_off[i] : ask_off[i + 1]]
            try:
                pair = _levels_to_array(b), _levels_to_array(a)  # both or neither: one row of parts each
            except (ValueError, TypeError):
                skip[i] = True
                rejections.append(Rejection(rows.index[i], "bad_value", "price level is not [price, size]"))
                pair = np.full((len(b), 2), np.nan), np.full((len(a), 2), np.nan)
            bids_parts.append(pair[0])
            asks_parts.append(pair[1])
        bids = np.concatenate(bids_parts) if bids_parts else np.empty((0, 2))
        asks = np.concatenate(asks_parts) if asks_parts else np.empty((0, 2))
    bid_px, bid_qty = np.ascontiguousarray(bids[:, 0]), np.ascontiguousarray(bids[:, 1])
    ask_px, ask_qty = np.ascontiguousarray(asks[:, 0]), np.ascontiguousarray(asks[:, 1])
    check_levels(rows.index, skip, (bid_off, bid_px, bid_qty), (ask_off, ask_px, ask_qty), tick, rejections)
    return BookMessages(
        index=np.asarray(rows.index, np.int64),
        ts_ex=np.asarray(rows.ts_ex, np.int64),
        ts_local=np.asarray(rows.ts_local, np.int64),
        first_id=np.asarray(rows.first_id, np.int64),
        last_id=np.asarray(rows.last_id, np.int64),
        prev_id=np.asarray(rows.prev_id, np.int64),
        seq=np.asarray(rows.seq, np.int64),
        is_snap=np.asarray(rows.is_snap, np.bool_),
        skip=skip,
        bid_off=bid_off,
        bid_px=bid_px,
        bid_qty=bid_qty,
        ask_off=ask_off,
        ask_px=ask_px,
        ask_qty=ask_qty,
    )


def finish_trades(rows: TradeRows, tick: float, rejections: list[Rejection]) -> TradeMessages:
    """Convert collected trades to arrays, dropping (and reporting) trades with bad values."""
    try:
        price = np.array(rows.price, dtype=np.float64)
        qty = np.array(rows.qty, dtype=np.float64)
    except (ValueError, TypeError):
        price = np.array([_to_float(p) for p in rows.price], dtype=np.float64)
        qty = np.array([_to_float(q) for q in rows.qty], dtype=np.float64)
    ok = np.isfinite(price) & (price > 0) & np.isfinite(qty) & (qty > 0)
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            reason = "negative_size" if np.isfinite(qty[i]) and qty[i] < 0 else "bad_value"
            rejections.append(Rejection(rows.index[i], reason, f"trade {rows.price[i]!r} x {rows.qty[i]!r}"))
    keep = np.flatnonzero(ok)
    return TradeMessages(
        index=np.asarray(rows.index, np.int64)[keep],
        ts_ex=np.asarray(rows.ts_ex, np.int64)[keep],
        ts_local=np.asarray(rows.ts_local, np.int64)[keep],
        trade_id=[rows.trade_id[i] for i in keep.tolist()] if not ok.all() else rows.trade_id,
        price=price[keep],
        qty=qty[keep],
        side=np.asarray(rows.side, np.int8)[keep],
    )


def _to_float(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
