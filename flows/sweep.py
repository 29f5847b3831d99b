"""Backtest sweeps, strategy parameters x windows, on Dask when asked: ``python -m flows.sweep``.

    python -m flows.sweep --set threshold=0.55,0.6,0.7 --window 1d          # the champion, day by day
    python -m flows.sweep --strategy passive --strategy baseline --set strategy.improve_confidence=0.6,0.8
    python -m flows.sweep --set threshold=0.6 --cluster local --workers 2    # a Dask cluster on this box
    python -m flows.sweep --set threshold=0.6 --cluster tcp://10.0.0.5:8786  # a running Dask scheduler

Every cell (a strategy, one value of each ``--set``, one window of the stored feature rows) is one
backtest through the matching engine (pipelines/sweep.py), a Prefect task. Without ``--cluster``
(or ``compute.cluster`` in config.yaml) the cells run one after another in this process; with it
they run on Dask through Prefect's task runner (prefect-dask): ``local`` starts a cluster of
``--workers`` processes for the run, an address joins a running one whose workers run this project
and reach the same warehouse and registry paths. A cell's figures are the same wherever it ran.

The run prints every cell and, per strategy and parameter set, its windows summed (net PnL, the mean
per window with its standard error, the orders behind it: fewer than ``training.min_orders`` is "not
enough evidence"), and writes both tables as CSV under ``backtest.out``/sweep-<time>/.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_duration_ns, parse_time_ns
from execution.backtest import STRATEGIES  # the heaviest import of --help (numba: about 0.4 CPU-s), for its names
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.sweep", __doc__)
    p.add_argument("--strategy", action="append", metavar="NAME", help=f"{' | '.join(sorted(STRATEGIES))} (repeat)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a config value to sweep (section.field, e.g. strategy.improve_confidence) or threshold (repeat)",
    )
    p.add_argument("--window", default="1d", help="each cell's span of the stored feature rows (default 1d)")
    p.add_argument("--model", metavar="URI", help="models:/NAME/VERSION, an alias or a version (default: champion)")
    p.add_argument("--start", help="first grid time (ISO 8601 UTC or ns); default: the first stored feature row")
    p.add_argument("--end", help="last grid time; default: the last stored feature row")
    add_cluster_arguments(p)
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_config(args.config)
    strategies = tuple(args.strategy or ["passive"])
    for s in strategies:
        if s not in STRATEGIES:
            raise UserError(f"--strategy {s}: one of {', '.join(sorted(STRATEGIES))}")
    from pipelines.sweep import configured, parse_grid  # heavy (the backtest, pandas): after the light checks

    grid = parse_grid(args.set)
    for name, values in grid.items():
        for value in values:
            configured(cfg, ((name, value),))  # every value is checked before anything runs
    try:
        if parse_duration_ns(args.window) <= 0:
            raise ValueError("not positive")
        for name in ("start", "end"):
            if getattr(args, name):
                parse_time_ns(getattr(args, name))
    except (ValueError, UserError) as exc:
        raise UserError(f"--window/--start/--end: {exc}") from None
    cluster_of(args, cfg)
    from models import registry

    registry.resolve(cfg, args.model)  # a missing registry or model is one line before anything starts
    return args


# --help and bad input are answered here, before Prefect and the pipelines load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task

from models import registry


@task(name="backtest-cell")
def cell_task(config: str, version: str, cell: Any) -> dict[str, Any]:
    from pipelines.sweep import run_cell

    return run_cell(load_config(config), version, cell)


@flow(name="sweep", log_prints=True)
def sweep_flow(
    config: str = "config.yaml",
    strategies: tuple[str, ...] = ("passive",),
    grid: dict[str, list[str]] | None = None,
    window: str = "1d",
    model: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> State:
    """Backtest every (strategy, parameter set, window) cell on the flow's task runner."""
    from pipelines import sweep

    cfg = load_config(config)

    def plan() -> dict[str, Any]:
        version, uri = registry.resolve(cfg, model)
        spans = sweep.windows(
            cfg, parse_duration_ns(window), parse_time_ns(start) if start else None, parse_time_ns(end) if end else None
        )
        return {"version": version, "uri": uri, "cells": sweep.cells(list(strategies), grid or {}, spans)}

    planned = attempt(plan)
    if planned["status"] == "failed":
        return finish(planned, str)
    cells = planned["cells"]
    print(f"sweep: {len(cells)} cells ({len(strategies)} strategies x parameter sets x windows) with {planned['uri']}")
    t0 = time.monotonic()
    futures = cell_task.map([config] * len(cells), [planned["version"]] * len(cells), cells)
    rows = []
    for i, f in enumerate(futures, 1):
        row = f.result()
        rows.append(row)
        figure = row.get("error") or f"net PnL {row['net_pnl']:+,.2f}, {row['parents']} orders, {row['fills']} fills"
        print(f"  cell {i}/{len(cells)}: {row['strategy']} {row['params']} {row['start']}: {figure}")
    summary = sweep.summary(rows, cfg.training.min_orders)
    folder = cfg.resolve(cfg.backtest.out) / f"sweep-{time.strftime('%Y%m%dT%H%M%S')}"
    _write(folder / "cells.csv", rows)
    _write(folder / "summary.csv", summary)
    lines = [f"  {s['strategy']} {s['params']}: net PnL {s['net_pnl']:+,.2f} over {s['windows']} windows; "
             f"{s['verdict']}" for s in summary]  # fmt: skip
    result: dict[str, Any] = {
        "cells": rows,
        "summary": summary,
        "folder": str(folder),
        "seconds": time.monotonic() - t0,
        "text": f"{len(cells)} cells in {time.monotonic() - t0:.1f} s; tables in {folder}\n" + "\n".join(lines),
    }
    return finish({"status": "completed", **result}, lambda r: r["text"])


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        w.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    from pipelines.sweep import parse_grid

    cluster, workers = cluster_of(args, load_config(args.config))
    strategies, grid = tuple(args.strategy or ["passive"]), parse_grid(args.set)
    runner = task_runner(cluster, workers)
    params: dict[str, Any] = {"config": args.config, "strategies": strategies, "grid": grid, "window": args.window,
                              "model": args.model, "start": args.start, "end": args.end}  # fmt: skip
    with shared_server() if cluster is not None else contextlib.nullcontext():
        state = run_flow(sweep_flow.with_options(task_runner=runner), "sweep", **params)
    print(state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
