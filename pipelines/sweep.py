"""Backtest sweeps: strategy parameters x windows of the stored data, one backtest per cell.

A cell is one ``simulate`` run (pipelines/backtest.py): one strategy, some config values set (any
``section.field`` of config.yaml, e.g. ``strategy.improve_confidence``, or ``threshold``: an
execution study acting from that confidence), over one window (a day by default) of the stored
feature rows. Cells share nothing but the read-only warehouse and registry, so they run anywhere:
one after another in this process, or as Prefect tasks on a Dask cluster (flows/sweep.py). A cell's
figures do not depend on where it ran (tests/test_sweep.py holds a two-worker cluster to the
serial run, figure for figure).

The summary takes each parameter set over its windows: the net PnL summed, its mean per window with
a standard error and the orders behind it; fewer than ``training.min_orders`` orders is printed as
"not enough evidence", not as a ranking.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass, replace
from typing import Annotated, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from core.config import AppConfig, format_error
from core.errors import UserError
from core.timefmt import format_ns
from execution.quality import metrics
from models import registry
from pipelines.backtest import simulate
from pipelines.dataset import load_features

THRESHOLD = "threshold"  # a cell parameter that is not a config field: the study's confidence threshold
FIGURES = ("net_pnl", "sharpe", "fills", "parents", "maker_ratio", "arrival_slippage_mean_bps", "fees")


@dataclass(frozen=True)
class Cell:
    strategy: str
    values: tuple[tuple[str, str], ...]  # (name, value as typed): ("strategy.improve_confidence", "0.6")
    start_ns: int
    end_ns: int  # exclusive

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values) or "as configured"


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``--set name=v1,v2`` items as {name: [values]} (bad input: one line)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise UserError(f"--set {item!r}: expected name=value[,value...], e.g. strategy.improve_confidence=0.6,0.7")
        if name in grid:
            raise UserError(f"--set {name}: given twice")
        grid[name] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def configured(cfg: AppConfig, values: tuple[tuple[str, str], ...]) -> tuple[AppConfig, float | None]:
    """``cfg`` with the cell's config values set (each validated as config.yaml would be), and its
    study threshold (None: the model's own thresholds)."""
    threshold = None
    sections: dict[str, dict[str, Any]] = {}
    for name, value in values:
        if name == THRESHOLD:
            try:
                threshold = float(value)
            except ValueError:
                raise UserError(f"--set threshold={value}: not a number") from None
            if not 0.0 <= threshold < 1.0:
                raise UserError(f"--set threshold={value}: a confidence in [0, 1)")
            continue
        section, _, field = name.partition(".")
        current = getattr(cfg, section, None)
        if (
            not field
            or current is None
            or not hasattr(current, "model_fields")
            or field not in type(current).model_fields
        ):
            raise UserError(f"--set {name}: no such setting (section.field of config.yaml, or threshold)")
        sections.setdefault(section, {})[field] = value
    if not sections:
        return cfg, threshold
    update: dict[str, Any] = {}
    for section, fields in sections.items():
        current = getattr(cfg, section)
        values_in: dict[str, Any] = {}
        for field, raw in fields.items():
            info = type(current).model_fields[field]
            try:  # the field's own type and bounds, as config.yaml is read (durations like 50ms, ...)
                kind: Any = Annotated[info.annotation, *info.metadata]
                values_in[field] = TypeAdapter(kind).validate_python(raw)
            except ValidationError as exc:
                raise UserError(
                    format_error(f"--set {section}.{field}={raw}", exc).replace(" (top level)", "")
                ) from None
        update[section] = current.model_copy(update=values_in)
    return cfg.model_copy(update=update), threshold


def windows(cfg: AppConfig, window_ns: int, start_ns: int | None, end_ns: int | None) -> list[tuple[int, int]]:
    """The stored feature rows cut into windows of ``window_ns`` on the clock (a day: UTC days)."""
    rows = load_features(cfg, start_ns, end_ns)
    first, last = int(rows.ts[0]), int(rows.ts[-1])
    lo = first // window_ns * window_ns
    return [(a, a + window_ns) for a in range(lo, last + 1, window_ns)]


def cells(strategies: list[str], grid: dict[str, list[str]], spans: list[tuple[int, int]]) -> list[Cell]:
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names))) if names else [()]
    return [
        Cell(s, tuple(zip(names, combo, strict=True)), a, b) for s in strategies for combo in combos for a, b in spans
    ]


def run_cell(cfg: AppConfig, version: str, cell: Cell) -> dict[str, Any]:
    """One cell's figures (or the one line that says why it has none)."""
    out: dict[str, Any] = {
        "strategy": cell.strategy,
        "params": cell.label,
        "start": format_ns(cell.start_ns),
        "end": format_ns(cell.end_ns),
    }
    try:
        c, threshold = configured(cfg, cell.values)
        model = registry.load_version(c, version)
        if threshold is not None:
            model = replace(model, threshold_up=threshold, threshold_down=threshold)
        meta = {"model_version": version, "cell": cell.label}
        run = simulate(c, cell.strategy, model, cell.start_ns, cell.end_ns - 1, meta, study=threshold is not None)
    except UserError as exc:
        return {**out, "error": str(exc)}
    m = metrics(run)
    return {**out, "decisions": int(run.meta["window"]["decisions"]), **{k: m[k] for k in FIGURES}}


def summary(results: list[dict[str, Any]], min_orders: int) -> list[dict[str, Any]]:
    """Per (strategy, parameter set): its windows' net PnL summed, the mean per window with its
    standard error, the orders (parent orders) behind it, and a verdict that needs ``min_orders``."""
    out = []
    key = operator.itemgetter("strategy", "params")
    for (strategy, params), group in itertools.groupby(sorted(results, key=key), key=key):
        done = list(group)
        ok = [r for r in done if "error" not in r]
        pnl = np.array([r["net_pnl"] for r in ok], float)
        orders = int(sum(r["parents"] for r in ok))
        se = float(pnl.std(ddof=1) / math.sqrt(pnl.size)) if pnl.size > 1 else math.nan
        if orders < min_orders:
            verdict = f"not enough evidence: {orders} orders of the {min_orders} a figure needs"
        elif not math.isfinite(se):
            verdict = "not enough evidence: one window, no error to judge the mean by"
        else:
            verdict = f"mean {pnl.mean():+,.2f} USDT per window, se {se:,.2f} (n {pnl.size} windows)"
        out.append(
            {
                "strategy": strategy,
                "params": params,
                "windows": len(done),
                "failed": len(done) - len(ok),
                "net_pnl": float(pnl.sum()),
                "mean_pnl": float(pnl.mean()) if pnl.size else math.nan,
                "se": se,
                "orders": orders,
                "fills": int(sum(r["fills"] for r in ok)),
                "verdict": verdict,
            }
        )
    return out
