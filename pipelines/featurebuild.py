"""Features and labels from the warehouse into the warehouse: incremental, idempotent, chunked.

``features`` holds one row per grid time (``features.grid``) per (venue, symbol, feature set): the
feature vector as of that time, i.e. after the last book update at or before it (by exchange
time). ``labels`` holds the training labels of the same grid times; a label whose horizon runs
past the data is NULL, and is computed by a later run once the data is there.

A run continues where the previous one stopped: features from the last stored grid time (after
re-reading ``MAX_LOOKBACK_S`` of history to rebuild the kernel state), labels from the first row
that still has a NULL. Inserts are deduplicated on the natural key, so overlapping or repeated
runs never duplicate a row. Data is read in ``features.chunk`` pieces to bound memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from core.config import AppConfig
from core.errors import UserError
from core.records import Books, Trades
from features import MAX_LOOKBACK_S, NAMES, BatchFeatures, FeatureInputError
from features import labels as lb
from features.grid import live_horizon, segment_starts
from features.grid import rows as grid_rows
from market.events import TableSpec, fixed_to_numpy
from market.venues import tick_size
from warehouse.db import one, reading, writing
from warehouse.feature_tables import (
    WARMUP_NS,
    ensure_table,
    features_spec,
    ids,
    label_history_ns,
    labels_spec,
    table_exists,
)
from warehouse.schema import stored_levels
from warehouse.writer import insert_dedup

NS = 1_000_000_000

ProgressFn = Callable[[float, str], None]  # (fraction done, one line of detail)


@dataclass
class BuildResult:
    feature_set: str
    label_set: str
    feature_rows: int = 0
    label_rows: int = 0
    pairs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.feature_rows:,} feature rows (set {self.feature_set}) and {self.label_rows:,} label rows "
            f"(set {self.label_set}) for {', '.join(self.pairs) or 'no data'} in {self.seconds:.1f}s"
        )


def _ceil(x: int, step: int) -> int:
    return -(-x // step) * step


class _Reader:
    """Book and trades of one pair for a time range, as kernel inputs."""

    def __init__(self, con: duckdb.DuckDBPyConnection, venue: str, symbol: str, levels: int, stored: int) -> None:
        self.con, self.venue, self.symbol, self.levels, self.stored = con, venue, symbol, levels, stored

    def _arrow(self, sql: str, params: list[object]) -> pa.Table:
        table = self.con.sql(sql, params=params).to_arrow_table()
        assert table is not None
        return table

    def book(self, lo: int, hi: int) -> Books:
        t = self._arrow(
            "SELECT ts_exchange_ns, ts_local_ns, epoch_ns, bid_px, bid_qty, ask_px, ask_qty FROM snapshots "
            "WHERE venue = ? AND symbol = ? AND ts_exchange_ns >= ? AND ts_exchange_ns < ? "
            "ORDER BY ts_exchange_ns, update_id",
            [self.venue, self.symbol, lo, hi],
        )
        k = self.levels

        def side(name: str) -> np.ndarray:
            return np.ascontiguousarray(fixed_to_numpy(t.column(name), self.stored)[:, :k])

        return Books(
            t.column("ts_exchange_ns").to_numpy(),
            t.column("ts_local_ns").to_numpy(),
            t.column("epoch_ns").to_numpy(),
            side("bid_px"),
            side("bid_qty"),
            side("ask_px"),
            side("ask_qty"),
        )

    def trades(self, lo: int, hi: int) -> Trades:
        t = self._arrow(
            "SELECT ts_exchange_ns, ts_local_ns, price, qty, side FROM trades WHERE venue = ? AND symbol = ? "
            "AND ts_exchange_ns >= ? AND ts_exchange_ns < ? ORDER BY ts_exchange_ns, ts_local_ns, trade_id",
            [self.venue, self.symbol, lo, hi],
        )
        return Trades(
            t.column("ts_exchange_ns").to_numpy(),
            t.column("ts_local_ns").to_numpy(),
            t.column("price").to_numpy(),
            t.column("qty").to_numpy(),
            t.column("side").to_numpy().astype(np.int8),
        )

    def next_book_ts(self, after: int) -> int | None:
        row = one(
            self.con,
            "SELECT min(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ? AND ts_exchange_ns >= ?",
            [self.venue, self.symbol, after],
        )
        return int(row[0]) if row and row[0] is not None else None

    def mids(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        t = self._arrow(
            "SELECT ts_exchange_ns, (bid_px[1] + ask_px[1]) / 2 AS mid FROM snapshots "
            "WHERE venue = ? AND symbol = ? AND ts_exchange_ns >= ? AND ts_exchange_ns < ? "
            "ORDER BY ts_exchange_ns, update_id",
            [self.venue, self.symbol, lo, hi],
        )
        return t.column("ts_exchange_ns").to_numpy(), t.column("mid").to_numpy()


def build(
    cfg: AppConfig,
    start_ns: int | None = None,
    end_ns: int | None = None,
    on_progress: ProgressFn | None = None,
    labels: bool = True,
) -> BuildResult:
    """Build what is missing of features (and labels) for every pair in the warehouse."""
    t0 = time.monotonic()
    path = cfg.resolve(cfg.warehouse.path)
    timeout = cfg.warehouse.lock_timeout / 1e9
    with reading(path, timeout) as con:
        stored = stored_levels(con) or 0
        pairs = [
            (str(v), str(s))
            for v, s in con.execute("SELECT DISTINCT venue, symbol FROM snapshots_latest ORDER BY ALL").fetchall()
        ]
    if cfg.features.levels > stored:
        raise UserError(f"features.levels is {cfg.features.levels} but the warehouse keeps {stored} levels")
    if not pairs:
        raise UserError(f"{path}: no book data to build features from (run an ingest first)")
    fs, ls = ids(cfg, cfg.instrument.venue)
    result = BuildResult(feature_set=fs, label_set=ls)
    for venue, symbol in pairs:
        tick = tick_size(cfg.instrument, venue)
        result.feature_set, result.label_set = ids(cfg, venue)
        result.pairs.append(f"{venue}/{symbol}")
        result.feature_rows += _build_features(
            cfg, venue, symbol, tick, stored, start_ns, end_ns, result.feature_set, on_progress
        )
        if labels:
            result.label_rows += _build_labels(
                cfg, venue, symbol, stored, end_ns, result.feature_set, result.label_set, on_progress
            )
    result.seconds = time.monotonic() - t0
    return result


def _bounds(con: duckdb.DuckDBPyConnection, venue: str, symbol: str) -> tuple[int, int]:
    row = one(
        con,
        "SELECT min(ts_exchange_ns), max(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ?",
        [venue, symbol],
    )
    assert row is not None and row[0] is not None
    return int(row[0]), int(row[1])


def _build_features(
    cfg: AppConfig,
    venue: str,
    symbol: str,
    tick: float,
    stored: int,
    start_ns: int | None,
    end_ns: int | None,
    fset: str,
    on_progress: ProgressFn | None,
) -> int:
    path = cfg.resolve(cfg.warehouse.path)
    timeout = cfg.warehouse.lock_timeout / 1e9
    grid, chunk = cfg.features.grid, cfg.features.chunk
    spec = features_spec()
    with reading(path, timeout) as con:
        first, last = _bounds(con, venue, symbol)
        done = None
        if table_exists(con, spec.name):
            row = one(
                con,
                "SELECT max(ts_ns) FROM features WHERE venue = ? AND symbol = ? AND feature_set = ?",
                [venue, symbol, fset],
            )
            done = row[0] if row else None
    lo = first + MAX_LOOKBACK_S * NS  # every window covered
    if start_ns is not None:
        lo = max(lo, start_ns)
    if done is not None:
        lo = max(lo, int(done) + 1)
    lo = _ceil(lo, grid)
    hi = min(last, end_ns) if end_ns is not None else last
    if lo > hi:
        return 0
    engine = BatchFeatures(tick)
    read_from = max(first, lo - WARMUP_NS)
    max_gap = cfg.features.max_gap
    inserted = 0
    prev_ts: int | None = None  # the last update so far, its features, and the start of its segment
    prev_row: np.ndarray | None = None
    seg_start = read_from
    c0 = read_from
    while c0 <= hi:
        c1 = min(c0 + chunk, hi + 1)
        with reading(path, timeout) as con:
            r = _Reader(con, venue, symbol, cfg.features.levels, stored)
            book, trades = r.book(c0, c1), r.trades(c0, c1)
            upcoming = r.next_book_ts(c1) if len(book) == 0 else None
        try:
            x = engine.run(book, trades)
        except FeatureInputError as exc:
            raise UserError(f"{venue}/{symbol}: {exc}") from None
        ts = book.ts_ex
        starts = segment_starts(ts, prev_ts, seg_start, max_gap)
        if prev_row is not None:  # the as-of row of a grid time may be the previous chunk's last update
            ts = np.concatenate([[prev_ts], ts])
            x = np.vstack([prev_row, x])
            starts = np.concatenate([[seg_start], starts])
        g, idx = grid_rows(np.arange(max(_ceil(c0, grid), lo), c1, grid, dtype=np.int64), ts, starts, max_gap)
        if g.size:
            table = _feature_table(spec, venue, symbol, fset, g, ts[idx], x[idx])
            with writing(path, timeout) as con:
                ensure_table(con, spec)
                inserted += insert_dedup(con, spec, table)
        if len(x):
            prev_ts, prev_row, seg_start = int(ts[-1]), x[-1].copy(), int(starts[-1])
        if on_progress is not None:
            on_progress((c1 - read_from) / max(hi + 1 - read_from, 1), f"features {venue}/{symbol}: {inserted:,} rows")
        c0 = c1
        if upcoming is not None and upcoming > c1 + max_gap:  # skip a silence (e.g. between recordings)
            c0 = max(c1, upcoming - WARMUP_NS)
    return inserted


def _feature_table(
    spec: TableSpec, venue: str, symbol: str, fset: str, g: np.ndarray, upd: np.ndarray, x: np.ndarray
) -> pa.Table:
    n = g.size
    cols: list[pa.Array] = [
        pa.array([venue] * n, pa.string()),
        pa.array([symbol] * n, pa.string()),
        pa.array([fset] * n, pa.string()),
        pa.array(g, pa.int64()),
        pa.array(upd, pa.int64()),
    ]
    cols += [pa.array(np.ascontiguousarray(x[:, i]), pa.float64()) for i in range(len(NAMES))]
    return pa.Table.from_arrays(cols, schema=spec.arrow_schema)


def _build_labels(
    cfg: AppConfig,
    venue: str,
    symbol: str,
    stored: int,
    end_ns: int | None,
    fset: str,
    lset: str,
    on_progress: ProgressFn | None,
) -> int:
    """Labels for the grid times of the stored features that have none yet (or only open ones)."""
    path = cfg.resolve(cfg.warehouse.path)
    timeout = cfg.warehouse.lock_timeout / 1e9
    lc = cfg.labels
    spec = labels_spec(cfg)
    longest = max(*lc.horizons, lc.barrier_horizon)
    with reading(path, timeout) as con:
        if not table_exists(con, "features"):
            return 0  # no feature rows yet (less than the warm-up of data): nothing to label
        _, last = _bounds(con, venue, symbol)
        redo = 0
        if table_exists(con, spec.name):
            row = one(
                con,
                "SELECT coalesce(min(ts_ns) FILTER (WHERE open), max(ts_ns) + 1) FROM labels "
                "WHERE venue = ? AND symbol = ? AND label_set = ?",
                [venue, symbol, lset],
            )
            redo = int(row[0]) if row and row[0] is not None else 0
        grid = con.execute(
            "SELECT ts_ns FROM features WHERE venue = ? AND symbol = ? AND feature_set = ? AND ts_ns >= ? "
            "ORDER BY ts_ns",
            [venue, symbol, fset, redo],
        ).fetchnumpy()["ts_ns"]
    if end_ns is not None:
        last = min(last, end_ns)  # the data ends there for this run: later horizons stay open
    grid = np.asarray(grid, np.int64)
    grid = grid[grid <= last]
    if grid.size == 0:
        return 0
    tau = lb.dead_zone(cfg.instrument.maker_fee, extra=lc.dead_zone_extra)
    inserted = 0
    per_chunk = max(int(cfg.features.chunk // cfg.features.grid), 1)
    for k, a in enumerate(range(0, grid.size, per_chunk)):
        g = grid[a : a + per_chunk]
        hi_read = min(last, int(g[-1]) + longest)
        with reading(path, timeout) as con:
            ts, mid = _Reader(con, venue, symbol, cfg.features.levels, stored).mids(
                int(g[0]) - label_history_ns(cfg), hi_read + 1
            )
        table = _label_table(spec, cfg, venue, symbol, lset, ts, mid, g, tau, last)
        with writing(path, timeout) as con:
            ensure_table(con, spec)
            if k == 0:  # rows from the first open one on are recomputed
                con.execute(
                    "DELETE FROM labels WHERE venue = ? AND symbol = ? AND label_set = ? AND ts_ns >= ?",
                    [venue, symbol, lset, int(g[0])],
                )
            inserted += insert_dedup(con, spec, table)
        if on_progress is not None:
            done = min(a + per_chunk, grid.size) / grid.size
            on_progress(done, f"labels {venue}/{symbol}: {inserted:,} rows")
    return inserted


def _masked(values: np.ndarray, typ: pa.DataType, missing: np.ndarray) -> pa.Array:
    return pa.array(values, typ, mask=missing)


def _label_table(
    spec: TableSpec,
    cfg: AppConfig,
    venue: str,
    symbol: str,
    lset: str,
    ts: np.ndarray,
    mid: np.ndarray,
    g: np.ndarray,
    tau: float,
    data_end: int,
) -> pa.Table:
    lc = cfg.labels
    max_gap = cfg.features.max_gap
    longest = max(*lc.horizons, lc.barrier_horizon)
    if ts[-1] < data_end:  # the data goes on: the mid is unchanged until data_end (as-of)
        ts, mid = np.append(ts, data_end), np.append(mid, mid[-1])
    n = g.size
    cols: list[pa.Array] = [
        pa.array([venue] * n, pa.string()),
        pa.array([symbol] * n, pa.string()),
        pa.array([lset] * n, pa.string()),
        pa.array(g, pa.int64()),
        pa.array(g + longest > data_end, pa.bool_()),
        pa.array(mid[np.searchsorted(ts, g, side="right") - 1], pa.float64()),
    ]
    for h in lc.horizons:
        ret = lb.forward_return(ts, mid, g, h)
        ret[~live_horizon(ts, g, h, max_gap)] = np.nan
        d = lb.direction(ret, tau)
        cols.append(_masked(ret, pa.float64(), np.isnan(ret)))
        cols.append(_masked(d, pa.int8(), d == lb.MISSING))
    # barrier width: trailing realized vol over barrier_vol_window, scaled to the barrier horizon
    scale = math.sqrt(lc.barrier_horizon / lc.barrier_vol_window)
    vol = lb.realized_vol(ts, mid, g, lc.barrier_vol_window) * scale
    tb = lb.triple_barrier(ts, mid, g, vol, lc.take_profit, lc.stop_loss, lc.barrier_horizon)
    missing = (tb.label == lb.MISSING) | ~live_horizon(ts, g, lc.barrier_horizon, max_gap)
    cols += [
        _masked(vol, pa.float64(), np.isnan(vol)),
        _masked(tb.label, pa.int8(), missing),
        _masked(tb.ret, pa.float64(), missing),
        _masked(tb.exit_ns, pa.int64(), missing),
    ]
    return pa.Table.from_arrays(cols, schema=spec.arrow_schema)
