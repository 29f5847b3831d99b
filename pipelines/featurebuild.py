"""Features and labels from the warehouse into the warehouse: incremental, idempotent, chunked.

``features`` holds one row per grid time (``features.grid``) per (venue, symbol, feature set): the
feature vector as of that time, i.e. after the last book update at or before it (by exchange
time). ``labels`` holds the training labels of the same grid times; a label whose horizon runs
past the data is NULL, and is computed by a later run once the data is there.

A run continues where the previous one stopped: features from the last stored grid time (after
re-reading ``MAX_LOOKBACK_S`` of history to rebuild the kernel state), labels from the first row
that still has a NULL. Inserts are deduplicated on the natural key, so overlapping or repeated
runs never duplicate a row. Data is read in ``features.chunk`` pieces to bound memory.

With ``compute.partition`` set (or on a cluster: flows/feature_build.py) the run's grid times are
cut into partitions on the clock (``1d``: UTC days). Each ``Part`` is computed alone (``compute``:
its kernels start ``WARMUP_NS`` before it, its labels read their own horizons and history), reading
the warehouse only, so partitions compute in any order and any process; ``store`` writes one
partition's rows in one transaction, in partition order, so an interrupted run leaves a prefix
that the next one continues. Where a partition starts, its windowed sums start again (as where an
incremental run resumes): a partitioned build has the rows of the one-pass build, their values equal
but for rounding (a simulated day in 3 h partitions: 41 % of the values differ, at most by 1.5e-8 of
their column's largest value; the labels are equal but for 5e-15 of the barrier width), and equals
any other build with the same partitions bit for bit, wherever they were computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from core.config import AppConfig
from core.errors import UserError
from features import MAX_LOOKBACK_S
from market.venues import tick_size
from pipelines.featurecompute import ceil_to, feature_tables, label_tables
from warehouse import lake
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


@dataclass(frozen=True)
class Part:
    """One partition of a pair's build: the grid times in [``start``, ``end``)."""

    venue: str
    symbol: str
    tick: float
    stored: int  # book levels the warehouse keeps
    feature_set: str
    label_set: str
    start: int
    end: int
    features_from: int  # the first grid time without features (on the grid; >= end: none to build)
    labels_from: int | None  # the first grid time whose label is (re)computed; None: no labels
    first: int  # the pair's first book update: nothing is read before it
    last: int  # the run's data end (the newest update, or --end): no grid time after it


class PartRows(NamedTuple):
    """What ``compute`` returns for a partition: its new feature rows and its label rows (None: none)."""

    features: pa.Table
    labels: pa.Table | None


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
    """Build what is missing of features (and labels) for every pair in the warehouse: in one pass,
    or partition after partition when ``compute.partition`` is set."""
    t0 = time.monotonic()
    if cfg.compute.partition is not None:
        result, parts = plan(cfg, start_ns, end_ns, labels, cfg.compute.partition)
        for i, part in enumerate(parts, 1):
            nf, nl = store(cfg, part, compute(cfg, part))
            result.feature_rows += nf
            result.label_rows += nl
            if on_progress is not None:
                on_progress(i / len(parts), f"partition {i}/{len(parts)}: {result.feature_rows:,} feature rows")
        result.seconds = time.monotonic() - t0
        return result
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
    """The pair's first and newest book update, in the DuckDB file or in the lake (retention moved
    the oldest there: a feature set built later still starts at the first)."""
    row = one(
        con,
        "SELECT min(ts_exchange_ns), max(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ?",
        [venue, symbol],
    )
    spans = [(int(row[0]), int(row[1]))] if row is not None and row[0] is not None else []
    held = lake.bounds(con, "snapshots", venue, symbol)
    spans += [held] if held is not None else []
    if not spans:
        raise UserError(f"{venue}/{symbol}: no book update stored (the DuckDB file and the lake hold none)")
    return min(a for a, _ in spans), max(b for _, b in spans)


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


# ------------------------------------------------------------------ partitions


def plan(
    cfg: AppConfig, start_ns: int | None, end_ns: int | None, labels: bool, partition_ns: int
) -> tuple[BuildResult, list[Part]]:
    """The run's partitions, pair by pair in time order (their rows counted in the result by ``store``).

    A partition is ``partition_ns`` of grid times on the clock (``1d``: a UTC day), the first and the
    last cut to the run: features from the last stored row on, labels from the first open one on."""
    if partition_ns <= 0:
        raise UserError(f"compute.partition must be positive, not {partition_ns} ns")
    path, timeout, stored, pairs = _pairs(cfg)
    fs, ls = ids(cfg, cfg.instrument.venue)
    result = BuildResult(feature_set=fs, label_set=ls)
    parts: list[Part] = []
    for venue, symbol in pairs:
        fset, lset = result.feature_set, result.label_set = ids(cfg, venue)
        result.pairs.append(f"{venue}/{symbol}")
        with reading(path, timeout) as con:
            first, last, lo = _feature_range(cfg, con, venue, symbol, fset, start_ns)
            labels_lo = None
            if labels:
                redo = _labels_redo(con, cfg, venue, symbol, lset)
                row = None
                if table_exists(con, features_spec().name):
                    row = one(
                        con,
                        "SELECT min(ts_ns) FROM features WHERE venue = ? AND symbol = ? AND feature_set = ? "
                        "AND ts_ns >= ?",
                        [venue, symbol, fset, redo],
                    )
                labels_lo = int(row[0]) if row and row[0] is not None else lo  # no stored row to label: the new ones
        hi = min(last, end_ns) if end_ns is not None else last
        begin = lo if labels_lo is None else min(lo, labels_lo)
        if begin > hi:
            continue  # nothing new
        for a in range(begin // partition_ns * partition_ns, hi + 1, partition_ns):
            s, e = max(a, begin), min(a + partition_ns, hi + 1)
            parts.append(
                Part(
                    venue=venue,
                    symbol=symbol,
                    tick=tick_size(cfg.instrument, venue),
                    stored=stored,
                    feature_set=fset,
                    label_set=lset,
                    start=s,
                    end=e,
                    features_from=ceil_to(max(s, lo), cfg.features.grid),
                    labels_from=None if labels_lo is None else max(s, labels_lo),
                    first=first,
                    last=hi,
                )
            )
    return result, parts


def compute(cfg: AppConfig, part: Part) -> PartRows:
    """A partition's new feature rows and its label rows, reading the warehouse only (any process)."""
    spec = features_spec()
    tables = [
        t
        for t, _ in feature_tables(
            cfg, part.venue, part.symbol, part.tick, part.stored, part.first, part.features_from, part.end - 1,
            part.feature_set,
        )
        if t is not None
    ]  # fmt: skip
    features = pa.concat_tables(tables) if tables else spec.arrow_schema.empty_table()
    if part.labels_from is None:
        return PartRows(features, None)
    grid = np.zeros(0, np.int64)
    if part.labels_from < part.features_from:  # stored rows to label first (open ones, or never labelled)
        path = cfg.resolve(cfg.warehouse.path)
        with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
            grid = con.execute(
                "SELECT ts_ns FROM features WHERE venue = ? AND symbol = ? AND feature_set = ? AND ts_ns >= ? "
                "AND ts_ns < ? ORDER BY ts_ns",
                [part.venue, part.symbol, part.feature_set, part.labels_from, part.features_from],
            ).fetchnumpy()["ts_ns"]
    grid = np.concatenate([np.asarray(grid, np.int64), features.column("ts_ns").to_numpy()])
    grid = grid[grid <= part.last]
    label_spec = labels_spec(cfg)
    if grid.size == 0:
        return PartRows(features, label_spec.arrow_schema.empty_table())
    rows = [t for t, _ in label_tables(cfg, part.venue, part.symbol, part.stored, grid, part.last, part.label_set)]
    return PartRows(features, pa.concat_tables(rows))


def store(cfg: AppConfig, part: Part, rows: PartRows) -> tuple[int, int]:
    """Write a partition's rows in one transaction: its new features, and its labels in place of the
    stored ones from ``labels_from`` on. Returns (feature rows, label rows) inserted."""
    path = cfg.resolve(cfg.warehouse.path)
    spec, label_spec = features_spec(), labels_spec(cfg)
    nf = nl = 0
    with writing(path, cfg.warehouse.lock_timeout / 1e9) as con:
        con.begin()
        try:
            if rows.features.num_rows:
                ensure_table(con, spec)
                nf = insert_dedup(con, spec, rows.features)
            if rows.labels is not None and rows.labels.num_rows:
                ensure_table(con, label_spec)
                con.execute(
                    "DELETE FROM labels WHERE venue = ? AND symbol = ? AND label_set = ? AND ts_ns >= ? AND ts_ns < ?",
                    [part.venue, part.symbol, part.label_set, part.labels_from, part.end],
                )
                nl = insert_dedup(con, label_spec, rows.labels)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return nf, nl
