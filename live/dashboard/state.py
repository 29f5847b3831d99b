"""One snapshot of everything the dashboard shows, as JSON: the journal, the registry, the warehouse.

Each source is read in its own way so that none can hold up the runner or the ingest: the journal
incrementally through a read-only WAL reader (journal_view.py), the MLflow registry and the
warehouse at most every ``TTL_S`` seconds, the warehouse with a short read-only open that gives up
(and says "busy") when the ingest holds it. A source that fails shows its error on the page; the
others still show.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import format_ns
from live.dashboard.journal_view import JournalState, JournalView
from models.model import StackedModel

log = logging.getLogger(__name__)

TTL_S = 15.0
NS = 1_000_000_000
TOP_FEATURES = 12
HEADLINE = ("auc", "log_loss", "brier", "precision", "fpr", "ic")


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Cached:
    """A value re-read at most every ``ttl_s``; a failed read keeps the last value and its error."""

    def __init__(self, read: Any, ttl_s: float = TTL_S) -> None:
        self.read, self.ttl_s = read, ttl_s
        self.value: Any = None
        self.error = ""
        self.at = -math.inf

    def get(self) -> Any:
        if time.monotonic() - self.at >= self.ttl_s:
            self.at = time.monotonic()
            try:
                self.value, self.error = self.read(), ""
            except UserError as exc:
                self.error = str(exc)
            except Exception as exc:  # a source down must not take the page down
                log.warning("dashboard: %s", exc)
                self.error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return self.value


class Snapshot:
    def __init__(self, cfg: AppConfig, journal: Path) -> None:
        self.cfg, self.journal_path = cfg, journal
        self.journal = JournalView(journal)
        self.registry = Cached(self._registry)
        self.warehouse = Cached(self._warehouse)
        self._models: dict[str, StackedModel] = {}

    # -- sources ---------------------------------------------------------------------------------

    def _registry(self) -> dict[str, Any]:
        from models import registry

        client = registry.connect(self.cfg)
        out: dict[str, Any] = {}
        for alias in ("champion", "challenger"):
            version = registry.version_for(self.cfg, alias)
            if version is None:
                continue
            mv = client.get_model_version(self.cfg.mlflow.model_name, version)
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            out[alias] = {
                "version": version,
                "created": int(mv.creation_timestamp) * 1_000_000,
                "description": mv.description or "",
                "metrics": {f"{d}_{k}": metrics.get(f"{d}_stack_{k}") for d in ("up", "down") for k in HEADLINE},
            }
        return out

    def model(self, version: str | None) -> StackedModel | None:
        if version is None:
            return None
        if version not in self._models:
            from models import registry

            try:
                self._models[version] = registry.load_version(self.cfg, version)
            except UserError:
                return None
        return self._models[version]

    def _warehouse(self) -> dict[str, Any]:
        from warehouse.db import reading

        path = self.cfg.resolve(self.cfg.warehouse.path)
        if not path.exists():
            return {"status": "missing", "detail": f"{path}: no warehouse yet"}
        try:
            with reading(path, timeout_s=0.5) as con:
                row = con.execute("SELECT max(ts_exchange_ns), count(*) FROM snapshots_1s").fetchone()
        except UserError as exc:  # locked by the ingest (or not a warehouse): try again later
            return {"status": "busy" if "locked" in str(exc) else "error", "detail": str(exc)}
        newest = int(row[0]) if row and row[0] is not None else None
        return {"status": "ok", "newest": newest, "seconds": int(row[1]) if row else 0}

    # -- the snapshot ----------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        now = time.time_ns()
        st = self.journal.refresh()
        reg = self.registry.get() or {}
        version = st.model_version or (reg.get("champion") or {}).get("version")
        model = self.model(version)
        out = {
            "now": format_ns(now),
            "refresh_s": self.cfg.monitor.dashboard_refresh / NS,
            "journal": {"path": str(self.journal_path), "error": self.journal.error, "sessions": st.sessions},
            "runner": self._runner(st, now),
            "account": self._account(st),
            "series": {
                "t": [format_ns(t) for t, _, _ in st.series],
                "equity": [e for _, e, _ in st.series],
                "position": [p for _, _, p in st.series],
                "slippage_t": [format_ns(t) for t, _ in st.slippage],
                "slippage_bps": [v for _, v in st.slippage],
            },
            "orders": sorted(
                ({**o, "ts": format_ns(o["ts"])} for o in st.open_orders.values()), key=lambda o: -int(o["id"])
            ),
            "fills": [{**f, "ts": format_ns(f["ts"])} for f in st.fills],
            "execution": self._execution(st),
            "model": self._model(reg, version, model, now, st.thresholds),
            "confidence": self._confidence(st, model),
            "drift": self._drift(st),
            "health": self._health(st, now),
            "alerts": {
                "active": [{**a, "ts": format_ns(a["ts"])} for a in st.active_alerts.values()],
                "recent": [{**a, "ts": format_ns(a["ts"])} for a in st.alerts],
            },
        }
        return dict(clean(out))

    def _runner(self, st: JournalState, now: int) -> dict[str, Any]:
        h = st.health or {}
        interval = self.cfg.live.status_interval
        open_session = st.start is not None and st.stopped is None
        # a running runner commits at least every status interval (its health record), so the
        # journal's files tell whether it is alive: a killed one leaves a session without a stop
        written = self.journal.written_ns()
        silent_s = (now - written) / NS if written else math.nan
        running = open_session and silent_s <= 3 * interval / NS + 5
        return {
            "running": running,
            "not_responding": open_session and not running,
            "silent_s": silent_s,
            "mode": (st.start or {}).get("mode"),
            "source": (st.start or {}).get("source"),
            "strategy": (st.start or {}).get("strategy"),
            "session": (st.start or {}).get("session"),
            "started": format_ns(st.start_ts) if st.start_ts else None,
            "stopped": (st.stopped or {}).get("reason"),
            "risk": h.get("risk") or (st.account or {}).get("risk") or "n/a",
            "halted": h.get("halted") or (st.halts[-1]["reason"] if st.halts and not running else ""),
            "status_interval_s": interval / NS,
        }

    def _account(self, st: JournalState) -> dict[str, Any]:
        a = st.account or {}
        equity = a.get("equity")
        start = st.first_equity
        return {
            "ts": format_ns(st.account_ts) if st.account_ts else None,
            "equity": equity,
            "pnl": equity - start if equity is not None and start is not None else None,
            "position": a.get("position"),
            "cash": a.get("cash"),
            "fees": a.get("fees"),
            "funding": a.get("funding"),
            "peak": a.get("peak"),
        }

    def _execution(self, st: JournalState) -> dict[str, Any]:
        e = dict((st.account or {}).get("execution") or {})
        return {
            **e,
            "fills": len(st.fills),
            "thresholds": {"slippage_bps": self.cfg.live.slippage_alert_bps},
            "horizons": [k.removeprefix("markout_").removesuffix("_bps") for k in e if k.startswith("markout_")],
        }

    def _model(
        self, reg: dict[str, Any], version: str | None, model: StackedModel | None, now: int,
        thresholds: dict[str, float] | None,
    ) -> dict[str, Any]:  # fmt: skip
        out: dict[str, Any] = {"error": self.registry.error, "in_use": version}
        for alias in ("champion", "challenger"):
            if alias in reg:
                r = reg[alias]
                out[alias] = {**r, "age_h": (now - r["created"]) / 3600e9, "created": format_ns(r["created"])}
        out["max_age_h"] = self.cfg.live.max_model_age / 3600e9
        if model is not None:
            gains = np.zeros(len(model.feature_names))
            for stack in (model.up, model.down):
                g = np.asarray(stack.lgb_model.feature_importance("gain"), np.float64)
                gains[: g.size] += g / max(g.sum(), 1e-12)
            order = np.argsort(-gains)[:TOP_FEATURES]
            out["top_features"] = [[model.feature_names[i], float(gains[i] / 2)] for i in order]
            out["thresholds"] = thresholds or {"up": model.threshold_up, "down": model.threshold_down}
        return out

    def _confidence(self, st: JournalState, model: StackedModel | None) -> dict[str, Any]:
        p = np.array([(u, d) for _, u, d, _ in st.decisions], np.float64).reshape(-1, 2)
        profile = model.profile if model is not None else None
        tops = [np.quantile(p, 0.995, axis=0).max()] if p.size else []
        if profile is not None:
            tops.append(float(profile.p_quantiles[:, -2].max()))
        top = max([0.05, *tops])
        edges = np.linspace(0.0, top, 31)
        out: dict[str, Any] = {"edges": edges.tolist(), "n_live": int(p.shape[0]), "decisions": st.decision_count}
        for k, name in enumerate(("up", "down")):
            if p.size:
                counts, _ = np.histogram(np.clip(p[:, k], 0.0, top), edges)
                out[f"live_{name}"] = (counts / p.shape[0]).tolist()
            if profile is not None:
                out[f"train_{name}"] = profile.confidence_share(k, edges).tolist()
        out["signals"] = int(sum(1 for *_, s in st.decisions if s != 0))
        return out

    def _drift(self, st: JournalState) -> dict[str, Any]:
        d = st.drift or {}
        psi = d.get("psi") or {}
        return {
            "ts": format_ns(d["ts"]) if "ts" in d else None,
            "rows": d.get("rows", 0),
            "min_rows": self.cfg.monitor.drift_min,
            "ignore": list(self.cfg.monitor.drift_ignore),
            "threshold": self.cfg.monitor.drift_psi,
            "psi": [[k, v] for k, v in psi.items()],
        }

    def _health(self, st: JournalState, now: int) -> dict[str, Any]:
        h = dict(st.health or {})
        wh = dict(self.warehouse.get() or {"status": "unknown"})
        if wh.get("newest"):
            wh["age_s"] = (now - int(wh["newest"])) / NS
            wh["newest"] = format_ns(int(wh["newest"]))
        if self.warehouse.error:
            wh = {"status": "error", "detail": self.warehouse.error}
        return {
            **h,
            "ts": format_ns(st.health_ts) if st.health_ts else None,
            "data_ts": format_ns(int(h["data_ts"])) if h.get("data_ts", 0) > 0 else None,
            "feed_total": dict(st.feed),
            "halts": len(st.halts),
            "stale_alert_s": self.cfg.monitor.stale_data / NS,
            "warehouse": wh,
        }
