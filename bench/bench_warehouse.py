"""Warehouse figures: normalize + store from recorded files; queries on a warehouse holding one simulated day."""

from __future__ import annotations

import gzip
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import CACHE, SHARED, entry, median, pct, timed
from core.config import AppConfig, load_config
from market.sources.files import FileSource
from warehouse import reader
from warehouse.db import reading
from warehouse.ingest import run_ingest

DAY_S = 86_400
EPISODES = [["btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz"], ["btcusdt_20240718.gz", "btcusdt_20240719.gz"]]


def _config(directory: Path, **warehouse: Any) -> AppConfig:
    directory.mkdir(parents=True, exist_ok=True)
    data = {"warehouse": {"path": "wh.duckdb", "spool_dir": "spool", **warehouse}}
    (directory / "config.yaml").write_text(yaml.safe_dump(data))
    return load_config(directory / "config.yaml")


def _import(paths: list[Path], directory: Path, **warehouse: Any) -> tuple[float, float, int]:
    shutil.rmtree(directory, ignore_errors=True)
    cfg = _config(directory, **warehouse)
    t = time.perf_counter()
    result = run_ingest(FileSource(paths), cfg, detail="bench")
    dt = time.perf_counter() - t
    assert result.status == "completed", result.error
    return result.counts["book_updates"] / dt, result.counts["messages"] / dt, result.counts["book_updates"]


def _sim_recording(path: Path, seconds: int) -> None:
    from sim import MarketSimulator

    cfg = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    with gzip.open(path, "wt", compresslevel=1) as f:
        for batch in MarketSimulator(cfg.sim, cfg.instrument).batches(seconds * 1_000_000_000):
            f.writelines(f"{m.ts_local} {m.payload}\n" for m in batch)


def _day_warehouse() -> AppConfig:
    """A warehouse holding one simulated day (built once, cached in bench/.cache)."""
    from sim.source import SimSource

    directory = CACHE / "day"
    cfg = _config(directory)
    done = directory / "complete"
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        cfg = _config(directory)
        t = time.perf_counter()
        result = run_ingest(SimSource(cfg.sim, cfg.instrument, 50, DAY_S * 1_000_000_000), cfg, detail="bench day")
        assert result.status == "completed", result.error
        done.write_text(f"{result.summary()}\nbuilt in {time.perf_counter() - t:.0f}s\n")
    return cfg


def run() -> list[dict[str, Any]]:
    return [*_ingest_figures(), *_query_figures()]


def _ingest_figures() -> list[dict[str, Any]]:
    """Normalize + store: a simulated Bybit hour (default and 50 snapshot levels), the real Binance episodes."""
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rec = work / "sim_1h.gz"
        _sim_recording(rec, 3600)
        _import([rec], work / "warm")  # compile the kernels before timing
        ups, mps, n = _import([rec], work / "sim")
        out.append(
            entry(
                "ingest file: simulated Bybit hour, book updates/s",
                ups,
                "updates/s",
                ">= 100000",
                f"{n:,} book updates, normalize + store, {mps:,.0f} messages/s, "
                f"{_config(work / 'sim').warehouse.snapshot_levels} snapshot levels (the default)",
            )
        )
        ups50, _, _ = _import([rec], work / "sim50", snapshot_levels=50)
        out.append(
            entry(
                "ingest file: simulated Bybit hour, 50 snapshot levels, updates/s",
                ups50,
                "updates/s",
                None,
                "the same import keeping 50 levels per snapshot row (2.5x the bytes to compress and store)",
            )
        )
        real = [[SHARED / "binance-usdm-btcusdt" / f for f in ep] for ep in EPISODES]
        if all(p.exists() for ep in real for p in ep):
            for ep in real:
                ups, mps, n = _import(ep, work / "real")
                out.append(
                    entry(
                        f"ingest file: real Binance {ep[0].name[8:16]}, book updates/s",
                        ups,
                        "updates/s",
                        None,
                        f"{n:,} depth diffs among {mps:,.0f} messages/s (all streams)",
                    )
                )
    return out


def _query_figures() -> list[dict[str, Any]]:
    """Reads of a warehouse holding one simulated day: the latest book, an hour sampled, opening it."""
    out: list[dict[str, Any]] = []
    cfg = _day_warehouse()
    path = cfg.resolve(cfg.warehouse.path)
    with reading(path) as con:
        venue, symbol = reader.pick_pair(con, None, None, ("bybit", "BTCUSDT"))
        first, _last = reader.time_bounds(con, venue, symbol)
        rows = con.execute("SELECT count(*) FROM snapshots").fetchall()[0][0]
        levels = cfg.warehouse.snapshot_levels
        latest = timed(lambda: reader.latest_book(con, venue, symbol, levels), repeat=300)
        out.append(
            entry(
                f"query: latest snapshot ({levels} levels), p50",
                median(latest) * 1e3,
                "ms",
                "< 1",
                f"warehouse of one simulated day, {rows:,} snapshots",
            )
        )
        out.append(entry(f"query: latest snapshot ({levels} levels), p99", pct(latest, 99) * 1e3, "ms", None))
        h0 = (first // 1_000_000_000 + 6 * 3600) * 1_000_000_000
        hour = timed(
            lambda: reader.sampled_snapshots(
                con, venue, symbol, 20, 1_000_000_000, h0, h0 + 3_599_000_000_000
            ).fetchnumpy(),
            repeat=30,
        )
        out.append(
            entry(
                "query: one hour at 1 s sampling, 20 levels, p50",
                median(hour) * 1e3,
                "ms",
                "< 20",
                "as-of book at every second (3,600 rows) via snapshots_1s; user target < 10 ms",
            )
        )
        odd = timed(
            lambda: reader.sampled_snapshots(
                con, venue, symbol, 20, 250_000_000, h0, h0 + 3_599_750_000_000
            ).fetchnumpy(),
            repeat=10,
        )
        out.append(
            entry(
                "query: one hour at 250 ms sampling, 20 levels, p50",
                median(odd) * 1e3,
                "ms",
                None,
                "14,400 rows; general ASOF path over the full snapshots table",
            )
        )

    def session() -> None:
        with reading(path) as con:
            con.execute("SELECT 1").fetchall()

    t_open = timed(session, repeat=30)
    out.append(
        entry(
            "open the warehouse read-only",
            median(t_open) * 1e3,
            "ms",
            None,
            "a short reader session: attach, one query, detach (warehouse/db.py)",
        )
    )
    return out
