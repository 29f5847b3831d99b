"""How fast the warehouse grows, from what it stores: ``warehouse show``'s growth and archive lines.

Per hour of data: each time-series table's bytes (the blocks ``pragma_storage_info`` lists for it)
over the hours of data it holds, summed: what one more hour of market data adds to the file. Per
hour of wall time: that rate times the hours of data an ingest hour brings in, i.e. the messages
per wall hour of the finished ingest runs (``ingest_runs``) over the raw messages per hour of data
stored. A live ingest brings one hour of data per hour (the two rates agree); a simulation or a
file import brings more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse import lake
from warehouse.db import one
from warehouse.reader import TIME_COLUMNS

NS = 1_000_000_000
HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS
SERIES = {**TIME_COLUMNS, "snapshots_1s": "bucket_ns"}  # tables that grow with the data
DAILY = ("raw_messages", "book_updates", "snapshots", "trades")
SHOWN_DAYS = 7


@dataclass(frozen=True)
class TableGrowth:
    table: str
    rows: int
    bytes: int  # its blocks x the block size
    first_ns: int
    last_ns: int

    @property
    def hours(self) -> float:
        return (self.last_ns - self.first_ns) / HOUR_NS


@dataclass
class Growth:
    block_size: int = 0
    used_blocks: int = 0
    free_blocks: int = 0
    tables: list[TableGrowth] = field(default_factory=list)
    run_seconds: float = 0.0  # ingest runs that ended: their wall time and messages
    run_messages: int = 0
    runs: int = 0
    per_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> table -> rows

    @property
    def used_bytes(self) -> int:
        return self.block_size * self.used_blocks

    def per_data_hour(self) -> float | None:
        """Bytes one more hour of data adds (None until some table spans a moment of data)."""
        rates = [t.bytes / t.hours for t in self.tables if t.hours > 0]
        return sum(rates) if rates else None

    def per_wall_hour(self) -> float | None:
        """Bytes per hour of ingest wall time (None without raw messages or finished runs)."""
        rate = self.per_data_hour()
        raw = next((t for t in self.tables if t.table == "raw_messages"), None)
        if rate is None or raw is None or raw.hours <= 0 or self.run_seconds <= 0:
            return None
        msgs_per_wall_h = self.run_messages / (self.run_seconds / 3600)
        return rate * msgs_per_wall_h / (raw.rows / raw.hours)


def _blocks(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = one(
        con,
        "SELECT count(DISTINCT b) FROM (SELECT block_id AS b FROM pragma_storage_info(?) WHERE block_id >= 0 "
        "UNION ALL SELECT unnest(additional_block_ids) FROM pragma_storage_info(?))",
        [table, table],
    )
    return int(row[0]) if row else 0


def measure(con: duckdb.DuckDBPyConnection) -> Growth:
    """Read the growth figures (one short read-only pass: storage metadata and grouped counts)."""
    g = Growth()
    row = one(
        con,
        "SELECT block_size, used_blocks, free_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()",
    )
    if row:
        g.block_size, g.used_blocks, g.free_blocks = (int(x) for x in row)
    present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for table, col in SERIES.items():
        if table not in present:
            continue
        n, lo, hi = one(con, f"SELECT count(*), min({col}), max({col}) FROM {table}") or (0, None, None)
        if lo is not None:
            g.tables.append(TableGrowth(table, int(n), _blocks(con, table) * g.block_size, int(lo), int(hi)))
    for table in DAILY:
        if table not in present:
            continue
        col = SERIES[table]
        for day, n in con.execute(
            f"SELECT {col} // {DAY_NS} AS d, count(*) FROM {table} GROUP BY d ORDER BY d DESC LIMIT {SHOWN_DAYS}"
        ).fetchall():
            g.per_day.setdefault(_day(int(day) * DAY_NS), {})[table] = int(n)
    if "ingest_runs" in present:
        runs = one(
            con,
            "SELECT count(*), coalesce(sum(ended_ns - started_ns), 0), coalesce(sum(messages), 0) FROM ingest_runs "
            "WHERE ended_ns IS NOT NULL AND ended_ns > started_ns",
        )
        if runs:
            g.runs, g.run_seconds, g.run_messages = int(runs[0]), int(runs[1]) / NS, int(runs[2])
    return g


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%d")


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def show(
    p: Callable[..., None], g: Growth, held: list[lake.LakeTable], unlisted: list[Path] | None, where: str
) -> None:
    """Print the growth and archive lines of ``warehouse show``; ``unlisted`` None: not looked for (S3)."""
    p("")
    p("  growth:")
    p(
        f"    DuckDB file uses {_mb(g.used_bytes)} in {g.used_blocks:,} blocks; "
        f"{_mb(g.block_size * g.free_blocks)} free (reused by new data before the file grows)"
    )
    rate = g.per_data_hour()
    if rate is None:
        p("    per hour of data: not known yet (no table spans a moment of data)")
    else:
        p(f"    per hour of data: {_mb(rate)}, per day of data: {_mb(rate * 24)}")
    wall = g.per_wall_hour()
    if wall is None:
        p("    per hour of ingest wall time: not known (needs raw messages and finished ingest runs)")
    else:
        p(
            f"    per hour of ingest wall time: {_mb(wall)} ({g.runs:,} finished ingest runs: "
            f"{g.run_seconds / 3600:,.2f} h, {g.run_messages:,} messages)"
        )
    p(f"    {'table':<13} {'rows':>12} {'size':>12} {'hours held':>11} {'per hour of data':>17}")
    for t in g.tables:
        per = _mb(t.bytes / t.hours) if t.hours > 0 else "-"
        p(f"    {t.table:<13} {t.rows:>12,} {_mb(t.bytes):>12} {t.hours:>11,.1f} {per:>17}")
    if g.per_day:
        p(f"    rows per day of data (latest {SHOWN_DAYS} days):")
        p(f"      {'day':<10} " + " ".join(f"{t:>13}" for t in DAILY))
        for day in sorted(g.per_day):
            p(f"      {day:<10} " + " ".join(f"{g.per_day[day].get(t, 0):>13,}" for t in DAILY))
    p(f"  lake {where} (rows retention moved; readers asking for their span read them with the file's):")
    if not held:
        p("    empty (python -m warehouse retain moves old rows here)")
    else:
        p(f"    {'table':<13} {'pair':<14} {'files':>6} {'days':>5} {'rows':>13}  {'from':<10} {'to':<10} "
          f"{'size':>11} {'bytes/row':>10}")  # fmt: skip
    for h in held:
        pair = f"{h.venue}/{h.symbol}" if h.symbol else f"{h.venue}/*"
        p(
            f"    {h.table:<13} {pair:<14} {h.files:>6,} {h.days:>5,} {h.rows:>13,}  {_day(h.first_ns):<10} "
            f"{_day(h.last_ns):<10} {_mb(h.bytes):>11} {h.bytes_per_row:>10,.1f}"
        )
    if held:
        p(f"    total {_mb(sum(h.bytes for h in held))} in {sum(h.files for h in held):,} files")
    if unlisted is None:
        p("    objects the manifest does not list are not looked for on S3 (readers skip them; the next retain merges)")
    elif unlisted:
        p(
            f"    {len(unlisted):,} Parquet files under it are not in the lake's manifest (a retain stopped "
            "between writing and committing, or another layout): readers skip them; the next retain merges them"
        )
