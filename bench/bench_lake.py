"""Lake figures: bytes per book update, and the warehouse's read queries on history in the lake.

bench_warehouse's simulated day is copied (bench/.cache/lake) and every hour of its book tables but
the last is moved to the lake exactly as ``python -m warehouse retain`` moves it
(``retention.move_hour``: zstd Parquet, one file per table, pair and hour, listed in the manifest;
the keep rule of a feature build is not applied: this measures the lake, not the policy). Then the
same queries bench_warehouse times on the DuckDB file are timed on the copy, reading with
``history``: the readers' way to the lake.
"""

from __future__ import annotations

import shutil
import time
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

import duckdb
import numpy as np

from bench.bench_warehouse import _day_warehouse
from bench.common import CACHE, entry, timed
from core.config import AppConfig, load_config
from warehouse import lake, reader, retention
from warehouse.db import reading, writing
from warehouse.lakestore import open_store
from warehouse.schema import stored_levels

NS = 1_000_000_000


def _lake_copy(day: AppConfig) -> tuple[AppConfig, float, int]:
    """The day's warehouse copied, its book hours but the last moved; (config, seconds, rows moved)."""
    src = day.resolve(day.warehouse.path)
    folder = CACHE / "lake"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(src, folder / src.name)
    (folder / "config.yaml").write_text(
        f"warehouse:\n  path: {src.name}\n  snapshot_levels: {day.warehouse.snapshot_levels}\n"
        "  retention:\n    archive: archive\n"
    )
    cfg = load_config(folder / "config.yaml")
    path, store = cfg.resolve(cfg.warehouse.path), open_store(cfg)
    moved, t0 = 0, time.perf_counter()
    with writing(path) as con:
        con.execute("SET enable_progress_bar = false")
        levels = stored_levels(con) or 0
        for name in retention.BOOK_TABLES:
            spec = retention._spec(levels, name)
            row = con.execute(f"SELECT max({spec.time_column}) FROM {name}").fetchone()
            last_hour = int(row[0]) // retention.HOUR_NS * retention.HOUR_NS if row and row[0] is not None else 0
            for hour in retention._hours(con, spec, last_hour):
                moved += retention.move_hour(con, spec, hour, store)[0]
        con.execute("CHECKPOINT")
    return cfg, time.perf_counter() - t0, moved


def _duckdb_bytes_per_row(src: Path, table: str, work: Path) -> float:
    """A table's bytes per row in a DuckDB file of its own (the table alone, checkpointed)."""
    one_table = work / f"{table}.duckdb"
    one_table.unlink(missing_ok=True)
    con = duckdb.connect(str(one_table))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
        con.execute(f"CREATE TABLE {table} AS FROM src.{table}")
        n = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        con.execute("DETACH src")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    size = one_table.stat().st_size
    one_table.unlink()
    return size / n


def run() -> list[dict[str, Any]]:
    day = _day_warehouse()
    src = day.resolve(day.warehouse.path)
    cfg, took, moved = _lake_copy(day)
    path = cfg.resolve(cfg.warehouse.path)
    out = [entry("lake: book hours moved by retention", took, "s", None, f"{moved:,} rows of a simulated day")]
    with reading(path) as con:
        held = {t.table: t for t in lake.tables(con)}
    bu = held["book_updates"]
    duck = _duckdb_bytes_per_row(src, "book_updates", CACHE / "lake")
    out += [
        entry("lake: bytes per book update (Parquet, zstd)", bu.bytes_per_row, "B", None,
              f"{bu.rows:,} book updates in {bu.files} files; all levels of each update, as stored"),
        entry("lake: bytes per book update in DuckDB", duck, "B", None, "the same rows in a DuckDB file of their own"),
        entry("lake: bytes per snapshot row (Parquet)", held["snapshots"].bytes_per_row, "B", None,
              f"{held['snapshots'].rows:,} rows of the top {cfg.warehouse.snapshot_levels} levels"),
    ]  # fmt: skip
    with reading(path) as con:
        venue, symbol = reader.pick_pair(con, None, None, ("bybit", "BTCUSDT"))
    first = held["snapshots_1s"].first_ns
    h0 = (first // NS + 6 * 3600) * NS
    span = (h0, h0 + 3600 * NS)
    with reading(src) as hot, reading(path, history=span) as con:  # the same answers, or no figure
        for every in (NS, NS // 4):
            a = reader.sampled_snapshots(hot, venue, symbol, 20, every, h0, h0 + 3_599 * NS).fetchnumpy()
            b = reader.sampled_snapshots(con, venue, symbol, 20, every, h0, h0 + 3_599 * NS).fetchnumpy()
            if a.keys() != b.keys() or any(not np.array_equal(a[k], b[k]) for k in a):
                raise RuntimeError(f"the lake's sampled hour ({every} ns) differs from the DuckDB file's")

        def sampled(c: duckdb.DuckDBPyConnection, every: int) -> object:
            return reader.sampled_snapshots(c, venue, symbol, 20, every, h0, h0 + 3_599 * NS).fetchnumpy()

        def ten_minutes(c: duckdb.DuckDBPyConnection) -> object:
            return c.sql(
                "SELECT ts_exchange_ns, bid_px, ask_px FROM snapshots WHERE venue = ? AND symbol = ? "
                "AND ts_exchange_ns >= ? AND ts_exchange_ns < ? ORDER BY ts_exchange_ns",
                params=[venue, symbol, h0, h0 + 600 * NS],
            ).to_arrow_table()

        hour, hot_hour = (timed(partial(sampled, c, NS), 30) for c in (con, hot))
        odd, hot_odd = (timed(partial(sampled, c, NS // 4), 10) for c in (con, hot))
        chunk, hot_chunk = (timed(partial(ten_minutes, c), 10) for c in (con, hot))
    t_plain = timed(lambda: _open_with_history(path, None), repeat=30)
    t_open = timed(lambda: _open_with_history(path, span), repeat=30)
    t_all = timed(lambda: _open_with_history(path, (None, None)), repeat=10)
    out += [
        entry("lake: one hour at 1 s sampling, 20 levels, p50", median(hour) * 1e3, "ms", "< 20",
              f"the hour in the lake; {median(hot_hour) * 1e3:.1f} ms on the DuckDB file, same run"),
        entry("lake: one hour at 250 ms sampling, 20 levels, p50", median(odd) * 1e3, "ms", None,
              f"14,400 rows, the general ASOF path; {median(hot_odd) * 1e3:.1f} ms on the DuckDB file"),
        entry("lake: 10 minutes of snapshots (a feature build's read), p50", median(chunk) * 1e3, "ms", None,
              f"all stored levels; {median(hot_chunk) * 1e3:.1f} ms on the DuckDB file"),
        entry("lake: open read-only without history", median(t_plain) * 1e3, "ms", None,
              "what every reader that does not ask for history pays (a query on the manifest)"),
        entry("lake: open read-only with an hour of history", median(t_open) * 1e3, "ms", None,
              "the manifest read and the views made"),
        entry("lake: open read-only with all history", median(t_all) * 1e3, "ms", None,
              f"{sum(t.files for t in held.values())} files listed in the views"),
    ]  # fmt: skip
    return out


def _open_with_history(path: Path, span: tuple[int | None, int | None] | None) -> None:
    with reading(path, history=span):
        pass
