"""Sweep figures: a backtest sweep (four thresholds x the day's 3-hour windows) on a local Dask
cluster of two worker processes against the same sweep one cell after another, on this 2-core box.

The day is bench_models' simulated day (features built, cached); a model is trained on it once and
registered in a registry of the bench's own (bench/.cache/sweep). Both runs are the user's command
(``python -m flows.sweep``); the figure is the time its cells took ("N cells in X s"), and the
whole command's wall time beside it (Prefect, the cluster's start)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_models import day_project
from bench.common import CACHE, command, entry
from core.config import load_config


def _setup() -> tuple[Path, list[str]]:
    folder = CACHE / "sweep"
    config = day_project(folder, backtest={"out": str(folder / "reports")})
    cfg = load_config(config)
    from models import registry
    from pipelines.dataset import load_features
    from pipelines.train import run_training

    if not (folder / "trained").exists():
        run_training(cfg)
        (folder / "trained").write_text("ok\n")
    model = registry.load_version(cfg, "1")
    rows = load_features(cfg, None, None)
    conf = model.predict_proba(model.take(rows.x, rows.feature_names)).max(axis=1)
    return config, [f"{float(np.quantile(conf, q)):.6f}" for q in (0.6, 0.7, 0.8, 0.9)]


def _sweep(config: Path, thresholds: list[str], *cluster: str) -> tuple[float, float, int, float]:
    """(seconds the cells took, the command's wall time, cells, CPU cores the command used on average)."""
    p, wall, cpu = command("flows.sweep", "--config", str(config), "--model", "1", "--window", "3h",
                           "--set", f"threshold={','.join(thresholds)}", *cluster)  # fmt: skip
    m = re.search(r"(\d+) cells in ([\d.]+) s", p.stdout)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"flows.sweep failed ({p.returncode}): {p.stderr[-2000:]}")
    return float(m[2]), wall, int(m[1]), cpu


def run() -> list[dict[str, Any]]:
    config, thresholds = _setup()
    serial, serial_wall, n, serial_cpu = _sweep(config, thresholds)
    dask, dask_wall, _, dask_cpu = _sweep(config, thresholds, "--cluster", "local", "--workers", "2")
    note = f"{n} cells ({len(thresholds)} thresholds x the day's 3 h windows), passive strategy"
    return [
        entry("sweep: cells one after another", serial, "s", None,
              f"{note}; command {serial_wall:.1f} s using {serial_cpu:.2f} cores on average"),
        entry("sweep: cells on a local Dask cluster (2 workers)", dask, "s", None,
              f"{note}; command {dask_wall:.1f} s using {dask_cpu:.2f} cores on average"),
        entry("sweep: speed-up with 2 workers on 2 cores", serial / dask, "x", None,
              "a serial cell already keeps more than one core busy (DuckDB's parallel reads, the kernel's page work)"),
    ]  # fmt: skip
