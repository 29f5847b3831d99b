"""Market data for the runner: one stream of book and trade ticks in exchange-time order.

Three sources behind one interface (``Feed.batches()`` yields lists of ticks):

- ``bybit``: ccxt.pro against the configured endpoints (Bybit itself or the stand-in server),
- ``sim``: the built-in simulator, paced by the wall clock,
- ``replay``: the warehouse's stored book and trades, as fast as possible or at the recorded pace.

The live sources go through the same ``Normalizer`` as the ingest (sequence checks, resyncs,
rejected messages), so the runner sees exactly the books the warehouse would have stored; the
replay reads those stored books back. Within a batch, ticks are ordered by exchange time with a
trade before a book update of the same time (the feature kernels' and the matching engine's
rule); batches follow each other in arrival order. No tick is ever dropped: a trade stamped
before a book update already passed on (the trade and depth streams travel separately) is passed
on in the next batch and counted (``late``); a trade stamped after the last book update of its
batch waits for the next batch's book updates, exactly as ``features.BatchFeatures`` carries it
over between chunks, so the online features over the feed's ticks equal the batch features over
the same arrival chunks (tests/test_real_data.py, on a real recording).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np

from core.config import AppConfig
from core.errors import DataError, UserError
from core.records import Book, Books, Trade, Trades
from core.timefmt import format_ns
from market.normalize import Normalizer
from market.sources.base import Source

log = logging.getLogger(__name__)


Tick = Book | Trade  # the house's records (core.records), one event each


class Feed(Protocol):
    name: str
    counts: Counter[str]

    @property
    def book_valid(self) -> bool: ...

    def prepare(self, after_ns: int | None) -> int | None:
        """Check, before a session starts, that the feed has market data to give; return the market
        time it starts at (None: a live-paced source starts now). ``after_ns``: the market time the
        account was last marked at, which a replay without a start of its own continues after.
        Bad input: a one-line UserError."""
        ...

    def batches(self) -> AsyncIterator[list[Tick]]: ...

    def stop(self) -> None: ...

    async def aclose(self) -> None: ...


def merge(books: Books, trades: Trades) -> list[Tick]:
    """Book updates and trades as one list in exchange-time order, trades first on a tie."""
    ts = np.concatenate([trades.ts_ex, books.ts_ex])
    kind = np.concatenate([np.zeros(len(trades), np.int8), np.ones(len(books), np.int8)])
    order = np.lexsort((kind, ts))  # stable: each stream keeps its own order
    m = len(trades)
    return [trades.row(k) if k < m else books.row(k - m) for k in order.tolist()]


class SourceFeed:
    """A live source (Bybit or the paced simulator) through the ingest's normalizer."""

    def __init__(self, source: Source, cfg: AppConfig) -> None:
        self.source, self.name = source, source.name
        self.levels = cfg.features.levels
        self.counts: Counter[str] = Counter()
        self.normalizer: Normalizer | None = None
        self.max_pending = cfg.ingest.max_pending_deltas
        self.snapshot_levels = cfg.warehouse.snapshot_levels
        self._last_book_ts = -1
        self._held: list[Trade] = []  # trades stamped after the last book update passed on

    @property
    def book_valid(self) -> bool:
        return self.normalizer is not None and self.normalizer.book.is_valid

    def prepare(self, after_ns: int | None) -> int | None:
        return None

    async def batches(self) -> AsyncIterator[list[Tick]]:
        await self.source.start()
        src = self.source
        self.normalizer = Normalizer(
            src.venue, src.symbol, src.tick_size, self.snapshot_levels, store_raw=False, max_pending=self.max_pending
        )
        async for raw in src.batches():
            ticks: list[Tick] = []
            if raw:
                out = self.normalizer.process(raw)
                self.counts.update(out.counts)
                ticks = self._sequence(merge(out.books.top(self.levels), out.trades))
                if self.normalizer.needs_resync:
                    src.request_resync(self.normalizer.resync_reason)
            for note in src.take_notes():
                self.counts[note.kind] += 1
                log.info("feed %s: %s", note.kind, note.detail)
            yield ticks
        if self._held:  # the stream ended: nothing will come to put them after
            held, self._held = self._held, []
            yield list(held)

    def _sequence(self, ticks: list[Tick]) -> list[Tick]:
        """This batch's ticks (in exchange order) with the trades held from before; trades stamped after the
        batch's last book update are held for the next batch. Nothing is dropped."""
        if self._held:
            ticks = sorted([*self._held, *ticks], key=lambda t: (t.ts_ex, isinstance(t, Book)))  # stable
            self._held = []
        books = [t.ts_ex for t in ticks if isinstance(t, Book)]
        if not books:
            self._held = [t for t in ticks if isinstance(t, Trade)]  # (all of them) wait for a book update
            return []
        last_book = books[-1]
        out: list[Tick] = []
        for t in ticks:
            if isinstance(t, Trade):
                if t.ts_ex > last_book:
                    self._held.append(t)
                    continue
                if t.ts_ex < self._last_book_ts:
                    self.counts["late"] += 1  # stamped before a book update already passed on: applied now
            out.append(t)
        self._last_book_ts = last_book
        return out

    def stop(self) -> None:
        self.source.stop()

    async def aclose(self) -> None:
        await self.source.aclose()


class ReplayFeed:
    """The warehouse's stored book and trades, ``live.replay_chunk`` (an hour) at a time, each chunk
    checked as it is read; ``speed`` 0 is as fast as possible."""

    name = "replay"

    def __init__(self, cfg: AppConfig, start_ns: int | None, end_ns: int | None, speed: float) -> None:
        from pipelines.replay import load_market  # the live sources never need the warehouse

        self.cfg, self.start_ns, self.end_ns, self.speed = cfg, start_ns, end_ns, speed
        self._load = load_market
        self.counts: Counter[str] = Counter()
        self._stopped = False
        self._window: tuple[int, int] | None = None

    @property
    def book_valid(self) -> bool:
        return True  # stored books passed the sequence checks when they were ingested

    def prepare(self, after_ns: int | None) -> int | None:
        continued = self.start_ns is None and after_ns is not None and after_ns >= 0
        if continued:
            self.start_ns = after_ns  # the account's replay goes on where it stopped (start is exclusive below)
        lo, _ = self._bounds(exclusive=continued)
        return lo

    def _bounds(self, exclusive: bool = False) -> tuple[int, int]:
        """[lo, hi): the window, cut to what the warehouse holds; refused when it holds no book update."""
        if self._window is not None:
            return self._window
        from warehouse.db import one, reading

        cfg = self.cfg
        sql = "SELECT min(ts_exchange_ns), max(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ?"
        pair = [cfg.instrument.venue, cfg.instrument.venue_symbol]
        start, end = self.start_ns, self.end_ns
        with reading(cfg.resolve(cfg.warehouse.path), cfg.warehouse.lock_timeout / 1e9) as con:
            stored = one(con, sql, pair)
            if stored is None or stored[0] is None:
                raise UserError("the warehouse holds no book data to replay (run an ingest first)")
            first, last = int(stored[0]), int(stored[1])
            lo = first if start is None else max(first, start + 1 if exclusive else start)
            hi = last + 1 if end is None else min(last + 1, end)
            inside = one(con, sql + " AND ts_exchange_ns >= ? AND ts_exchange_ns < ?", [*pair, lo, hi])
        held = f"the warehouse holds {format_ns(first)} .. {format_ns(last)}"
        if inside is None or inside[0] is None:
            if exclusive:
                raise UserError(
                    f"the account's replay has reached {format_ns(lo - 1)} and nothing is stored after it ({held}): "
                    "replay on a new account with another --journal"
                )
            since = "its start" if start is None else format_ns(start)
            until = "its end" if end is None else format_ns(end)
            raise UserError(f"the replay window {since} .. {until} holds no book data ({held})")
        self._window = lo, hi
        return self._window

    async def batches(self) -> AsyncIterator[list[Tick]]:
        lo, hi = self._bounds()
        t0_wall, t0_data = time.monotonic_ns(), None
        step = self.cfg.live.replay_chunk
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            try:
                m = self._load(self.cfg, a, b, self.cfg.features.levels)
            except ValueError as exc:  # Market.validate: what the warehouse holds there is not a sound book
                raise DataError(f"the stored market {format_ns(a)} .. {format_ns(b)} is corrupt: {exc}") from None
            ticks = merge(m.books, m.trades)
            self.counts["book_updates"] += len(m.books)
            self.counts["trades"] += len(m.trades)
            for i in range(0, len(ticks), 256):
                part = ticks[i : i + 256]
                if self.speed > 0 and part:
                    t0_data = part[0].ts_local if t0_data is None else t0_data
                    due = t0_wall + (part[-1].ts_local - t0_data) / self.speed
                    await asyncio.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
                yield part
                if self._stopped:
                    return
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._stopped = True

    async def aclose(self) -> None:
        return None
