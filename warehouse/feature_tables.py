"""The ``features`` and ``labels`` tables: their columns, their ids, creating and finding them.

Storage only; pipelines/featurebuild.py computes what goes in them.
"""

from __future__ import annotations

import duckdb

from core.config import AppConfig
from features import MAX_LOOKBACK_S, feature_set_for, feature_set_id
from features.catalog import FEATURES
from market.events import Column, TableSpec
from market.venues import tick_size
from warehouse.db import one

NS = 1_000_000_000
# What a build re-reads before its first new row: the feature history (the windows' warm-up)...
WARMUP_NS = (MAX_LOOKBACK_S + 5) * NS


def label_history_ns(cfg: AppConfig) -> int:
    """...and the labels' history: the mids before a label's grid time its barrier width is built on."""
    return cfg.labels.barrier_vol_window + NS


_KEY = (
    Column("venue", "VARCHAR", "venue id"),
    Column("symbol", "VARCHAR", "the venue's symbol"),
)


def horizon_name(ns: int) -> str:
    """1s, 500ms: how a horizon appears in column names."""
    if ns % NS == 0:
        return f"{ns // NS}s"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    return f"{ns}ns"


def features_spec() -> TableSpec:
    return TableSpec(
        name="features",
        doc="The feature vector as of every grid time (python -m features catalog defines each column).",
        columns=(
            *_KEY,
            Column("feature_set", "VARCHAR", "feature-set id: hash of the definitions and their config"),
            Column("ts_ns", "BIGINT", "grid time (exchange clock), ns since the epoch"),
            Column("ts_update_ns", "BIGINT", "exchange time of the book update the row is as of"),
            *(Column(f.name, "DOUBLE", f"{f.definition} [{f.unit}]", nullable=True) for f in FEATURES),
        ),
        key=("venue", "symbol", "feature_set", "ts_ns"),
        time_column="ts_ns",
    )


def labels_spec(cfg: AppConfig) -> TableSpec:
    cols: list[Column] = [
        *_KEY,
        Column("label_set", "VARCHAR", "label-set id: hash of the labels config and the grid"),
        Column("ts_ns", "BIGINT", "grid time (exchange clock)"),
        Column("open", "BOOLEAN", "a horizon runs past the data: the next build recomputes the row"),
        Column("mid", "DOUBLE", "mid as of the grid time"),
    ]
    for h in cfg.labels.horizons:
        n = horizon_name(h)
        cols.append(
            Column(f"ret_{n}", "DOUBLE", f"ln(mid as of t + {n} / mid as of t); NULL past the data", nullable=True)
        )
        cols.append(
            Column(
                f"dir_{n}",
                "TINYINT",
                f"+1 / 0 / -1: ret_{n} beyond +-tau (dead zone); NULL past the data",
                nullable=True,
            )
        )
    cols += [
        Column("tb_vol", "DOUBLE", "barrier width: trailing realized vol scaled to the barrier horizon", nullable=True),
        Column(
            "tb_label", "TINYINT", "triple barrier: +1 take-profit first, -1 stop first, 0 time exit", nullable=True
        ),
        Column("tb_ret", "DOUBLE", "log return at the barrier exit", nullable=True),
        Column("tb_exit_ns", "BIGINT", "time of the barrier exit", nullable=True),
    ]
    return TableSpec(
        name="labels",
        doc="Training labels of every grid time (training only: never read live).",
        columns=tuple(cols),
        key=("venue", "symbol", "label_set", "ts_ns"),
        time_column="ts_ns",
    )


def ids(cfg: AppConfig, venue: str) -> tuple[str, str]:
    """(feature set id, label set id) for this config and data from ``venue`` (its tick size)."""
    fs = feature_set_for(cfg.features.digest(), tick_size(cfg.instrument, venue))
    # the dead zone is built on the maker fee: it changes the labels; the taker fee does not
    ls = feature_set_id(f"labels|{cfg.labels.digest()}|maker_fee={cfg.instrument.maker_fee}|grid={cfg.features.grid}")
    return fs, ls


def ensure_table(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> None:
    """Create the table, or add the columns a newer definition has (older rows get NULL)."""
    con.execute(spec.ddl())
    have = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [spec.name]
        ).fetchall()
    }
    for c in spec.columns:
        if c.name not in have:
            con.execute(f"ALTER TABLE {spec.name} ADD COLUMN {c.name} {c.ddl_type}")


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = one(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name])
    return bool(row and row[0])
