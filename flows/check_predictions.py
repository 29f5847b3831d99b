"""Is the model in production still right? ``python -m flows.check_predictions``.

    python -m flows.check_predictions                    # the champion's decisions in the paper-bybit journal
    python -m flows.check_predictions --journal logs/journal/live-bybit.sqlite --since 2026-01-06T00:00:00Z

The predictions are those the runner made (the journal's ``decision`` records of the model
version); without a journal, or when none of its decisions has a label yet, the model is applied to
the warehouse's feature rows after its training window (the window end logged on its MLflow run),
or from ``--since``. Joined to the warehouse labels at the model's horizon on the grid time, they
give the prediction distribution, the calibration per direction (reliability bins, Brier, log
loss) and the precision at the operating thresholds by confidence bucket. The report folder
(default reports/check_predictions/<time>-v<version>) holds summary.json and three PNG plots.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_time_ns
from flows.common import attempt, finish, parser, run_flow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.check_predictions", __doc__)
    p.add_argument(
        "--model", metavar="URI", help="models:/NAME@ALIAS, models:/NAME/VERSION or an alias (default: champion)"
    )
    p.add_argument(
        "--journal", metavar="PATH", help="the runner's journal (default: live.journal_dir/paper-bybit.sqlite)"
    )
    p.add_argument("--since", metavar="T", help="only predictions from this grid time on (ISO 8601 UTC or ns)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: reports/check_predictions/<time>-v<version>)")
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_config(args.config)
    if args.since:
        try:
            parse_time_ns(args.since)
        except UserError as exc:
            raise UserError(f"--since: {exc}") from None
    from models import registry  # pandas, and MLflow for an alias: after the checks that need neither

    registry.resolve(cfg, args.model)  # a missing registry or model is one line before Prefect starts
    return args


# --help and bad input are answered here, before Prefect and the pipelines load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task


@task(name="check-predictions")
def check_task(
    config: str, model: str | None, journal: str | None, since: str | None, out: str | None
) -> dict[str, Any]:
    from pipelines.check_predictions import run_check  # loaded by the run, not for --help or bad input

    since_ns, path = parse_time_ns(since) if since else None, Path(journal) if journal else None
    return attempt(lambda: run_check(load_config(config), model, path, since_ns, Path(out) if out else None))


@flow(name="check-predictions", log_prints=True)
def check_predictions_flow(
    config: str = "config.yaml",
    model: str | None = None,
    journal: str | None = None,
    since: str | None = None,
    out: str | None = None,
) -> State:
    """Score the production model's recent predictions against the labels that have arrived since."""
    return finish(check_task(config, model, journal, since, out), _said)


def _said(result: dict[str, Any]) -> str:
    s = result["summary"]
    return f"{s['model']['uri']}: {s['labelled']:,} labelled predictions from the {s['source']['kind']}"


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    state = run_flow(
        check_predictions_flow,
        "check_predictions",
        config=args.config,
        model=args.model,
        journal=args.journal,
        since=args.since,
        out=args.out,
    )
    result = cast(dict[str, Any], state.result())
    print(result["table"])
    print("\nreport: " + "\n        ".join(result["files"]))
    return 0


if __name__ == "__main__":
    run_main(main)
