"""Scheduled retraining, one chain: ``python -m flows.retrain`` (the ``retrain-daily`` deployment).

    python -m flows.retrain            # features for the new data -> train a challenger -> promotion decision

Three sub-flows in order, each visible in the Prefect UI under this run: the feature and label
build for what arrived since the last build, training on the latest window (the new version
becomes the ``challenger``), and the promotion decision on fresh data (the ``champion`` alias
moves only if the challenger earns it). A running ``live.runner`` re-reads the champion alias every
``live.model_poll`` and swaps a newly promoted model in between decisions. A failed step stops the
chain and fails the run with that step's one-line reason and exit code. A run that finds no book
update stored since the newest version's training window ended (plus the label horizon) has nothing
to learn: it says so and ends before it builds anything or starts a cluster.

With ``compute.cluster`` in config.yaml the feature build goes by partition and training's
walk-forward folds go to that Dask cluster, as ``flows.feature_build --cluster`` and
``flows.train --cluster`` send them (docs/scaling.md); ``local`` starts one cluster for the whole
chain (its workers serve both steps) and closes it when the chain ends. The promotion decision
stays here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import AppConfig, load_config
from core.errors import UserError
from core.timefmt import format_ns
from flows.common import (
    StepFailed,
    cluster_address,
    exit_code,
    parser,
    persistent_server,
    raise_if_failed,
    shared_server,
    task_runner,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return parser("flows.retrain", __doc__).parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    load_config(args.config)
    return args


# --help and bad input are answered here, before Prefect and the flows it chains load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task
from prefect.states import Completed, Failed

from flows.feature_build import cluster_partition, features_flow, partitioned_flow
from flows.promote import promote_flow
from flows.train import cluster_flow, train_flow
from models import registry
from pipelines.dataset import newest_data_ns, newest_label_ns


@task(name="new-labels")
def nothing_new(config: str) -> str:
    """Why there is nothing to train ("" when labels arrived since the newest version was trained)."""
    try:
        cfg = load_config(config)
        newest = newest_label_ns(cfg)
        last = registry.latest_training(cfg)
    except UserError:  # the steps themselves say what is wrong
        return ""
    if newest is None or last is None or newest > last[1]:
        return ""
    return f"no labelled data since version {last[0]} was trained (up to {format_ns(last[1])}): nothing to retrain"


@task(name="new-data")
def nothing_possible(config: str) -> str:
    """Why no new label can exist ("" when one may): no book update stored since the newest version's
    training window ended plus the label horizon. Asked before the chain starts its cluster or builds
    anything, so a scheduled run with nothing new costs a few queries."""
    try:
        cfg = load_config(config)
        newest = newest_data_ns(cfg)
        last = registry.latest_training(cfg)
    except UserError:  # the steps themselves say what is wrong
        return ""
    if newest is None or last is None:
        return ""
    latest = newest - cfg.training.horizon  # the newest grid time that could be labelled
    if latest - latest % cfg.features.grid > last[1]:
        return ""
    return (
        f"no data since version {last[0]} was trained (up to {format_ns(last[1])}) that a label could be made "
        f"from (the newest book update is at {format_ns(newest)}): nothing to retrain"
    )


@flow(name="retrain", log_prints=True)
def retrain_flow(config: str = "config.yaml") -> State:
    """Build the new features, train a challenger on them, and decide its promotion."""
    try:
        cfg: AppConfig | None = load_config(config)
    except UserError:  # the first step says what is wrong with it
        cfg = None
    if cfg is not None and (why := nothing_possible(config)):
        print(why)
        return Completed(message=why, data={"steps": [why]})
    cluster, workers = (cfg.compute.cluster, cfg.compute.workers) if cfg is not None else (None, 1)
    messages: list[str] = []
    with cluster_address(cluster, workers) as address:
        if address is not None:
            print(f"retrain: feature build and training folds on the Dask cluster at {address}")
        for what, step, params in _steps(cfg, address, workers):
            if what == "training" and (why := nothing_new(config)):
                print(why)
                return Completed(message=why, data={"steps": [*messages, why]})
            state = step(config=config, return_state=True, **params)
            if not state.is_completed():  # the step's message already says what failed
                message = state.message or f"{what} failed"
                return Failed(message=message, data=StepFailed(message, exit_code(state)))
            messages.append(state.message or what)
    summary = " | ".join(messages)
    print(summary)
    return Completed(message=messages[-1], data={"steps": messages})


def _steps(
    cfg: AppConfig | None, address: str | None, workers: int
) -> list[tuple[str, Callable[..., Any], dict[str, Any]]]:
    """The chain's three flows: the feature build (by partition) and training (its folds as tasks) on
    the Dask scheduler at ``address``, each step a task runner of its own on that one cluster; else
    all three here."""
    if cfg is None or address is None:
        return [("feature build", features_flow, {}), ("training", train_flow, {}), ("promotion", promote_flow, {})]
    return [
        ("feature build", partitioned_flow.with_options(task_runner=task_runner(address, workers)),
         {"partition": cluster_partition(cfg)}),
        ("training", cluster_flow.with_options(task_runner=task_runner(address, workers)), {}),
        ("promotion", promote_flow, {}),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    cfg = load_config(args.config)
    # a cluster's workers report their task runs to a server they reach too
    server: AbstractContextManager[str | None] = shared_server() if cfg.compute.cluster else persistent_server()
    with server:
        state = retrain_flow(config=args.config, return_state=True)
    raise_if_failed(state, "retraining")
    print(state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
