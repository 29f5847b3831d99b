"""An ingest run again, as a user types it: the simulated market goes on where the stored one ends,
and a run that stores nothing new (a file imported twice) says so and leaves the warehouse as it was."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from core.timefmt import parse_duration_ns
from sim.source import SimSource
from tests.conftest import ConfigFactory
from tests.test_cli import cli, warehouse_counts, write_recording
from warehouse import reader
from warehouse.continuation import SEAM_NS, continue_sim
from warehouse.db import one, reading
from warehouse.ingest import IngestResult, run_ingest

NS = 1_000_000_000


def _ingest(config: Path, tmp_path: Path, *args: str) -> str:
    return _ingest_logged(config, tmp_path, *args)[0]


def _ingest_logged(config: Path, tmp_path: Path, *args: str) -> tuple[str, str]:
    """The summary line of ``python -m flows.ingest``, and what it logged."""
    p = cli("-m", "flows.ingest", *args, "--config", str(config), env={"PREFECT_HOME": str(tmp_path / "prefect")})
    assert p.returncode == 0, p.stderr
    summaries = [line for line in p.stdout.splitlines() if line.startswith("completed: ")]
    assert summaries, p.stdout
    return summaries[-1], p.stderr


def _book(path: Path) -> tuple[int, int, int, int]:
    with reading(path) as con:
        row = one(
            con,
            "SELECT count(*), count(DISTINCT (ts_exchange_ns, update_id)), min(ts_exchange_ns), max(ts_exchange_ns) "
            "FROM snapshots",
        )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _mid(path: Path, ts_ns: int) -> float:
    with reading(path) as con:
        row = one(con, "SELECT (bid_px[1] + ask_px[1]) / 2 FROM snapshots WHERE ts_exchange_ns = ? LIMIT 1", [ts_ns])
    assert row is not None
    return float(row[0])


@pytest.mark.untraced
def test_a_second_simulated_ingest_continues_the_stored_market(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 5})
    config, db = tmp_path / "config.yaml", cfg.resolve(cfg.warehouse.path)
    first = _ingest(config, tmp_path, "--source", "sim", "--duration", "3m")
    assert "nothing new" not in first and "continues" not in first
    n1, distinct1, lo1, hi1 = _book(db)
    assert n1 == distinct1 > 0 and 175 * NS < hi1 - lo1 <= 180 * NS

    second, logged = _ingest_logged(config, tmp_path, "--source", "sim", "--duration", "3m")
    assert "nothing new" not in second and "the simulated market continues the stored one" in second
    # the project's INFO lines reach the user inside a Prefect flow run too (Prefect's root is at WARNING)
    assert "INFO" in logged and "the warehouse holds a market up to" in logged, logged[-3000:]
    n2, distinct2, lo2, hi2 = _book(db)
    assert n2 == distinct2 > 1.8 * n1  # new rows, none repeated
    assert lo2 == lo1 and abs((hi2 - lo2) - 2 * (hi1 - lo1)) <= 2 * NS  # twice the span: the market went on
    with reading(db) as con:
        silences, _ = reader.silences(con, cfg.warehouse.gap_threshold)
        row = one(con, "SELECT min(ts_exchange_ns) FROM snapshots WHERE ts_exchange_ns > ?", [hi1])
        runs = one(con, "SELECT count(*) FROM ingest_runs WHERE status = 'completed'")
    assert silences == 0  # no gap at the seam (nor anywhere)
    assert row is not None and 0 < int(row[0]) - hi1 <= SEAM_NS + cfg.sim.cadence
    assert abs(_mid(db, int(row[0])) - _mid(db, hi1)) <= 5 * cfg.instrument.tick_size  # from the price it ended at
    assert runs == (2,)


def test_a_simulated_start_after_the_stored_market_is_kept(make_config: ConfigFactory) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 5})
    assert continue_sim(cfg) is None  # no warehouse yet: as configured
    run_ingest(SimSource(cfg.sim, cfg.instrument, 50, 20 * NS), cfg, detail="t")
    on = continue_sim(cfg)
    assert on is not None and on.sim.start == on.stored_end_ns + SEAM_NS and on.sim.seed != cfg.sim.seed
    assert on.sim.model.base_price == on.mid and on.sim.cadence == cfg.sim.cadence
    later = cfg.model_copy(
        update={"sim": cfg.sim.model_copy(update={"start": on.stored_end_ns + parse_duration_ns("1h")})}
    )
    assert continue_sim(later) is None


def test_a_file_imported_twice_stores_nothing_new_and_says_so(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 3})
    rec = tmp_path / "rec.gz"
    write_recording(rec, n=600)
    config = tmp_path / "config.yaml"
    first = _ingest(config, tmp_path, "--source", "file", "--path", str(rec))
    assert "nothing new" not in first
    before = warehouse_counts(cfg.resolve(cfg.warehouse.path))
    assert before["snapshots"] > 0
    second = _ingest(config, tmp_path, "--source", "file", "--path", str(rec))
    books, trades = before["book_updates"], before["trades"]
    assert " 0 new snapshots stored in " in second
    assert second.endswith(
        f"; nothing new stored: all {books:,} book updates and {trades:,} trades were already held in the warehouse"
    )
    assert warehouse_counts(cfg.resolve(cfg.warehouse.path)) == before


def test_the_summary_says_what_was_already_held() -> None:
    r = IngestResult("r", "file", "completed", Counter(messages=10, book_updates=6, trades=4), seconds=1.0)
    r.inserted.update(book_updates=2, snapshots=2, trades=4)
    assert r.summary().endswith("2 new snapshots stored in 1.0s (4 book updates and 0 trades were already held)")
    empty = IngestResult("r", "bybit", "stopped", Counter(), seconds=1.0)
    assert empty.summary().endswith("; nothing new stored: the source delivered no book updates or trades")
    failed = IngestResult("r", "file", "failed", Counter(messages=3, book_updates=3), seconds=1.0)
    assert "nothing new" not in failed.summary()
