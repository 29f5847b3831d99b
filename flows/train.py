"""Train the stacked direction model and register it as the challenger: ``python -m flows.train``.

    python -m flows.train                       # the last training.window of labelled data
    python -m flows.train --end 2026-01-05T12:00:00Z

Reads features and labels from the warehouse, fits LightGBM + XGBoost per direction on purged
walk-forward folds, stacks them with a logistic meta-learner, calibrates on a later embargoed
block, scores every learner on the held-out block, and sets the operating thresholds: a direction
trades only if its held-out AUC interval lies above 0.5, at a threshold chosen on the first part of
the calibration block at the round trip the strategy really pays there (measured by the matching
engine) and confirmed by one engine run on the later part (pipelines/operating.py). It logs and
registers everything in MLflow (``make ui`` to look).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from prefect import State, flow, task
from prefect.states import Completed

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import run_main, setup_logging
from core.config import AppConfig, load_config
from core.errors import UserError
from core.timefmt import format_ns, parse_time_ns
from execution.backtest import Signals, blocks_of, engine_config, make_strategy, replay
from execution.engine import Engine
from execution.quality import RunRecord
from features.catalog import MAX_LOOKBACK_S
from flows.backtest import HOUR_NS, VOL_FEATURE, VOL_WINDOW_S
from flows.common import failed, parser, raise_if_failed
from flows.progress import StepProgress
from models.registry import log_training
from models.result import TrainResult
from models.stack import BoostParams
from pipelines.dataset import TrainingData, load
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
        sigma = self.data.x[rows, self.vol] * 1e-4 / math.sqrt(VOL_WINDOW_S)
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


def fit(cfg: AppConfig, data: TrainingData, progress: StepProgress | None = None, engine: bool = True) -> TrainResult:
    """The stack on ``data`` with the config's settings (no MLflow: that is run_training's part).

    With ``engine`` the strategy's cost is measured and the thresholds confirmed by the matching
    engine on the warehouse's market over the calibration block (``StrategyRun``); without (data
    that is not in the warehouse: synthetic or permuted rows) at the nominal fees
    (``nominal_cost``), confirmed on the labels. ``result.trades`` says whether it found an edge."""
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
            progress=progress,
            cost=nominal_cost(cfg),
            execution=StrategyRun(cfg, data) if engine else None,
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


def run_training(cfg: AppConfig, end_ns: int | None = None) -> dict[str, Any]:
    data = load(cfg, cfg.training.window, end_ns, min_rows=cfg.training.min_rows)
    with StepProgress("train") as progress:
        result = fit(cfg, data, progress)
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


@task(name="train")
def train_task(config: str, end: str | None) -> dict[str, Any]:
    try:
        cfg = load_config(config)
        return run_training(cfg, parse_time_ns(end) if end else None)
    except UserError as exc:
        return {"status": "failed", "error": str(exc), "exit_code": exc.exit_code}


@flow(name="train", log_prints=True)
def train_flow(config: str = "config.yaml", end: str | None = None) -> State:
    """Train, score and register a challenger model."""
    result = train_task(config, end)
    if result["status"] == "failed":
        return failed(result)
    print(result["summary"])
    for line in result["verdict"]:
        print(line)
    return Completed(message=result["summary"], data=result)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.train", __doc__)
    p.add_argument("--end", help="last grid time of the window (ISO 8601 UTC or ns); default: the newest label")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    load_config(args.config)
    if args.end:
        try:
            parse_time_ns(args.end)
        except ValueError as exc:
            raise UserError(f"--end: {exc}") from None
    state = train_flow(config=args.config, end=args.end, return_state=True)
    raise_if_failed(state, "training")
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        print(result["summary"])
        print("\n".join(result["verdict"]))
    return 0


if __name__ == "__main__":
    run_main(main)
