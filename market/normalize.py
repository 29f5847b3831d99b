"""Raw messages in, normalized tables out: the one path from any source to the warehouse.

Pure and re-runnable: the same raw messages always give the same rows, so a normalization bug
costs a recompute, never lost data (hftbacktest's "record raw, normalize, validate").
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from core.records import Books, Trades
from market import book as bk
from market.events import (
    BOOK_UPDATES,
    RAW_MESSAGES,
    SYNC_EVENTS,
    TRADES,
    RawBatch,
    RawInput,
    TableSpec,
    fixed_array,
    list_array,
    snapshot_spec,
)
from market.parsing import BookMessages, Decoded, Parsed
from market.venues.base import Venue

log = logging.getLogger(__name__)

_LOG_LIMIT_PER_REASON = 20


@dataclass
class Normalized:
    """What one batch of raw messages became: the book after every applied update and the trades, as the
    house's records (what the live feed passes on), and the rows of every warehouse table."""

    books: Books
    trades: Trades
    tables: dict[str, pa.Table]
    counts: Counter[str] = field(default_factory=Counter)

    def rows(self, table: str) -> int:
        t = self.tables.get(table)
        return 0 if t is None else t.num_rows


@dataclass
class _Events:
    ts_ex: list[int] = field(default_factory=list)
    ts_local: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    update_id: list[int] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)

    def add(self, ts_ex: int, ts_local: int, kind: str, update_id: int, detail: str) -> None:
        self.ts_ex.append(ts_ex)
        self.ts_local.append(ts_local)
        self.kind.append(kind)
        self.update_id.append(update_id)
        self.detail.append(detail)


class Normalizer:
    """Stateful normalizer for one (venue, symbol): owns the L2 book and its sequence state."""

    def __init__(
        self,
        venue: Venue,
        symbol: str,
        tick_size: float,
        levels: int,
        store_raw: bool = True,
        max_pending: int = 10_000,
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.tick = tick_size
        self.levels = levels
        self.store_raw = store_raw
        self.max_pending = max_pending
        self.book = bk.L2Book(tick_size, levels)
        self.snapshot_spec: TableSpec = snapshot_spec(levels)
        self._pending: BookMessages | None = None
        self._logged: Counter[str] = Counter()
        self._was_synced = False
        self.invalid_after = ""  # what last invalidated the book: "gap", "crossed" or "time_backwards"
        self.totals: Counter[str] = Counter()

    @property
    def resync_reason(self) -> str:
        """Why the source is asked for a fresh snapshot (the resubscribe's sync event says it)."""
        return f"book invalid after {self.invalid_after or 'a reject'}"

    @property
    def needs_resync(self) -> bool:
        """The book was valid once and is not now: the source should fetch a fresh snapshot."""
        return self._was_synced and not self.book.is_valid

    def note(self, kind: str, detail: str, ts_local_ns: int) -> pa.Table:
        """A sync event reported by the source (reconnect, resync request), as a table."""
        ev = _Events()
        ev.add(0, ts_local_ns, kind, self.book.last_update_id, detail)
        log.info("%s %s: %s", self.venue.name, kind, detail)
        return self._events_table(ev)

    def process(self, messages: RawInput | Decoded) -> Normalized:
        """One batch: raw messages (parsed here by the venue's parser) or messages a column-file
        source decoded itself (``Decoded``: its raw lines are stored as raw messages are)."""
        if isinstance(messages, Decoded):
            batch, parsed = messages.raw, messages.parsed
        else:
            batch = RawBatch.of(messages)
            parsed = self.venue.parse(batch, self.symbol, self.tick)
        counts: Counter[str] = Counter(messages=len(batch))
        events = _Events()
        dropped_raw = np.zeros(len(batch), np.bool_)
        for r in parsed.rejections:
            dropped_raw[r.index] = True
            counts["rejected"] += 1
            ts_local = int(batch.ts_local[r.index])
            events.add(0, ts_local, "reject", -1, f"{r.reason}: {r.detail}")
            self._log_reject(r.reason, r.detail)

        arr, status, after = self._apply(parsed.book)
        applied = np.flatnonzero(status == bk.APPLIED)
        self._account(arr, status, counts, events, dropped_raw)
        if applied.size:
            self._was_synced = True
        books = after if applied.size == len(arr) else after.take(applied)  # all applied: the usual case
        t = parsed.trades
        trades = Trades(t.ts_ex, t.ts_local, t.price, t.qty, t.side)

        tables: dict[str, pa.Table] = {
            BOOK_UPDATES.name: self._book_table(arr, books, applied),
            self.snapshot_spec.name: self._snapshot_table(arr, books, applied),
            TRADES.name: self._trades_table(parsed),
            SYNC_EVENTS.name: self._events_table(events),
        }
        if self.store_raw:
            raw = pa.table(
                [
                    self._const(self.venue.name, len(batch)),
                    pa.array(parsed.streams, pa.string()),
                    pa.array(batch.ts_local, pa.int64()),
                    batch.payload_array(),
                ],
                schema=RAW_MESSAGES.arrow_schema,
            )
            tables[RAW_MESSAGES.name] = raw.filter(pa.array(~dropped_raw)) if dropped_raw.any() else raw
        counts["book_updates"] += int(applied.size)
        counts["trades"] += len(parsed.trades)
        self.totals.update(counts)
        return Normalized(books, trades, tables, counts)

    # -- book ------------------------------------------------------------------------------

    def _apply(self, arr: BookMessages) -> tuple[BookMessages, np.ndarray, Books]:
        if not self.venue.replay_pending_on_snapshot:
            return arr, *self._apply_rows(arr)
        # Binance: diffs that arrive while there is no valid book wait for the next snapshot and
        # are replayed right after it (stale ones are then dropped by the bridge rule).
        snaps = np.flatnonzero(arr.is_snap).tolist()
        bounds = [0, *[s for s in snaps if s > 0], len(arr)]
        parts: list[BookMessages] = []
        statuses: list[np.ndarray] = []
        tops: list[Books] = []
        for a, b in itertools.pairwise(bounds):
            if b <= a:
                continue
            seg = arr.take(np.arange(a, b))
            if seg.is_snap[0] and self._pending is not None:
                seg = BookMessages.concat([seg.take(np.array([0])), self._pending, seg.take(np.arange(1, len(seg)))])
                self._pending = None
            status, top = self._apply_rows(seg)
            waiting = np.flatnonzero(status == bk.NOT_SYNCED)
            if waiting.size:
                new = seg.take(waiting)
                new.index[:] = -1  # replayed with a later batch: no raw message of that batch
                self._pending = new if self._pending is None else BookMessages.concat([self._pending, new])
                if len(self._pending) > self.max_pending:
                    self._pending = self._pending.take(
                        np.arange(len(self._pending) - self.max_pending, len(self._pending))
                    )
                status[waiting] = bk.SKIPPED  # accounted for when replayed
                seg.skip[waiting] = True
            parts.append(seg)
            statuses.append(status)
            tops.append(top)
        if not parts:
            return arr, *self._apply_rows(arr)
        return BookMessages.concat(parts), np.concatenate(statuses), Books.concat(tops)

    def _apply_rows(self, a: BookMessages) -> tuple[np.ndarray, Books]:
        return self.book.apply(a.updates())

    def _account(
        self,
        arr: BookMessages,
        status: np.ndarray,
        counts: Counter[str],
        events: _Events,
        dropped_raw: np.ndarray,
    ) -> None:
        for code, name in ((bk.STALE, "stale"), (bk.NOT_SYNCED, "not_synced")):
            counts[name] += int(np.count_nonzero(status == code))
        interesting = np.flatnonzero(
            (status == bk.GAP)
            | (status == bk.CROSSED)
            | (status == bk.TIME_BACKWARDS)
            | (arr.is_snap & (status == bk.APPLIED))
        )
        for i in interesting.tolist():
            s = int(status[i])
            uid = int(arr.last_id[i])
            ts_ex, ts_local = int(arr.ts_ex[i]), int(arr.ts_local[i])
            if s == bk.APPLIED:
                # u=1: Bybit's service restarted (its own messages only: they carry a seq; an archive
                # without update ids, Tardis's, numbers its updates from 1)
                restart = uid == 1 and self.venue.name == "bybit" and int(arr.seq[i]) >= 0
                kind = "restart" if restart else "snapshot"
                counts["snapshots"] += 1
                events.add(ts_ex, ts_local, kind, uid, f"book reset from snapshot u={uid}")
                if kind == "restart":
                    log.warning("%s: u=1 snapshot (service restart): book overwritten", self.venue.name)
            elif s == bk.GAP:
                counts["gaps"] += 1
                self.invalid_after = "gap"
                detail = f"update {int(arr.first_id[i])}..{uid} follows {int(arr.prev_id[i])}, book is invalid"
                events.add(ts_ex, ts_local, "gap", uid, detail)
                log.warning("%s sequence gap: %s", self.venue.name, detail)
            else:
                reason = "crossed" if s == bk.CROSSED else "time_backwards"
                self.invalid_after = reason
                counts["rejected"] += 1
                if 0 <= arr.index[i] < dropped_raw.size:
                    dropped_raw[arr.index[i]] = True
                events.add(ts_ex, ts_local, "reject", uid, f"{reason}: update {uid} invalidates the book")
                self._log_reject(reason, f"update {uid}")

    def _log_reject(self, reason: str, detail: str) -> None:
        self._logged[reason] += 1
        n = self._logged[reason]
        if n <= _LOG_LIMIT_PER_REASON:
            log.warning("%s: rejected message (%s): %s", self.venue.name, reason, detail)
        elif n == _LOG_LIMIT_PER_REASON + 1:
            log.warning("%s: further '%s' rejections are counted, not logged", self.venue.name, reason)

    # -- tables ----------------------------------------------------------------------------

    def _const(self, value: str, n: int) -> pa.Array:
        return pa.repeat(value, n)

    def _book_table(self, arr: BookMessages, books: Books, rows: np.ndarray) -> pa.Table:
        if rows.size == 0:
            return BOOK_UPDATES.empty()
        a = arr if rows.size == len(arr) else arr.take(rows)
        n = len(a)
        return pa.table(
            [
                self._const(self.venue.name, n),
                self._const(self.symbol, n),
                pa.array(a.ts_ex),
                pa.array(a.ts_local),
                pa.array(a.last_id),
                pa.array(a.first_id),
                pa.array(a.prev_id),
                pa.array(a.seq),
                pa.array(a.is_snap),
                pa.array(books.epoch),
                list_array(a.bid_off, a.bid_px),
                list_array(a.bid_off, a.bid_qty),
                list_array(a.ask_off, a.ask_px),
                list_array(a.ask_off, a.ask_qty),
            ],
            schema=BOOK_UPDATES.arrow_schema,
        )

    def _snapshot_table(self, arr: BookMessages, books: Books, rows: np.ndarray) -> pa.Table:
        spec = self.snapshot_spec
        n = len(books)
        if n == 0:
            return spec.empty()
        return pa.table(
            [
                self._const(self.venue.name, n),
                self._const(self.symbol, n),
                pa.array(books.ts_ex),
                pa.array(books.ts_local),
                pa.array(arr.last_id if n == len(arr) else arr.last_id[rows]),
                pa.array(books.epoch),
                fixed_array(books.bid_px),
                fixed_array(books.bid_qty),
                fixed_array(books.ask_px),
                fixed_array(books.ask_qty),
            ],
            schema=spec.arrow_schema,
        )

    def _trades_table(self, parsed: Parsed) -> pa.Table:
        t = parsed.trades
        n = len(t)
        if n == 0:
            return TRADES.empty()
        return pa.table(
            [
                self._const(self.venue.name, n),
                self._const(self.symbol, n),
                pa.array(t.ts_ex),
                pa.array(t.ts_local),
                pa.array(t.trade_id, pa.string()),
                pa.array(t.price),
                pa.array(t.qty),
                pa.array(t.side),
            ],
            schema=TRADES.arrow_schema,
        )

    def _events_table(self, ev: _Events) -> pa.Table:
        n = len(ev.kind)
        if n == 0:
            return SYNC_EVENTS.empty()
        return pa.table(
            [
                self._const(self.venue.name, n),
                self._const(self.symbol, n),
                pa.array(ev.ts_ex, pa.int64()),
                pa.array(ev.ts_local, pa.int64()),
                pa.array(ev.kind, pa.string()),
                pa.array(ev.update_id, pa.int64()),
                pa.array(ev.detail, pa.string()),
            ],
            schema=SYNC_EVENTS.arrow_schema,
        )
