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
from live.dashboard import reports
from live.dashboard.journal_view import JournalState, JournalView
from live.dashboard.selection import Selection, select
from live.dashboard.trading import trading
from models.model import StackedModel
from warehouse.journal import journals

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
    """The page's state; ``journal`` pins one journal, else the page picks one of ``live.journal_dir``."""

    def __init__(self, cfg: AppConfig, journal: Path | None = None) -> None:
        self.cfg, self.pinned = cfg, journal
        self.journal_dir = cfg.resolve(cfg.live.journal_dir)
        self.views: dict[Path, JournalView] = {}
        self.registry = Cached(self._registry)
        self.warehouse = Cached(self._warehouse)
        self.backtest_dir = cfg.resolve(cfg.backtest.out)
        self.backtests = Cached(lambda: reports.scan(self.backtest_dir))
        self._models: dict[str, StackedModel] = {}

    # -- which journal -----------------------------------------------------------------------------

    def journals(self) -> list[Path]:
        """The journals the page offers: the pinned one, else every one in ``live.journal_dir``, newest first."""
        if self.pinned is not None:
            return [self.pinned]
        return journals(self.journal_dir)

    def journal(self, name: str | None) -> Path:
        """The journal called ``name`` (its file name without .sqlite) among those offered; else the newest."""
        offered = self.journals()
        match = [p for p in offered if p.stem == name]
        if match:
            return match[0]
        return offered[0] if offered else self.journal_dir / "paper-bybit.sqlite"

    def view(self, path: Path) -> JournalView:
        if path not in self.views:
            self.views[path] = JournalView(path, self.cfg.live.markouts)
        return self.views[path]

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
                # held-out figures are named up_stack/auc (models.metrics.metric_key); up_stack_auc before
                "metrics": {
                    f"{d}_{k}": metrics.get(f"{d}_stack/{k}", metrics.get(f"{d}_stack_{k}"))
                    for d in ("up", "down")
                    for k in HEADLINE
                },
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

    def build(
        self, journal: str | None = None, session: str | None = None, range_key: str | None = None
    ) -> dict[str, Any]:
        """The page's state for the journal called ``journal`` (default: the newest), the session
        ``session`` (an id, "all"; default: the newest) and the range ``range_key`` (selection.RANGES)."""
        now = time.time_ns()
        path = self.journal(journal)
        view = self.view(path)
        st = view.refresh()
        sel = select(st.sessions, session, range_key)
        reg = self.registry.get() or {}
        version = st.model_version or (reg.get("champion") or {}).get("version")
        model = self.model(version)
        runner = self._runner(st, now, view)
        account = self._account(st)
        trade = trading(st, sel, float(account.get("funding") or 0.0))
        rt = trade["round_trips"]
        account |= {k: rt[k] for k in ("realized", "unrealized", "mark", "mark_ts")}
        pos, equity, cash = account.get("position"), account.get("equity"), account.get("cash")
        if pos and abs(pos) > 1e-12 and equity is not None and cash is not None and math.isfinite(rt["mark"]):
            # the split of the equity card at the mid the account record was marked at (equity = cash +
            # position x mid), not the newest book's: realized + unrealized = equity - start, also while
            # the runner runs and the market has moved since its last account record
            account["unrealized"] = rt["unrealized"] + pos * ((equity - cash) / pos - rt["mark"])
        if not runner["running"] and abs(account.get("position") or 0.0) > 1e-9:
            runner["holding"] = {"position": account["position"], "mark": rt["mark"], "unrealized": rt["unrealized"]}
        out = {
            "now": format_ns(now),
            "refresh_s": self.cfg.monitor.dashboard_refresh / NS,
            "journal": {
                "path": str(path),
                "name": path.stem,
                "error": view.error,
                "sessions": len(st.sessions),
                "pinned": self.pinned is not None,
            },
            "journals": [{"name": p.stem, "path": str(p)} for p in self.journals()],
            "sessions": [s.as_dict() for s in reversed(st.sessions)],
            "selection": sel.as_dict(),
            "runner": runner,
            "account": account,
            "series": {
                "t": [format_ns(t) for t, _, _, s in st.series if sel.has(t, s)],
                "equity": [e for t, e, _, s in st.series if sel.has(t, s)],
                "position": [p for t, _, p, s in st.series if sel.has(t, s)],
                "slippage_t": [format_ns(t) for t, _, s in st.slippage if sel.has(t, s)],
                "slippage_bps": [v for t, v, s in st.slippage if sel.has(t, s)],
            },
            "orders": [
                {"id": o.id, "side": o.side, "price": o.price, "qty": o.qty, "filled": o.filled, "ts": format_ns(o.ts)}
                for o in sorted(st.orders.open(), key=lambda o: -o.id)
            ],
            **trade,
            "execution": self._execution(st),
            "model": self._model(reg, version, model, now, st.thresholds),
            "confidence": self._confidence(st, model, sel),
            "drift": self._drift(st, model, runner),
            "health": self._health(st, now, runner),
            "alerts": {
                "active": [{**a, "ts": format_ns(a["ts"])} for a in st.active_alerts.values()],
                "recent": [{**a, "ts": format_ns(a["ts"])} for a in st.alerts],
            },
        }
        out["model"]["backtests"] = self._backtests(version, model)
        return dict(clean(out))

    def _backtests(self, version: str | None, model: StackedModel | None) -> dict[str, Any]:
        found = reports.of_model(self.backtests.get() or [], version, model.feature_set if model else None)
        return {"dir": str(self.backtest_dir), "error": self.backtests.error, "reports": [r.as_dict() for r in found]}

    def backtest_report(self, name: str) -> Path | None:
        """The report.html of a listed backtest folder (None for anything else)."""
        return reports.report_file(self.backtest_dir, self.backtests.get() or [], name)

    def _runner(self, st: JournalState, now: int, view: JournalView) -> dict[str, Any]:
        h = st.health or {}
        interval = self.cfg.live.status_interval
        open_session = st.start is not None and st.stopped is None
        # a running runner commits at least every status interval (its health record), so the
        # journal's files tell whether it is alive: a killed one leaves a session without a stop
        written = view.written_ns()
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
            "stopped_at": format_ns(int(st.stopped["ts"])) if st.stopped else None,
            # what the runner last wrote: a stopped or silent runner's figures are history, not news
            "last_written": format_ns(written) if written else None,
            "risk": h.get("risk") or (st.account or {}).get("risk") or "n/a",
            "halted": h.get("halted") or (st.halts[-1]["reason"] if st.halts and not running else ""),
            "status_interval_s": interval / NS,
        }

    def _account(self, st: JournalState) -> dict[str, Any]:
        a = st.account or {}
        equity = a.get("equity")
        start = st.start_equity if st.start_equity is not None else st.first_equity
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
            "fills": len(st.market.fills),
            "window": self.cfg.live.slippage_window,
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

    def _confidence(self, st: JournalState, model: StackedModel | None, sel: Selection) -> dict[str, Any]:
        chosen = [(u, d, s) for t, u, d, s, ses in st.decisions if sel.has(t, ses)]
        p = np.array([(u, d) for u, d, _ in chosen], np.float64).reshape(-1, 2)
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
        out["signals"] = int(sum(1 for *_, s in chosen if s != 0))
        return out

    def _drift(self, st: JournalState, model: StackedModel | None, runner: dict[str, Any]) -> dict[str, Any]:
        d = st.drift or {}
        psi = d.get("psi") or {}
        why = ""
        if not psi:  # say why there is no chart
            version = f"v{st.model_version}" if st.model_version else "the model"
            if model is not None and model.profile is None:
                why = f"No drift figure: model {version} has no training profile (retrain it to monitor drift)."
            elif st.start is None:
                why = "No drift figure: the runner has not run yet."
            elif st.model_decisions < self.cfg.monitor.drift_min:
                why = (f"No drift figure yet: {st.model_decisions:,} of the {self.cfg.monitor.drift_min:,} decisions "
                       f"(monitor.drift_min) by {version} since it was loaded; PSI over fewer is noise.")  # fmt: skip
            else:
                why = (
                    f"No drift figure: {st.model_decisions:,} decisions by {version}, but the runner wrote no drift "
                    "record (it writes one every status interval; a model without a training profile has none)."
                )
                if not runner["running"]:
                    why += " The runner is not running."
        return {
            "why": why,
            "decisions": st.model_decisions,
            "ts": format_ns(d["ts"]) if "ts" in d else None,
            "rows": d.get("rows", 0),
            "min_rows": self.cfg.monitor.drift_min,
            "ignore": list(self.cfg.monitor.drift_ignore),
            "threshold": self.cfg.monitor.drift_psi,
            "psi": [[k, v] for k, v in psi.items()],
        }

    def _health(self, st: JournalState, now: int, runner: dict[str, Any]) -> dict[str, Any]:
        h = dict(st.health or {})
        live = bool(runner["running"])
        data_ts = int(h.get("data_ts") or 0)
        feed = isinstance(h.get("data_age_s"), int | float) and math.isfinite(h["data_age_s"])  # NaN: a replay
        # the age of the newest data now, not when the runner last said it: it grows once the runner stops
        age_now = (now - data_ts) / NS if feed and data_ts > 0 else math.nan
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
            "age_now_s": age_now,
            "live": live,  # False: every figure here is the last the runner wrote, not the present
            "stopped_at": runner["stopped_at"],
            "not_responding": runner["not_responding"],
            "warehouse": wh,
        }
