"""Build features and labels for what the warehouse holds: ``python -m flows.feature_build``.

    python -m flows.feature_build                                  # everything new since the last run
    python -m flows.feature_build --start 2026-01-05T00:00:00Z --end 2026-01-05T06:00:00Z
    python -m flows.feature_build --no-labels                      # features only

Incremental and idempotent: a run continues where the last one stopped, re-running never
duplicates a row. A Prefect flow around pipelines.featurebuild.build (deployed from prefect.yaml).
Export with ``python -m warehouse export --table features|labels``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from prefect import State, flow, task

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_time_ns
from flows.common import attempt, finish, parser, run_flow
from pipelines.progress import StepProgress

log = logging.getLogger(__name__)


def _time(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_time_ns(text)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None


@task(name="build-features")
def build_task(config: str, start: str | None, end: str | None, labels: bool) -> dict[str, Any]:
    """One build; a user error comes back as {'status': 'failed', ...}, not a traceback."""

    def job() -> dict[str, Any]:
        cfg = load_config(config)
        from pipelines.featurebuild import build  # loaded by the run, not for --help or bad input

        with StepProgress("features") as progress:
            result = build(cfg, _time(start, "--start"), _time(end, "--end"), on_progress=progress, labels=labels)
        return {
            "summary": result.summary(),
            "feature_set": result.feature_set,
            "label_set": result.label_set,
            "feature_rows": result.feature_rows,
            "label_rows": result.label_rows,
        }

    return attempt(job)


@flow(name="features", log_prints=True)
def features_flow(
    config: str = "config.yaml", start: str | None = None, end: str | None = None, labels: bool = True
) -> State:
    """Build the features (and labels) that are missing for the warehouse's data."""
    return finish(build_task(config, start, end, labels), lambda r: r["summary"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.feature_build", __doc__)
    p.add_argument("--start", help="first grid time (ISO 8601 UTC or ns); default: where the last run stopped")
    p.add_argument("--end", help="last data time to use (ISO 8601 UTC or ns); default: the newest data")
    p.add_argument("--no-labels", action="store_true", help="build features only")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    load_config(args.config)  # bad input costs one line, not a flow run
    _time(args.start, "--start")
    _time(args.end, "--end")
    state = run_flow(
        features_flow, "feature build", config=args.config, start=args.start, end=args.end, labels=not args.no_labels
    )
    result = state.result(raise_on_failure=False)
    print(result["summary"] if isinstance(result, dict) else state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
