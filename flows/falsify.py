"""Falsify the research loop: does it refuse where there is no money, and find money where there is?

    python -m flows.falsify --runs 20                       # null: labels block-permuted against the features
    python -m flows.falsify --runs 20 --null market         # null: simulated markets without the metaorder edge
    python -m flows.falsify --planted --runs 20 --hours 6   # power: simulated markets with a planted edge

Null (default): trains and gates N models on data whose labels carry no information and prints the
share of runs in which the gate let a model trade (target <= 5 %). ``--null permute`` (the
default) simulates one market and, per run, moves the labels against the features in whole blocks
(each at least the label horizon plus the feature look-back long, none left in or beside its own
place, seeded by the run), so every run is another null with the features' own structure intact.
``--null market`` simulates a new market per run with the metaorders' tilt at 0: nothing about the
next 30 s beyond the next tick is predictable (slower: a market per run).

``--planted``: per run a new simulated market whose metaorders move the price by more than the
round trip after they start; trained, gated and its held-out block backtested net of fees with the
strategy through the matching engine. Prints the share of runs that traded and earned (target
>= 80 %). A gate that never trades passes the null trivially: the two figures go together.

One line per run (seed, per-direction held-out AUC with its 95 % interval, thresholds, whether the
gate lets it trade, held-out net PnL over n orders), then the share with its Clopper-Pearson 95 %
interval as the LAST line. Everything happens in a temporary project (a copy of the config with its
warehouse and MLflow store in a temporary folder, removed at the end; ``--workdir`` keeps it there
and reuses the null market): the project's warehouse and registry are never touched, nothing is
registered. ``--hours`` is the simulated span per market (default: training.window).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from flows.common import failed, parser, persistent_server, raise_if_failed

# pipelines.falsify.NULLS, spelled out for --help: that module loads scikit-learn and the backtest
# (about 2.5 CPU-s, more than Prefect); tests/test_falsify.py holds the two to each other
NULLS = ("permute", "market")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.falsify", __doc__)
    p.add_argument("--runs", type=int, default=20, metavar="N", help="models to train and gate (default: 20)")
    p.add_argument("--planted", action="store_true", help="power: markets with a planted edge larger than the costs")
    p.add_argument("--null", choices=NULLS, help="which null (default: permute; not with --planted)")
    p.add_argument("--hours", type=float, metavar="H", help="simulated hours per market (default: training.window)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="run i uses seed S + i (default: 1)")
    p.add_argument(
        "--strategy",
        default="passive",
        metavar="NAME",
        help="held-out backtests: baseline, passive (default) or module:Name",
    )
    p.add_argument("--workdir", metavar="DIR", help="keep the temporary project here (the null market is reused)")
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    load_config(args.config)  # a bad config is one line before Prefect starts
    if args.runs < 1:
        raise UserError(f"--runs: {args.runs} is not a positive number of runs")
    if args.hours is not None and not 0 < args.hours <= 24 * 30:
        raise UserError(f"--hours: {args.hours} is not a span in (0, 720] hours")
    if args.planted and args.null is not None:
        raise UserError("--null chooses the null, --planted runs planted markets: one or the other")
    from execution.loader import load_strategy  # the engine (numba): after the checks that need none of it

    load_strategy(args.strategy)  # a name that loads no strategy is one line before Prefect starts
    return args


# --help and bad input are answered here, before Prefect and the pipelines load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from pipelines.falsify import (
    HOUR_NS,
    Outcome,
    edge_line,
    evidence,
    market_run,
    permute_run,
    project,
    simulate_market,
    summary,
    tally,
)
from pipelines.progress import StepProgress
from sim.presets import NO_EDGE, PLANTED

# ---- Prefect -----------------------------------------------------------------------------------


def _failed(exc: UserError) -> dict[str, Any]:
    return {"status": "failed", "error": str(exc), "exit_code": exc.exit_code}


@task(name="falsify-null-market", cache_policy=NO_CACHE)
def null_market_task(config: str, root: str, hours: float) -> dict[str, Any]:
    """Simulate the null's one market (features and labels included) into the temporary project."""
    try:
        path = project(Path(config), Path(root) / "null", hours)
        with StepProgress("falsify: the null market") as progress:
            simulate_market(load_config(path), progress)
    except UserError as exc:
        return _failed(exc)
    return {"status": "completed", "config": str(path)}


@task(name="falsify-run", cache_policy=NO_CACHE)
def run_task(
    config: str, root: str, mode: str, i: int, n: int, seed: int, hours: float, strategy: str
) -> dict[str, Any]:
    """One run of ``mode`` (permute, market, planted); its outcome and its line."""
    try:
        with StepProgress(f"falsify run {i + 1}/{n}") as progress:
            if mode == "permute":
                out = permute_run(Path(config), seed, strategy, progress)
            else:
                model = PLANTED if mode == "planted" else NO_EDGE
                out = market_run(Path(config), Path(root), seed, model, hours, strategy, progress)
    except UserError as exc:
        return _failed(exc)
    return {"status": "completed", "outcome": out, "line": out.line(i, n)}


@flow(name="falsify")
def falsify_flow(
    config: str = "config.yaml",
    runs: int = 20,
    planted: bool = False,
    null: str = "permute",
    hours: float | None = None,
    seed: int = 1,
    workdir: str | None = None,
    strategy: str = "passive",
) -> State:
    """Train and gate models on data without information (or with a planted edge); the share that trade."""
    logger = get_run_logger()
    cfg = load_config(config)
    span = hours if hours is not None else cfg.training.window / HOUR_NS
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="falsify-"))
    mode = "planted" if planted else null
    try:
        run_config = config
        if mode == "permute":
            prepared = null_market_task(config, str(root), span)
            if prepared["status"] == "failed":
                return failed(prepared)
            run_config = prepared["config"]
        if planted:
            _say(logger, edge_line(config, span, seed))
        outcomes: list[Outcome] = []
        for i in range(runs):
            result = run_task(run_config, str(root), mode, i, runs, seed + i, span, strategy)
            if result["status"] == "failed":
                return failed(result)
            outcomes.append(result["outcome"])
            _say(logger, result["line"])
    finally:
        if not workdir:
            shutil.rmtree(root, ignore_errors=True)
    k = sum(o.earned() if planted else o.trades for o in outcomes)
    _say(logger, tally(outcomes, planted))
    _say(logger, evidence(k, runs, planted))
    last = summary(k, runs, planted)
    _say(logger, last)
    return Completed(message=last, data={"k": k, "n": runs, "mode": mode, "outcomes": outcomes})


def _say(logger: Any, line: str) -> None:
    """A line for the user (stdout) and for the flow run's log (the Prefect UI; stderr)."""
    print(line, flush=True)
    logger.info(line)


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    with persistent_server():
        state = falsify_flow(
            config=args.config,
            runs=args.runs,
            planted=args.planted,
            null=args.null or "permute",
            hours=args.hours,
            seed=args.seed,
            workdir=args.workdir,
            strategy=args.strategy,
            return_state=True,
        )
    raise_if_failed(state, "falsify")
    return 0


if __name__ == "__main__":
    run_main(main)
