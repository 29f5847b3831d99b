"""Backtest a strategy with a registered model over warehouse data: ``python -m flows.backtest``.

    python -m flows.backtest --strategy passive                 # the champion, all stored features
    python -m flows.backtest --strategy baseline --model models:/btc-l2/3 --start 2026-01-06T00:00:00Z
    python -m flows.backtest --compare reports/backtest/baseline-v3 reports/backtest/passive-v3
    python -m flows.backtest --strategy passive --threshold 0.3   # an execution study: act from p >= 0.3
    python -m flows.backtest --start T --threshold-quantile 0.99  # ... from its 99th percentile before T

The model's predictions on the stored feature rows drive the strategy through the matching engine
(queue position, latency, fees, funding: execution/). The run writes a report folder (metrics.json,
fills.csv, report.html with plots) and logs it to MLflow as ``v7 passive 2026-01-05T12:00..2026-01-06T00:00``,
tagged with the model version, its training run, the strategy and the window, its description
linking both; the model version gets the headline figures as tags (``backtest_passive/net_pnl``,
``backtest_passive/run_id``; ``study_passive/...`` for a fixed ``--threshold``). ``--compare A B``
prints two reports side by side and, per target (slippage -50 %, Sharpe +30 %, profitable), whether
the second meets it against the first: MET, NOT MET or not decidable, with the sample sizes and
intervals (execution/comparison.py).

An execution study (``--threshold`` / ``--threshold-quantile``) compares execution, not sizing:
either strategy trades the same size on the same signals (``strategy.baseline_fraction`` of the
starting equity). A threshold at which the signal is constant (every decision signals, or none
does; the quantile of a constant confidence) is refused in one line: such a "study" is one parent
order held to the end, and says nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_time_ns
from execution.backtest import STRATEGIES  # the heaviest import of --help (numba: about 0.4 CPU-s), for its names
from execution.loader import load_strategy
from flows.common import attempt, finish, parser, run_flow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.backtest", __doc__)
    p.add_argument(
        "--strategy",
        default="passive",
        metavar="NAME",
        help=f"{' | '.join(sorted(STRATEGIES))} | module:Name, a Strategy subclass (docs/strategies.md)",
    )
    p.add_argument(
        "--model", metavar="URI", help="models:/NAME@ALIAS, models:/NAME/VERSION or an alias (default: champion)"
    )
    p.add_argument("--start", help="first grid time (ISO 8601 UTC or ns); default: the first stored feature row")
    p.add_argument("--end", help="last grid time; default: the last stored feature row")
    p.add_argument("--out", metavar="DIR", help="report folder (default: backtest.out/<strategy>-v<version>-<start>)")
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="execution studies only: act on a calibrated confidence >= P instead of the model's EV-chosen thresholds",
    )
    p.add_argument(
        "--threshold-quantile",
        type=float,
        metavar="Q",
        help="execution studies: P = the Q-quantile of the model's confidence on the data before --start",
    )
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="print two reports side by side and exit")
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.compare:  # two reports side by side: no config, nothing to check
        return args
    cfg = load_config(args.config)
    for name in ("start", "end"):
        value = getattr(args, name)
        if value:
            try:
                parse_time_ns(value)
            except (ValueError, UserError) as exc:
                raise UserError(f"--{name}: {exc}") from None
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise UserError(f"--threshold: {args.threshold} is not a probability in (0, 1)")
    q = args.threshold_quantile
    if q is not None and (not 0.0 < q < 1.0 or args.threshold is not None or not args.start):
        raise UserError("--threshold-quantile: a number in (0, 1), with --start and without --threshold")
    load_strategy(args.strategy)  # a bad strategy name is one line before Prefect starts
    from models import registry  # pandas, and MLflow for an alias: after the checks that need neither

    registry.resolve(cfg, args.model)  # a missing registry or model is one line before Prefect starts
    return args


# --help and bad input are answered here, before Prefect and the pipelines load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task


@task(name="backtest")
def backtest_task(
    config: str,
    strategy: str,
    model: str | None,
    start: str | None,
    end: str | None,
    out: str | None,
    threshold: float | None = None,
    quantile: float | None = None,
) -> dict[str, Any]:
    from pipelines.backtest import run_backtest  # loaded by the run, not for --help or bad input

    return attempt(
        lambda: run_backtest(
            load_config(config),
            strategy,
            model,
            parse_time_ns(start) if start else None,
            parse_time_ns(end) if end else None,
            Path(out) if out else None,
            threshold,
            quantile,
        )
    )


@flow(name="backtest", log_prints=True)
def backtest_flow(
    config: str = "config.yaml",
    strategy: str = "passive",
    model: str | None = None,
    start: str | None = None,
    end: str | None = None,
    out: str | None = None,
    threshold: float | None = None,
    quantile: float | None = None,
) -> State:
    """Replay warehouse data through the matching engine with a registered model and a strategy."""
    return finish(backtest_task(config, strategy, model, start, end, out, threshold, quantile), lambda r: r["summary"])


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    if args.compare:
        from pipelines.backtest import compare_reports

        print(compare_reports(*args.compare))
        return 0
    state = run_flow(
        backtest_flow,
        "backtest",
        config=args.config,
        strategy=args.strategy,
        model=args.model,
        start=args.start,
        end=args.end,
        out=args.out,
        threshold=args.threshold,
        quantile=args.threshold_quantile,
    )
    print(state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
