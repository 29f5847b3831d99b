"""Train the stacked direction model and register it as the challenger: ``python -m flows.train``.

    python -m flows.train                       # the last training.window of labelled data
    python -m flows.train --end 2026-01-05T12:00:00Z
    python -m flows.train --cluster local --workers 2     # the walk-forward folds on a Dask cluster
    python -m flows.train --cluster tcp://10.0.0.5:8786   # ... on a running Dask scheduler

Reads features and labels from the warehouse, fits LightGBM + XGBoost per direction on purged
walk-forward folds, stacks them with a logistic meta-learner, calibrates on a later embargoed
block, scores every learner on the held-out block, and sets the operating thresholds: a direction
trades only if its held-out AUC interval lies above 0.5, at a threshold chosen on the first part of
the calibration block at the round trip the strategy really pays there (measured by the matching
engine) and confirmed by one engine run on the later part (pipelines/operating.py). It logs and
registers everything in MLflow (``make ui`` to look).

With ``--cluster`` (or ``compute.cluster`` in config.yaml) each direction's walk-forward folds (the
out-of-fold fits: LightGBM and XGBoost on each fold) are Prefect tasks on Dask through prefect-dask
(``local``: a cluster of ``--workers`` processes for the run; an address: a running scheduler whose
workers run this project); everything else (the data, the final fits, the calibration, the engine's
threshold runs, the MLflow logging) stays in this process. The model equals the one trained
without a cluster, bit for bit (tests/test_train_folds.py, on a local cluster). Without it nothing
changes: the run is one task here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_time_ns
from flows.common import (
    add_cluster_arguments,
    attempt,
    cluster_of,
    finish,
    parser,
    run_flow,
    shared_server,
    task_runner,
)

if TYPE_CHECKING:
    from models.stack import FoldData, FoldFit


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.train", __doc__)
    p.add_argument("--end", help="last grid time of the window (ISO 8601 UTC or ns); default: the newest label")
    add_cluster_arguments(p)
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_config(args.config)
    if args.end:
        try:
            parse_time_ns(args.end)
        except ValueError as exc:
            raise UserError(f"--end: {exc}") from None
    cluster_of(args, cfg)
    return args


# --help and bad input are answered here, before Prefect and the learners load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task
from prefect.cache_policies import NO_CACHE


@task(name="train")
def train_task(config: str, end: str | None) -> dict[str, Any]:
    from pipelines.train import run_training  # the learners load here, not for --help or bad input

    return attempt(lambda: run_training(load_config(config), parse_time_ns(end) if end else None))


@flow(name="train", log_prints=True)
def train_flow(config: str = "config.yaml", end: str | None = None) -> State:
    """Train, score and register a challenger model."""
    return _finish(train_task(config, end))


# a fold's fit is a function of its rows, which are too large to hash for a cache key on every run
@task(name="fit-fold", cache_policy=NO_CACHE, persist_result=False)
def fold_task(fold: FoldData) -> FoldFit | None:
    """One walk-forward fold's two boosters (models.stack.fit_fold), fitted wherever the task runs."""
    from models.stack import fit_fold

    return fit_fold(fold)


def folds_as_tasks(folds: Iterable[FoldData]) -> list[FoldFit | None]:
    """A fold runner (models.stack.FoldRunner): the folds mapped as tasks on the running flow's task
    runner, their results in the folds' order."""
    t0 = time.monotonic()
    work = list(folds)  # every fold at once: the cluster's workers take them side by side
    fitted = [f.result() for f in fold_task.map(work)]
    print(f"  {len(work)} walk-forward folds fitted as tasks in {time.monotonic() - t0:.1f} s")
    return fitted


@flow(name="train-folds-on-cluster", log_prints=True)
def cluster_flow(config: str = "config.yaml", end: str | None = None) -> State:
    """The same training in the flow's own process, each direction's walk-forward folds as tasks on
    the flow's task runner (Dask)."""

    def job() -> dict[str, Any]:
        from pipelines.train import run_training

        return run_training(load_config(config), parse_time_ns(end) if end else None, folds_as_tasks)

    return _finish(attempt(job))


def _finish(result: dict[str, Any]) -> State:
    state = finish(result, lambda r: str(r["summary"]))
    for line in result.get("verdict", []):
        print(line)
    return state


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    cluster, workers = cluster_of(args, load_config(args.config))
    if cluster is None:
        state = run_flow(train_flow, "training", config=args.config, end=args.end)
    else:
        with shared_server():
            flow_on_dask = cluster_flow.with_options(task_runner=task_runner(cluster, workers))
            state = run_flow(flow_on_dask, "training", config=args.config, end=args.end)
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        print(result["summary"])
        print("\n".join(result["verdict"]))
    return 0


if __name__ == "__main__":
    run_main(main)
