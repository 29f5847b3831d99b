"""Model figures: a full retrain on one simulated day, and prediction latency / throughput.

Builds (once, cached in bench/.cache) a warehouse holding one simulated day with its features and
labels, trains the stack on it with the project's config (as `python -m flows.train` does, without
MLflow), then times the champion's path the live runner uses: a numpy vector in, P(up), P(down) out
(``StackedModel.predict_proba``: the compiled forests of models/compiled.py), and for comparison the
same row through the libraries (LightGBM ``predict``, XGBoost ``inplace_predict``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.common import CACHE, ROOT, entry, pct
from core.config import AppConfig, load_config
from models.learners import predict_lgb, predict_xgb
from models.model import StackedModel
from pipelines.dataset import load
from pipelines.featurebuild import build
from pipelines.train import fit
from sim.source import SimSource
from warehouse.ingest import run_ingest

DAY_NS = 86_400 * 1_000_000_000


def day_project(folder: Path, **sections: dict[str, Any]) -> Path:
    """A project on the simulated day's warehouse (``_day``) with a registry of its own in ``folder``:
    its config.yaml (a 24 h training window, and ``sections`` merged in), for the benches that run
    the project's commands on it."""
    day = _day(load_config(ROOT / "config.yaml"))
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, dict[str, Any]] = {
        "warehouse": {
            "path": str(day.warehouse.path),
            "spool_dir": str(day.warehouse.spool_dir),
            "snapshot_levels": day.warehouse.snapshot_levels,
        },
        "mlflow": {"store": str(folder / "mlruns" / "mlflow.db"), "artifacts": str(folder / "mlruns" / "art")},
        "training": {"window": "24h"},
        **sections,
    }
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def _day(cfg: AppConfig) -> AppConfig:
    directory = CACHE / "model-day"
    directory.mkdir(parents=True, exist_ok=True)
    wh = cfg.warehouse.model_copy(
        update={"path": directory / "l2.duckdb", "spool_dir": directory / "spool", "snapshot_levels": 20}
    )
    c = cfg.model_copy(update={"warehouse": wh, "training": cfg.training.model_copy(update={"window": DAY_NS})})
    marker = directory / "built"
    if not marker.exists():
        run_ingest(SimSource(c.sim, c.instrument, 50, DAY_NS), c, detail="bench day")
        build(c)
        marker.write_text("ok\n")
    return c


def run() -> list[dict[str, Any]]:
    cfg = _day(load_config(Path(__file__).resolve().parents[1] / "config.yaml"))
    data = load(cfg, cfg.training.window, min_rows=cfg.training.min_rows)
    t0 = time.perf_counter()
    result = fit(cfg, data)
    fit_s = time.perf_counter() - t0
    model = result.model
    x = model.take(data.x[-20_000:], data.feature_names)
    lat = _latencies_us(model.predict_proba, x[:5000])
    lib = _latencies_us(lambda row: _library(model, row), x[:2000])
    t1 = time.perf_counter()
    model.predict_proba(x)
    batch_s = time.perf_counter() - t1
    return [
        entry(
            "model: full retrain on one simulated day (both directions)",
            fit_s,
            "s",
            "< 600",
            f"{len(data.ts):,} rows, {cfg.training.folds} folds",
        ),
        entry("model: single-row prediction (compiled), median", float(np.median(lat)), "us", None),
        entry("model: single-row prediction (compiled), p99", pct(lat, 99), "us", "<= 1000"),
        entry("model: single-row prediction via the libraries, median", float(np.median(lib)), "us", None),
        entry("model: single-row prediction via the libraries, p99", pct(lib, 99), "us", None),
        entry("model: batch prediction", len(x) / batch_s, "rows/s", ">= 100000"),
    ]


def _latencies_us(predict: Any, rows: np.ndarray) -> list[float]:
    for row in rows[:200]:
        predict(row)  # warm up
    lat: list[float] = []
    for row in rows:
        start = time.perf_counter_ns()
        predict(row)
        lat.append((time.perf_counter_ns() - start) / 1e3)
    return lat


def _library(model: StackedModel, row: np.ndarray) -> np.ndarray:
    """The same decision with the boosters evaluated by their libraries (the path before compiling)."""
    x = row[None, :]
    out = [
        s.calibrate(s.meta(predict_lgb(s.lgb_model, x), predict_xgb(s.xgb_model, x))) for s in (model.up, model.down)
    ]
    return np.column_stack(out)
