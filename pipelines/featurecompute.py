"""What a feature build computes, reading the warehouse only: feature and label rows as Arrow tables.

``feature_tables`` runs the kernels over a range of grid times and ``label_tables`` labels given grid
times, a table per ``features.chunk`` of data; neither writes. pipelines/featurebuild.py stores what
they yield, in this process chunk by chunk, or partition by partition from wherever a partition was
computed (a Dask worker: flows/feature_build.py).

The feature kernels start ``WARMUP_NS`` before the first grid time they are asked for, so the rows of
a range depend on where it starts in their last bits only: a windowed sum runs from the kernels' start
(tests/test_feature_build.py holds the seam of two runs to a continuous batch within rtol 1e-9).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa

from core.config import AppConfig
from core.errors import UserError
from core.records import Books, Trades
from features import NAMES, BatchFeatures, FeatureInputError
from features import labels as lb
from features.grid import live_horizon, segment_starts
from features.grid import rows as grid_rows
from market.events import TableSpec, fixed_to_numpy
from warehouse import lake
from warehouse.db import one, reading
from warehouse.feature_tables import WARMUP_NS, features_spec, label_history_ns, labels_spec


def ceil_to(x: int, step: int) -> int:
    return -(-x // step) * step


class Reader:
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
        """The first book update at or after ``after``: in what this connection reads (the DuckDB file
        and the lake files it was opened with), or the first time of a later lake file."""
        row = one(
            self.con,
            "SELECT min(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ? AND ts_exchange_ns >= ?",
            [self.venue, self.symbol, after],
        )
        found = [int(row[0])] if row and row[0] is not None else []
        later = lake.first_after(self.con, "snapshots", self.venue, self.symbol, after)
        return min([*found, *([later] if later is not None else [])], default=None)

    def mids(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        t = self._arrow(
            "SELECT ts_exchange_ns, (bid_px[1] + ask_px[1]) / 2 AS mid FROM snapshots "
            "WHERE venue = ? AND symbol = ? AND ts_exchange_ns >= ? AND ts_exchange_ns < ? "
            "ORDER BY ts_exchange_ns, update_id",
            [self.venue, self.symbol, lo, hi],
        )
        return t.column("ts_exchange_ns").to_numpy(), t.column("mid").to_numpy()


def feature_tables(
    cfg: AppConfig,
    venue: str,
    symbol: str,
    tick: float,
    stored: int,
    first: int,
    lo: int,
    hi: int,
    fset: str,
) -> Iterator[tuple[pa.Table | None, float]]:
    """The feature rows of the grid times in [``lo``, ``hi``] (``lo`` on the grid), a table per chunk
    (None: no row in it) with the fraction of the range done; the data is read from ``WARMUP_NS``
    before ``lo`` but never before ``first``, the pair's first book update."""
    if lo > hi:
        return
    path = cfg.resolve(cfg.warehouse.path)
    timeout = cfg.warehouse.lock_timeout / 1e9
    grid, chunk, max_gap = cfg.features.grid, cfg.features.chunk, cfg.features.max_gap
    spec = features_spec()
    engine = BatchFeatures(tick)
    read_from = max(first, lo - WARMUP_NS)
    prev_ts: int | None = None  # the last update so far, its features, and the start of its segment
    prev_row: np.ndarray | None = None
    seg_start = read_from
    c0 = read_from
    while c0 <= hi:
        c1 = min(c0 + chunk, hi + 1)
        with reading(path, timeout, history=(c0, c1)) as con:  # and the lake's, for what retention moved
            r = Reader(con, venue, symbol, cfg.features.levels, stored)
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
        g, idx = grid_rows(np.arange(max(ceil_to(c0, grid), lo), c1, grid, dtype=np.int64), ts, starts, max_gap)
        table = _feature_table(spec, venue, symbol, fset, g, ts[idx], x[idx]) if g.size else None
        if len(x):
            prev_ts, prev_row, seg_start = int(ts[-1]), x[-1].copy(), int(starts[-1])
        yield table, (c1 - read_from) / max(hi + 1 - read_from, 1)
        c0 = c1
        if upcoming is not None and upcoming > c1 + max_gap:  # skip a silence (e.g. between recordings)
            c0 = max(c1, upcoming - WARMUP_NS)


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


def label_tables(
    cfg: AppConfig, venue: str, symbol: str, stored: int, grid: np.ndarray, last: int, lset: str
) -> Iterator[tuple[pa.Table, float]]:
    """The label rows of the grid times ``grid`` (increasing, none after ``last``: the data end of the
    run, past which a horizon is open), a table per chunk of them with the fraction done."""
    path = cfg.resolve(cfg.warehouse.path)
    timeout = cfg.warehouse.lock_timeout / 1e9
    lc = cfg.labels
    spec = labels_spec(cfg)
    longest = max(*lc.horizons, lc.barrier_horizon)
    tau = lb.dead_zone(cfg.instrument.maker_fee, extra=lc.dead_zone_extra)
    per_chunk = max(int(cfg.features.chunk // cfg.features.grid), 1)
    for a in range(0, grid.size, per_chunk):
        g = grid[a : a + per_chunk]
        hi_read = min(last, int(g[-1]) + longest)
        lo_read = int(g[0]) - label_history_ns(cfg)
        with reading(path, timeout, history=(lo_read, hi_read + 1)) as con:
            ts, mid = Reader(con, venue, symbol, cfg.features.levels, stored).mids(lo_read, hi_read + 1)
        done = min(a + per_chunk, grid.size) / grid.size
        yield _label_table(spec, cfg, venue, symbol, lset, ts, mid, g, tau, last), done


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
