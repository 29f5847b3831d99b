"""Feature build figures: a simulated day's features and labels built in one pass, by partition here,
and by partition on a local Dask cluster of two worker processes, on this 2-core box.

The day is bench_models' simulated day (cached); its book and trades are copied once into a
warehouse without features (bench/.cache/build/raw.duckdb), and every run starts from a copy of it.
Every run is the user's command (``python -m flows.feature_build``); the figure is the build's own
time as it prints it ("... in X s"), the whole command's wall time beside it (Prefect, the cluster's
start). The day is one UTC day, so the partitions are 3 h (8 of them): two workers need several.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import yaml

from bench.bench_models import _day
from bench.common import CACHE, ROOT, command, entry
from core.config import load_config

PARTITION = "3h"


def _setup() -> tuple[Path, Path]:
    """(the warehouse with the day's market data and nothing built, the config of a run's copy)."""
    day = _day(load_config(ROOT / "config.yaml"))
    folder = CACHE / "build"
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "raw.duckdb"
    if not raw.exists():
        source = day.resolve(day.warehouse.path)
        with duckdb.connect(str(source)) as con:
            con.execute("CHECKPOINT")  # everything in the file itself, nothing in its WAL
        shutil.copy(source, folder / "raw.tmp")
        with duckdb.connect(str(folder / "raw.tmp")) as con:
            con.execute("DROP TABLE IF EXISTS features")
            con.execute("DROP TABLE IF EXISTS labels")
            con.execute("CHECKPOINT")
        (folder / "raw.tmp").rename(raw)
    config = folder / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "warehouse": {
                    "path": str(folder / "run" / "l2.duckdb"),
                    "spool_dir": str(folder / "run" / "spool"),
                    "snapshot_levels": day.warehouse.snapshot_levels,
                }
            }
        )
    )
    return raw, config


def _build(raw: Path, config: Path, *args: str) -> tuple[float, float, int, float]:
    """(seconds the build took, the command's wall time, feature rows, CPU cores the command used on average)."""
    run = config.parent / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    shutil.copy(raw, run / "l2.duckdb")
    p, wall, cpu = command("flows.feature_build", "--config", str(config), *args)
    m = re.search(r"([\d,]+) feature rows .* in ([\d.]+)s", p.stdout)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"flows.feature_build failed ({p.returncode}): {p.stderr[-2000:]}")
    return float(m[2]), wall, int(m[1].replace(",", "")), cpu


def run() -> list[dict[str, Any]]:
    raw, config = _setup()
    one, one_wall, rows, one_cpu = _build(raw, config)
    serial, serial_wall, _, serial_cpu = _build(raw, config, "--partition", PARTITION)
    dask, dask_wall, dask_rows, dask_cpu = _build(raw, config, "--partition", PARTITION, "--cluster", "local",
                                                  "--workers", "2")  # fmt: skip
    if dask_rows != rows:
        raise RuntimeError(f"the cluster built {dask_rows:,} feature rows, the one-pass build {rows:,}")
    note = f"a simulated day: {rows:,} feature rows and their labels"
    return [
        entry("feature build: a day in one pass (the default)", one, "s", None,
              f"{note}; command {one_wall:.1f} s using {one_cpu:.2f} cores on average"),
        entry(f"feature build: the day's {PARTITION} partitions one after another", serial, "s", None,
              f"command {serial_wall:.1f} s using {serial_cpu:.2f} cores on average"),
        entry(f"feature build: the day's {PARTITION} partitions on a local Dask cluster (2 workers)", dask, "s", None,
              f"command {dask_wall:.1f} s using {dask_cpu:.2f} cores on average"),
        entry("feature build: speed-up with 2 workers on 2 cores (against one pass)", one / dask, "x", None,
              f"{serial / dask:.2f} x against the same partitions one after another"),
    ]  # fmt: skip
