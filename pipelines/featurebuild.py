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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from core.config import AppConfig
from core.errors import UserError
from features import MAX_LOOKBACK_S
from market.venues import tick_size
from pipelines.featurecompute import ceil_to, feature_tables, label_tables
from warehouse.db import one, reading, writing
from warehouse.feature_tables import ensure_table, features_spec, ids, labels_spec, table_exists
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


def _pairs(cfg: AppConfig) -> tuple[Path, float, int, list[tuple[str, str]]]:
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
    return path, timeout, stored, pairs


def build(
    cfg: AppConfig,
    start_ns: int | None = None,
    end_ns: int | None = None,
    on_progress: ProgressFn | None = None,
    labels: bool = True,
) -> BuildResult:
    """Build what is missing of features (and labels) for every pair in the warehouse."""
    t0 = time.monotonic()
    _, _, stored, pairs = _pairs(cfg)
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


def _feature_range(
    cfg: AppConfig, con: duckdb.DuckDBPyConnection, venue: str, symbol: str, fset: str, start_ns: int | None
) -> tuple[int, int, int]:
    """(the pair's first book update, its newest, the first grid time the run builds features for)."""
    first, last = _bounds(con, venue, symbol)
    lo = first + MAX_LOOKBACK_S * NS  # every window covered
    if start_ns is not None:
        lo = max(lo, start_ns)
    if table_exists(con, features_spec().name):
        row = one(
            con,
            "SELECT max(ts_ns) FROM features WHERE venue = ? AND symbol = ? AND feature_set = ?",
            [venue, symbol, fset],
        )
        if row and row[0] is not None:
            lo = max(lo, int(row[0]) + 1)
    return first, last, ceil_to(lo, cfg.features.grid)


def _labels_redo(con: duckdb.DuckDBPyConnection, cfg: AppConfig, venue: str, symbol: str, lset: str) -> int:
    """The first grid time whose label is (re)computed: the first open one, else after the newest."""
    if not table_exists(con, labels_spec(cfg).name):
        return 0
    row = one(
        con,
        "SELECT coalesce(min(ts_ns) FILTER (WHERE open), max(ts_ns) + 1) FROM labels "
        "WHERE venue = ? AND symbol = ? AND label_set = ?",
        [venue, symbol, lset],
    )
    return int(row[0]) if row and row[0] is not None else 0


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
    spec = features_spec()
    with reading(path, timeout) as con:
        first, last, lo = _feature_range(cfg, con, venue, symbol, fset, start_ns)
    hi = min(last, end_ns) if end_ns is not None else last
    inserted = 0
    for table, done in feature_tables(cfg, venue, symbol, tick, stored, first, lo, hi, fset):
        if table is not None:
            with writing(path, timeout) as con:
                ensure_table(con, spec)
                inserted += insert_dedup(con, spec, table)
        if on_progress is not None:
            on_progress(done, f"features {venue}/{symbol}: {inserted:,} rows")
    return inserted


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
    spec = labels_spec(cfg)
    with reading(path, timeout) as con:
        if not table_exists(con, "features"):
            return 0  # no feature rows yet (less than the warm-up of data): nothing to label
        _, last = _bounds(con, venue, symbol)
        redo = _labels_redo(con, cfg, venue, symbol, lset)
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
    inserted = 0
    for k, (table, done) in enumerate(label_tables(cfg, venue, symbol, stored, grid, last, lset)):
        with writing(path, timeout) as con:
            ensure_table(con, spec)
            if k == 0:  # rows from the first open one on are recomputed
                con.execute(
                    "DELETE FROM labels WHERE venue = ? AND symbol = ? AND label_set = ? AND ts_ns >= ?",
                    [venue, symbol, lset, int(grid[0])],
                )
            inserted += insert_dedup(con, spec, table)
        if on_progress is not None:
            on_progress(done, f"labels {venue}/{symbol}: {inserted:,} rows")
    return inserted
