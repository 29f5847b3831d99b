"""A warm start (live/warm.py): the runner's features take the warehouse's latest minutes first."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.config import AppConfig
from features import MAX_LOOKBACK_S, NAMES
from live.feed import merge
from live.rows import ReplayTiming, Rows
from live.warm import warm_start
from pipelines.dataset import load_features
from pipelines.replay import load_market

NS = 1_000_000_000


def _rows(cfg: AppConfig) -> Rows:
    f = cfg.features
    return Rows(cfg.instrument.tick_size, f.grid, f.max_gap, cfg.strategy.decision_delay, ReplayTiming())


def _feed(cfg: AppConfig, rows: Rows, start: int, end: int) -> dict[int, np.ndarray]:
    """The stored ticks of [start, end) through ``rows`` as the feed's: the rows it decides on."""
    m = load_market(cfg, start, end, cfg.features.levels)
    out: dict[int, np.ndarray] = {}
    for tick in merge(m.books, m.trades):
        for due in rows.arrive(tick):
            out[due.row.g] = due.row.x
        rows.take(tick)
    return out


def test_warm_started_features_are_the_batch_features_from_the_first_row(trained: tuple[AppConfig, Any]) -> None:
    cfg, _ = trained
    batch = load_features(cfg)
    assert list(batch.feature_names) == list(NAMES)
    m = load_market(cfg, int(batch.ts[len(batch.ts) // 2]), None, cfg.features.levels)
    first = int(m.books.ts_ex[0])  # the feed's first tick: a stored book update half way through

    warm = _rows(cfg)
    w = warm_start(cfg, warm, first)
    assert w is not None and w.end_ns < first and w.warmed_s == MAX_LOOKBACK_S
    assert w.start_ns <= first - MAX_LOOKBACK_S * NS  # the whole look-back, the rows the batch build reads
    online = _feed(cfg, warm, first, first + 60 * NS)

    expected = {int(t): batch.x[i] for i, t in enumerate(batch.ts) if first < t < first + 60 * NS - NS}
    assert len(expected) >= 50
    assert set(expected) <= set(online)
    # equal but for the roundoff of the windows' running sums (added on entry, subtracted on exit),
    # which the batch build began to accumulate at the segment's start, 45 minutes earlier
    for g, x in expected.items():
        np.testing.assert_allclose(online[g], x, rtol=1e-9, atol=1e-9, err_msg=f"grid time {g}")

    cold = _feed(cfg, _rows(cfg), first, first + 60 * NS)  # the same minute without the warehouse
    assert cold == {}  # five minutes of look-back to fill before the first row


def test_a_start_far_from_the_stored_data_is_cold_and_says_why(
    trained: tuple[AppConfig, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, _ = trained
    m = load_market(cfg, None, None, cfg.features.levels)
    after = int(m.books.ts_ex[-1]) + cfg.features.max_gap + NS  # the ingest stopped: a silence before the feed
    rows = _rows(cfg)
    with caplog.at_level(logging.INFO, logger="live.runner"):
        assert warm_start(cfg, rows, after) is None
        assert warm_start(cfg, rows, int(m.books.ts_ex[0])) is None  # nothing stored before it
        missing = cfg.model_copy(
            update={"warehouse": cfg.warehouse.model_copy(update={"path": tmp_path / "no.duckdb"})}
        )
        assert warm_start(missing, rows, after) is None
    said = [r.getMessage() for r in caplog.records]
    assert any("more than features.max_gap: is the ingest running?" in s for s in said), said
    assert any("holds no book in the look-back" in s for s in said), said
    assert any("no warehouse at" in s for s in said), said
    assert rows.grid.next is None  # nothing was fed


@pytest.mark.untraced
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_runner_started_beside_the_ingest_decides_in_its_first_minute(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    """The user's box: the 24/7 ingest stores the Bybit stand-in's feed; a paper runner started on
    the same feed takes the warehouse's last minutes and decides within the minute it runs (cold,
    it would wait five minutes of feed for its look-back)."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import duckdb
    import yaml

    from core.errors import UserError
    from standin.background import BackgroundStandin
    from standin.feeds import SimFeed
    from tests.test_runner import _study_model
    from warehouse import journal as jr
    from warehouse.db import one, reading

    cfg, _ = trained
    _, q = _study_model(cfg)
    feed = SimFeed(cfg.sim, cfg.instrument, cfg.ingest.depth, history_ns=360 * NS, catchup=30.0)
    with BackgroundStandin(feed) as standin:
        assert cfg.source_path is not None
        data = yaml.safe_load(cfg.source_path.read_text())
        data["warehouse"] = {
            **data["warehouse"],
            "path": str(tmp_path / "wh" / "l2.duckdb"),
            "spool_dir": str(tmp_path / "spool"),
        }
        data["mlflow"] = {
            "store": str(cfg.resolve(cfg.mlflow.store)),
            "artifacts": str(cfg.resolve(cfg.mlflow.artifacts)),
        }
        data["live"] = {"journal_dir": str(tmp_path / "journal"), "log_dir": str(tmp_path / "logs")}
        data["bybit"] = {"rest_url": standin.url, "ws_public_url": standin.ws_url}
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(data))
        repo = Path(__file__).resolve().parents[1]
        with (tmp_path / "ingest.log").open("w") as out:
            ingest = subprocess.Popen(
                [sys.executable, "-m", "flows.ingest", "--source", "bybit", "--config", str(config)],
                cwd=repo, stdout=out, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        try:
            wh, newest, t0 = tmp_path / "wh" / "l2.duckdb", 0, time.monotonic()
            while time.time_ns() - newest > 2 * NS:  # until the stored feed has caught up with the clock
                assert ingest.poll() is None, (tmp_path / "ingest.log").read_text()[-3000:]
                assert time.monotonic() - t0 < 600, "the ingest did not catch up with the stand-in"
                time.sleep(0.5)
                try:
                    with reading(wh, timeout_s=2) as con:
                        newest = int((one(con, "SELECT max(ts_exchange_ns) FROM snapshots") or (0,))[0] or 0)
                except (duckdb.Error, UserError):  # not there yet, or the writer holds it for a moment
                    continue
            cmd = [sys.executable, "-m", "live.runner", "--paper", "--config", str(config), "--model", "1",
                   "--threshold", repr(q), "--duration", "30s"]  # fmt: skip
            runner = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900)
        finally:
            ingest.send_signal(signal.SIGINT)
            ingest.wait(120)
    assert runner.returncode == 0, runner.stderr[-3000:]
    assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    msgs = [json.loads(line)["msg"] for line in (tmp_path / "logs" / "runner-paper-bybit.log").read_text().splitlines()]
    warm = [m for m in msgs if m.startswith("warm start:")]
    assert len(warm) == 1 and f"features warmed {MAX_LOOKBACK_S} of {MAX_LOOKBACK_S} s" in warm[0], msgs
    assert not [m for m in msgs if "readied after start-up" in m], msgs  # the warm start compiled nothing
    journal = tmp_path / "journal" / "paper-bybit.sqlite"
    decisions = list(jr.read(journal, ["decision"]))
    assert len(decisions) >= 10, len(
        decisions
    )  # in its first 30 s; cold, it takes none before 300 s of feed (the test above)
