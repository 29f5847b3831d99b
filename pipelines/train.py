"""Train the stacked model on what the warehouse holds and log it to MLflow: the job ``python -m flows.train`` runs.

The data, the engine run that measures the strategy's cost and confirms each operating threshold,
the training procedure (pipelines/training.py) and the registry entry.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import format_ns
from execution.backtest import Signals, blocks_of, engine_config, make_strategy, replay
from execution.engine import Engine
from execution.quality import RunRecord
from features.catalog import MAX_LOOKBACK_S
from features.grid import VOL_FEATURE, sigma_1s
from models.learners import BoostParams
from models.registry import log_training
from models.result import Evidence, TrainResult
from models.stack import FoldRunner, serial
from pipelines.backtest import HOUR_NS
from pipelines.dataset import TrainingData, load
from pipelines.progress import StepProgress
from pipelines.replay import load_market
from pipelines.training import train
from warehouse.db import reading
from warehouse.feature_tables import table_exists

log = logging.getLogger(__name__)


def embargo_ns(cfg: AppConfig) -> int:
    """At least the label horizon plus the longest feature look-back (REFERENCE section 5)."""
    longest_label = max(cfg.training.horizon, cfg.labels.barrier_horizon)
    return int(longest_label + MAX_LOOKBACK_S * 1_000_000_000)


def columns(cfg: AppConfig, names: list[str]) -> list[int]:
    """Indices of the features the model trains on: the catalog minus ``training.exclude_features``."""
    unknown = sorted(set(cfg.training.exclude_features) - set(names))
    if unknown:
        raise UserError(f"training.exclude_features: not in the feature catalog: {', '.join(unknown)}")
    return [i for i, n in enumerate(names) if n not in cfg.training.exclude_features]


class StrategyRun:
    """The strategy the runner trades (``promotion.backtest_strategy``) through the matching engine
    over rows of the training data, on the warehouse's recorded market: what training measures the
    strategy's real round-trip cost with and confirms each operating threshold by
    (pipelines/operating.py). Each entry is one bet: a fixed notional (``baseline_fraction`` of the
    backtest equity) held for the label horizon (``StrategyParams.fixed_hold``)."""

    def __init__(self, cfg: AppConfig, data: TrainingData) -> None:
        self.cfg, self.data = cfg, data
        self.strategy: str = cfg.promotion.backtest_strategy
        self.vol = data.feature_names.index(VOL_FEATURE)
        self.notional = cfg.strategy.baseline_fraction * cfg.backtest.equity

    def __call__(self, rows: np.ndarray, p_up: np.ndarray, p_down: np.ndarray, direction: np.ndarray) -> RunRecord:
        cfg, horizon = self.cfg, self.cfg.training.horizon
        ts = self.data.ts[rows]
        sigma = sigma_1s(self.data.x[rows, self.vol])
        signals = Signals(ts, p_up, p_down, np.asarray(direction, np.int8), sigma)
        lo, hi = int(ts[0]) - 1_000_000_000, int(ts[-1]) + horizon + 60_000_000_000
        levels = cfg.features.levels
        blocks = blocks_of(lambda a, b: load_market(cfg, a, b, levels), lo, hi, HOUR_NS)
        engine = Engine(engine_config(cfg), levels, sample_ns=cfg.backtest.sample, cash=cfg.backtest.equity)
        # a fixed size per entry, as in an execution study: the cost and the confirmation are per
        # order, and the Kelly sizing (which needs the threshold being chosen) would size most of a
        # permissive run's entries to zero; each position held for the label horizon, one at a
        # time: a round trip spans what its label spans, and each is one independent bet
        strategy = make_strategy(self.strategy, cfg, horizon, study_notional=self.notional)
        strategy.params = replace(strategy.params, fixed_hold=True)
        return replay(engine, blocks, signals, strategy, cfg.strategy.decision_delay)


def nominal_cost(cfg: AppConfig) -> float:
    """The strategy's round trip in fees alone: two taker fees (baseline), two maker fees (passive)."""
    fee = cfg.instrument.taker_fee if cfg.promotion.backtest_strategy == "baseline" else cfg.instrument.maker_fee
    return 2.0 * fee


def fit(
    cfg: AppConfig,
    data: TrainingData,
    progress: StepProgress | None = None,
    engine: bool = True,
    runner: FoldRunner = serial,
) -> TrainResult:
    """The stack on ``data`` with the config's settings (no MLflow: that is run_training's part).

    With ``engine`` the strategy's cost is measured and the thresholds confirmed by the matching
    engine on the warehouse's market over the calibration block (``StrategyRun``); without (data
    that is not in the warehouse: synthetic or permuted rows) at the nominal fees
    (``nominal_cost``), confirmed on the labels. ``result.trades`` says whether it found an edge.
    ``runner`` fits the walk-forward folds (models/stack.py: ``serial``, or tasks on a cluster)."""
    keep = columns(cfg, data.feature_names)
    try:
        return train(
            data.x[:, keep],
            data.ts,
            data.ret,
            data.direction,
            [data.feature_names[i] for i in keep],
            data.feature_set,
            data.label_set,
            cfg.training.horizon,
            data.tau,
            BoostParams.of(cfg.training),
            cfg.training.folds,
            cfg.training.shares,
            embargo_ns(cfg),
            Evidence.of(cfg.training),
            progress=progress,
            cost=nominal_cost(cfg),
            execution=StrategyRun(cfg, data) if engine else None,
            runner=runner,
        )
    except ValueError as exc:
        raise UserError(f"training: {exc}") from None


def data_source(cfg: AppConfig) -> str:
    """Where the warehouse's market data came from: the sources of its ingest runs that stored
    something (``sim``, ``bybit``, ``file``; ``file+sim`` for a mix), or ``unknown``."""
    with reading(cfg.resolve(cfg.warehouse.path), cfg.warehouse.lock_timeout / 1e9) as con:
        if not table_exists(con, "ingest_runs"):
            return "unknown"
        rows = con.execute("SELECT DISTINCT source FROM ingest_runs WHERE messages > 0 ORDER BY source").fetchall()
    return "+".join(str(r[0]) for r in rows) or "unknown"


def run_training(cfg: AppConfig, end_ns: int | None = None, runner: FoldRunner = serial) -> dict[str, Any]:
    data = load(cfg, cfg.training.window, end_ns, min_rows=cfg.training.min_rows)
    with StepProgress("train") as progress:
        result = fit(cfg, data, progress, runner=runner)
    test = slice(len(data.ts) - result.rows["test"], None)
    y_test = {"up": (data.direction[test] == 1).astype(float), "down": (data.direction[test] == -1).astype(float)}
    y_test["direction"] = data.direction[test]
    window = {
        "start": format_ns(data.start_ns),
        "end": format_ns(data.end_ns),
        "rows": len(data.ts),
        "test_start": format_ns(int(data.ts[test][0])),  # the held-out block: nothing was fitted on it
        "data_source": data_source(cfg),
    }
    run_id, version = log_training(cfg, result, result.model.take(data.x[test], data.feature_names), y_test, window)
    summary = (
        f"trained on {len(data.ts):,} rows ({window['start']} .. {window['end']}), feature set {data.feature_set}; "
        f"registered {cfg.mlflow.model_name} version {version} as challenger (run {run_id})"
    )
    return {
        "status": "completed",
        "summary": summary,
        "verdict": result.verdict,
        "version": version,
        "run_id": run_id,
        "test_start": window["test_start"],
        "metrics": result.metrics(),
    }
