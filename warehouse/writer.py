"""The single warehouse writer: deduplicating inserts, the 1 s rollup, spooling, background commits.

Rows are added as Arrow tables (built from the specs in market.events). ``flush()`` spools them
(when a spool is configured), then hands them to a background thread that opens the DuckDB file,
inserts everything in one transaction and closes it again, so readers in other processes get the
file between flushes. Inserts skip rows whose natural key is already stored (an anti-join pruned
to the batch's time range), so re-ingesting the same data never duplicates a row.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from market.events import INGEST_RUNS, TableSpec
from warehouse.db import RETRY_MAX_S, one, writing
from warehouse.schema import ensure_schema, tables
from warehouse.spool import Spool

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
# DuckDB threads for a commit: the cores the ingest's parsing thread leaves free. More threads only
# contend with it (on 2 cores, one thread stores the simulated hour of `python -m bench` ~20% faster).
_COMMIT_THREADS = max(1, (os.cpu_count() or 1) - 1)
# For a writer that runs for hours (the live ingest, ``lean``): DuckDB's allocator (jemalloc) hands
# memory back to the system after a task that used more than this (DuckDB: 128 MiB), and its background
# threads purge what it keeps. Without them the live ingest's RSS rose by up to 170 MB for a few seconds
# now and then, outside glibc's and Arrow's allocators (docs/operations.md). A file import, which does
# not run for hours, keeps DuckDB's defaults.
ALLOCATOR_SETTINGS = {"allocator_flush_threshold": "8MB", "allocator_background_threads": "true"}


def _keys_unique(spec: TableSpec, table: pa.Table) -> bool:
    """Whether the batch's natural keys are all distinct (numeric key columns checked first)."""
    numeric = [k for k in spec.key if not pa.types.is_string(table.schema.field(k).type)]
    for cols in ([*numeric], list(spec.key)) if numeric else (list(spec.key),):
        if table.group_by(cols).aggregate([]).num_rows == table.num_rows:
            return True
    return False


def insert_dedup(con: duckdb.DuckDBPyConnection, spec: TableSpec, table: pa.Table) -> int:
    """Insert rows whose natural key is not stored yet (nor repeated in the batch); return the count.

    Fast path: nothing stored in the batch's time range and no repeated key in the batch (the
    normal case when appending new data) is a plain insert. Otherwise an anti-join, pruned to the
    batch's time range by DuckDB's zone maps, keeps only the new rows.
    """
    if table.num_rows == 0:
        return 0
    times = table.column(spec.time_column)
    rng = {"lo": pc.min(times).as_py(), "hi": pc.max(times).as_py()}
    overlap = one(con, f"SELECT count(*) FROM {spec.name} WHERE {spec.time_column} BETWEEN $lo AND $hi", rng)
    con.register("batch_in", table)
    try:
        if overlap is not None and overlap[0] == 0 and _keys_unique(spec, table):
            row = one(con, f"INSERT INTO {spec.name} SELECT * FROM batch_in")
        else:
            keys = ", ".join(f"b.{k}" for k in spec.key)
            match = " AND ".join(f"t.{k} = b.{k}" for k in spec.key)
            row = one(
                con,
                f"INSERT INTO {spec.name} SELECT DISTINCT ON ({keys}) b.* FROM batch_in b "
                f"WHERE NOT EXISTS (SELECT 1 FROM {spec.name} t "
                f"WHERE t.{spec.time_column} BETWEEN $lo AND $hi AND {match}) "
                f"ORDER BY b.{spec.time_column}",
                rng,
            )
    finally:
        con.unregister("batch_in")
    return int(row[0]) if row else 0


def _pair_codes(snapshots: pa.Table) -> np.ndarray:
    """An integer code per row for its (venue, symbol)."""
    pair = pc.dictionary_encode(pc.binary_join_element_wise(snapshots.column("venue"), snapshots.column("symbol"), "/"))
    codes = pair.combine_chunks().indices if isinstance(pair, pa.ChunkedArray) else pair.indices
    return np.asarray(codes.to_numpy(zero_copy_only=False))


def _take(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table.take(rows)`` without first joining the chunks of a chunked table (a copy of every row)."""
    batches = table.to_batches()
    if len(batches) <= 1:
        return table.take(pa.array(rows, pa.int64()))
    starts = np.cumsum([0] + [b.num_rows for b in batches])
    chunk = np.searchsorted(starts, rows, side="right") - 1
    order = np.argsort(chunk, kind="stable")
    by_chunk, chunk = rows[order], chunk[order]
    parts = [batches[c].take(pa.array(by_chunk[chunk == c] - starts[c])) for c in np.unique(chunk).tolist()]
    grouped = pa.Table.from_batches(parts, schema=table.schema)
    return grouped.take(pa.array(np.argsort(order)))  # back to the order of rows


def rollup_candidates(snapshots: pa.Table) -> pa.Table:
    """The last snapshot of each (venue, symbol, 1 s bucket) in a batch, with its bucket_ns first."""
    ts = snapshots.column("ts_exchange_ns").to_numpy()
    bucket = -(-ts // NS_PER_S) * NS_PER_S  # the bucket (t - 1s, t] holding ts
    uid = snapshots.column("update_id").to_numpy()
    group = _pair_codes(snapshots)
    order = np.lexsort((uid, ts, bucket, group))
    g, b = group[order], bucket[order]
    last = np.ones(order.size, bool)
    last[:-1] = (g[1:] != g[:-1]) | (b[1:] != b[:-1])
    idx = order[last]
    picked = _take(snapshots, idx)
    return picked.add_column(2, "bucket_ns", pa.array(bucket[idx]))


def update_rollup(con: duckdb.DuckDBPyConnection, snapshots: pa.Table) -> None:
    """Keep snapshots_1s = the last snapshot of each 1 s bucket (t - 1s, t], for this batch's buckets."""
    if snapshots.num_rows == 0:
        return
    cand = rollup_candidates(snapshots)
    buckets = cand.column("bucket_ns")
    rng = {"lo": pc.min(buckets).as_py(), "hi": pc.max(buckets).as_py()}
    con.register("roll_in", cand)
    try:
        # a later snapshot in a bucket replaces the stored one; an earlier one never does
        con.execute(
            "DELETE FROM snapshots_1s r USING roll_in c WHERE r.bucket_ns BETWEEN $lo AND $hi "
            "AND r.venue = c.venue AND r.symbol = c.symbol AND r.bucket_ns = c.bucket_ns "
            "AND (c.ts_exchange_ns > r.ts_exchange_ns "
            "OR (c.ts_exchange_ns = r.ts_exchange_ns AND c.update_id > r.update_id))",
            rng,
        )
        con.execute(
            "INSERT INTO snapshots_1s SELECT c.* FROM roll_in c WHERE NOT EXISTS (SELECT 1 FROM snapshots_1s r "
            "WHERE r.bucket_ns BETWEEN $lo AND $hi AND r.venue = c.venue AND r.symbol = c.symbol "
            "AND r.bucket_ns = c.bucket_ns)",
            rng,
        )
    finally:
        con.unregister("roll_in")


def update_latest(con: duckdb.DuckDBPyConnection, snapshots: pa.Table) -> None:
    """Keep snapshots_latest = the most recent snapshot of each (venue, symbol)."""
    if snapshots.num_rows == 0:
        return
    ts = snapshots.column("ts_exchange_ns").to_numpy()
    uid = snapshots.column("update_id").to_numpy()
    group = _pair_codes(snapshots)
    order = np.lexsort((uid, ts, group))
    g = group[order]
    last = np.ones(order.size, bool)
    last[:-1] = g[1:] != g[:-1]
    cand = _take(snapshots, order[last])
    con.register("latest_in", cand)
    try:
        con.execute(
            "DELETE FROM snapshots_latest r USING latest_in c WHERE r.venue = c.venue AND r.symbol = c.symbol "
            "AND (c.ts_exchange_ns > r.ts_exchange_ns "
            "OR (c.ts_exchange_ns = r.ts_exchange_ns AND c.update_id > r.update_id))"
        )
        con.execute(
            "INSERT INTO snapshots_latest SELECT c.* FROM latest_in c WHERE NOT EXISTS "
            "(SELECT 1 FROM snapshots_latest r WHERE r.venue = c.venue AND r.symbol = c.symbol)"
        )
    finally:
        con.unregister("latest_in")


@dataclass
class _Job:
    tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    segments: list[Path] = field(default_factory=list)
    rows: int = 0

    def add(self, tables: dict[str, pa.Table], segment: Path | None) -> None:
        for name, t in tables.items():
            if t.num_rows:
                self.tables.setdefault(name, []).append(t)
                self.rows += t.num_rows
        if segment is not None:
            self.segments.append(segment)

    def merge(self, other: _Job) -> None:
        for name, ts in other.tables.items():
            self.tables.setdefault(name, []).extend(ts)
        self.segments.extend(other.segments)
        self.rows += other.rows


class WarehouseWriter:
    """Buffers rows, spools them, and commits them to the warehouse from one background thread."""

    def __init__(
        self,
        path: Path,
        levels: int,
        lock_timeout_s: float = 30.0,
        spool: Spool | None = None,
        max_queued_rows: int = 2_000_000,
        max_commit_rows: int | None = None,
        lean: bool = False,
    ) -> None:
        self.path = path
        self.levels = levels
        self.lock_timeout_s = lock_timeout_s
        self.spool = spool
        self.max_queued_rows = max_queued_rows
        # Flushes queued while a commit runs are stored together, up to this many rows per commit
        # (always at least one flush): the file is not held for one long commit after a fast import.
        self.max_commit_rows = max_commit_rows
        self._order = [spec.name for spec in tables(levels) if spec.name != "snapshots_1s"]
        self._buffer = _Job()
        self._queued: deque[_Job] = deque()  # one per flush, oldest first
        self._inflight: Future[int] | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="warehouse-writer")
        self.inserted: Counter[str] = Counter()
        self.commits = 0
        self.commit_seconds = 0.0
        self._free_until = 0.0  # monotonic time before which no commit opens the file
        with writing(path, lock_timeout_s) as con:
            if lean:  # global settings of the process's DuckDB instance
                for name, value in ALLOCATOR_SETTINGS.items():
                    con.execute(f"SET {name} = '{value}'")
            ensure_schema(con, levels)

    @property
    def buffered_rows(self) -> int:
        return self._buffer.rows + self._queued_rows

    @property
    def _queued_rows(self) -> int:
        return sum(job.rows for job in self._queued)

    def add(self, tables: dict[str, pa.Table]) -> None:
        """Buffer rows for the next flush (table name -> Arrow table in that table's schema)."""
        self._buffer.add(tables, None)

    def flush(self, wait: bool = False) -> None:
        """Spool the buffered rows and start committing them; with wait, until all are stored."""
        if self._buffer.rows:
            merged = {n: pa.concat_tables(ts) for n, ts in self._buffer.tables.items()}
            segment = self.spool.append(merged) if self.spool is not None else None
            job = _Job()
            job.add(merged, segment)
            self._queued.append(job)
            self._buffer = _Job()
        self._reap(block=wait or self._queued_rows > self.max_queued_rows)
        self._submit()
        if wait:
            while self._inflight is not None or self._queued:
                self._reap(block=True)
                self._submit()

    def _reap(self, block: bool) -> None:
        if self._inflight is None:
            return
        if block or self._inflight.done():
            fut, self._inflight = self._inflight, None
            fut.result()  # re-raises a failed commit: the caller stops, the spool keeps the rows

    def _submit(self) -> None:
        if self._inflight is None and self._queued:
            job = self._queued.popleft()
            limit = self.max_commit_rows
            while self._queued and (limit is None or job.rows + self._queued[0].rows <= limit):
                job.merge(self._queued.popleft())
            self._inflight = self._pool.submit(self._commit, job)

    def _commit(self, job: _Job) -> int:
        # Commits can follow each other back to back (a file imports faster than it is stored): the
        # file stays free between two of them long enough for a waiting reader's next retry.
        pause = self._free_until - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        start = time.perf_counter()
        n = self.commit_tables({k: pa.concat_tables(v) for k, v in job.tables.items()})
        self._free_until = time.monotonic() + RETRY_MAX_S
        if self.spool is not None:
            self.spool.remove(job.segments)
        with self._lock:
            self.commits += 1
            self.commit_seconds += time.perf_counter() - start
        return n

    def commit_tables(self, batch: dict[str, pa.Table]) -> int:
        """Insert one batch of tables in one transaction (blocking); return the rows inserted."""
        total = 0
        with writing(self.path, self.lock_timeout_s) as con:
            # the process's DuckDB instance is shared (warehouse/db.py): its other users get their threads back
            con.execute(f"SET threads = {_COMMIT_THREADS}")
            con.execute("BEGIN TRANSACTION")
            try:
                for name in self._order:
                    table = batch.get(name)
                    if table is None or table.num_rows == 0:
                        continue
                    spec = next(s for s in tables(self.levels) if s.name == name)
                    table = table.cast(spec.arrow_schema)
                    n = insert_dedup(con, spec, table)
                    if name == "snapshots":
                        update_rollup(con, table)
                        update_latest(con, table)
                    with self._lock:
                        self.inserted[name] += n
                    total += n
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.execute("RESET threads")
        return total

    def recover(self) -> int:
        """Commit rows left in the spool by a previous run that stopped before storing them."""
        if self.spool is None:
            return 0
        segments = self.spool.segments()
        if not segments:
            return 0
        pending = self.spool.read(segments)
        n = self.commit_tables({k: pa.concat_tables(v) for k, v in pending.items()})
        self.spool.remove(segments)
        log.info(
            "recovered %d spooled rows from %d segment(s) (%d were new)",
            sum(t.num_rows for ts in pending.values() for t in ts),
            len(segments),
            n,
        )
        return n

    def record_run(self, row: dict[str, object]) -> None:
        """Insert or replace this run's row in ingest_runs."""
        table = pa.Table.from_pylist([row], schema=INGEST_RUNS.arrow_schema)
        with writing(self.path, self.lock_timeout_s) as con:
            con.execute("DELETE FROM ingest_runs WHERE run_id = ?", [row["run_id"]])
            con.register("run_in", table)
            con.execute("INSERT INTO ingest_runs SELECT * FROM run_in")

    def close(self) -> None:
        """Store everything buffered, then stop the background thread."""
        try:
            self.flush(wait=True)
        finally:
            self._pool.shutdown(wait=True)
