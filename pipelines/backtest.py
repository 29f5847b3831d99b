"""Backtest a registered model over warehouse data: the strategy through the matching engine, its report and MLflow run.

``python -m flows.backtest`` is the Prefect wrapper; this is the job it runs, and what promotion,
falsification and bench call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import format_ns
from execution.backtest import Signals, blocks_of, engine_config, make_strategy, replay
from execution.comparison import check_targets, compare
from execution.engine import Engine
from execution.quality import RunRecord, metrics
from execution.report import load_metrics, load_samples, write_report
from features import NAMES
from features.grid import VOL_FEATURE, sigma_1s
from models import registry
from models.model import StackedModel
from pipelines.dataset import load_features
from pipelines.progress import StepProgress
from pipelines.replay import load_market

log = logging.getLogger(__name__)
HOUR_NS = 3600 * 1_000_000_000


def signals(model: StackedModel, ts: np.ndarray, x: np.ndarray) -> Signals:
    """The model's calibrated probabilities and signals for feature rows ``x`` at grid times ``ts``."""
    proba = model.predict_proba(model.take(x, NAMES))
    sigma = sigma_1s(x[:, NAMES.index(VOL_FEATURE)])
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
