"""Training rows: the features joined with their labels for a time window, as arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import AppConfig
from core.errors import UserError
from features import NAMES
from features import labels as lb
from warehouse.db import one, reading
from warehouse.feature_tables import horizon_name, ids, table_exists


@dataclass(frozen=True)
class TrainingData:
    x: np.ndarray  # (n, F) features, rows in time order
    ts: np.ndarray  # (n,) grid times, ns
    ret: np.ndarray  # (n,) forward log return at the training horizon
    direction: np.ndarray  # (n,) int8: +1 / 0 / -1 beyond the dead zone
    feature_names: list[str]
    feature_set: str
    label_set: str
    venue: str
    symbol: str
    tau: float

    @property
    def start_ns(self) -> int:
        return int(self.ts[0])

    @property
    def end_ns(self) -> int:
        return int(self.ts[-1])


def newest_label_ns(cfg: AppConfig) -> int | None:
    """The grid time of the newest row labelled at the training horizon (None: nothing labelled yet)."""
    venue, symbol = cfg.instrument.venue, cfg.instrument.venue_symbol
    _, ls = ids(cfg, venue)
    path = cfg.resolve(cfg.warehouse.path)
    if not path.exists():
        return None
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        if not table_exists(con, "labels"):
            return None
        h = horizon_name(cfg.training.horizon)
        row = one(
            con,
            f"SELECT max(ts_ns) FROM labels WHERE venue = ? AND symbol = ? AND label_set = ? AND ret_{h} IS NOT NULL",
            [venue, symbol, ls],
        )
    return int(row[0]) if row and row[0] is not None else None


def newest_data_ns(cfg: AppConfig) -> int | None:
    """The exchange time of the instrument's newest stored book update (None: none stored yet).

    No row can be labelled at the training horizon after this time minus that horizon, whatever a
    feature build would add: a retraining with nothing past that point has nothing to learn."""
    path = cfg.resolve(cfg.warehouse.path)
    if not path.exists():
        return None
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        if not table_exists(con, "snapshots"):
            return None
        row = one(
            con,
            "SELECT max(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ?",
            [cfg.instrument.venue, cfg.instrument.venue_symbol],
        )
    return int(row[0]) if row and row[0] is not None else None


def load(cfg: AppConfig, window_ns: int, end_ns: int | None = None, min_rows: int = 1) -> TrainingData:
    """The labelled rows of the last ``window_ns`` up to ``end_ns`` (default: the newest label)."""
    venue, symbol = cfg.instrument.venue, cfg.instrument.venue_symbol
    fs, ls = ids(cfg, venue)
    h = horizon_name(cfg.training.horizon)
    path = cfg.resolve(cfg.warehouse.path)
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        if not (table_exists(con, "features") and table_exists(con, "labels")):
            raise UserError(f"{path}: no features / labels yet (run python -m flows.feature_build)")
        newest = one(
            con,
            f"SELECT max(ts_ns) FROM labels WHERE venue = ? AND symbol = ? AND label_set = ? AND ret_{h} IS NOT NULL",
            [venue, symbol, ls],
        )
        last = end_ns if end_ns is not None else (newest[0] if newest else None)
        if last is None:
            raise UserError(f"no labelled rows for {venue}/{symbol} (label set {ls}): build features first")
        cols = ", ".join(f"f.{n}" for n in NAMES)
        data = con.execute(
            f"SELECT f.ts_ns, {cols}, l.ret_{h} AS ret, l.dir_{h} AS dir FROM features f "
            "JOIN labels l ON l.venue = f.venue AND l.symbol = f.symbol AND l.ts_ns = f.ts_ns "
            f"WHERE f.venue = ? AND f.symbol = ? AND f.feature_set = ? AND l.label_set = ? "
            f"AND l.ret_{h} IS NOT NULL AND f.ts_ns > ? AND f.ts_ns <= ? ORDER BY f.ts_ns",
            [venue, symbol, fs, ls, int(last) - window_ns, int(last)],
        ).fetchnumpy()
    n = len(data["ts_ns"])
    if n < min_rows:
        raise UserError(
            f"the training window holds {n:,} labelled rows of feature set {fs}, at least {min_rows:,} are "
            "needed: ingest more data, build features, or widen training.window"
        )
    x = np.column_stack([np.asarray(data[name], np.float64) for name in NAMES])
    return TrainingData(
        x=x,
        ts=np.asarray(data["ts_ns"], np.int64),
        ret=np.asarray(data["ret"], np.float64),
        direction=np.asarray(data["dir"], np.int8),
        feature_names=list(NAMES),
        feature_set=fs,
        label_set=ls,
        venue=venue,
        symbol=symbol,
        tau=lb.dead_zone(cfg.instrument.maker_fee, extra=cfg.labels.dead_zone_extra),
    )


@dataclass(frozen=True)
class FeatureRows:
    """The stored feature rows of a time range, as the model takes them (no labels needed)."""

    ts: np.ndarray  # (n,) grid times, ns
    x: np.ndarray  # (n, F)
    feature_names: list[str]
    feature_set: str


def load_features(cfg: AppConfig, start_ns: int | None = None, end_ns: int | None = None) -> FeatureRows:
    """Feature rows of the config's feature set with ``start_ns <= ts <= end_ns`` (open ends: all)."""
    venue, symbol = cfg.instrument.venue, cfg.instrument.venue_symbol
    fs, _ = ids(cfg, venue)
    path = cfg.resolve(cfg.warehouse.path)
    lo = start_ns if start_ns is not None else -(2**62)
    hi = end_ns if end_ns is not None else 2**62
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        if not table_exists(con, "features"):
            raise UserError(f"{path}: no features yet (run python -m flows.feature_build)")
        cols = ", ".join(NAMES)
        data = con.execute(
            f"SELECT ts_ns, {cols} FROM features WHERE venue = ? AND symbol = ? AND feature_set = ? "
            "AND ts_ns >= ? AND ts_ns <= ? ORDER BY ts_ns",
            [venue, symbol, fs, lo, hi],
        ).fetchnumpy()
    if len(data["ts_ns"]) == 0:
        raise UserError(f"no feature rows of feature set {fs} for {venue}/{symbol} in the requested range")
    x = np.column_stack([np.asarray(data[name], np.float64) for name in NAMES])
    return FeatureRows(np.asarray(data["ts_ns"], np.int64), x, list(NAMES), fs)
