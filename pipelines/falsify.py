"""Falsification: does the procedure find an edge where there is none, and find it where one is planted?

The job ``python -m flows.falsify`` runs (its docstring tells the design): null and planted markets,
training, the gate and a held-out backtest for each seed.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.config import AppConfig, SimModelConfig, load_config
from core.errors import UserError
from execution.quality import metrics
from market.sources.base import Progress
from models.metrics import NEVER
from models.result import TrainResult
from pipelines.backtest import simulate
from pipelines.dataset import TrainingData, load
from pipelines.featurebuild import build
from pipelines.progress import StepProgress
from pipelines.train import embargo_ns, fit
from sim import MarketSimulator
from sim.presets import PLANTED
from sim.simulator import CHUNK_NS
from sim.source import SimSource
from warehouse.ingest import run_ingest

log = logging.getLogger(__name__)

S = 1_000_000_000
HOUR_NS = 3600 * S
NULLS = ("permute", "market")
NULL_TARGET, PLANTED_TARGET = 0.05, 0.80
NULL_PCT, PLANTED_PCT = "5 %", "80 %"
MIN_BLOCKS = 5  # a block permutation that keeps no block in or beside its place needs a few blocks

Step = Callable[[float, str], None]


class _Part(StepProgress):
    """A stretch ``[lo, lo + width]`` of a parent progress (flows.train.fit takes a StepProgress)."""

    def __init__(self, parent: Step, lo: float, width: float) -> None:
        super().__init__("")
        self._parent, self._lo, self._width = parent, lo, width

    def __call__(self, fraction: float, info: str) -> None:
        self._parent(self._lo + self._width * min(fraction, 1.0), info)


def _threshold(result: TrainResult, direction: str) -> float:
    return float(result.model.threshold_up if direction == "up" else result.model.threshold_down)


def block_permutation(n: int, block: int, seed: int) -> np.ndarray:
    """A row order for ``n`` rows that moves whole blocks of ``block`` consecutive rows (the last one
    may be shorter), none into its own place or a neighbour's: ``labels[order]`` keeps every block of
    labels intact and puts each at least one block away from the features it belonged to."""
    if block < 1:
        raise ValueError("block must be at least 1")
    k = -(-n // block)
    if k < MIN_BLOCKS:
        raise UserError(
            f"the window holds {n:,} rows, {k} blocks of {block:,}: a block permutation needs at least "
            f"{MIN_BLOCKS} blocks (more --hours)"
        )
    rng = np.random.default_rng(seed)
    places = np.arange(k)
    while True:  # rejection: about e^-3 of permutations keep every block two places away
        perm = rng.permutation(k)
        if np.all(np.abs(perm - places) >= 2):
            break
    starts = perm * block
    return np.concatenate([np.arange(s, min(s + block, n)) for s in starts])


def permuted(data: TrainingData, block: int, seed: int) -> TrainingData:
    """``data`` with its labels (return and direction together) block-permuted against the features."""
    order = block_permutation(len(data.ts), block, seed)
    return replace(data, ret=data.ret[order], direction=data.direction[order])


def share_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of the share ``k / n`` (exact: never narrower than the binomial allows)."""
    from scipy.stats import beta

    if not 0 <= k <= n or n < 1:
        raise ValueError("need 0 <= k <= n and n >= 1")
    a = (1.0 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def summary(k: int, n: int, planted: bool) -> str:
    """The last line: the share with its interval and its target."""
    lo, hi = share_interval(k, n)
    figure = f"{100 * k / n:.1f} % (95 % CI {100 * lo:.1f}-{100 * hi:.1f} %"
    if planted:
        return (
            f"pipeline traded and earned on {k} of {n} planted markets: {figure}, target >= {100 * PLANTED_TARGET:g} %)"
        )
    return f"gate let {k} of {n} null models trade: {figure}, target <= {100 * NULL_TARGET:g} %)"


def tally(outcomes: Sequence[Outcome], planted: bool) -> str:
    """What lies behind the share: per direction, held-out skill and thresholds; the runs' PnL evidence."""
    dirs = [(o.aucs[d][1] > 0.5, o.thresholds[d] < NEVER) for o in outcomes for d in o.aucs]
    skill, threshold = sum(a for a, _ in dirs), sum(b for _, b in dirs)
    head = (
        f"held-out AUC interval above 0.5 in {skill} of {len(dirs)} directions"
        + ("" if planted else " (a calibrated 95 % interval: about 2.5 % of null directions)")
        + f", a threshold in {threshold} of {len(dirs)}"
    )
    traded = [o for o in outcomes if o.trades]
    thin = sum(o.orders < o.min_orders for o in traded if o.earned())
    tail = f"; {len(traded)} of {len(outcomes)} models let trade, {sum(o.earned() for o in traded)} earned net of fees"
    need = f"{outcomes[0].min_orders}" if outcomes else "enough"
    return head + tail + (f" ({thin} over fewer than {need} orders: not enough evidence)" if thin else "")


def evidence(k: int, n: int, planted: bool) -> str:
    """Whether the interval, not only the share, meets the target."""
    lo, hi = share_interval(k, n)
    target = PLANTED_TARGET if planted else NULL_TARGET
    meets = k / n >= target if planted else k / n <= target
    sure = lo >= target if planted else hi <= target
    if sure:
        return f"the whole 95 % interval meets the target ({n} runs)"
    verdict = "meets" if meets else "misses"
    runs = f"{n} run{'' if n == 1 else 's'}"
    return f"the share {verdict} the target, its 95 % interval reaches across it: {runs} are not enough evidence"


@dataclass
class Outcome:
    """One run: held-out figures per direction, the gate, the held-out backtest."""

    seed: int
    aucs: dict[str, tuple[float, float, float]]  # direction -> (auc, lo, hi) of the stack, held out
    thresholds: dict[str, float]
    trades: bool
    min_orders: int  # fewer held-out orders than this are not enough evidence (training.min_orders)
    net_pnl: float = 0.0
    orders: int = 0
    fills: int = 0
    backtested: bool = False
    notes: list[str] = field(default_factory=list)

    def earned(self) -> bool:
        return self.trades and self.net_pnl > 0.0

    def line(self, i: int, n: int) -> str:
        parts = [f"run {i + 1}/{n} seed {self.seed}:"]
        for d, (auc, lo, hi) in self.aucs.items():
            th = self.thresholds[d]
            parts.append(f"{d} AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] threshold {'never' if th >= NEVER else f'{th:.4f}'};")
        parts.append(f"trades: {'yes' if self.trades else 'no'};")
        if self.backtested:
            thin = " (not enough evidence)" if self.orders < self.min_orders else ""
            parts.append(
                f"held-out net PnL {self.net_pnl:+,.2f} USDT over {self.orders} orders, {self.fills} fills{thin}"
            )
        else:
            parts.append("held-out net PnL +0.00 USDT over 0 orders (no threshold: nothing to trade)")
        return " ".join(parts + self.notes)


# ---- the temporary project ---------------------------------------------------------------------


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def project(
    config: Path, root: Path, hours: float, seed: int | None = None, model: dict[str, Any] | None = None
) -> Path:
    """Write ``root/config.yaml``: the user's config with its warehouse, MLflow store and reports in
    ``root``, the training window ``hours`` long and (optionally) another simulator seed and model."""
    raw = yaml.safe_load(config.read_text()) or {}
    over: dict[str, Any] = {
        "warehouse": {"path": "wh/l2.duckdb", "spool_dir": "wh/spool", "store_raw": False},
        "mlflow": {"store": "mlruns/mlflow.db", "artifacts": "mlruns/artifacts"},
        "backtest": {"out": "reports"},
        "training": {"window": f"{round(hours * 3600)}s"},
    }
    if seed is not None:
        over["sim"] = {"seed": seed}
    if model:
        over.setdefault("sim", {})["model"] = model
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(_merge(raw, over), sort_keys=False))
    load_config(path)  # a bad merge is one line here, not later
    return path


def span_ns(cfg: AppConfig) -> int:
    """Simulated time for one training window of labelled rows: the features' warm-up and the
    longest label horizon come on top."""
    return int(cfg.training.window + embargo_ns(cfg) + 60 * S)


def planted_edge(cfg: AppConfig, hours: float) -> tuple[float, float, float, int]:
    """The mean direction-signed mid move (bp) over the label horizon after a metaorder is first
    seen, with its 95 % t interval and the number of metaorders: (mean, lo, hi, n).

    The simulator's metaorders are hidden state (``MarketSimulator.metaorders``); read after every 10 s chunk,
    a new one is seen 0-10 s after it started, the delay a model reading the trades needs anyway.
    Overlapping metaorders share moves, so the interval is a little narrow."""
    from scipy.stats import t as student

    sim = MarketSimulator(cfg.sim, cfg.instrument, cfg.ingest.depth)
    chunks = int(hours * HOUR_NS // CHUNK_NS)
    ahead = max(1, math.ceil(cfg.training.horizon / CHUNK_NS))
    log_mid = np.empty(chunks)
    starts: list[tuple[int, int]] = []
    active: set[tuple[int, int]] = set()
    for i in range(chunks):
        for _ in sim.batches(CHUNK_NS, max_batch=1 << 30):
            pass
        bid, ask = sim.best()
        log_mid[i] = math.log((bid + ask) / 2)
        ends, signs = sim.metaorders()
        now = {(int(e), int(g)) for e, g in zip(ends, signs, strict=True) if e}
        starts += [(i, sign) for _, sign in now - active]
        active = now
    moves = np.array([g * (log_mid[i + ahead] - log_mid[i]) for i, g in starts if i + ahead < chunks]) * 1e4
    if moves.size < 2:
        return float("nan"), float("nan"), float("nan"), int(moves.size)
    mean, half = (
        float(moves.mean()),
        float(student.ppf(0.975, moves.size - 1) * moves.std(ddof=1) / math.sqrt(moves.size)),
    )
    return mean, mean - half, mean + half, int(moves.size)


def simulate_market(cfg: AppConfig, step: Step | None = None) -> None:
    """Simulate ``span_ns(cfg)`` of the configured market into the project's warehouse, with features and labels."""
    marker = cfg.resolve(cfg.warehouse.path).parent / "market.json"
    key = json.dumps({"sim": cfg.sim.model_dump(mode="json"), "span": span_ns(cfg)}, sort_keys=True)
    if marker.exists() and marker.read_text() == key:
        return  # --workdir: the same market is already there
    shutil.rmtree(marker.parent, ignore_errors=True)

    def ingest_progress(p: Progress, counts: Counter[str]) -> None:
        if step is not None and p.total:
            step(0.6 * p.done / p.total, f"simulating {cfg.training.window / HOUR_NS:g} h")

    source = SimSource(cfg.sim, cfg.instrument, cfg.ingest.depth, span_ns(cfg))
    result = run_ingest(source, cfg, "falsify", on_progress=ingest_progress)
    if result.status != "completed":  # stopped (a signal) or failed: never build on, or keep, half a market
        raise UserError(f"simulating the market: {result.error or result.status}")
    build(cfg, on_progress=(lambda f, info: step(0.6 + 0.4 * f, info)) if step is not None else None)
    marker.write_text(key)


# ---- one run -----------------------------------------------------------------------------------


def gate_and_backtest(
    cfg: AppConfig, data: TrainingData, seed: int, strategy: str, step: Step, engine: bool = True
) -> Outcome:
    """Train on ``data``, apply the gate (``TrainResult.trades``: the single definition, the one
    promotion requires too), and backtest the held-out block when a threshold lets the model trade.
    ``engine``: training measures the strategy's cost on the warehouse's market (not for permuted
    labels, which belong to no market: there at the nominal fees, confirmed on the labels)."""
    result = fit(cfg, data, _Part(step, 0.0, 0.8), engine=engine)
    out = Outcome(
        seed=seed,
        aucs={d: (s["stack"].auc, s["stack"].auc_lo, s["stack"].auc_hi) for d, s in result.scores.items()},
        thresholds={d: _threshold(result, d) for d in result.scores},
        trades=result.trades,
        min_orders=cfg.training.min_orders,
    )
    for o in result.operating.values():
        log.info("seed %d %s", seed, o.why)  # why each direction trades or not (pipelines/operating.py)
    if min(out.thresholds.values()) >= NEVER:
        return out  # the model places no order: its PnL is zero without running the engine
    step(0.85, f"backtesting the held-out block with the {strategy} strategy")
    start = int(data.ts[len(data.ts) - result.rows["test"]])
    meta = {"model_uri": f"falsify seed {seed}", "model_version": "-", "feature_set": data.feature_set}
    run = simulate(cfg, strategy, result.model, start, data.end_ns, meta)
    m = metrics(run)
    out.net_pnl, out.orders, out.fills, out.backtested = float(m["net_pnl"]), int(m["orders"]), int(m["fills"]), True
    return out


def permute_run(config: Path, seed: int, strategy: str, step: Step) -> Outcome:
    """One null run: the project's market with its labels block-permuted by ``seed``."""
    cfg = load_config(config)
    data = load(cfg, cfg.training.window, min_rows=cfg.training.min_rows)
    block = math.ceil(embargo_ns(cfg) / cfg.features.grid)  # label horizon + feature look-back, in rows
    return gate_and_backtest(cfg, permuted(data, block, seed), seed, strategy, step, engine=False)


def market_run(
    config: Path, root: Path, seed: int, model: dict[str, Any], hours: float, strategy: str, step: Step
) -> Outcome:
    """One run on a market of its own: simulated with ``seed`` and the model overrides, trained, gated, backtested."""
    folder = root / f"run-{seed}"
    try:
        cfg = load_config(project(config, folder, hours, seed, model))
        simulate_market(cfg, lambda f, info: step(0.5 * f, info))
        data = load(cfg, cfg.training.window, min_rows=cfg.training.min_rows)
        return gate_and_backtest(cfg, data, seed, strategy, lambda f, info: step(0.5 + 0.5 * f, info))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def edge_line(config: str, hours: float, seed: int) -> str:
    """The planted edge of the first run's market, measured on its first hours (at most two)."""
    cfg = load_config(config)
    sim = cfg.sim.model_copy(update={"seed": seed, "model": cfg.sim.model.model_copy(update=_parsed(PLANTED))})
    measured = min(hours, 2.0)
    mean, lo, hi, n = planted_edge(cfg.model_copy(update={"sim": sim}), measured)
    cost = 2 * cfg.instrument.maker_fee * 1e4
    return (
        f"planted edge (seed {seed}, {measured:g} h): the mid moves {mean:+.1f} bp [{lo:+.1f}, {hi:+.1f}] over the "
        f"{cfg.training.horizon / S:g} s after a metaorder is first seen (n = {n} metaorders); the maker round trip "
        f"is {cost:.1f} bp"
    )


def _parsed(model: dict[str, Any]) -> dict[str, Any]:
    """Model overrides as config values (durations in ns), through the config's own validation."""
    return SimModelConfig.model_validate(model).model_dump(include=set(model))
