"""The feature flow: features and labels from the warehouse into it, incremental and idempotent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import AppConfig
from features import NAMES, BatchFeatures
from features import labels as lb
from pipelines.featurebuild import build
from pipelines.featurecompute import Reader
from sim.source import SimSource
from tests.conftest import ConfigFactory
from warehouse.db import one, reading
from warehouse.feature_tables import horizon_name
from warehouse.ingest import run_ingest

S = 1_000_000_000
MINUTES = 9


@pytest.fixture
def cfg(make_config: ConfigFactory) -> AppConfig:
    c = make_config(warehouse={"snapshot_levels": 20}, features={"chunk": "2m"})
    result = run_ingest(SimSource(c.sim, c.instrument, 50, MINUTES * 60 * S), c, detail="test")
    assert result.status == "completed"
    return c


def _features(cfg: AppConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols = ", ".join(NAMES)
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        rows = con.execute(f"SELECT ts_ns, ts_update_ns, {cols} FROM features ORDER BY ts_ns").fetchnumpy()
    x = np.column_stack([rows[n] for n in NAMES])
    return rows["ts_ns"], rows["ts_update_ns"], x


def _everything(cfg: AppConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole recording through one batch call: the reference the chunked build must equal."""
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        r = Reader(con, "bybit", "BTCUSDT", cfg.features.levels, 20)
        book, trades = r.book(0, 2**62), r.trades(0, 2**62)
        ts, mid = r.mids(0, 2**62)
    return book.ts_ex, BatchFeatures(0.1).run(book, trades), ts, mid


def test_the_build_stores_the_batch_features_as_of_every_grid_time(cfg: AppConfig) -> None:
    result = build(cfg)
    grid, upd, x = _features(cfg)
    book_ts, full, _, _ = _everything(cfg)
    assert result.feature_rows == len(grid) > 200
    assert (np.diff(grid) == S).all() and grid[0] >= book_ts[0] + 300 * S  # after the warm-up
    idx = np.searchsorted(book_ts, grid, side="right") - 1
    np.testing.assert_array_equal(upd, book_ts[idx])
    np.testing.assert_allclose(x, full[idx], rtol=1e-9, atol=1e-12)
    assert np.isfinite(x).all()


def test_a_second_run_continues_and_repeating_adds_nothing(cfg: AppConfig) -> None:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT min(ts_exchange_ns) FROM snapshots")
    assert row is not None
    first = build(cfg, end_ns=int(row[0]) + 7 * 60 * S)
    second = build(cfg)
    third = build(cfg)
    grid, _, x = _features(cfg)
    assert first.feature_rows > 0 and second.feature_rows > 0 and third.feature_rows == 0
    assert first.feature_rows + second.feature_rows == len(grid) == len(np.unique(grid))
    book_ts, full, _, _ = _everything(cfg)
    idx = np.searchsorted(book_ts, grid, side="right") - 1
    np.testing.assert_allclose(x, full[idx], rtol=1e-9, atol=1e-12)  # the seam is invisible


def test_labels_look_forward_only_and_are_null_past_the_data(cfg: AppConfig) -> None:
    build(cfg)
    h = cfg.labels.horizons[-1]
    name = horizon_name(h)
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        rows = con.execute(f"SELECT ts_ns, mid, ret_{name}, dir_{name}, tb_label FROM labels ORDER BY ts_ns").fetchall()
    _, _, ts, mid = _everything(cfg)
    grid = np.array([r[0] for r in rows], np.int64)
    ret = np.array([np.nan if r[2] is None else r[2] for r in rows])
    past_end = grid + h > ts[-1]
    assert past_end.any() and (~past_end).sum() > 100
    assert all(r[2] is None and r[3] is None for r, p in zip(rows, past_end, strict=True) if p)
    want = lb.forward_return(ts, mid, grid, h)
    np.testing.assert_allclose(ret[~past_end], want[~past_end], rtol=1e-12)
    tau = lb.dead_zone(cfg.instrument.maker_fee, extra=cfg.labels.dead_zone_extra)
    dirs = np.array([r[3] for r, p in zip(rows, past_end, strict=True) if not p])
    np.testing.assert_array_equal(dirs, lb.direction(want[~past_end], tau))
    assert {r[4] for r in rows} - {None} <= {-1, 0, 1}


def test_open_labels_are_completed_when_more_data_arrives(cfg: AppConfig) -> None:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT max(ts_exchange_ns) FROM snapshots")
    assert row is not None
    build(cfg, end_ns=int(row[0]) - 120 * S)
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        before = one(con, "SELECT count(*) FILTER (WHERE ret_60s IS NULL), count(*) FROM labels")
    build(cfg)
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        after = one(con, "SELECT count(*) FILTER (WHERE ret_60s IS NULL), count(*), count(DISTINCT ts_ns) FROM labels")
    assert before is not None and after is not None
    assert before[0] > 0 and after[1] > before[1] and after[1] == after[2]
    # the rows that were open then are complete now; only the new tail is open
    assert after[0] <= 61


def test_the_build_refuses_a_shallow_warehouse(make_config: ConfigFactory) -> None:
    from core.errors import UserError

    c = make_config(warehouse={"snapshot_levels": 10}, features={"levels": 20})
    run_ingest(SimSource(c.sim, c.instrument, 50, 10 * S), c, detail="test")
    with pytest.raises(UserError, match="features.levels is 20 but the warehouse keeps 10"):
        build(c)


def test_the_prefect_flow_builds_features(cfg: AppConfig, prefect_harness: None) -> None:
    from flows.feature_build import features_flow

    state = features_flow(config=str(cfg.source_path), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["feature_rows"] > 200 and result["label_rows"] > 200
    again = features_flow(config=str(cfg.source_path), return_state=True)
    assert again.result()["feature_rows"] == 0


def test_features_and_labels_export_to_files(cfg: AppConfig, tmp_path: Path) -> None:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from core.errors import UserError
    from warehouse.cli import main

    config = ["--config", str(cfg.source_path)]
    with pytest.raises(UserError, match="no features in"):
        main(["export", "--table", "features", "--out", str(tmp_path / "x.parquet"), *config])
    result = build(cfg)
    out = tmp_path / "f.parquet"
    assert main(["export", "--table", "features", "--out", str(out), *config]) == 0
    t = pq.read_table(out)
    assert t.column_names == ["ts_ns", "ts_update_ns", *NAMES] and t.num_rows == result.feature_rows
    csv = tmp_path / "l.csv"
    assert main(["export", "--table", "labels", "--format", "csv", "--out", str(csv), *config]) == 0
    labels = pcsv.read_csv(csv)
    assert labels.num_rows == result.label_rows and "ret_60s" in labels.column_names
    with pytest.raises(UserError, match="--set nope: not in the warehouse"):
        main(["export", "--table", "labels", "--set", "nope", "--out", str(csv), *config])
    with pytest.raises(UserError, match="apply to --table snapshots"):
        main(["export", "--table", "features", "--every", "1s", "--out", str(out), *config])
    assert pq.read_table(out).num_rows == result.feature_rows  # a refused export leaves the file alone


def test_a_silence_in_the_data_breaks_features_and_labels_never_span_it(make_config: ConfigFactory) -> None:
    c = make_config(warehouse={"snapshot_levels": 20})
    run_ingest(SimSource(c.sim, c.instrument, 50, 6 * 60 * S), c, detail="before")
    later = c.sim.model_copy(update={"start": c.sim.start + 30 * 60 * S, "seed": 99})
    run_ingest(SimSource(later, c.instrument, 50, 7 * 60 * S), c, detail="after the silence")
    build(c)
    with reading(c.resolve(c.warehouse.path)) as con:
        grid = con.execute("SELECT ts_ns FROM features ORDER BY ts_ns").fetchnumpy()["ts_ns"]
        labels = con.execute("SELECT ts_ns, ret_60s, tb_label, open FROM labels ORDER BY ts_ns").fetchall()
    first_end = c.sim.start + 6 * 60 * S
    second = later.start
    assert ((grid > c.sim.start) & (grid <= first_end)).sum() > 30  # the first run's last minute
    assert not ((grid > first_end + 5 * S) & (grid < second + 300 * S)).any()  # nothing in or just after the silence
    assert (grid >= second + 300 * S).sum() > 100  # the windows refilled, rows resume
    before = [r for r in labels if r[0] <= first_end]
    assert before and all(r[1] is None and not r[3] for r in before[-30:])  # horizon over the silence: NULL, final
    assert all(r[1] is not None for r in labels if second <= r[0] <= second + 350 * S)
    assert [r for r in labels if r[3]] and all(r[1] is None for r in labels if r[3])  # only the tail is open
