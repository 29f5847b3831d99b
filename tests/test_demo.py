"""`make demo`'s job: simulate, ingest through the Prefect flow, summarize; a second run continues."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ConfigFactory
from tests.test_cli import assert_one_line_error, cli
from warehouse.db import one, reading


def _counts(path: Path) -> tuple[int, int, int, int, int]:
    with reading(path) as con:
        row = one(
            con,
            "SELECT count(*), count(DISTINCT (ts_exchange_ns, update_id)), min(ts_exchange_ns), max(ts_exchange_ns), "
            "(SELECT count(*) FROM ingest_runs WHERE status = 'completed') FROM snapshots",
        )
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))


def test_demo_runs_end_to_end_and_a_second_run_continues_the_market(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 10}, features={"levels": 10})
    config = str(tmp_path / "config.yaml")
    first = cli("-m", "flows.demo", "--duration", "1m", "--config", config)
    assert first.returncode == 0, first.stderr
    assert "0 feature rows" in first.stdout  # a minute is shorter than the 5 min warm-up
    assert "only 0 labelled rows so far" in first.stdout  # too little to train: said, not failed
    assert "sequence gaps detected: 0" in first.stdout
    assert "snapshots" in first.stdout and "BTCUSDT" in first.stdout
    db = cfg.resolve(cfg.warehouse.path)
    n1, distinct1, lo1, hi1, runs1 = _counts(db)
    assert n1 == distinct1 > 2000  # ~50 updates/s for a minute
    assert runs1 == 1
    assert 55e9 < hi1 - lo1 <= 60e9

    second = cli("-m", "flows.demo", "--duration", "1m", "--config", config)
    assert second.returncode == 0, second.stderr
    assert "continuing from there" in second.stdout
    n2, distinct2, lo2, hi2, runs2 = _counts(db)
    assert n2 == distinct2 > n1 * 1.8  # new rows, none duplicated
    assert lo2 == lo1 and hi2 - hi1 > 55e9  # the market went on after the first run's end
    assert runs2 == 2


def test_demo_builds_features_once_the_market_is_long_enough(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 10}, features={"levels": 10})
    p = cli("-m", "flows.demo", "--duration", "7m", "--config", str(tmp_path / "config.yaml"))
    assert p.returncode == 0, p.stderr
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT count(*), count(DISTINCT ts_ns) FROM features")
    assert row is not None and 100 < row[0] == row[1] <= 121  # 2 min after the warm-up, one per second
    assert f"{row[0]:,} feature rows" in p.stdout
    shown = [line.split() for line in p.stdout.splitlines() if line.strip().startswith(("features ", "labels "))]
    assert [s[0] for s in shown] == ["features", "labels"] and shown[0][3] == f"{row[0]:,}"  # warehouse show


def test_demo_bad_duration_is_one_line(make_config: ConfigFactory, tmp_path: Path) -> None:
    make_config()
    p = cli("-m", "flows.demo", "--duration", "soon", "--config", str(tmp_path / "config.yaml"))
    assert_one_line_error(p, "--duration")


@pytest.mark.slow
def test_demo_trains_and_registers_but_crowns_no_model_without_skill(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """90 minutes of the calibrated market hold no edge a model can show: the demo trains and
    registers a challenger, promotion refuses it, and nothing is backtested or traded on it."""
    make_config(
        warehouse={"snapshot_levels": 20},
        training={"window": "2h", "horizon": "60s", "rounds": 40, "early_stopping": 10, "min_rows": 300, "folds": 3},
    )
    p = cli("-m", "flows.demo", "--duration", "90m", "--config", str(tmp_path / "config.yaml"), timeout=420)
    assert p.returncode == 0, p.stderr
    assert "registered btc-l2 version 1 as challenger" in p.stdout
    assert "no champion: version 1: not promoted: no skill" in p.stdout
    assert "no champion with skill in btc-l2: nothing to trade" in p.stdout
    assert "step 5" not in p.stdout and "step 7" not in p.stdout  # no backtest, no paper minute on no model
    assert not (tmp_path / "reports" / "backtest").exists()
    assert not (tmp_path / "logs" / "journal").exists()
    assert "make ui" in p.stdout
    for address in ("http://127.0.0.1:8050", "http://127.0.0.1:5000", "http://127.0.0.1:4200"):
        assert address in p.stdout  # the dashboard, the MLflow UI and the Prefect UI
