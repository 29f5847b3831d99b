"""The report of one run: metrics.json, fills.csv, parents.csv, returns.csv, the plots as PNG and one
self-contained HTML page. parents.csv (one row per parent order, its shortfall in bps) and
returns.csv (the 1-minute returns) are what ``--compare`` tests two runs' differences on.

The page needs no network: every plot is a PNG embedded as base64, drawn with matplotlib's Agg
canvas on ``Figure`` objects (no pyplot, no global backend switch). metrics.json holds
``{"meta": ..., "metrics": ...}`` with NaN and infinities written as null (``load_metrics`` reads
them back as NaN).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from execution.comparison import Samples
from execution.quality import (
    MARKOUT_HORIZONS_S,
    Metrics,
    RunRecord,
    arrival_slippage_bps,
    by_confidence,
    by_queue,
    markout_bps,
    markout_curve,
    metrics,
    minute_marks,
    parent_shortfall_bps,
)

# The headline table: key, label, format of a finite value.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("net_pnl", "Net PnL (USDT)", "{:,.2f}"),
    ("gross_pnl", "Gross PnL (USDT)", "{:,.2f}"),
    ("fees", "Fees (USDT)", "{:,.2f}"),
    ("funding", "Funding (USDT)", "{:,.2f}"),
    ("position_end", "Position left at the end (BTC; closed out in the net PnL)", "{:.3f}"),
    ("closeout_cost", "Close-out cost of that position (USDT)", "{:,.2f}"),
    ("sharpe", "Sharpe (annualized)", "{:.2f}"),
    ("sharpe_se", "Sharpe standard error (annualized)", "{:.2f}"),
    ("sharpe_psr", "P(true Sharpe > 0) (PSR)", "{:.1%}"),
    ("sortino", "Sortino (annualized)", "{:.2f}"),
    ("max_drawdown", "Max drawdown", "{:.2%}"),
    ("arrival_slippage_mean_bps", "Arrival slippage, mean (bps)", "{:.3f}"),
    ("implementation_shortfall_bps", "Implementation shortfall (bps)", "{:.3f}"),
    ("markout_10s_bps", "Markout 10 s (bps)", "{:.3f}"),
    ("maker_ratio", "Maker ratio", "{:.1%}"),
    ("fill_rate_qty", "Fill rate (qty)", "{:.1%}"),
    ("fills", "Fills", "{:d}"),
    ("parents", "Parent orders", "{:d}"),
)

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: 2px 10px; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } img { max-width: 100%; }
</style></head><body>
<h1>{{ title }}</h1>
<h2>Headline</h2>
<table>{% for label, value in headline %}
<tr><th>{{ label }}</th><td class="num">{{ value }}</td></tr>{% endfor %}
</table>
{% for plot in plots %}<h2>{{ plot.title }}</h2>
<img alt="{{ plot.title }}" src="data:image/png;base64,{{ plot.data }}">
{% endfor %}
<h2>All metrics</h2>
<table>{% for key, value in all_metrics %}
<tr><td>{{ key }}</td><td class="num">{{ value }}</td></tr>{% endfor %}
</table>
<h2>Run</h2>
<table>{% for key, value in meta %}<tr><td>{{ key }}</td><td>{{ value }}</td></tr>{% endfor %}</table>
</body></html>
"""


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: NaN and infinities as None, dataclasses and numpy values unpacked."""
    if isinstance(obj, bool | int | str) or obj is None:
        return obj.name if isinstance(obj, enum.Enum) else obj
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, enum.Enum):
        return obj.name
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    return str(obj)


def load_samples(folder: Path) -> Samples | None:
    """The per-parent shortfalls and 1-minute returns a report folder holds (None for an older report)."""
    parents, returns = folder / "parents.csv", folder / "returns.csv"
    if not (parents.is_file() and returns.is_file()):
        return None

    def columns(path: Path) -> dict[str, list[str]]:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        names = list(rows[0]) if rows else next(csv.reader(path.open()), [])
        return {k: [r[k] for r in rows] for k in names}

    p, r = columns(parents), columns(returns)

    def floats(values: list[str]) -> np.ndarray:
        return np.array([float(v) if v else np.nan for v in values], np.float64)

    equity = floats(r["equity_start"])
    return Samples(
        shortfall_bps=floats(p["shortfall_bps"]),
        return_ts=np.array([int(v) for v in r["ts"]], np.int64),
        returns=floats(r["return"]),
        equity_start=float(equity[0]) if len(equity) else 0.0,
    )


def load_metrics(path: Path) -> Metrics:
    """The metrics dict of a metrics.json written by ``write_report`` (null read back as NaN)."""
    raw = json.loads(path.read_text())["metrics"]
    return {k: float("nan") if v is None else v for k, v in raw.items()}


def _fmt(value: float | int, spec: str = "{:.6g}") -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return spec.format(value)


def _no_data(ax: Any, what: str = "no fills") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="grey")


def _equity_figure(run: RunRecord) -> Figure:
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    eq = run.equity
    if len(eq):
        t = eq["ts"].astype("datetime64[ns]")
        top.plot(t, eq["equity"], lw=1)
        bottom.step(t, eq["position"], where="post", lw=1, color="tab:orange")
    else:
        _no_data(top, "no equity curve")
    top.set_ylabel("equity (USDT)")
    bottom.set_ylabel("position (BTC)")
    bottom.set_xlabel("time (UTC, exchange clock)")
    return fig


def _slippage_figure(run: RunRecord) -> Figure:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    slip = arrival_slippage_bps(run)
    ok = ~np.isnan(slip)
    if ok.any():
        maker = run.fills["maker"][ok]
        ax.hist([slip[ok][maker], slip[ok][~maker]], bins=40, stacked=True, label=["maker", "taker"])
        ax.axvline(0, color="black", lw=0.8)
        ax.legend()
    else:
        _no_data(ax)
    ax.set_xlabel("arrival slippage (bps, negative = gain)")
    ax.set_ylabel("fills")
    return fig


def _markout_figure(run: RunRecord) -> Figure:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    curve = markout_curve(run)
    if curve["fills"].any():
        ax.plot(curve["horizon_s"], curve["mean_bps"], marker="o", label="mean")
        ax.fill_between(curve["horizon_s"], curve["lo_bps"], curve["hi_bps"], alpha=0.25, label="95 % band")
        ax.axhline(0, color="black", lw=0.8)
        ax.legend()
    else:
        _no_data(ax)
    ax.set_xlabel("horizon (s)")
    ax.set_ylabel("markout (bps, positive = mid moved our way)")
    return fig


def _confidence_figure(run: RunRecord) -> Figure:
    fig = Figure(figsize=(9, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    rows = by_confidence(run)
    last = len(rows) - 1  # the exits: no model confidence
    labels = [
        "exits" if i == last else f"{lo:.2f}-{hi:.2f}" if math.isfinite(lo) else f"q{i + 1}"
        for i, (lo, hi) in enumerate(rows[["lo", "hi"]])
    ]
    left.bar(labels, rows["fills"])
    right.bar(labels, rows["pnl_usdt"], color=np.where(rows["pnl_usdt"] >= 0, "tab:green", "tab:red"))
    left.set_ylabel("fills")
    right.set_ylabel("PnL: 60 s markout - fees (USDT)")
    for ax in (left, right):
        ax.set_xlabel("confidence bucket")
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def _queue_figure(run: RunRecord) -> Figure:
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    rows = by_queue(run)
    labels = [f"{lo:g}+" if math.isinf(hi) else f"{lo:g}-{hi:g}" for lo, hi in rows[["lo", "hi"]]]
    x = np.arange(len(rows))
    width = 0.8 / len(MARKOUT_HORIZONS_S)
    for i, h in enumerate(MARKOUT_HORIZONS_S):
        ax.bar(x + i * width, np.nan_to_num(rows[f"markout_{h:g}s_bps"]), width, label=f"{h:g} s")
    ax.set_xticks(
        x + width * (len(MARKOUT_HORIZONS_S) - 1) / 2,
        [f"{b}\n(n={n})" for b, n in zip(labels, rows["fills"], strict=True)],
    )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("queue ahead at placement (BTC), maker fills")
    ax.set_ylabel("mean markout (bps)")
    ax.legend()
    return fig


PLOTS = (
    ("equity", "Equity and position", _equity_figure),
    ("slippage", "Arrival slippage per fill", _slippage_figure),
    ("markout_curve", "Markout curve", _markout_figure),
    ("confidence", "Fills and PnL by confidence bucket", _confidence_figure),
    ("queue", "Markout by queue position", _queue_figure),
)


def _save_png(fig: Figure, path: Path) -> str:
    """Write ``fig`` to ``path`` with the Agg canvas and return the PNG as base64 text."""
    FigureCanvasAgg(fig)  # draw with Agg whatever the process-wide backend is
    fig.savefig(path, format="png", dpi=90)
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_fills_csv(run: RunRecord, path: Path) -> None:
    """One row per fill: its record plus arrival slippage and markouts in bps (NaN as an empty field)."""
    f = run.fills
    extra = {"arrival_slippage_bps": arrival_slippage_bps(run)}
    extra |= {f"markout_{h:g}s_bps": markout_bps(run, h) for h in MARKOUT_HORIZONS_S}
    fields = list(f.dtype.names or ())
    names = [*fields, *extra]
    columns = [f[n] for n in fields] + list(extra.values())
    with path.open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(names)
        for i in range(len(f)):
            w.writerow(["" if (v := jsonable(c[i])) is None else int(v) if isinstance(v, bool) else v for c in columns])


PARENT_COLUMNS = ("tag", "ts_decision", "side", "target_qty", "filled_qty", "decision_mid", "confidence")


def write_samples(run: RunRecord, out_dir: Path) -> None:
    """parents.csv (the parents and their shortfall in bps) and returns.csv (1-minute marks, returns)."""
    p = run.parents
    shortfall = parent_shortfall_bps(run)
    with (out_dir / "parents.csv").open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow([*PARENT_COLUMNS, "shortfall_bps"])
        for i in range(len(p)):
            w.writerow(
                ["" if (v := jsonable(x)) is None else v for x in (*(p[c][i] for c in PARENT_COLUMNS), shortfall[i])]
            )
    marks, e = minute_marks(run)
    with (out_dir / "returns.csv").open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["ts", "return", "equity_start"])
        for t, r in zip(marks[1:], np.diff(e) / e[0] if len(e) else [], strict=True):
            w.writerow([int(t), float(r), float(e[0])])


def write_report(run: RunRecord, out_dir: Path) -> Path:
    """Write metrics.json, fills.csv, the plots (PNG) and report.html into ``out_dir``; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = metrics(run)
    doc = {"meta": jsonable(run.meta), "metrics": jsonable(m)}
    (out_dir / "metrics.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    write_fills_csv(run, out_dir / "fills.csv")
    write_samples(run, out_dir)

    plots = []
    for name, title, draw in PLOTS:
        plots.append({"title": title, "data": _save_png(draw(run), out_dir / f"{name}.png")})
    meta = [(k, v if isinstance(v, str) else json.dumps(jsonable(v))) for k, v in run.meta.items()]
    strategy = run.meta.get("strategy")
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(TEMPLATE)
        .render(
            title=f"Backtest report: {strategy}" if strategy else "Backtest report",
            headline=[(label, _fmt(m[key], spec)) for key, label, spec in HEADLINE],
            plots=plots,
            all_metrics=[(k, _fmt(v)) for k, v in m.items()],
            meta=meta,
        )
    )
    path = out_dir / "report.html"
    path.write_text(html)
    return path
