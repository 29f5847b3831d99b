"""A live ingest killed with SIGKILL or stopped with SIGTERM: at most one flush interval lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from core.config import AppConfig
from tests.conftest import REPO, ConfigFactory
from warehouse.db import one, reading


def _start_live_sim(config: Path, tmp_path: Path, seconds: int = 120) -> subprocess.Popen[str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.ingest",
            "--source",
            "sim",
            "--realtime",
            "--duration",
            str(seconds),
            "--config",
            str(config),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: SIGKILL takes Prefect's server with it
    )


def _counts(cfg: AppConfig) -> tuple[int, int, int]:
    with reading(cfg.resolve(cfg.warehouse.path), timeout_s=20) as con:
        row = one(
            con,
            "SELECT count(*), count(DISTINCT (ts_exchange_ns, update_id)), coalesce(max(ts_local_ns), 0) "
            "FROM book_updates",
        )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _wait_for_rows(cfg: AppConfig, proc: subprocess.Popen[str], n: int, timeout: float = 90) -> None:
    path = cfg.resolve(cfg.warehouse.path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists():
            try:
                if _counts(cfg)[0] >= n:
                    return
            except duckdb.Error:  # the writer may hold the file for a moment
                pass
        time.sleep(0.5)
    raise AssertionError("the ingest stored nothing in time")


@pytest.mark.slow
def test_sigkill_loses_at_most_one_flush_and_a_restart_duplicates_nothing(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 5, "flush_interval": "500ms"})
    config = tmp_path / "config.yaml"
    proc = _start_live_sim(config, tmp_path)
    _wait_for_rows(cfg, proc, 300)  # a few seconds of a live (wall-clock paced) market
    time.sleep(2.0)
    killed_at = time.time_ns()
    os.killpg(proc.pid, signal.SIGKILL)  # the ingest and its children, as a crash or OOM kill would
    proc.wait(timeout=10)

    # the file still opens; what the spool holds is committed by the next run
    n_after_kill, distinct, _ = _counts(cfg)
    assert n_after_kill == distinct > 0

    restart = _start_live_sim(config, tmp_path, seconds=3)
    _out, err = restart.communicate(timeout=120)
    assert restart.returncode == 0, err
    n, distinct, _ = _counts(cfg)
    assert n == distinct > n_after_kill  # nothing duplicated, the restart added data
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT max(ts_local_ns) FROM book_updates WHERE ts_local_ns <= ?", [killed_at])
        runs = con.execute("SELECT status FROM ingest_runs ORDER BY started_ns").fetchall()
    assert row is not None
    lost_s = (killed_at - int(row[0])) / 1e9
    assert lost_s <= 1.0, f"{lost_s:.2f}s of data before the kill is missing"
    assert [r[0] for r in runs] == ["running", "completed"]  # the killed run never got to record its end


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_flushes(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 5})
    proc = _start_live_sim(tmp_path / "config.yaml", tmp_path)
    _wait_for_rows(cfg, proc, 200)
    stopped_at = time.time_ns()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    n, distinct, last_local = _counts(cfg)
    assert n == distinct > 0
    assert stopped_at - last_local < 1_000_000_000  # everything received before the stop was flushed
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        assert one(con, "SELECT status FROM ingest_runs") == ("stopped",)
