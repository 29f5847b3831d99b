"""Retention: old rows leave the DuckDB file for Parquet files by day, verified before deletion.

``python -m warehouse retain`` (config ``warehouse.retention``) moves raw messages older than
``raw`` and, when ``book`` is set, book rows older than ``book`` (book_updates, trades, snapshots,
snapshots_1s) to the lake: ``<archive>/<table>/venue=V/symbol=S/date=YYYY-MM-DD/part-HH.parquet``,
one zstd Parquet file per table, pair and hour of data (UTC), listed in the ``lake_parts`` manifest
that readers read it through (warehouse/lake.py). Files of the first layout
(``<table>/date=.../part-HH.parquet``, every pair in one file) are rewritten into this one and
listed on the next run.

Ages are measured back from the table's newest row (the data's clock, not the calendar) and cut at
whole hours. Book rows a feature or label build of the current config still needs are never moved:
see :func:`book_keep_from`. Nothing else is ever moved (features, labels, sync_events, ingest_runs,
snapshots_latest, clock_offsets, meta).

The archive is a folder or ``s3://bucket/prefix`` (warehouse/lakestore.py: a :class:`Store` of
either kind). Each hour is moved under one write connection (the ingest's writer waits, its spool
keeping its data durable): COPY to ``part-HH.parquet.partial`` (beside its final place, or for S3 in
``<warehouse file>.lake-staging/``), read the file back and check its rows, publish it (rename it
into place, or upload it and check the object's size), then DELETE the hour and list the file in
the manifest in one transaction. A crash at any
step loses nothing, a re-run duplicates nothing, and a reader never sees a row twice: a stale
``.partial`` is written again; an hour whose file exists but whose rows are still in DuckDB (a crash
between the rename and the commit, or the same data ingested again) is merged with that file,
deduplicated on the table's natural key, and deleted only once every one of its rows is found in
the new file (an S3 object is downloaded to the staging folder to merge); until that commit the
file is not in the manifest, so readers read the DuckDB rows. Files of the first layout exist only
in local archives, and only there are they migrated.

DuckDB does not shrink its file on DELETE: a CHECKPOINT (done on closing each connection) turns the
deleted rows' space into free blocks that new data reuses, so with retention the file stops growing.
``compact`` gives the disk back: the database is copied to a fresh file (``COPY FROM DATABASE``, as
DuckDB's "Reclaiming Space" page advises), its row counts checked, and the fresh file renamed over
the old one while the old one is still held (no other process can write between copy and swap).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from core.config import AppConfig
from core.errors import DataError, UnavailableError, UserError
from features import MAX_LOOKBACK_S
from market.events import TableSpec
from warehouse import lake
from warehouse.db import one, reading, writing
from warehouse.feature_tables import NS, WARMUP_NS, ids, label_history_ns, table_exists
from warehouse.lakestore import LocalStore, Placed, S3Store, Store, fsync, open_store
from warehouse.schema import stored_levels, tables

HOUR_NS = 3600 * NS
RAW_TABLES = ("raw_messages",)
BOOK_TABLES = ("book_updates", "trades", "snapshots", "snapshots_1s")

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Hour:
    """One table's rows of one pair and one hour of data (UTC), to be moved to one Parquet file."""

    table: str
    venue: str
    symbol: str  # '' for raw_messages (no symbol column)
    start_ns: int
    rows: int
    data_bytes: int  # uncompressed size of the values (strings by length, numbers 8 bytes)

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.start_ns / NS, UTC).strftime("%Y-%m-%d")

    def path(self, archive: Path) -> Path:
        hour = datetime.fromtimestamp(self.start_ns / NS, UTC).strftime("%H")
        pair = archive / self.table / f"venue={_part(self.venue)}"
        if self.table not in RAW_TABLES:
            pair = pair / f"symbol={_part(self.symbol)}"
        return pair / f"date={self.day}" / f"part-{hour}.parquet"

    def where(self, spec: TableSpec) -> tuple[str, list[object]]:
        """SQL selecting this hour's rows of ``spec``, and its parameters."""
        t = spec.time_column
        sql = f"venue = ? AND {t} >= {self.start_ns} AND {t} < {self.start_ns + HOUR_NS}"
        if self.table in RAW_TABLES:
            return sql, [self.venue]
        return sql + " AND symbol = ?", [self.venue, self.symbol]


def _part(name: str) -> str:
    """A venue or symbol as a folder name (BTCUSDT, bybit; anything else is refused)."""
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise DataError(f"{name!r}: not usable as a lake folder name")
    return name


@dataclass(frozen=True)
class Cutoffs:
    """Per table: rows before this time go; the book's reason when a build holds it back."""

    raw_ns: int | None
    book_ns: int | None
    book_note: str

    def of(self, table: str) -> int | None:
        return self.raw_ns if table in RAW_TABLES else self.book_ns


@dataclass
class Plan:
    cutoffs: Cutoffs
    hours: list[Hour]


@dataclass
class Moved:
    """What a run did: per (table, day) rows moved and Parquet bytes written; the file before and after."""

    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    parquet_bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    file_before: int = 0
    file_after: int = 0
    free_before: int = 0
    free_after: int = 0
    compacted: bool = False
    migrated: int = 0  # files of the first layout rewritten into the lake's

    def summary(self) -> str:
        rows, size = sum(self.rows.values()), sum(self.parquet_bytes.values())
        how = "compacted" if self.compacted else "checkpointed"
        first = f"rewrote {self.migrated:,} files of the first layout into the lake's; " if self.migrated else ""
        return first + (
            f"moved {rows:,} rows to {size / 1e6:,.1f} MB of Parquet; the file {self.file_before / 1e6:,.1f} MB -> "
            f"{self.file_after / 1e6:,.1f} MB ({how}), {self.free_after / 1e6:,.1f} MB in free blocks"
        )


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}.wal")) if p.exists())


def free_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Bytes in free blocks: space DuckDB reuses for new data before it grows the file."""
    row = one(
        con, "SELECT block_size * free_blocks FROM pragma_database_size() WHERE database_name = current_database()"
    )
    return int(row[0]) if row else 0


def _spec(levels: int, name: str) -> TableSpec:
    return next(s for s in tables(levels) if s.name == name)


def _data_bytes_sql(spec: TableSpec) -> str:
    """SQL summing the uncompressed size of a table's values (the dry run's byte figure)."""
    parts = []
    for c in spec.columns:
        if c.kind != "scalar":
            parts.append(f"8 * len({c.name})")
        elif c.sql == "VARCHAR":
            parts.append(f"strlen({c.name})")
        else:
            parts.append("1" if c.sql in ("BOOLEAN", "TINYINT") else "8")
    return f"coalesce(sum({' + '.join(parts)}), 0)"


def _newest(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> int | None:
    row = one(con, f"SELECT max({spec.time_column}) FROM {spec.name}")
    return int(row[0]) if row and row[0] is not None else None


def book_keep_from(con: duckdb.DuckDBPyConnection, cfg: AppConfig) -> tuple[int | None, str]:
    """The earliest book time a feature or label build of this config still reads (None: all of it).

    The rule, per (venue, symbol), for the current config's feature and label sets:
    - no features built yet, or features starting later than the data allows (a build begun with
      --start): every book row is kept; the range before them was never built;
    - the next feature build continues after the last feature row and re-reads ``WARMUP_NS`` of
      history before it: rows from there on are kept;
    - the next label build starts at the first grid time without a closed label (all of them when
      none is built) and reads ``label_history_ns`` before it: rows from there on are kept.
    Older feature or label sets (another config) are not protected: rebuilding one reads what is
    still in DuckDB, and the archive holds the rest.
    """
    pairs = con.execute("SELECT venue, symbol, min(ts_exchange_ns) FROM snapshots GROUP BY ALL ORDER BY ALL").fetchall()
    if not pairs:
        return None, "no book data"
    if not table_exists(con, "features"):
        return None, "no features built yet: every book row is kept"
    keep: list[int] = []
    notes: list[str] = []
    for venue, symbol, first in pairs:
        fs, ls = ids(cfg, venue)
        row = one(
            con,
            "SELECT min(ts_ns), max(ts_ns) FROM features WHERE venue = ? AND symbol = ? AND feature_set = ?",
            [venue, symbol, fs],
        )
        if row is None or row[0] is None:
            return None, f"no features of set {fs} for {venue}/{symbol} yet: every book row is kept"
        f_min, f_max = int(row[0]), int(row[1])
        if f_min > int(first) + MAX_LOOKBACK_S * NS + cfg.features.grid:
            return None, f"{venue}/{symbol}: no features before the first one built: every book row is kept"
        feat = f_max + 1 - WARMUP_NS
        redo = 0
        if table_exists(con, "labels"):
            lrow = one(
                con,
                "SELECT coalesce(min(ts_ns) FILTER (WHERE open), max(ts_ns) + 1) FROM labels "
                "WHERE venue = ? AND symbol = ? AND label_set = ?",
                [venue, symbol, ls],
            )
            redo = int(lrow[0]) if lrow and lrow[0] is not None else 0
        grow = one(
            con,
            "SELECT min(ts_ns) FROM features WHERE venue = ? AND symbol = ? AND feature_set = ? AND ts_ns >= ?",
            [venue, symbol, fs, redo],
        )
        g0 = int(grow[0]) if grow and grow[0] is not None else redo
        lab = g0 - label_history_ns(cfg)
        keep.append(min(feat, lab))
        notes.append(f"{venue}/{symbol}: the next build reads from {_iso(min(feat, lab))}")
    return min(keep), "; ".join(notes)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cutoffs(con: duckdb.DuckDBPyConnection, cfg: AppConfig, levels: int) -> Cutoffs:
    """The times before which each kind of table is moved (cut down to a whole hour)."""
    rc = cfg.warehouse.retention
    raw_ns = None
    if rc.raw is not None:
        newest = _newest(con, _spec(levels, "raw_messages"))
        raw_ns = None if newest is None else (newest - rc.raw) // HOUR_NS * HOUR_NS
    book_ns, note = None, "warehouse.retention.book is not set: book rows are kept"
    if rc.book is not None:
        newest = _newest(con, _spec(levels, "snapshots"))
        keep, note = book_keep_from(con, cfg)
        if newest is not None and keep is not None:
            book_ns = min(newest - rc.book, keep) // HOUR_NS * HOUR_NS
    return Cutoffs(raw_ns, book_ns, note)


def _symbol(spec: TableSpec) -> str:
    return "''" if spec.name in RAW_TABLES else "symbol"


def _hours(con: duckdb.DuckDBPyConnection, spec: TableSpec, before: int) -> list[Hour]:
    t = spec.time_column
    rows = con.execute(
        f"SELECT venue, {_symbol(spec)} AS sym, {t} // {HOUR_NS} AS h, count(*), {_data_bytes_sql(spec)} "
        f"FROM {spec.name} WHERE {t} < ? GROUP BY ALL ORDER BY h, venue, sym",
        [before],
    ).fetchall()
    return [Hour(spec.name, str(v), str(s), int(h) * HOUR_NS, int(n), int(b)) for v, s, h, n, b in rows]


def plan(cfg: AppConfig) -> Plan:
    """What a run would move, read-only (the dry run prints it)."""
    path = cfg.resolve(cfg.warehouse.path)
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        levels = stored_levels(con)
        if levels is None:
            raise UserError(f"{path}: not a warehouse (no schema)")
        cut = cutoffs(con, cfg, levels)
        hours: list[Hour] = []
        for name in (*RAW_TABLES, *BOOK_TABLES):
            before = cut.of(name)
            if before is not None:
                hours += _hours(con, _spec(levels, name), before)
    return Plan(cut, hours)


def _q(path: Path) -> str:
    return str(path).replace("'", "''")


def _copy(con: duckdb.DuckDBPyConnection, query: str, to: Path, params: list[object]) -> None:
    """COPY a query to a Parquet file; a full disk or a denied write is one line (exit 4)."""
    try:
        con.execute(f"COPY ({query}) TO '{_q(to)}' (FORMAT PARQUET, COMPRESSION ZSTD)", params)
    except duckdb.IOException as exc:
        raise UnavailableError(f"{to}: cannot write the archive: {str(exc).splitlines()[0]}") from None


def move_hour(con: duckdb.DuckDBPyConnection, spec: TableSpec, hour: Hour, store: Store) -> tuple[int, int]:
    """Export one hour to Parquet, check it, delete it from DuckDB and list the file in the lake's
    manifest in one transaction; return (rows deleted, file bytes)."""
    where, params = hour.where(spec)
    n_db = int((one(con, f"SELECT count(*) FROM {spec.name} WHERE {where}", params) or (0,))[0])
    if n_db == 0:
        return 0, 0
    rows_sql = f"SELECT {', '.join(spec.names)} FROM {spec.name} WHERE {where}"
    placed = _write_part(con, spec, hour, store, rows_sql, params)
    con.execute("BEGIN TRANSACTION")
    try:
        deleted = int((one(con, f"DELETE FROM {spec.name} WHERE {where}", params) or (0,))[0])
        if deleted != n_db:
            raise DataError(f"{spec.name}: {deleted:,} rows to delete, {n_db:,} exported; nothing deleted")
        _list(con, spec, hour, placed, store)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    store.done(placed)
    return deleted, placed.bytes


def _write_part(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, hour: Hour, store: Store, rows_sql: str, params: list[object]
) -> Placed:
    """Write ``rows_sql``'s rows (one pair's hour) to the hour's file, merged with the file already
    there (deduplicated on the table's key), read back and checked, then published in its place
    (warehouse/lakestore.py). Every row of ``rows_sql`` is in the file it returns, or it raises and
    the old file is as it was."""
    t = spec.time_column
    rel = hour.path(Path()).as_posix()
    partial = store.stage(rel)
    n_src = int((one(con, f"SELECT count(*) FROM ({rows_sql})", params) or (0,))[0])
    cols = ", ".join(spec.names)
    order = ", ".join(dict.fromkeys((t, *spec.key)))
    old = store.existing(rel)
    if old is not None:  # rows already exported once (a crash before the delete, or the data ingested again)
        keys = ", ".join(spec.key)
        query = (
            f"SELECT DISTINCT ON ({keys}) {cols} FROM (SELECT {cols}, 0 AS src FROM read_parquet('{_q(old)}') "
            f"UNION ALL SELECT {cols}, 1 AS src FROM ({rows_sql})) ORDER BY {order}, src"
        )
    else:
        query = f"SELECT {cols} FROM ({rows_sql}) ORDER BY {order}"
    try:
        _copy(con, query, partial, params)
        n_file = int((one(con, f"SELECT count(*) FROM read_parquet('{_q(partial)}')") or (0,))[0])
        if old is not None:
            match = " AND ".join(f"a.{k} IS NOT DISTINCT FROM d.{k}" for k in spec.key)
            row = one(
                con,
                f"SELECT count(*) FROM ({rows_sql}) d WHERE NOT EXISTS "
                f"(SELECT 1 FROM read_parquet('{_q(partial)}') a WHERE {match})",
                params,
            )
            missing = int(row[0]) if row else n_src
            if missing:
                raise DataError(
                    f"{store.name}/{rel}: {missing:,} of {n_src:,} rows not in the file written; nothing deleted"
                )
        elif n_file != n_src:
            raise DataError(f"{store.name}/{rel}: read back {n_file:,} rows, expected {n_src:,}; nothing deleted")
        return store.publish(partial, rel)
    finally:
        partial.unlink(missing_ok=True)


def _list(con: duckdb.DuckDBPyConnection, spec: TableSpec, hour: Hour, placed: Placed, store: Store) -> None:
    """The file's line in the manifest, and an S3 bucket's endpoint (inside the caller's transaction)."""
    t = spec.time_column
    row = one(con, f"SELECT count(*), min({t}), max({t}) FROM read_parquet('{_q(placed.local)}')")
    assert row is not None and row[1] is not None
    lake.ensure(con)
    if isinstance(store, S3Store):
        lake.note_s3(con, store.url.bucket, store.endpoint, store.region)
    con.execute(
        f"INSERT OR REPLACE INTO {lake.PARTS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [spec.name, hour.venue, hour.symbol, hour.start_ns, int(row[1]), int(row[2]), int(row[0]),
         placed.bytes, placed.stored],
    )  # fmt: skip


def _migrate(con: duckdb.DuckDBPyConnection, levels: int, store: LocalStore) -> int:
    """Files of the first layout (``<table>/date=D/part-HH.parquet``, every pair in one) rewritten
    into the lake's layout and listed, each deleted once all its rows are in the new files; the
    number of files migrated. Local archives only: that layout never went to S3."""
    n, archive = 0, store.archive
    for old in sorted(archive.glob("*/date=*/part-*.parquet")):
        spec = _spec(levels, old.parent.parent.name)
        src = f"read_parquet('{_q(old)}')"
        t = spec.time_column
        groups = con.execute(
            f"SELECT venue, {_symbol(spec)}, {t} // {HOUR_NS}, count(*) FROM {src} GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        for venue, symbol, h, rows in groups:
            hour = Hour(spec.name, str(venue), str(symbol), int(h) * HOUR_NS, int(rows), 0)
            where, params = hour.where(spec)
            placed = _write_part(con, spec, hour, store, f"SELECT * FROM {src} WHERE {where}", params)
            con.execute("BEGIN TRANSACTION")
            try:
                _list(con, spec, hour, placed, store)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        old.unlink()
        n += 1
    for d in sorted(archive.glob("*/date=*"), reverse=True):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return n


def run(cfg: AppConfig, compact: bool | None = None, on_progress: ProgressFn | None = None) -> tuple[Plan, Moved]:
    """Move what the plan says, hour by hour; then CHECKPOINT, and compact when asked."""
    path = cfg.resolve(cfg.warehouse.path)
    timeout = cfg.warehouse.lock_timeout / 1e9
    moved = Moved()
    if not path.exists():  # before the archive is made: a mistyped path leaves nothing behind
        raise UserError(f"{path}: no warehouse here yet (run an ingest first, e.g. make demo)")
    store = open_store(cfg)
    with store.lock():
        store.sweep()  # a crash mid-export left .partial files: their rows are still where they were
        p = plan(cfg)
        with writing(path, timeout) as con:
            moved.file_before, moved.free_before = file_size(path), free_bytes(con)
            levels = stored_levels(con) or 0
            con.execute("SET enable_progress_bar = false")
            if isinstance(store, LocalStore):
                moved.migrated = _migrate(con, levels, store)
        for i, hour in enumerate(p.hours):
            with writing(path, timeout) as con:
                con.execute("SET enable_progress_bar = false")  # progress is one line per table and day
                rows, size = move_hour(con, _spec(levels, hour.table), hour, store)
            k = (hour.table, hour.day)
            moved.rows[k] = moved.rows.get(k, 0) + rows
            moved.parquet_bytes[k] = moved.parquet_bytes.get(k, 0) + size
            last_of_day = i + 1 == len(p.hours) or (p.hours[i + 1].table, p.hours[i + 1].day) != k
            if on_progress is not None and last_of_day:
                on_progress(f"{hour.table} {hour.day}: {moved.rows[k]:,} rows moved, {moved.parquet_bytes[k]:,} bytes")
        with writing(path, timeout) as con:
            con.execute("SET enable_progress_bar = false")
            con.execute("CHECKPOINT")
            moved.free_after = free_bytes(con)
            if compact if compact is not None else cfg.warehouse.retention.compact:
                _compact(con, path)
                moved.compacted = True
        if moved.compacted:
            with reading(path, timeout) as con:
                moved.free_after = free_bytes(con)
        moved.file_after = file_size(path)
    return p, moved


def _counts(con: duckdb.DuckDBPyConnection, db: str) -> dict[str, int]:
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", [db]
        ).fetchall()
    ]
    return {n: int((one(con, f'SELECT count(*) FROM "{db}".main."{n}"') or (0,))[0]) for n in names}


def _compact(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Copy the database into a fresh file and swap it in, holding the old one all along."""
    fresh = path.with_name(path.name + ".compact")
    for p in (fresh, Path(f"{fresh}.wal")):
        p.unlink(missing_ok=True)  # a crash mid-copy left a half copy: the original is untouched
    src = str((one(con, "SELECT current_database()") or ("",))[0])
    try:
        con.execute(f"ATTACH '{_q(fresh)}' AS retain_fresh")
        con.execute(f'COPY FROM DATABASE "{src}" TO retain_fresh')
        before, after = _counts(con, src), _counts(con, "retain_fresh")
        con.execute("DETACH retain_fresh")
        if before != after:
            raise DataError(f"{fresh}: the copy's row counts differ from the warehouse's; the warehouse is unchanged")
        fsync(fresh)
        if Path(f"{fresh}.wal").exists():
            raise DataError(f"{fresh}: the copy was not checkpointed; the warehouse is unchanged")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("DETACH DATABASE IF EXISTS retain_fresh")
        fresh.unlink(missing_ok=True)
        raise
    os.replace(fresh, path)  # atomic: a reader sees the old file or the new one, never half of one
    fsync(path.parent)
