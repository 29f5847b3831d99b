"""The runner's journal as the dashboard sees it: read incrementally, never written, never locked.

The journal is SQLite in WAL mode, so a reader never blocks the runner (its writer). The view keeps
one read-only connection and, at every refresh, reads only the records after the last one it saw,
folding them into what the page shows: the sessions, the account and its history, the mid, every
order with its lifecycle (orders.py), every fill with its slippage and markouts (market_view.py)
and the round trips they make (trades.py), the newest decisions' probabilities, drift, health and
alerts. The first read takes the newest ``DECISIONS`` decisions only, however long the journal
is (and, when decisions carry the book's bid and ask, the older ones' prices alone).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from live.dashboard.market_view import NS, Fill, MarketView
from live.dashboard.orders import OrderHistory
from live.dashboard.selection import Session
from live.dashboard.trades import RoundTrips
from warehouse.journal import written_ns

DECISIONS = 5000  # the live confidence histogram covers this many newest decisions
ALERTS = 20
SERIES = 4000  # equity points kept (older ones thinned)
HORIZONS_NS = (NS, 10 * NS, 60 * NS)  # live.markouts' default


@dataclass
class JournalState:
    last_seq: int = 0
    sessions: list[Session] = field(default_factory=list)
    start: dict[str, Any] | None = None  # the newest session's start record
    start_ts: int = 0
    stopped: dict[str, Any] | None = None  # its stop record, when it stopped
    first_equity: float | None = None  # the equity before the first fill, from the first account record
    start_equity: float | None = None  # the account the journal's first session restored, if any
    account: dict[str, Any] | None = None
    account_ts: int = 0
    series: list[tuple[int, float, float, int]] = field(default_factory=list)  # (ts, equity, position, session)
    slippage: list[tuple[int, float, int]] = field(default_factory=list)  # (ts, rolling arrival slippage, session)
    rejects: list[tuple[int, int, int]] = field(default_factory=list)  # (ts, session, post-only rejects so far)
    orders: OrderHistory = field(default_factory=OrderHistory)
    market: MarketView = field(default_factory=lambda: MarketView(HORIZONS_NS))
    trips: RoundTrips = field(default_factory=RoundTrips)
    decisions: deque[tuple[int, float, float, int, int]] = field(default_factory=lambda: deque(maxlen=DECISIONS))
    decision_count: int = 0
    model_decisions: int = 0  # decisions of the newest session since its model was loaded (drift's count)
    health: dict[str, Any] | None = None
    health_ts: int = 0
    drift: dict[str, Any] | None = None
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ALERTS))
    active_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    feed: Counter[str] = field(default_factory=Counter)
    halts: list[dict[str, Any]] = field(default_factory=list)
    model_version: str | None = None
    thresholds: dict[str, float] | None = None  # the runner's (a study's may differ from the registry's)

    def session(self, name: str) -> Session:
        if not self.sessions or self.sessions[-1].id != name:
            known = [s for s in self.sessions if s.id == name]
            if known:
                return known[0]
            self.sessions.append(Session(len(self.sessions), name))
        return self.sessions[-1]


_ROWS = "SELECT seq, ts_ns, session, kind, order_id, data FROM records"


class JournalView:
    def __init__(self, path: Path, horizons_ns: Sequence[int] = HORIZONS_NS) -> None:
        self.path = path
        self.state = JournalState(market=MarketView(horizons_ns))
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
        return written_ns(self.path)

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
        if st.last_seq == 0:
            rows, counted = self._first_rows(con), True
        else:
            rows, counted = con.execute(_ROWS + " WHERE seq > ? ORDER BY seq", [st.last_seq]).fetchall(), False
        for seq, ts, session, kind, oid, data in rows:
            d = data if isinstance(data, dict) else json.loads(data)
            self._fold(int(ts), str(session), str(kind), oid, d, counted)
            st.last_seq = max(st.last_seq, int(seq))
        if len(st.series) > SERIES:
            st.series = _thin(st.series, SERIES)
        if len(st.slippage) > SERIES:
            st.slippage = _thin(st.slippage, SERIES)
        return ""

    def _first_rows(self, con: sqlite3.Connection) -> list[tuple[Any, ...]]:
        """Everything but the decisions, the newest ``DECISIONS`` decisions, and the book prices of
        the older ones when decisions carry them: in journal order."""
        st = self.state
        rows = con.execute(_ROWS + " WHERE kind != 'decision' ORDER BY seq").fetchall()
        newest = con.execute(_ROWS + " WHERE kind = 'decision' ORDER BY seq DESC LIMIT ?", [DECISIONS]).fetchall()
        st.decision_count = int(con.execute("SELECT count(*) FROM records WHERE kind = 'decision'").fetchone()[0])
        since = con.execute("SELECT max(seq) FROM records WHERE kind IN ('start', 'model')").fetchone()[0] or 0
        st.model_decisions = int(
            con.execute("SELECT count(*) FROM records WHERE kind = 'decision' AND seq > ?", [since]).fetchone()[0]
        )
        older: list[tuple[Any, ...]] = []
        if newest and '"bid"' in newest[-1][5]:
            older = [
                (seq, ts, session, "book", None, {"bid": bid, "ask": ask})
                for seq, ts, session, bid, ask in con.execute(
                    "SELECT seq, ts_ns, session, json_extract(data, '$.bid'), json_extract(data, '$.ask') "
                    "FROM records WHERE kind = 'decision' AND seq < ? ORDER BY seq",
                    [newest[-1][0]],
                )
                if bid is not None and ask is not None
            ]
        return sorted(rows + newest + older, key=lambda r: int(r[0]))

    def _fold(self, ts: int, session: str, kind: str, oid: int | None, d: dict[str, Any], counted: bool) -> None:
        st = self.state
        ses = st.session(session)
        if kind not in ("start", "stop") and ts > 0:
            ses.seen(ts)
        si = ses.index
        if kind in ("decision", "book"):
            if "bid" in d and "ask" in d:
                st.market.on_book(ts, si, float(d["bid"] or math.nan), float(d["ask"] or math.nan))
            if kind == "book":
                return
            st.decisions.append((ts, float(d["p_up"]), float(d["p_down"]), int(d["direction"]), si))
            st.decision_count += not counted
            st.model_decisions += not counted
            st.model_version = str(d.get("model_version", st.model_version))
        elif kind == "account":
            st.account, st.account_ts = d, ts
            equity, position = float(d.get("equity", math.nan)), float(d.get("position", 0.0))
            st.market.on_account(ts, si, equity, float(d.get("cash", math.nan)), position)
            if st.first_equity is None:  # the equity before the first fill (this record may come after some)
                mark = st.market.last.mid if st.market.last is not None else math.nan
                made = st.trips.realized(float(d.get("funding") or 0.0)) + st.trips.unrealized(mark)
                st.first_equity = equity - made if math.isfinite(made) else equity
            st.series.append((ts, equity, position, si))
            e = d.get("execution") or {}
            slip = e.get("slippage_bps")
            if slip is not None and math.isfinite(slip):
                st.slippage.append((ts, float(slip), si))
            rejects = int(e.get("post_only_rejects") or 0)
            if rejects and (not st.rejects or st.rejects[-1][1:] != (si, rejects)):
                st.rejects.append((ts, si, rejects))
        elif kind == "fill":
            st.orders.on(kind, ts, oid, si, d)
            side, price, qty, fee = int(d["side"]), float(d["price"]), float(d["qty"]), float(d.get("fee", 0.0))
            fill = Fill(ts, si, None if oid is None else int(oid), side, price, qty, fee, bool(d.get("maker")))
            st.market.on_fill(fill, int(d.get("tag", 0)))
            st.trips.add(ts, side, price, qty, fee, si)
        elif kind in ("submit", "amend", "cancel", "cancel_all", "done", "filled", "cancelled", "reject", "refused"):
            st.orders.on(kind, ts, oid, si, d)
            if kind == "submit":
                st.market.on_submit(ts, si, int(d.get("tag", 0)))
        elif kind == "start":
            ses.started = ts
            ses.mode, ses.source = str(d.get("mode", "")), str(d.get("source", ""))
            ses.strategy, ses.model = str(d.get("strategy", "")), str(d.get("model", ""))
            st.start, st.start_ts, st.stopped = {**d, "session": session}, ts, None
            st.model_version = str(d.get("model", st.model_version))
            st.thresholds = d.get("thresholds", st.thresholds)
            if not counted:  # a first read counted them in SQL
                st.model_decisions = 0
            if len(st.sessions) == 1 and isinstance(d.get("restored"), dict):
                self._opening(d["restored"], ts, si)
        elif kind == "stop":
            ses.stopped, ses.reason = ts, str(d.get("reason", ""))
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
            if not counted:
                st.model_decisions = 0

    def _opening(self, restored: dict[str, Any], ts: int, session: int) -> None:
        """The journal's first session restored an account (from elsewhere): it is the start."""
        st = self.state
        equity, cash = float(restored.get("equity", math.nan)), float(restored.get("cash", math.nan))
        position = float(restored.get("position", 0.0))
        st.start_equity = equity
        if position:
            st.trips.seed(position, (equity - cash) / position, ts, session)


def _thin(rows: list[Any], keep: int) -> list[Any]:
    """Every other row of the older half: the recent history stays sharp, the far past coarser."""
    half = len(rows) - keep // 2
    return rows[:half:2] + rows[half:]
