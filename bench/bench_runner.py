"""The live runner's tick-to-decision latency, measured inside the runner on recorded data.

The simulated day of bench_models (cached in bench/.cache/model-day) and a model fitted on it
drive ``live.runner`` with ``--source replay --paper`` as fast as possible over two hours of that
day. An execution-study threshold (the model's 90th percentile confidence) makes it trade, so the
strategy and the risk manager do real work at every decision. Latency per decision: from the tick
that makes it due to the strategy's last request (features of the row's book update + prediction +
strategy + risk; the paper exchange's own simulation is excluded, as it is the exchange's work).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_models import _day
from bench.common import CACHE, entry
from core.config import load_config
from live.loop import Loaded
from live.runner import Options, Runner
from pipelines.dataset import load
from pipelines.train import fit

HOUR_NS = 3_600 * 1_000_000_000


def run() -> list[dict[str, Any]]:
    cfg = _day(load_config(Path(__file__).resolve().parents[1] / "config.yaml"))
    data = load(cfg, cfg.training.window, min_rows=cfg.training.min_rows)
    model = fit(cfg, data).model
    conf = model.predict_proba(model.take(data.x, data.feature_names)).max(axis=1)
    q = float(np.quantile(conf, 0.9))
    model = replace(model, threshold_up=q, threshold_down=q)
    folder = CACHE / "runner"
    shutil.rmtree(folder, ignore_errors=True)
    cfg = cfg.model_copy(update={"live": cfg.live.model_copy(update={"journal_dir": folder, "log_dir": folder})})
    start = int(data.ts[0]) + 6 * HOUR_NS
    o = Options(False, "replay", None, None, start, start + 2 * HOUR_NS, "passive", 0.0)
    runner = Runner(cfg, o, Loaded.of(model, "bench"))
    t0 = time.perf_counter()
    asyncio.run(runner.run())
    seconds = time.perf_counter() - t0
    s = runner.loop.stats
    note = f"{s.decisions:,} decisions, {s.signals:,} signals, {s.fills:,} fills over 2 simulated hours"
    return [
        entry("runner: tick-to-decision latency, median", s.latency(0.5), "us", None, note),
        entry("runner: tick-to-decision latency, p99", s.latency(0.99), "us", "<= 1000", note),
        entry("runner: replay through the paper runner", s.ticks / seconds, "ticks/s", None, note),
    ]
