"""A live ingest killed with SIGKILL or stopped with SIGTERM: at most one flush interval lost, nothing duplicated."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from core.clock import ManualClock
from core.config import AppConfig
from market.events import RawMessage
from market.sources.base import Note, Progress
from sim.source import SimSource
from tests.conftest import REPO, ConfigFactory
from warehouse.db import one, reading
from warehouse.ingest import run_ingest
from warehouse.spool import Spool, read_segment

NS = 1_000_000_000


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


def _spooled_keys(cfg: AppConfig) -> set[tuple[int, int]]:
    """The book updates a killed ingest had made durable in its spool but not yet committed."""
    keys: set[tuple[int, int]] = set()
    for segment in cfg.resolve(cfg.warehouse.spool_dir).rglob("*"):
        if segment.is_file():
            for name, table in read_segment(segment):
                if name == "book_updates":
                    keys |= set(zip(table["ts_exchange_ns"].to_pylist(), table["update_id"].to_pylist(), strict=True))
    return keys


def _stored_keys(cfg: AppConfig) -> set[tuple[int, int]]:
    with reading(cfg.resolve(cfg.warehouse.path), timeout_s=20) as con:
        return set(con.execute("SELECT ts_exchange_ns, update_id FROM book_updates").fetchall())


@pytest.mark.untraced
@pytest.mark.slow
def test_sigkill_loses_nothing_it_had_spooled_and_a_restart_duplicates_nothing(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """A crash loses at most what arrived after the last spool flush (the flush rule itself is held
    on a manual clock below, not against a loaded machine's wall clock): everything stored or spooled
    when the ingest died is in the warehouse after the next run, once."""
    cfg = make_config(warehouse={"snapshot_levels": 5, "flush_interval": "500ms"})
    config = tmp_path / "config.yaml"
    proc = _start_live_sim(config, tmp_path)
    _wait_for_rows(cfg, proc, 300)  # a few seconds of a live (wall-clock paced) market
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the ingest and its children, as a crash or OOM kill would
    proc.wait(timeout=10)

    # the file still opens; what the spool holds is committed by the next run
    n_after_kill, distinct, _ = _counts(cfg)
    assert n_after_kill == distinct > 0
    durable = _stored_keys(cfg) | _spooled_keys(cfg)

    restart = _start_live_sim(config, tmp_path, seconds=3)
    _out, err = restart.communicate(timeout=120)
    assert restart.returncode == 0, err
    n, distinct, _ = _counts(cfg)
    assert n == distinct > n_after_kill  # nothing duplicated, the restart added data
    missing = durable - _stored_keys(cfg)
    assert not missing, f"{len(missing)} of {len(durable)} durable book updates were lost"
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        runs = con.execute("SELECT status FROM ingest_runs ORDER BY started_ns").fetchall()
    assert [r[0] for r in runs] == ["running", "completed"]  # the killed run never got to record its end


class _Paced:
    """The simulator as a live stream on a manual clock: the clock reaches each chunk's local time
    before the ingest sees the chunk. Records, at every spool flush, the clock and what was spooled."""

    def __init__(self, source: SimSource, clock: ManualClock, chunk: int) -> None:
        self.source, self.clock, self.chunk = source, clock, chunk
        self.name, self.venue, self.symbol = source.name, source.venue, source.symbol
        self.tick_size, self.segment, self.local_time = source.tick_size, source.segment, source.local_time
        self.yielded: list[int] = []  # the clock at each chunk handed to the ingest

    async def start(self) -> None:
        await self.source.start()

    async def batches(self) -> AsyncIterator[list[RawMessage]]:
        async for batch in self.source.batches():
            for i in range(0, len(batch), self.chunk):
                part = batch[i : i + self.chunk]
                self.clock.set(max(self.clock.now_ns(), part[-1].ts_local))
                self.yielded.append(self.clock.now_ns())
                yield part

    def request_resync(self, reason: str) -> None:
        self.source.request_resync(reason)

    def take_notes(self) -> list[Note]:
        return self.source.take_notes()

    def progress(self) -> Progress:
        return self.source.progress()

    def stop(self) -> None:
        self.source.stop()

    async def aclose(self) -> None:
        await self.source.aclose()


def test_a_live_ingest_spools_every_flush_interval_so_a_crash_loses_at_most_one(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound a crash is held to, on a clock the test owns: a durable ingest appends to its spool
    (fsynced) as soon as a flush interval has passed since the last append, so what a SIGKILL can
    take is never more than one flush interval plus the batch in hand."""
    cfg = make_config(warehouse={"snapshot_levels": 5, "flush_interval": "500ms", "flush_rows": 10_000_000})
    clock = ManualClock(cfg.sim.start)
    appends: list[int] = []
    append = Spool.append

    def spy(self: Spool, tables: dict[str, Any]) -> Path | None:
        appends.append(clock.monotonic_ns())
        return append(self, tables)

    monkeypatch.setattr(Spool, "append", spy)
    source = _Paced(SimSource(cfg.sim, cfg.instrument, 50, 60 * NS), clock, chunk=16)
    result = run_ingest(source, cfg, detail="test", clock=clock, durable=True)
    assert result.status == "completed" and result.counts["book_updates"] > 2000
    interval = cfg.warehouse.flush_interval
    assert len(appends) >= 60 * NS // (interval + max(np.diff(source.yielded))) - 1
    gaps = np.diff(appends[:-1])  # the last: the final flush when the stream ends
    assert gaps.min() >= interval  # never more often than asked ...
    # ... and never later than the first chunk after the interval: at no time did more than one
    # interval plus one chunk wait unspooled
    longest_chunk = int(np.diff(source.yielded).max())
    unspooled = [t - max(a for a in appends if a <= t) for t in source.yielded if t >= appends[0]]
    assert max(unspooled) < interval + longest_chunk, (max(unspooled), interval, longest_chunk)


@pytest.mark.untraced
@pytest.mark.slow
def test_sigterm_stops_cleanly_and_flushes(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 5})
    proc = _start_live_sim(tmp_path / "config.yaml", tmp_path)
    _wait_for_rows(cfg, proc, 200)
    proc.send_signal(signal.SIGTERM)
    proc_out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    n, distinct, _ = _counts(cfg)
    assert n == distinct > 0
    # everything received before the stop was flushed: the run stored every book update it counted
    counted = re.search(r"([\d,]+) book updates", proc_out)
    assert counted is not None, proc_out
    assert n == int(counted.group(1).replace(",", "")), proc_out
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        assert one(con, "SELECT status FROM ingest_runs") == ("stopped",)
