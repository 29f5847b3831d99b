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
from collections.abc import Sequence
from typing import Any

from prefect import State, flow, task

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_time_ns
from flows.common import attempt, finish, parser, run_flow


@task(name="train")
def train_task(config: str, end: str | None) -> dict[str, Any]:
    from pipelines.train import run_training  # the learners load here, not for --help or bad input

    return attempt(lambda: run_training(load_config(config), parse_time_ns(end) if end else None))


@flow(name="train", log_prints=True)
def train_flow(config: str = "config.yaml", end: str | None = None) -> State:
    """Train, score and register a challenger model."""
    result = train_task(config, end)
    state = finish(result, lambda r: str(r["summary"]))
    for line in result.get("verdict", []):
        print(line)
    return state


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
    state = run_flow(train_flow, "training", config=args.config, end=args.end)
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        print(result["summary"])
        print("\n".join(result["verdict"]))
    return 0


if __name__ == "__main__":
    run_main(main)
