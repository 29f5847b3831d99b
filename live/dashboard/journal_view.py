"""The runner's journal as the dashboard sees it: read incrementally, never written, never locked.

The journal is SQLite in WAL mode, so a reader never blocks the runner (its writer). The view keeps
one read-only connection and, at every refresh, reads only the records after the last one it saw,
folding them into what the page shows: the account and its history, open orders, recent fills,
the execution figures, the newest decisions' probabilities, drift, health and alerts. The first
read takes the newest ``DECISIONS`` decisions only, however long the journal is.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DECISIONS = 5000  # the live confidence histogram covers this many newest decisions
FILLS = 25
ALERTS = 20
SERIES = 4000  # equity points kept (older ones thinned)
_ENDS = {"done", "cancelled", "filled", "reject"}


@dataclass
class JournalState:
    last_seq: int = 0
    sessions: int = 0
    start: dict[str, Any] | None = None  # the newest session's start record
    start_ts: int = 0
    stopped: dict[str, Any] | None = None  # its stop record, when it stopped
    first_equity: float | None = None
    account: dict[str, Any] | None = None
    account_ts: int = 0
    series: list[tuple[int, float, float]] = field(default_factory=list)  # (ts, equity, position)
    slippage: list[tuple[int, float]] = field(default_factory=list)  # (ts, rolling arrival slippage)
    open_orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    fills: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FILLS))
    decisions: deque[tuple[int, float, float, int]] = field(default_factory=lambda: deque(maxlen=DECISIONS))
    decision_count: int = 0
    health: dict[str, Any] | None = None
    health_ts: int = 0
    drift: dict[str, Any] | None = None
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ALERTS))
    active_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    feed: Counter[str] = field(default_factory=Counter)
    halts: list[dict[str, Any]] = field(default_factory=list)
    model_version: str | None = None
    thresholds: dict[str, float] | None = None  # the runner's (a study's may differ from the registry's)


class JournalView:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = JournalState()
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.error = ""

    def refresh(self) -> JournalState:
        """Fold in the records written since the last refresh (thread-safe)."""
        with self._lock:
            try:
                self.error = self._read()
            except sqlite3.Error as exc:
                self.error = f"{self.path}: cannot read the journal ({exc})"
                self._close()
            return self.state

    def written_ns(self) -> int | None:
        """When the journal was last written (its WAL or the file itself), wall clock; None without one."""
        times = [p.stat().st_mtime_ns for p in (self.path, self.path.with_name(self.path.name + "-wal")) if p.exists()]
        return max(times) if times else None

    def _connect(self) -> sqlite3.Connection | None:
        if self._con is None and self.path.exists():
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0, check_same_thread=False)
        return self._con

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _read(self) -> str:
        """Fold the new records in; the reason when there is nothing to read."""
        con = self._connect()
        if con is None:
            return f"{self.path}: no journal yet (start the runner: python -m live.runner --paper)"
        st = self.state
        sql = "SELECT seq, ts_ns, session, kind, order_id, data FROM records WHERE seq > ?"
        if st.last_seq == 0:  # first read: everything but the decisions, then the newest decisions
            rows = con.execute(sql + " AND kind != 'decision' ORDER BY seq", [0]).fetchall()
            newest = con.execute(
                "SELECT seq, ts_ns, session, kind, order_id, data FROM records WHERE kind = 'decision' "
                "ORDER BY seq DESC LIMIT ?",
                [DECISIONS],
            ).fetchall()
            st.decision_count = int(con.execute("SELECT count(*) FROM records WHERE kind = 'decision'").fetchone()[0])
            rows = sorted(rows + newest)
            counted = True
        else:
            rows = con.execute(sql + " ORDER BY seq", [st.last_seq]).fetchall()
            counted = False
        for seq, ts, session, kind, oid, data in rows:
            self._fold(int(ts), str(session), str(kind), oid, json.loads(data), counted)
            st.last_seq = max(st.last_seq, int(seq))
        if len(st.series) > SERIES:
            st.series = _thin(st.series, SERIES)
        if len(st.slippage) > SERIES:
            st.slippage = _thin(st.slippage, SERIES)
        return ""

    def _fold(self, ts: int, session: str, kind: str, oid: int | None, d: dict[str, Any], counted: bool) -> None:
        st = self.state
        if kind == "decision":
            st.decisions.append((ts, float(d["p_up"]), float(d["p_down"]), int(d["direction"])))
            st.decision_count += not counted
            st.model_version = str(d.get("model_version", st.model_version))
        elif kind == "account":
            st.account, st.account_ts = d, ts
            if st.first_equity is None:
                st.first_equity = float(d.get("equity", 0.0))
            st.series.append((ts, float(d["equity"]), float(d["position"])))
            slip = (d.get("execution") or {}).get("slippage_bps")
            if slip is not None and math.isfinite(slip):
                st.slippage.append((ts, float(slip)))
        elif kind == "submit" and oid is not None:
            st.open_orders[int(oid)] = {"id": int(oid), "ts": ts, **d, "filled": 0.0}
        elif kind == "amend" and oid is not None and int(oid) in st.open_orders:
            o = st.open_orders[int(oid)]
            o.update({k: v for k, v in (("price", d.get("price")), ("qty", d.get("qty"))) if v is not None})
        elif kind in _ENDS and oid is not None:
            st.open_orders.pop(int(oid), None)
        elif kind == "fill":
            st.fills.appendleft({"ts": ts, "id": oid, **d})
            if oid is not None and int(oid) in st.open_orders:
                st.open_orders[int(oid)]["filled"] += float(d.get("qty", 0.0))
        elif kind == "start":
            st.sessions += 1
            st.start, st.start_ts, st.stopped = {**d, "session": session}, ts, None
            st.model_version = str(d.get("model", st.model_version))
            st.thresholds = d.get("thresholds", st.thresholds)
        elif kind == "stop":
            st.stopped = {**d, "ts": ts}
        elif kind == "health":
            st.health, st.health_ts = d, ts
        elif kind == "drift":
            st.drift = {**d, "ts": ts}
        elif kind == "alert":
            a = {**d, "ts": ts}
            st.alerts.appendleft(a)
            if d.get("active"):
                st.active_alerts[str(d["what"])] = a
            else:
                st.active_alerts.pop(str(d["what"]), None)
        elif kind == "feed":
            st.feed[str(d.get("event"))] += int(d.get("count", 1))
        elif kind == "halt":
            st.halts.append({**d, "ts": ts})
        elif kind == "model":
            st.model_version = str(d.get("version", st.model_version))
            st.thresholds = d.get("thresholds", st.thresholds)


def _thin(rows: list[Any], keep: int) -> list[Any]:
    """Every other row of the older half: the recent history stays sharp, the far past coarser."""
    half = len(rows) - keep // 2
    return rows[:half:2] + rows[half:]
