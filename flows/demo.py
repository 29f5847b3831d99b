"""The end-to-end demo, offline: ``python -m flows.demo`` (what ``make demo`` runs).

    1. simulate a Bybit BTC/USDT:USDT market (queue-reactive simulator, Bybit v5 messages)
    2. ingest it with the Prefect ingest flow into the DuckDB warehouse (config: warehouse.path)
    3. build the features and labels of the new data with the Prefect flow 'features'
    4. train the stacked model and register it in MLflow (flow 'train'), promote it (flow 'promote')
    5. backtest the champion with both strategies (market-order baseline, passive) on the held-out
       block the model never saw (flow 'backtest'), and compare them
    6. print the warehouse summary
    7. the live runner in paper mode for a minute (``python -m live.runner --paper --source bybit``)
       against the local Bybit v5 stand-in server fed by the simulator, through ccxt.pro
    8. a summary: where the reports, the journal, the logs and the UIs are

Each step is a real component: the same parser, book, normalizer and writer as a live ingest.
Running it again continues the market where the warehouse ends (the ingest flow's simulated
source does, warehouse.continuation), so nothing is duplicated.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import AppConfig, load_config
from core.errors import UserError
from core.timefmt import format_ns
from flows.common import parser, persistent_server, raise_if_failed
from flows.sources import build_source
from sim.presets import ABOUT, MARKETS  # the heaviest import of --help (the sim package: numba, about 0.4 CPU-s)

log = logging.getLogger(__name__)

DEFAULT_DURATION = "18h"  # the held-out block (20 %) then holds 100+ parent orders per strategy in the study
DEFAULT_MARKET = "planted"
PAPER_SECONDS = 60
DEMO_CONFIG = "demo.yaml"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.demo", __doc__)
    p.add_argument(
        "--duration", default=DEFAULT_DURATION, help=f"simulated market time to ingest (default {DEFAULT_DURATION})"
    )
    p.add_argument(
        "--market",
        choices=sorted(MARKETS),
        default=DEFAULT_MARKET,
        help=f"the simulated market (sim/presets.py; default {DEFAULT_MARKET}: an edge planted larger than "
        "the costs, so the research loop has something to find; calibrated: config.yaml's market as it is)",
    )
    p.add_argument(
        "--paper",
        type=int,
        default=PAPER_SECONDS,
        metavar="SECONDS",
        help=f"how long the champion paper-trades in step 7 (default {PAPER_SECONDS}; 0 skips the step)",
    )
    args = p.parse_args(argv)
    if args.paper < 0:
        raise UserError(f"--paper: {args.paper} is not a number of seconds (0 skips the paper step)")
    return args


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    build_source(load_config(args.config), "sim", None, args.duration)  # bad input: one line, nothing written
    return args


# --help and bad input are answered here, before Prefect and the flows load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State

from flows.backtest import backtest_flow
from flows.feature_build import features_flow
from flows.ingest import ingest_flow
from flows.promote import promote_flow
from flows.train import train_flow
from models.registry import NO_CHAMPION, version_for
from pipelines.backtest import compare_reports
from pipelines.dataset import load
from warehouse.cli import show
from warehouse.continuation import continue_sim
from warehouse.journal import default_path, log_path


def market_config(config: str, market: str) -> str:
    """The config the demo runs on: ``config`` itself for the calibrated market, else ``demo.yaml``
    beside it (git-ignored): the same file with the named market's ``sim.model`` overrides, so every
    path (warehouse, MLflow, journal, reports) resolves to the same place and the other commands
    see what the demo built. Pass ``--config demo.yaml`` to go on with the same market."""
    over = MARKETS[market]
    if not over:
        return config
    src = Path(config)
    data = yaml.safe_load(src.read_text()) or {}
    sim = data.setdefault("sim", {}) or {}
    data["sim"] = {**sim, "model": {**(sim.get("model") or {}), **over}}
    out = src.parent / DEMO_CONFIG
    out.write_text(f"# written by python -m flows.demo --market {market}: {src.name} with the {market} market\n")
    with out.open("a") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    load_config(out)  # a bad merge is one line here
    return str(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    args.config = market_config(args.config, args.market)
    cfg = load_config(args.config)
    if MARKETS[args.market]:
        print(f"market: {args.market} (sim/presets.py): {ABOUT[args.market]}; config: {args.config}")
    resume = continue_sim(cfg)  # the ingest flow continues the same way
    if resume is not None:
        print(
            f"the warehouse already holds a simulated market up to {format_ns(resume.stored_end_ns)}: "
            "continuing from there"
        )
    with persistent_server():  # the box's Prefect server when it is up, else a temporary one
        _steps(args, cfg, resume)
    return 0


def _steps(args: argparse.Namespace, cfg: AppConfig, resume: Any) -> None:
    print(f"step 1-2: simulating {args.duration} of BTC/USDT:USDT and ingesting it (Prefect flow 'ingest')")
    state = ingest_flow(source="sim", duration=args.duration, config=args.config, return_state=True)
    raise_if_failed(state, "ingest")
    print("\nstep 3: features and labels (Prefect flow 'features')")
    _run(features_flow(config=args.config, return_state=True), "feature build")
    print("\nstep 4: train, register and promote (Prefect flows 'train' and 'promote')")
    rows = labelled_rows(cfg)
    study: float | None = None  # the execution-study threshold, when the champion abstains
    if rows < cfg.training.min_rows:
        print(
            f"only {rows:,} labelled rows so far, training needs {cfg.training.min_rows:,}: "
            "run make demo again to add more market (each run adds its duration)"
        )
    else:
        trained = train_flow(config=args.config, return_state=True)
        if trained.is_failed():  # e.g. a block with moves one way only: more market fixes it
            print(f"training skipped: {trained.message} (run make demo again to add more market)")
        else:
            print(trained.message)
            print("the model's own verdict (pipelines/training.py: skill, thresholds at the real cost, confirmation):")
            print("\n".join(f"  {line}" for line in _data(trained)["verdict"]))
            _run(promote_flow(config=args.config, return_state=True), "promotion")
            m = cfg.mlflow
            print(f"MLflow: make ui, then http://127.0.0.1:5000 (experiment {m.experiment}, model {m.model_name})")
            if _has_champion(cfg):
                study = backtests(args.config, _data(trained)["test_start"])
            else:
                print(NO_CHAMPION.format(name=m.model_name))
    print("\nstep 6: the warehouse (python -m warehouse show)")
    show(cfg)
    journal = paper_minute(args.config, study, args.paper) if _has_champion(cfg) and args.paper > 0 else None
    print("\nstep 8: where everything is")
    print(f"  warehouse: {cfg.resolve(cfg.warehouse.path)}  (python -m warehouse show)")
    print(f"  reports:   {cfg.resolve(cfg.backtest.out)}/*/report.html")
    print(f"  models:    {cfg.resolve(cfg.mlflow.store)}  (make ui: http://127.0.0.1:5000)")
    if journal is not None:
        print(f"  journal:   {journal}  (python -m live.journal {journal})")
        print(f"  logs:      {log_path(cfg.resolve(cfg.live.log_dir), journal)}")
    mc = cfg.monitor
    print(
        "\nthe three UIs, side by side (each in its own terminal):"
        f"\n  dashboard:  make dashboard   -> http://{mc.dashboard_host}:{mc.dashboard_port}"
        "   (the runner's journal, execution, model, drift, health)"
        "\n  MLflow UI:  make ui          -> http://127.0.0.1:5000   (runs, metrics, the registry, backtests)"
        "\n  Prefect UI: make prefect-ui  -> http://127.0.0.1:4200   (the flow runs of this demo, schedules)"
    )
    print(
        "\nnext: make diagnose                   (warehouse, model, exchange, clock, disk, journal: all right?)"
        "\n      python -m flows.check_predictions (is the model still calibrated on data labelled since?)"
        "\n      python -m flows.backtest --help (backtest any model, any window, compare reports)"
        "\n      python -m models list           (versions, aliases, held-out AUCs, promotion notes)"
        "\n      python -m models compare 1 2    (two versions side by side, and the UI's compare page)"
        "\n      make serve                      (the scheduled retraining: features, train, promote)"
        "\n      python -m features catalog      (what every feature means)"
        "\n      python -m sim compare    (simulator vs real recordings)"
    )


STUDY_QUANTILE = 0.5  # the execution study's signals: the upper half of the champion's confidence
# what the demo shows side by side (every metric: the reports, or python -m flows.backtest --compare A B)
NAMES = ("baseline", "passive")
SHOWN = (
    "net_pnl", "sharpe", "sharpe_se", "returns_n", "orders", "parents", "fills", "maker_ratio",
    "parent_shortfall_mean_bps", "parent_shortfall_lo_bps", "parent_shortfall_hi_bps",
    "markout_1s_bps", "markout_10s_bps", "markout_60s_bps", "markout_60s_lo_bps", "markout_60s_hi_bps",
)  # fmt: skip


HISTORY_S, CATCHUP = 330, 30.0  # the stand-in's past, published 30x fast: the features warm up in 11 s


def paper_minute(config: str, study: float | None, paper_s: int = PAPER_SECONDS) -> Path:
    """Step 7: the runner in paper mode for a minute against the stand-in fed by the simulator.

    The stand-in publishes the simulated market's last five and a half minutes first (what the
    features need to warm up; on Bybit the 24/7 ingest's warehouse provides them), then runs live.
    The runner is the real command, in its own process; its status lines show what it does."""
    import subprocess
    import sys

    from standin import BackgroundStandin
    from standin.feeds import SimFeed

    cfg = load_config(config)
    print(f"\nstep 7: the live runner, paper trading for {paper_s} s against the Bybit stand-in server")
    feed = SimFeed(cfg.sim, cfg.instrument, cfg.ingest.depth, history_ns=HISTORY_S * 1_000_000_000, catchup=CATCHUP)
    src = Path(config)
    with BackgroundStandin(feed) as server:
        data = yaml.safe_load(src.read_text()) or {}
        data["bybit"] = {**data.get("bybit", {}), "rest_url": server.url, "ws_public_url": server.ws_url}
        runner_config = src.parent / ".demo-runner.yaml"
        runner_config.write_text(yaml.safe_dump(data, sort_keys=False))
        seconds = paper_s + int(HISTORY_S / CATCHUP)
        cmd = ["--paper", "--source", "bybit", "--duration", f"{seconds}s", "--config", str(runner_config)]
        if study is not None:
            cmd += ["--threshold", repr(study)]
            print(f"  the champion abstains at its thresholds: acting from confidence {study:.4f} (execution study)")
        print(f"  stand-in at {server.url}; python -m live.runner {' '.join(cmd)}")
        done = subprocess.run([sys.executable, "-m", "live.runner", *cmd], check=False)  # noqa: S603  (our own CLI)
    if done.returncode != 0:
        raise UserError(f"the paper runner failed (exit {done.returncode})")
    return default_path(cfg.resolve(cfg.live.journal_dir), "paper", "bybit")  # the account of the Bybit feed


def backtests(config: str, start: str) -> float | None:
    """Step 5: the champion on the held-out block, then the execution study, both strategies side by side.

    First the champion at its own operating thresholds: the passive strategy with its sizing against
    the baseline of market orders at a fixed 5 % of equity (what the desk would trade). Then the
    execution study, which compares execution, not sizing: both strategies act on the same signals
    (confidence from its ``STUDY_QUANTILE`` quantile on the data before the block, chosen without
    looking at it) with the same sizes. Returns the study threshold for the paper minute when the
    champion filled nothing on the block, else None (it trades at its own thresholds)."""
    print(f"\nstep 5: backtest the champion from {start} on, data it never saw (Prefect flow 'backtest')")
    own = _both(config, start, None)
    print("\nthe champion at its own thresholds (passive: its sizing; baseline: market orders, 5 % of equity)")
    print(compare_reports(own[0], own[1], keys=SHOWN, names=NAMES))
    print(
        f"\nexecution study: both strategies on the same signals (confidence >= its {STUDY_QUANTILE:.0%} quantile "
        f"before {start}) with the same sizes: execution compared, not sizing"
    )
    study_reports = _both(config, start, STUDY_QUANTILE)
    print(compare_reports(study_reports[0], study_reports[1], keys=SHOWN, names=NAMES))
    print("every figure, per report: python -m flows.backtest --compare A B; the reports:")
    print("\n".join(f"  {r}/report.html" for r in own + study_reports))
    if any(int(_fills(r)) > 0 for r in own):
        return None
    print("the champion did not trade on the held-out block: the paper minute acts at the study's threshold")
    return float(json.loads((Path(study_reports[1]) / "metrics.json").read_text())["meta"]["threshold_override"])


def _both(config: str, start: str, quantile: float | None) -> list[str]:
    reports = []
    for strategy in ("baseline", "passive"):
        state = backtest_flow(config=config, strategy=strategy, start=start, quantile=quantile, return_state=True)
        _run(state, f"{strategy} backtest")
        reports.append(str(_data(state)["report"]))
    return reports


def _fills(report: str) -> float:
    return float(json.loads((Path(report) / "metrics.json").read_text())["metrics"]["fills"])


def _data(state: State) -> dict[str, Any]:
    """What a completed flow returned (our flows return their task's dict as the state's data)."""
    data = state.result(raise_on_failure=False)
    if not isinstance(data, dict):
        raise UserError(f"flow run {state.name}: no result")
    return data


def _run(state: State, what: str) -> None:
    raise_if_failed(state, what)
    print(state.message)


def _has_champion(cfg: AppConfig) -> bool:
    return cfg.resolve(cfg.mlflow.store).exists() and version_for(cfg, "champion") is not None


def labelled_rows(cfg: AppConfig) -> int:
    """Labelled training rows in the configured window (0 when there are none yet)."""
    try:
        return len(load(cfg, cfg.training.window).ts)
    except UserError:
        return 0


if __name__ == "__main__":
    run_main(main)
