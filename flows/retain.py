"""Apply the warehouse's retention as a flow: ``python -m flows.retain`` (daily from prefect.yaml).

    python -m flows.retain               # what python -m warehouse retain does, as a Prefect flow run
    python -m flows.retain --compact     # and give the disk back afterwards

A Prefect flow around warehouse.retention.run: raw messages (and, when warehouse.retention.book is
set, book rows no build still needs) older than their age go to Parquet files by day, checked before
they are deleted. ``python -m warehouse retain --dry-run`` says what a run would move.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from flows.common import attempt, finish, parser, run_flow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.retain", __doc__)
    p.add_argument("--compact", action="store_true", help="copy the database to a fresh file afterwards")
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    load_config(args.config)
    return args


# --help and bad input are answered here, before Prefect and the warehouse load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task

from warehouse import retention


@task(name="retain")
def retain_task(config: str, compact: bool) -> dict[str, Any]:
    """One retention run; a user error comes back as {'status': 'failed', ...}, not a traceback."""

    def job() -> dict[str, Any]:
        _, moved = retention.run(load_config(config), compact=compact or None)
        return {"summary": moved.summary(), "rows": sum(moved.rows.values()), "file_after": moved.file_after}

    return attempt(job)


@flow(name="retain", log_prints=True)
def retain_flow(config: str = "config.yaml", compact: bool = False) -> State:
    """Move the rows older than warehouse.retention's ages to the Parquet archive."""
    return finish(retain_task(config, compact), lambda r: r["summary"])


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    state = run_flow(retain_flow, "retain", config=args.config, compact=args.compact)
    result = state.result(raise_on_failure=False)
    print(result["summary"] if isinstance(result, dict) else state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
