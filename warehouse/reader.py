"""Read queries over the warehouse. Each takes an open read-only connection (see warehouse.db).

Sampled reads ("the book as of t, every 1 s") use ``snapshots_1s`` when the grid sits on whole
seconds: the rollup holds the last snapshot of every second, so the as-of book at a whole second
is the rollup row of the latest non-empty bucket at or before it. Other grids use an ASOF join
on the snapshot times first and then fetch only the matching rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from core.errors import UserError
from core.records import Book
from warehouse.db import one

NS_PER_S = 1_000_000_000
TIME_COLUMNS = {
    "raw_messages": "ts_local_ns",
    "book_updates": "ts_exchange_ns",
    "trades": "ts_exchange_ns",
    "snapshots": "ts_exchange_ns",
    "sync_events": "ts_local_ns",
    "features": "ts_ns",  # built by python -m flows.feature_build (absent until then)
    "labels": "ts_ns",
}


@dataclass(frozen=True)
class TableStat:
    table: str
    venue: str
    symbol: str
    rows: int
    first_ns: int
    last_ns: int


def table_stats(con: duckdb.DuckDBPyConnection) -> list[TableStat]:
    """Rows and time range per table, venue and symbol."""
    out: list[TableStat] = []
    present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for table, col in TIME_COLUMNS.items():
        if table not in present:
            continue
        if table == "raw_messages":
            sql = f"SELECT venue, '' AS symbol, count(*), min({col}), max({col}) FROM {table} GROUP BY ALL"
        else:
            sql = f"SELECT venue, symbol, count(*), min({col}), max({col}) FROM {table} GROUP BY ALL"
        for venue, symbol, n, lo, hi in con.execute(sql + " ORDER BY 1, 2").fetchall():
            out.append(TableStat(table, venue, symbol, int(n), int(lo), int(hi)))
    return out


def sync_counts(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, int]]:
    """sync_events counted by kind, per (venue, symbol)."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for venue, symbol, kind, n in con.execute(
        "SELECT venue, symbol, kind, count(*) FROM sync_events GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        out.setdefault((venue, symbol), {})[kind] = int(n)
    return out


@dataclass(frozen=True)
class Silence:
    venue: str
    symbol: str
    after_ns: int  # last snapshot before the silence
    until_ns: int  # first snapshot after it

    @property
    def seconds(self) -> float:
        return (self.until_ns - self.after_ns) / NS_PER_S


def silences(
    con: duckdb.DuckDBPyConnection, threshold_ns: int, limit: int = 10, since_ns: int | None = None
) -> tuple[int, list[Silence]]:
    """Periods without book updates longer than threshold: (how many, the longest ``limit``), over the
    whole history or the silences ending after ``since_ns``.

    Candidates come from the 1 s rollup (empty seconds); each is then measured exactly on the
    snapshots table, pruned to the candidate's time range.
    """
    cands = con.execute(
        "SELECT venue, symbol, ts_exchange_ns, next_bucket FROM ("
        " SELECT venue, symbol, ts_exchange_ns, bucket_ns,"
        "  lead(bucket_ns) OVER (PARTITION BY venue, symbol ORDER BY bucket_ns) AS next_bucket"
        " FROM snapshots_1s) WHERE next_bucket - ts_exchange_ns > $t AND next_bucket > $since",
        {"t": threshold_ns, "since": -(2**62) if since_ns is None else since_ns},
    ).fetchall()
    found: list[Silence] = []
    for venue, symbol, after, next_bucket in cands:
        row = one(
            con,
            "SELECT min(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ? "
            "AND ts_exchange_ns > ? AND ts_exchange_ns <= ?",
            [venue, symbol, after, next_bucket],
        )
        until = int(row[0]) if row and row[0] is not None else int(next_bucket)
        if until - after > threshold_ns:
            found.append(Silence(venue, symbol, int(after), until))
    found.sort(key=lambda s: s.seconds, reverse=True)
    return len(found), found[:limit]


def stored_pairs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return [(v, s) for v, s in con.execute("SELECT DISTINCT venue, symbol FROM snapshots_1s ORDER BY ALL").fetchall()]


def pick_pair(
    con: duckdb.DuckDBPyConnection, venue: str | None, symbol: str | None, default: tuple[str, str]
) -> tuple[str, str]:
    """The (venue, symbol) to read: as given, else the only one stored, else the configured one."""
    pairs = stored_pairs(con)
    if not pairs:
        raise UserError("the warehouse holds no snapshots yet")
    if venue is None and symbol is None and len(pairs) == 1:
        return pairs[0]
    want = (venue or default[0], symbol or default[1])
    if want not in pairs:
        have = ", ".join(f"{v}/{s}" for v, s in pairs)
        raise UserError(f"no snapshots for {want[0]}/{want[1]} (stored: {have}); use --venue/--symbol")
    return want


def _level_columns(levels: int, prefix: str = "") -> str:
    cols = [
        f"{prefix}{side}_{kind}[{i}] AS {side}_{kind}_{i}"
        for side in ("bid", "ask")
        for kind in ("px", "qty")
        for i in range(1, levels + 1)
    ]
    return ", ".join(cols)


def latest_book(con: duckdb.DuckDBPyConnection, venue: str, symbol: str, levels: int) -> Book:
    """The most recent book, from the one-row-per-pair snapshots_latest table (sub-millisecond)."""
    cols = (
        f"ts_exchange_ns, ts_local_ns, epoch_ns, bid_px[1:{levels}], bid_qty[1:{levels}], ask_px[1:{levels}], "
        f"ask_qty[1:{levels}]"
    )
    rows = con.execute(
        f"SELECT {cols} FROM snapshots_latest WHERE venue = ? AND symbol = ?",
        [venue, symbol],
    ).fetchall()
    if not rows:
        # a warehouse written before snapshots_latest existed: the rollup has the same answer
        rows = con.execute(
            f"SELECT {cols} FROM snapshots_1s WHERE venue = ? AND symbol = ? ORDER BY bucket_ns DESC LIMIT 1",
            [venue, symbol],
        ).fetchall()
    if not rows:
        raise UserError(f"no snapshots for {venue}/{symbol}")
    ts_ex, ts_local, epoch, bp, bq, ap, aq = rows[0]
    arr = [np.asarray(x, np.float64) for x in (bp, bq, ap, aq)]
    return Book(int(ts_ex), int(ts_local), int(epoch), *arr)


def latest_snapshot(con: duckdb.DuckDBPyConnection, venue: str, symbol: str, levels: int) -> pa.Table:
    """The most recent book as one row of wide columns (bid_px_1 .. ask_qty_N), as export writes them."""
    book = latest_book(con, venue, symbol, levels)
    cols: dict[str, list[object]] = {"ts_exchange_ns": [book.ts_ex], "ts_local_ns": [book.ts_local]}
    for side in ("bid", "ask"):
        for kind in ("px", "qty"):
            values = getattr(book, f"{side}_{kind}")
            for i in range(levels):
                cols[f"{side}_{kind}_{i + 1}"] = [float(values[i])]
    return pa.table(cols)


def time_bounds(con: duckdb.DuckDBPyConnection, venue: str, symbol: str) -> tuple[int, int]:
    row = one(
        con,
        "SELECT min(ts_exchange_ns), max(ts_exchange_ns) FROM snapshots_1s WHERE venue = ? AND symbol = ?",
        [venue, symbol],
    )
    if row is None or row[0] is None:
        raise UserError(f"no snapshots for {venue}/{symbol}")
    first = one(
        con,
        "SELECT min(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ? AND ts_exchange_ns <= ?",
        [venue, symbol, row[0]],
    )
    return int(first[0]) if first and first[0] is not None else int(row[0]), int(row[1])


def snapshots_between(
    con: duckdb.DuckDBPyConnection, venue: str, symbol: str, levels: int, start_ns: int, end_ns: int
) -> duckdb.DuckDBPyRelation:
    """Every snapshot with start <= ts_exchange_ns <= end, wide columns, in time order."""
    return con.sql(
        f"SELECT ts_exchange_ns, ts_local_ns, {_level_columns(levels)} FROM snapshots "
        f"WHERE venue = '{quote(venue)}' AND symbol = '{quote(symbol)}' "
        f"AND ts_exchange_ns BETWEEN {int(start_ns)} AND {int(end_ns)} ORDER BY ts_exchange_ns, update_id"
    )


def sampled_snapshots(
    con: duckdb.DuckDBPyConnection,
    venue: str,
    symbol: str,
    levels: int,
    every_ns: int,
    start_ns: int,
    end_ns: int,
) -> duckdb.DuckDBPyRelation:
    """One row per sample time start, start+every, ... <= end: the book as of the last update at or
    before it, by exchange time. Sample times before the first snapshot get no row."""
    if every_ns <= 0:
        raise UserError("--every must be positive")
    if end_ns < start_ns:
        raise UserError("--end is before --start")
    v, s = quote(venue), quote(symbol)
    floor_start = (start_ns // NS_PER_S) * NS_PER_S
    lo_row = one(
        con,
        "SELECT max(bucket_ns), max(ts_exchange_ns) FROM snapshots_1s "
        "WHERE venue = ? AND symbol = ? AND bucket_ns <= ?",
        [venue, symbol, floor_start],
    )
    grid = f"SELECT range AS ts_sample_ns FROM range({int(start_ns)}, {int(end_ns) + 1}, {int(every_ns)})"
    if every_ns % NS_PER_S == 0 and start_ns % NS_PER_S == 0:
        lo_bucket = int(lo_row[0]) if lo_row and lo_row[0] is not None else 0
        return con.sql(
            f"WITH grid AS ({grid}) "
            f"SELECT g.ts_sample_ns, r.ts_exchange_ns, r.ts_local_ns, {_level_columns(levels, 'r.')} "
            f"FROM grid g ASOF JOIN (SELECT * FROM snapshots_1s WHERE venue = '{v}' AND symbol = '{s}' "
            f"AND bucket_ns BETWEEN {lo_bucket} AND {int(end_ns)}) r ON g.ts_sample_ns >= r.bucket_ns "
            "ORDER BY g.ts_sample_ns"
        )
    lo = int(lo_row[1]) if lo_row and lo_row[1] is not None else 0
    rng = f"venue = '{v}' AND symbol = '{s}' AND ts_exchange_ns BETWEEN {lo} AND {int(end_ns)}"
    return con.sql(
        f"WITH grid AS ({grid}), "
        f"last AS (SELECT ts_exchange_ns, max(update_id) AS update_id FROM snapshots WHERE {rng} GROUP BY ALL), "
        "keys AS (SELECT g.ts_sample_ns, l.ts_exchange_ns, l.update_id FROM grid g "
        "ASOF JOIN last l ON g.ts_sample_ns >= l.ts_exchange_ns) "
        f"SELECT k.ts_sample_ns, s.ts_exchange_ns, s.ts_local_ns, {_level_columns(levels, 's.')} "
        f"FROM keys k JOIN (SELECT * FROM snapshots WHERE {rng}) s "
        "ON s.ts_exchange_ns = k.ts_exchange_ns AND s.update_id = k.update_id ORDER BY k.ts_sample_ns"
    )


def quote(text: str) -> str:
    """Quote a string literal for SQL (venue and symbol names come from the warehouse or the CLI)."""
    return text.replace("'", "''")
