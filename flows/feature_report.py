"""The feature report: how each feature ranks forward returns, on simulated and on real data.

    python -m flows.feature_report                      # 6 h of simulator + the real recordings
    python -m flows.feature_report --sim 2h --grid 1s --out reports/feature-report

Builds its own warehouses under ``--out`` with the real components (the simulator through the
ingest, the recordings in ../shared/data through the file import, then the feature build),
computes the univariate information coefficient (Spearman) of every feature against the forward
mid return of every label horizon, and writes ``feature-ic.md``, ``feature-ic.csv`` and a heatmap
``feature-ic.png``. The real recordings are minutes long: their figures are noisy.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_duration_ns
from flows.common import parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.feature_report", __doc__)
    p.add_argument("--sim", default="6h", help="simulated market time (default 6h)")
    p.add_argument("--grid", default="250ms", help="sampling grid of the report (default 250ms)")
    # default: pipelines.feature_report.DEFAULT_REAL, which --help does not load (the features, numba)
    p.add_argument("--real", metavar="DIR", help="the Binance recordings (../shared/data/...)")
    p.add_argument(
        "--out", default="reports/feature-report", metavar="DIR", help="output folder (warehouses, table, plot)"
    )
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before the report's pipeline loads: bad input costs one line."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    load_config(args.config)
    try:
        sim_ns, grid_ns = parse_duration_ns(args.sim), parse_duration_ns(args.grid)
    except ValueError as exc:
        raise UserError(f"--sim / --grid: {exc}") from None
    if sim_ns < 600 * 1_000_000_000 or grid_ns <= 0:
        raise UserError("--sim must be at least 10m (5 min of it warm up the windows) and --grid positive")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: not a directory")
    return args


# --help and bad input are answered here, before the features and the simulator load (core.cli.answer_early)
answer_early(__name__, checked)

from pipelines.feature_report import DEFAULT_REAL, real, simulated, summary, write


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    cfg = load_config(args.config)
    sim_ns, grid_ns, out = parse_duration_ns(args.sim), parse_duration_ns(args.grid), Path(args.out)
    datasets = [simulated(cfg, out, sim_ns, grid_ns)]
    got = real(cfg, out, Path(args.real) if args.real is not None else DEFAULT_REAL, grid_ns)
    if got is not None:
        datasets.append(got)
    files = write(datasets, cfg, out)
    print(summary(datasets, cfg))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    run_main(main)
