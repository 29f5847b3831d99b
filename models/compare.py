"""Two registered model versions side by side (``python -m models compare A B``), and the registry list.

Everything comes from the store: the version's tags (window, data source, the stack's key
figures, the latest backtest per strategy: flows/backtest.py writes them) and its training run
(every learner's held-out metrics with their bootstrap intervals, thresholds, run name). The last
line is the MLflow UI's compare page for the two training runs (``python -m models ui``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import format_ns
from models import registry, ui
from models.metrics import metric_key

DIRECTIONS = ("up", "down")
RESULTS = ("backtest_", "study_")  # version-tag prefixes of backtests: model thresholds, execution studies
FIGURES = (
    ("net_pnl", "net PnL", "{:+,.2f} USDT"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("fills", "fills", "{:,.0f}"),
    ("arrival_slippage_bps", "arrival slippage", "{:+.3f} bps"),
    ("threshold", "acting from p >=", "{:.4f}"),
)


@dataclass
class Version:
    version: str
    aliases: list[str]
    tags: dict[str, str]
    created_ns: int
    description: str
    run_id: str
    run_name: str
    experiment_id: str
    metrics: dict[str, float]
    params: dict[str, str]

    def figure(self, key: str) -> float:
        """A held-out figure by its metric name (the run's metrics, else the version's tag)."""
        if key in self.metrics:
            return float(self.metrics[key])
        try:
            return float(self.tags[key])
        except (KeyError, ValueError):
            return math.nan

    def backtests(self) -> dict[str, dict[str, str]]:
        """``{"passive": {"net_pnl": "12.3", "run_id": ...}, "passive study": {...}}`` from the tags."""
        out: dict[str, dict[str, str]] = {}
        for key, value in self.tags.items():
            head, _, figure = key.partition("/")
            for prefix in RESULTS:
                if head.startswith(prefix) and figure:
                    label = head.removeprefix(prefix) + (" study" if prefix == "study_" else "")
                    out.setdefault(label, {})[figure] = value
        return dict(sorted(out.items()))


def describe(cfg: AppConfig, client: Any, spec: str) -> Version:
    """One version (a number, an alias or a models:/ URI) as the store has it; unknown is one line."""
    from mlflow.exceptions import MlflowException

    name = cfg.mlflow.model_name
    version, _ = registry.resolve(cfg, spec)
    try:
        mv = client.get_model_version(name, version)
    except MlflowException:
        raise UserError(f"{name} has no version {version} (python -m models list)") from None
    run = client.get_run(mv.run_id) if mv.run_id else None
    return Version(
        version=str(mv.version),
        aliases=list(mv.aliases),
        tags=dict(mv.tags),
        created_ns=int(mv.creation_timestamp) * 1_000_000,
        description=mv.description or "",
        run_id=str(mv.run_id or ""),
        run_name=run.info.run_name if run else "",
        experiment_id=str(run.info.experiment_id) if run else "",
        metrics=dict(run.data.metrics) if run else {},
        params=dict(run.data.params) if run else {},
    )


def compare_url(cfg: AppConfig, a: Version, b: Version) -> str:
    """The MLflow UI's compare page for the two versions' training runs (MLflow 3's hash route)."""
    runs = json.dumps([v.run_id for v in (a, b)], separators=(",", ":"))
    experiments = json.dumps(sorted({v.experiment_id for v in (a, b)}), separators=(",", ":"))
    return f"{ui.url(cfg)}/#/compare-runs?runs={quote(runs)}&experiments={quote(experiments)}"


def _num(v: float, fmt: str = "{:.4f}") -> str:
    return fmt.format(v) if math.isfinite(v) else "-"


def _auc(v: Version, d: str, learner: str = "stack") -> str:
    auc, lo, hi = (v.figure(metric_key(d, learner, f)) for f in ("auc", "auc_lo", "auc_hi"))
    return f"{_num(auc, '{:.3f}')} [{_num(lo, '{:.3f}')}, {_num(hi, '{:.3f}')}]" if math.isfinite(lo) else _num(auc)


def _threshold(v: Version, d: str) -> str:
    t = v.figure(metric_key(d, "stack", "threshold"))
    if not math.isfinite(t):
        t = float(v.params.get(f"threshold_{d}", "nan"))
    return "never (no net-of-fee edge)" if t > 1.0 else _num(t)


def _precision(v: Version, d: str) -> str:
    signals = v.figure(metric_key(d, "stack", "signals"))
    return f"{_num(v.figure(metric_key(d, 'stack', 'precision')), '{:.3f}')} ({_num(signals, '{:,.0f}')} signals)"


def _base_aucs(v: Version, d: str) -> str:
    return " / ".join(_num(v.figure(metric_key(d, learner, "auc")), "{:.3f}") for learner in ("lgb", "xgb"))


def _window(v: Version) -> str:
    start, end = (v.tags.get(f"window_{k}", v.params.get(f"window_{k}", "?")) for k in ("start", "end"))
    return f"{registry.minute(start)} .. {registry.minute(end)}"


def _held_out(v: Version) -> str:
    return f"{registry.minute(v.params.get('window_test_start', '?'))} ({_num(v.figure('rows/test'), '{:,.0f}')} rows)"


DESCRIBED: tuple[tuple[str, Callable[[Version], str]], ...] = (
    ("aliases", lambda v: ", ".join(v.aliases) or "-"),
    ("training run", lambda v: v.run_name or v.run_id or "-"),
    ("registered", lambda v: format_ns(v.created_ns)[:16].replace("T", " ") + " UTC"),
    ("window", _window),
    ("held out from", _held_out),
    ("data source", lambda v: v.tags.get("data_source", "unknown")),
    ("feature set", lambda v: v.tags.get("feature_set", v.params.get("feature_set", "?"))),
    ("label set / horizon", lambda v: f"{v.params.get('label_set', '?')} / {v.params.get('horizon_s', '?')} s"),
)
HELD_OUT = (("log_loss", "log loss", "{:+.4f}"), ("brier", "Brier", "{:+.4f}"))


def rows(a: Version, b: Version) -> list[tuple[str, str, str, str]]:
    """(label, A, B, B - A) lines of the side-by-side table; a line with neither value is a heading."""
    out: list[tuple[str, str, str, str]] = [(label, get(a), get(b), "") for label, get in DESCRIBED]

    def delta(key: str, fmt: str) -> str:
        fa, fb = a.figure(key), b.figure(key)
        return _num(fb - fa, fmt) if math.isfinite(fa) and math.isfinite(fb) else ""

    out += [(f"{d}: threshold", _threshold(a, d), _threshold(b, d), "") for d in DIRECTIONS]
    out.append(("held out (stack; AUC with its 95 % block-bootstrap interval)", "", "", ""))
    for d in DIRECTIONS:
        out.append((f"  {d} AUC", _auc(a, d), _auc(b, d), delta(metric_key(d, "stack", "auc"), "{:+.3f}")))
        for figure, label, fmt in HELD_OUT:
            key = metric_key(d, "stack", figure)
            out.append((f"  {d} {label}", _num(a.figure(key)), _num(b.figure(key)), delta(key, fmt)))
        key = metric_key(d, "stack", "precision")
        out.append((f"  {d} precision", _precision(a, d), _precision(b, d), delta(key, "{:+.3f}")))
        out.append((f"  {d} AUC lgb / xgb", _base_aucs(a, d), _base_aucs(b, d), ""))
    out.append(("latest backtests", "", "", ""))
    ba, bb = a.backtests(), b.backtests()
    if not ba and not bb:
        out.append(("  (none yet: python -m flows.backtest --model N)", "", "", ""))
    for label in sorted(set(ba) | set(bb)):
        for figure, name, fmt in FIGURES:
            va, vb = (float(x.get(label, {}).get(figure, "nan")) for x in (ba, bb))
            if math.isfinite(va) or math.isfinite(vb):
                out.append((f"  {label} {name}", _num(va, fmt), _num(vb, fmt), ""))
        wa, wb = (x.get(label, {}).get("window", "-") for x in (ba, bb))
        out.append((f"  {label} window", wa, wb, ""))
    return out


def render(cfg: AppConfig, a: Version, b: Version) -> str:
    """The table, then the link to the UI's compare page."""
    table = [("", f"v{a.version}", f"v{b.version}", "B - A"), *rows(a, b)]
    w = [max(len(r[i]) for r in table) for i in range(4)]
    w[0] = min(w[0], 34)
    lines = []
    for label, fa, fb, delta in table:
        if not fa and not fb:
            lines.append(label)  # a heading
            continue
        lines.append(f"{label:<{w[0]}}  {fa:<{w[1]}}  {fb:<{w[2]}}  {delta}".rstrip())
    name = cfg.mlflow.model_name
    lines += [
        "",
        f"{name} v{a.version} vs v{b.version} in the MLflow UI (python -m models ui):",
        compare_url(cfg, a, b),
    ]
    return "\n".join(lines)


def listing(cfg: AppConfig, client: Any) -> list[str]:
    """One line per registered version: aliases, window, data source, feature set, held-out AUCs."""
    name = cfg.mlflow.model_name
    found = client.search_model_versions(f"name = '{name}'")
    if not found:
        return [f"{name}: no versions registered yet (python -m flows.train)"]
    out = []
    for mv in sorted(found, key=lambda v: int(v.version)):
        v = describe(cfg, client, str(mv.version))  # search results leave the aliases out
        window = f"{registry.minute(v.tags.get('window_start', '?'))}..{registry.minute(v.tags.get('window_end', '?'))}"
        aucs = "  ".join(f"AUC {d} {_auc(v, d)}" for d in DIRECTIONS)
        out.append(
            f"{name} v{v.version:<4} {','.join(v.aliases) or '-':<20} {window}  "
            f"{v.tags.get('data_source', '?'):<5} fs {v.tags.get('feature_set', '?')[:8]}  {aucs}"
        )
        if v.description:
            out.append(f"      {v.description}")
    return out
