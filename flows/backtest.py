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
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from prefect import State, flow, task
from prefect.states import Completed

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import run_main, setup_logging
from core.config import AppConfig, load_config
from core.errors import UserError
from core.timefmt import format_ns, parse_time_ns
from execution.backtest import STRATEGIES, Signals, blocks_of, engine_config, make_strategy, replay
from execution.comparison import check_targets, compare
from execution.engine import Engine
from execution.quality import RunRecord, metrics
from execution.report import load_metrics, load_samples, write_report
from features import NAMES
from flows.common import failed, parser, raise_if_failed
from flows.progress import StepProgress
from models import registry
from models.model import StackedModel
from pipelines.dataset import load_features
from pipelines.replay import load_market

log = logging.getLogger(__name__)
HOUR_NS = 3600 * 1_000_000_000
VOL_FEATURE, VOL_WINDOW_S = "rv_300s_bps", 300.0


def signals(model: StackedModel, ts: np.ndarray, x: np.ndarray) -> Signals:
    """The model's calibrated probabilities and signals for feature rows ``x`` at grid times ``ts``."""
    proba = model.predict_proba(model.take(x, NAMES))
    sigma = x[:, NAMES.index(VOL_FEATURE)] * 1e-4 / math.sqrt(VOL_WINDOW_S)
    return Signals(ts, proba[:, 0], proba[:, 1], model.signal(proba), sigma)


def check_study_signal(direction: np.ndarray, threshold: float) -> None:
    """Refuse an execution study whose threshold selects nothing: every decision signals (or none
    does), so the 'comparison' would be one parent order held to the end."""
    n = len(direction)
    signalled = int(np.count_nonzero(direction))
    if signalled in (0, n):  # the threshold selects nothing
        what = "no decision signals" if signalled == 0 else "every decision signals"
        raise UserError(
            f"not enough evidence: degenerate signal at threshold {threshold:.6g}: {what} ({signalled:,} of "
            f"{n:,}); an execution study needs a threshold that leaves a non-constant signal"
        )


def simulate(
    cfg: AppConfig,
    strategy: str,
    model: StackedModel,
    start_ns: int | None,
    end_ns: int | None,
    meta: dict[str, Any],
    progress: StepProgress | None = None,
    study: bool = False,
) -> RunRecord:
    """One backtest run in memory (no files, no MLflow): promotion and tests use it directly.

    ``study``: an execution study (the model's thresholds overridden): the signal must not be
    constant, and either strategy trades ``strategy.baseline_fraction`` of the starting equity."""
    rows = load_features(cfg, start_ns, end_ns)
    if model.feature_set != rows.feature_set:
        raise UserError(
            f"feature-set mismatch: the model was trained on {model.feature_set}, the warehouse has {rows.feature_set}"
        )
    sig = signals(model, rows.ts, rows.x)
    if study:
        check_study_signal(sig.direction, model.threshold_up)
    lo, hi = int(rows.ts[0]) - 1_000_000_000, int(rows.ts[-1]) + model.horizon_ns + 60_000_000_000
    levels = cfg.features.levels
    blocks = blocks_of(lambda a, b: load_market(cfg, a, b, levels), lo, hi, HOUR_NS)
    engine = Engine(engine_config(cfg), levels, sample_ns=cfg.backtest.sample, cash=cfg.backtest.equity)
    window = {"start": format_ns(int(rows.ts[0])), "end": format_ns(int(rows.ts[-1])), "decisions": len(rows.ts)}
    try:
        return replay(
            engine,
            blocks,
            sig,
            make_strategy(
                strategy,
                cfg,
                model.horizon_ns,
                model.tau,
                study_notional=cfg.strategy.baseline_fraction * cfg.backtest.equity if study else 0.0,
            ),
            cfg.strategy.decision_delay,
            progress,
            {**meta, "window": window, "signals": int(np.count_nonzero(sig.direction))},
        )
    except ValueError as exc:
        raise UserError(f"backtest: {exc}") from None


def study_threshold(cfg: AppConfig, model: StackedModel, before_ns: int, quantile: float) -> float:
    """The ``quantile`` of the model's confidence (the larger of P(up), P(down)) on the stored feature
    rows before ``before_ns``: a fixed operating point for an execution study, set without looking at
    the data the study runs on."""
    rows = load_features(cfg, None, before_ns - 1)
    confidence = model.predict_proba(model.take(rows.x, NAMES)).max(axis=1)
    threshold = float(np.quantile(confidence, quantile))
    if not np.any(confidence > threshold) or threshold <= float(confidence.min()):
        raise UserError(
            f"not enough evidence: degenerate signal: the model's confidence before {format_ns(before_ns)} is "
            f"{'constant' if np.ptp(confidence) == 0 else 'too coarse'} ({threshold:.6g} at its {quantile:g} quantile "
            f"over {len(confidence):,} rows), so no threshold there separates signals from the rest"
        )
    return threshold


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def run_backtest(
    cfg: AppConfig,
    strategy: str,
    model_uri: str | None,
    start_ns: int | None,
    end_ns: int | None,
    out: Path | None,
    threshold: float | None = None,
    quantile: float | None = None,
) -> dict[str, Any]:
    version, uri = registry.resolve(cfg, model_uri)
    model = registry.load_version(cfg, version)
    meta: dict[str, Any] = {"model_uri": uri, "model_version": version, "feature_set": model.feature_set}
    if quantile is not None:
        if start_ns is None:
            raise UserError("--threshold-quantile needs --start: the quantile is taken on the data before it")
        threshold = study_threshold(cfg, model, start_ns, quantile)
        meta["threshold_quantile"] = quantile
    if threshold is not None:  # an execution study: a fixed confidence instead of the EV-chosen thresholds
        model = replace(model, threshold_up=threshold, threshold_down=threshold)
        meta["threshold_override"] = threshold
    with StepProgress(f"backtest {strategy}") as progress:
        run = simulate(cfg, strategy, model, start_ns, end_ns, meta, progress, study=threshold is not None)
    window = run.meta["window"]
    name = f"{strategy}-v{version}-{window['start']}" + (f"-p{threshold:.4f}" if threshold is not None else "")
    folder = out or cfg.resolve(cfg.backtest.out) / _slug(name)
    html = write_report(run, folder)
    m = metrics(run)
    run_id = _log(cfg, run, m, folder, version)
    summary = (
        f"{strategy} with {uri} over {window['start']} .. {window['end']}: net PnL {m['net_pnl']:+,.2f} USDT, "
        f"Sharpe {m['sharpe']:.2f}, {m['fills']} fills, maker ratio {m['maker_ratio']:.2f}, "
        f"arrival slippage {m['arrival_slippage_mean_bps']:+.3f} bps; report {html}"
    )
    return {"status": "completed", "summary": summary, "report": str(folder), "run_id": run_id, "metrics": m}


def _log(cfg: AppConfig, run: RunRecord, m: dict[str, float | int], folder: Path, version: str) -> str:
    """Log the run to the backtests experiment, named and linked to its model version, and put its
    headline figures on that version's tags (``backtest_passive/net_pnl``; ``study_passive/...``
    for an execution study with a fixed threshold)."""
    import mlflow

    client = registry.connect(cfg, create=True)
    name = f"{cfg.mlflow.experiment}-backtests"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        exp_id = exp.experiment_id
    else:  # its artifacts beside the models' in the configured store (MLflow's default is ./mlruns of the cwd)
        exp_id = client.create_experiment(name, artifact_location=registry.store(cfg).artifacts_uri + "/backtests")
    strategy, window = str(run.meta["strategy"]), run.meta["window"]
    study = run.meta.get("threshold_override")
    label = f"{'study' if study is not None else 'backtest'}_{strategy}"
    span = f"{registry.minute(window['start'])}..{registry.minute(window['end'])}"
    title = f"v{version} {strategy} {span}" + (f" study p>={study:.4f}" if study is not None else "")
    model_name = cfg.mlflow.model_name
    training = str(client.get_model_version(model_name, version).run_id or "")
    tags = {
        "strategy": strategy,
        "model_version": version,
        "training_run_id": training,
        "window_start": str(window["start"]),
        "window_end": str(window["end"]),
        "git_commit": registry.git_commit(),
        "mlflow.note.content": _note(client, model_name, version, training, run, m),
    }
    with mlflow.start_run(experiment_id=exp_id, run_name=title) as active:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                "strategy": strategy,
                "model_uri": str(run.meta["model_uri"]),
                **{f"window_{k}": v for k, v in window.items()},
                **{f"engine.{k}": v for k, v in run.meta["engine"].items() if not isinstance(v, dict)},
            }
        )
        mlflow.log_metrics({k: float(v) for k, v in m.items() if np.isfinite(v)})
        mlflow.log_artifacts(str(folder), "report")
        run_id = str(active.info.run_id)
    figures = {"net_pnl": ".2f", "sharpe": ".3f", "fills": ".0f", "arrival_slippage_mean_bps": ".3f"}
    headline = {k.replace("_mean", ""): _fmt(m[k], spec) for k, spec in figures.items() if np.isfinite(m[k])}
    headline |= {"run_id": run_id, "window": span}
    if study is not None:
        headline["threshold"] = f"{study:.4f}"
    for key, value in headline.items():
        client.set_model_version_tag(model_name, version, f"{label}/{key}", value)
    return run_id


def _note(client: Any, model_name: str, version: str, training: str, run: RunRecord, m: dict[str, float | int]) -> str:
    """The backtest run's description (Markdown in the UI): what was replayed, the links back to the
    model version and its training run, the headline figures."""
    window = run.meta["window"]
    exp = client.get_run(training).info.experiment_id if training else ""
    link = f"[training run](#/experiments/{exp}/runs/{training})" if training else "no training run"
    study = run.meta.get("threshold_override")
    rule = (
        f"an execution study: acting from a calibrated confidence >= {study:.4f}, not the model's thresholds"
        if study is not None
        else "acting on the model's own net-of-fee thresholds"
    )
    return (
        f"Backtest of [{model_name} version {version}](#/models/{model_name}/versions/{version}) ({link}) with "
        f"the **{run.meta['strategy']}** strategy over {window['start']} .. {window['end']} "
        f"({int(window['decisions']):,} decisions), {rule}.\n\n"
        f"Net PnL {_fmt(m['net_pnl'], '+,.2f')} USDT, Sharpe {_fmt(m['sharpe'], '.2f')}, {int(m['fills']):,} fills, "
        f"arrival slippage {_fmt(m['arrival_slippage_mean_bps'], '+.3f')} bps. The report: `report/report.html`."
    )


def _fmt(value: float | int, spec: str) -> str:
    return format(float(value), spec) if np.isfinite(value) else "-"


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
    try:
        cfg = load_config(config)
        return run_backtest(
            cfg,
            strategy,
            model,
            parse_time_ns(start) if start else None,
            parse_time_ns(end) if end else None,
            Path(out) if out else None,
            threshold,
            quantile,
        )
    except UserError as exc:
        return {"status": "failed", "error": str(exc), "exit_code": exc.exit_code}


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
    result = backtest_task(config, strategy, model, start, end, out, threshold, quantile)
    if result["status"] == "failed":
        return failed(result)
    print(result["summary"])
    return Completed(message=result["summary"], data=result)


def _metrics_file(path: str) -> Path:
    p = Path(path)
    p = p / "metrics.json" if p.is_dir() else p
    if not p.is_file():
        raise UserError(f"--compare: {path}: no metrics.json there (a backtest report folder or its metrics.json)")
    return p


def compare_reports(a: str, b: str, keys: Sequence[str] | None = None, names: tuple[str, str] | None = None) -> str:
    """Two reports side by side (every metric, or ``keys``), then the user's targets: met, not met or
    not decidable, each with its sample size and interval."""
    files = [_metrics_file(p) for p in (a, b)]
    ma, mb = (load_metrics(f) for f in files)
    names = names or (Path(a).name or a, Path(b).name or b)
    sa, sb = (load_samples(f.parent) for f in files)
    samples = (sa, sb) if sa is not None and sb is not None else None
    return compare(ma, mb, names, keys) + "\n" + check_targets(ma, mb, names, samples).text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.backtest", __doc__)
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="passive", help="default: passive")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.compare:
        print(compare_reports(*args.compare))
        return 0
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
    registry.resolve(cfg, args.model)  # a missing registry or model is one line before Prefect starts
    state = backtest_flow(
        config=args.config,
        strategy=args.strategy,
        model=args.model,
        start=args.start,
        end=args.end,
        out=args.out,
        threshold=args.threshold,
        quantile=args.threshold_quantile,
        return_state=True,
    )
    raise_if_failed(state, "backtest")
    print(state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
