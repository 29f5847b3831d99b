"""`make demo`'s job: simulate, ingest through the Prefect flow, summarize; a second run continues."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config
from sim.presets import PLANTED
from tests.conftest import DENSE, ConfigFactory
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
    # the default market has a planted edge: the demo runs on demo.yaml, the config with it, and says so
    assert "market: planted" in first.stdout
    demo = load_config(tmp_path / "demo.yaml")
    assert demo.sim.model.meta_tilt == PLANTED["meta_tilt"] and demo.sim.model.market_rate == PLANTED["market_rate"]
    assert demo.warehouse.path == cfg.warehouse.path and demo.sim.seed == cfg.sim.seed  # only the market differs
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


@pytest.mark.untraced
def test_demo_builds_features_once_the_market_is_long_enough(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 10}, features={"levels": 10})
    p = cli("-m", "flows.demo", "--duration", "7m", "--config", str(tmp_path / "config.yaml"))
    assert p.returncode == 0, p.stderr
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT count(*), count(DISTINCT ts_ns) FROM features")
    assert row is not None and 100 < row[0] == row[1] <= 121  # 2 min after the warm-up, one per second
    assert f"{row[0]:,} feature rows" in p.stdout
    # warehouse show's table of tables (its growth section lists them again, further indented)
    shown = [line.split() for line in p.stdout.splitlines() if line.startswith(("  features ", "  labels "))]
    assert [s[0] for s in shown] == ["features", "labels"] and shown[0][3] == f"{row[0]:,}"  # warehouse show


def test_demo_bad_duration_is_one_line(make_config: ConfigFactory, tmp_path: Path) -> None:
    make_config()
    p = cli("-m", "flows.demo", "--duration", "soon", "--config", str(tmp_path / "config.yaml"))
    assert_one_line_error(p, "--duration")
    assert not (tmp_path / "demo.yaml").exists()  # refused before anything is written
    assert_one_line_error(
        cli("-m", "flows.demo", "--paper", "-3", "--config", str(tmp_path / "config.yaml")), "--paper"
    )


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
    config = str(tmp_path / "config.yaml")
    p = cli("-m", "flows.demo", "--duration", "90m", "--market", "calibrated", "--config", config, timeout=420)
    assert p.returncode == 0, p.stderr
    assert "registered btc-l2 version 1 as challenger" in p.stdout
    assert "no champion: version 1: not promoted: no skill" in p.stdout
    assert "no champion with skill in btc-l2: nothing to trade" in p.stdout
    assert "market: planted" not in p.stdout and not (tmp_path / "demo.yaml").exists()  # config.yaml as it is
    assert "step 5" not in p.stdout and "step 7" not in p.stdout  # no backtest, no paper minute on no model
    assert not (tmp_path / "reports" / "backtest").exists()
    assert not (tmp_path / "logs" / "journal").exists()
    assert "make ui" in p.stdout
    for address in ("http://127.0.0.1:8050", "http://127.0.0.1:5000", "http://127.0.0.1:4200"):
        assert address in p.stdout  # the dashboard, the MLflow UI and the Prefect UI


@pytest.mark.slow
@pytest.mark.first(200)
@pytest.mark.timeout(900)  # a whole demo (18 simulated hours cut to 4): generous for a loaded machine
def test_demo_on_the_planted_market_crowns_a_champion_and_runs_the_execution_study(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """A market with an edge larger than the costs: the demo's champion shows its own verdict
    (skill, a threshold confirmed by the engine), then the execution study prints both strategies
    side by side and each user target as met, not met or not decidable, with n.

    The market is the planted one with its metaorders twice as frequent (config.yaml's own market,
    ``--market calibrated``), so four hours with half of them for calibration hold the 30 bets and
    orders each half needs: the planted market itself needs eight (the default 18 h with 20 % take
    longer), twice the simulating, ingesting and training for the same path through the demo."""
    make_config(
        warehouse={"snapshot_levels": 20, "store_raw": False},
        training={"window": "4h", "shares": [0.3, 0.5, 0.2], "min_rows": 300, "min_child_samples": 300},
        sim={"model": DENSE},
    )
    p = cli(
        "-m",
        "flows.demo",
        "--duration",
        "245m",
        "--market",
        "calibrated",
        "--paper",
        "20",
        "--config",
        str(tmp_path / "config.yaml"),
        timeout=900,
        traced=False,  # the demo's commands run measured in the tests above (tests.conftest.untraced)
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    assert "promoted: version 1: promoted to champion" in out, out[-3000:]
    verdict = out[out.index("the model's own verdict") : out.index("step 5")]
    assert "lies above 0.5" in verdict, verdict  # skill
    assert ", confirmed on the later" in verdict, verdict  # a threshold the engine confirmed
    study = out[out.index("execution study:") : out.index("step 6")]
    table = {
        line.split()[0]: line.split()[1:3] for line in study.splitlines() if line.startswith(("parents ", "sharpe"))
    }
    assert set(table) >= {"parents", "sharpe", "sharpe_se"}
    assert all(float(v) > 0 for v in table["parents"])  # orders on both sides, the same signals
    for target in ("slippage", "Sharpe", "profitable"):
        line = next(s for s in study.splitlines() if s.startswith(target))
        assert any(v in line for v in ("MET", "NOT MET", "not decidable")), line
    assert "n=" in study and "targets:" in study
    assert "paper trading for 20 s" in out and "paper run completed" in out  # the champion, in paper


def test_the_demo_market_is_config_yaml_with_the_named_market_and_nothing_else(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    from flows.demo import market_config

    cfg = make_config()
    config = str(tmp_path / "config.yaml")
    assert market_config(config, "calibrated") == config and not (tmp_path / "demo.yaml").exists()
    demo = load_config(market_config(config, "no-edge"))
    assert demo.sim.model.meta_tilt == 0.0 and demo.source_path == tmp_path / "demo.yaml"
    assert demo.model_dump(exclude={"sim", "source_path"}) == cfg.model_dump(exclude={"sim", "source_path"})
    again = load_config(market_config(str(tmp_path / "demo.yaml"), "planted"))  # the demo's own config again
    assert again.sim.model.meta_tilt == PLANTED["meta_tilt"] and again.sim.seed == cfg.sim.seed
