"""The backtest reports of a model version, found in ``backtest.out`` and served by name only.

``python -m flows.backtest`` writes one folder per run (``metrics.json``, ``report.html``: a
self-contained page, its plots embedded). ``metrics.json``'s ``meta`` names the model version and
feature set the run used (execution/report.py), so the reports of the model in use are those whose
meta says so. The page links to ``/backtests/<folder>``; the server answers only a folder name it
listed itself, never a path built from the request.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADLINE = ("net_pnl", "sharpe", "arrival_slippage_mean_bps", "markout_10s_bps", "maker_ratio", "fills")
MAX_REPORTS = 500  # folders looked at (the newest)


@dataclass(frozen=True)
class Backtest:
    name: str  # the folder's name
    version: str
    feature_set: str
    strategy: str
    start: str
    end: str
    written: float  # the metrics file's mtime
    metrics: dict[str, float | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "url": f"/backtests/{self.name}", "version": self.version, "strategy": self.strategy,
            "start": self.start, "end": self.end, "metrics": self.metrics,
        }  # fmt: skip


def scan(out: Path) -> list[Backtest]:
    """Every readable report folder in ``out`` that has a report.html, the newest first."""
    if not out.is_dir():
        return []
    found = []
    for m in out.glob("*/metrics.json"):
        try:
            found.append((m.stat().st_mtime, m))
        except OSError:
            continue
    found.sort(reverse=True)
    reports = []
    for written, m in found[:MAX_REPORTS]:
        if not (m.parent / "report.html").is_file():
            continue
        try:
            doc = json.loads(m.read_text())
            meta, metrics = doc.get("meta") or {}, doc.get("metrics") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(meta, dict) or not isinstance(metrics, dict):
            continue
        window = meta.get("window") or {}
        reports.append(
            Backtest(
                m.parent.name,
                str(meta.get("model_version", "")),
                str(meta.get("feature_set", "")),
                str(meta.get("strategy", "")),
                str(window.get("start", "")),
                str(window.get("end", "")),
                written,
                {k: _number(metrics.get(k)) for k in HEADLINE},
            )
        )
    return reports


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def of_model(reports: list[Backtest], version: str | None, feature_set: str | None) -> list[Backtest]:
    """The reports of model ``version`` (and of its feature set, when known)."""
    if version is None:
        return []
    return [r for r in reports if r.version == version and (not feature_set or r.feature_set in ("", feature_set))]


def report_file(out: Path, reports: list[Backtest], name: str) -> Path | None:
    """The report.html of the listed folder ``name``; None for anything else (a path, ``..``)."""
    if name not in {r.name for r in reports}:
        return None
    path = (out / name / "report.html").resolve()
    return path if path.is_file() and path.parent.parent == out.resolve() else None
