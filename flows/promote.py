"""Promote the challenger to champion only if it wins on fresh data: ``python -m flows.promote``.

Both models are scored on the same most recent ``promotion.fresh`` of labelled data (log loss and
AUC per direction). The challenger, the first model included, must have skill (``skill_gate``: it
trades in a direction whose held-out AUC interval lay above 0.5 and whose threshold was confirmed
in training, and its fresh AUC there reaches ``promotion.min_auc``) and both its AUCs must reach
``promotion.min_auc``. Against a champion its mean log loss must also be lower by at least
``promotion.min_log_loss_gain`` and, with ``promotion.require_backtest``, its net-of-fee backtest
PnL on the same data (the matching engine, ``promotion.backtest_strategy``) beat the champion's.
A registry can therefore have no champion: the runner and the demo then say "no champion with
skill" and do not trade. The reason is written on the challenger's model version either way.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from flows.common import attempt, finish, parser, run_flow
from models.store import store as registry_store  # models.registry.store, without MLflow and pandas


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.promote", __doc__)
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_config(args.config)
    registry_store(cfg)  # a missing registry is one line before Prefect starts
    return args


# --help and bad input are answered here, before Prefect and the promotion load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task


@task(name="promote")
def promote_task(config: str) -> dict[str, Any]:
    from pipelines.promote import run_promotion  # loaded by the run, not for --help or bad input

    return attempt(lambda: run_promotion(load_config(config)))


@flow(name="promote", log_prints=True)
def promote_flow(config: str = "config.yaml") -> State:
    """Compare challenger and champion on fresh data; move the champion alias if earned."""
    return finish(promote_task(config), _said)


def _said(result: dict[str, Any]) -> str:
    if result["promoted"]:
        action = "promoted"
    elif result.get("champion") is not None:
        action = f"kept the champion (version {result['champion']})"
    else:
        action = "no champion"  # the registry may have none: a model without skill is never crowned
    return f"{action}: version {result['version']}: {result['reason']}"


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    state = run_flow(promote_flow, "promotion", config=args.config)
    print(state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
