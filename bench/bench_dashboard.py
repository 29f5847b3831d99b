"""The dashboard's reads and the runner's drift bookkeeping, on a journal of one trading day.

The journal holds what a day of the runner writes: 86,400 decisions (one a second), an account,
a health and a drift record every 10 s, 2,000 orders with their fills. Measured: the dashboard's
first read of it (the newest 5,000 decisions and everything else), a refresh after ten more
seconds of records (what every page refresh costs), the trading figures the page asks for at every
refresh (the price with our orders and fills, order history, round trips, execution figures) over
the whole day and over its last hour, and the drift monitor's work per decision.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np

from bench.common import CACHE, entry, timed
from live.dashboard.journal_view import JournalView
from live.dashboard.selection import select
from live.dashboard.trading import trading
from live.drift import DriftMonitor
from models.profile import Profile
from warehouse.journal import Journal

DAY_S = 86_400
NS = 1_000_000_000
FEATURES = 40


def _day_journal(folder: Any) -> Any:
    shutil.rmtree(folder, ignore_errors=True)
    path = folder / "paper-bybit.sqlite"
    j = Journal(path, "bench", "normal")
    rng = np.random.default_rng(1)
    psi = {f"f{i}": float(v) for i, v in enumerate(rng.uniform(0, 0.3, FEATURES))}
    j.add("start", 0, mode="paper", source="bybit", strategy="passive", model="1")
    oid = 0
    for s in range(DAY_S):
        ts = s * NS
        j.add("decision", ts, grid_ns=ts, p_up=float(rng.uniform(0, 0.2)), p_down=float(rng.uniform(0, 0.2)),
              direction=0, confidence=0.1, target=0.0, size=0.0, latency_us=80.0, model_version="1",
              bid=65_000.0 - (s % 7) * 0.1, ask=65_000.1 + (s % 5) * 0.1)  # fmt: skip
        if s % 43 == 0:
            oid += 1
            j.add("submit", ts, oid, side=1, qty=0.01, price=65_000.0, order_kind="LIMIT", tag=oid)
            j.add("fill", ts + NS // 2, oid, side=1, price=65_000.0, qty=0.01, fee=0.13, maker=True, tag=oid)
            j.add("done", ts + NS // 2, oid, status="FILLED", price=65_000.0, qty=0.01, filled=0.01)
        if s % 10 == 0:
            j.add("account", ts, equity=100_000.0 + s * 1e-3, position=0.01, cash=1.0, fees=1.0, funding=0.0,
                  execution={"slippage_bps": 0.3, "markout_1s_bps": 0.1})  # fmt: skip
            j.add("health", ts, decisions=s, latency_p50_us=80.0, feed={"gaps": 0}, risk="ACTIVE")
            j.add("drift", ts, model_version="1", rows=3600, psi=psi)
        if s % 3600 == 0:
            j.commit()
    j.commit()
    return j, path


def run() -> list[dict[str, Any]]:
    folder = CACHE / "dashboard"
    j, path = _day_journal(folder)
    rows = j.con.execute("SELECT count(*) FROM records").fetchone()[0]
    note = f"{rows:,} records ({path.stat().st_size / 1e6:.0f} MB), one simulated day"
    t0 = time.perf_counter()
    view = JournalView(path)
    view.refresh()
    first = time.perf_counter() - t0
    assert view.error == "" and view.state.decision_count == DAY_S

    clock = [DAY_S]

    def ten_more_seconds() -> None:
        for _ in range(10):
            ts = clock[0] * NS
            j.add("decision", ts, grid_ns=ts, p_up=0.1, p_down=0.1, direction=0, model_version="1",
                  bid=65_000.0, ask=65_000.1)  # fmt: skip
            clock[0] += 1
        j.add("health", clock[0] * NS, decisions=clock[0], latency_p50_us=80.0, feed={}, risk="ACTIVE")
        j.commit()
        view.refresh()

    refresh = float(np.median(timed(ten_more_seconds, 50))) * 1e3
    j.close()
    st = view.state
    figures = {}
    for key in ("all", "1h"):
        sel = select(st.sessions, None, key)
        figures[key] = float(np.median(timed(lambda: trading(st, sel, 0.0), 10))) * 1e3  # noqa: B023 (called at once)

    rng = np.random.default_rng(2)
    prof = Profile.of(rng.normal(size=(20_000, FEATURES)), rng.uniform(size=(1000, 2)))
    mon = DriftMonitor(prof, np.arange(FEATURES), [f"f{i}" for i in range(FEATURES)], 3600, 300)
    x = rng.normal(size=(20_000, FEATURES))
    t0 = time.perf_counter()
    for row in x:
        mon.add(row)
    add_us = (time.perf_counter() - t0) / len(x) * 1e6
    psi_ms = float(np.median(timed(mon.psi, 200))) * 1e3
    drift_note = f"{FEATURES} features, a window of 3,600 decisions"
    trading_note = "price, orders, fills, round trips, execution figures (each page refresh)"
    return [
        entry("dashboard: first read of a day's journal", first, "s", "<= 5", note),
        entry("dashboard: refresh after 10 s of new records", refresh, "ms", "<= 50", note),
        entry("dashboard: trading figures of the whole day", figures["all"], "ms", "<= 100", trading_note),
        entry("dashboard: trading figures of the last hour", figures["1h"], "ms", "<= 100", trading_note),
        entry("runner: drift bookkeeping per decision", add_us, "us", "<= 50", drift_note),
        entry("runner: PSI of every feature (each status line)", psi_ms, "ms", None, drift_note),
    ]
