"""Training figures: a simulated day's retrain with its walk-forward folds fitted one after another,
and as tasks on a local Dask cluster of two worker processes, on this 2-core box.

The day is bench_models' simulated day (features built, cached), trained with the project's settings
(4 folds a direction, ``training.threads`` 2 per fit) into a registry of the bench's own, emptied
first (bench/.cache/train). Both runs are the user's command (``python -m flows.train``), timed
whole: the folds are a part of it, the data, the final fits, the engine's threshold runs and the
MLflow logging stay in the command either way. The folds' own time beside it: on the cluster as the
command prints it (the cluster's start and its workers' imports are in the first direction's), one
after another as ``pipelines.train.fit`` spends it here (without the engine). The two registered
models must be equal, booster for booster.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.bench_models import day_project
from bench.common import CACHE, command, entry
from core.config import load_config
from models.stack import FoldData, FoldFit, serial


def _setup() -> Path:
    folder = CACHE / "train"
    shutil.rmtree(folder / "mlruns", ignore_errors=True)
    return day_project(folder)


def _serial_folds(config: Path) -> tuple[float, int]:
    """(seconds the folds took one after another in ``fit``, rows trained on)."""
    from pipelines.dataset import load
    from pipelines.train import fit

    cfg = load_config(config)
    spent: list[float] = []

    def timed(folds: Iterable[FoldData]) -> list[FoldFit | None]:
        t0 = time.perf_counter()
        fitted = serial(folds)
        spent.append(time.perf_counter() - t0)
        return fitted

    data = load(cfg, cfg.training.window, min_rows=cfg.training.min_rows)
    fit(cfg, data, engine=False, runner=timed)
    return sum(spent), len(data.ts)


def _train(config: Path, *cluster: str) -> tuple[float, float, list[float]]:
    """(the command's wall time, CPU cores it used on average, seconds each direction's folds took on
    the cluster)."""
    p, wall, cpu = command("flows.train", "--config", str(config), *cluster)
    if p.returncode != 0 or "registered" not in p.stdout:
        raise RuntimeError(f"flows.train failed ({p.returncode}): {p.stderr[-2000:]}")
    folds = [float(s) for s in re.findall(r"walk-forward folds fitted as tasks in ([\d.]+) s", p.stderr)]
    if cluster and len(folds) != 2:
        raise RuntimeError(f"flows.train {' '.join(cluster)} printed {len(folds)} fold runs, not one a direction")
    return wall, cpu, folds


def _same_models(config: Path) -> None:
    from models import registry

    cfg = load_config(config)
    a, b = registry.load_version(cfg, "1"), registry.load_version(cfg, "2")
    for d in ("up", "down"):
        x, y = getattr(a, d), getattr(b, d)
        if x.lgb_model.model_to_string() != y.lgb_model.model_to_string() or repr(x.folds) != repr(y.folds):
            raise RuntimeError(f"the {d} stack trained on the cluster differs from the serial one")


def run() -> list[dict[str, Any]]:
    config = _setup()
    folds, rows = _serial_folds(config)
    serial_wall, serial_cpu, _ = _train(config)
    dask_wall, dask_cpu, dask_folds = _train(config, "--cluster", "local", "--workers", "2")
    _same_models(config)
    note = f"a simulated day: {rows:,} rows, 2 directions x 4 folds, training.threads 2"
    return [
        entry("train: a day's retrain, folds one after another (the command)", serial_wall, "s", "< 600",
              f"{note}; the folds {folds:.1f} s of it (in fit, here); {serial_cpu:.2f} cores on average"),
        entry("train: a day's retrain, folds on a local Dask cluster (2 workers)", dask_wall, "s", "< 600",
              f"the folds {sum(dask_folds):.1f} s of it (up {dask_folds[0]:.1f} s, the cluster's start and its "
              f"workers' imports included; down {dask_folds[1]:.1f} s); {dask_cpu:.2f} cores on average"),
        entry("train: speed-up of the folds with 2 workers on 2 cores", folds / sum(dask_folds), "x", None,
              f"{serial_wall / dask_wall:.2f} x for the whole command; each fit already runs on 2 threads"),
    ]  # fmt: skip
