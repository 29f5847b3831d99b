"""The runner's watch: execution quality, alerts, drift, the kill switch's checks and health.

After every step the gateway's events feed the slippage monitor (live/monitor.py) and its alert;
a change of the risk manager's state is recorded (HALTED trips the kill switch). The checks that
run on the wall clock halt the runner on a model older than ``live.max_model_age`` or a burst of
exchange errors or rate-limit answers; on a live-paced feed (``FeedWatch``, wired by the runner)
also on a silent feed or a book invalid for too long. Every status interval a ``health`` record,
the live features' PSI against the training profile (live/drift.py) and the drift and drawdown
alerts. The kill switch itself (cancel everything, stay HALTED) is the loop's: it acts.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable

import numpy as np

from core.config import AppConfig
from execution.risk import RiskManager, RiskState
from execution.strategy import Strategy
from features import MAX_LOOKBACK_S
from live.alerts import Alerts
from live.decide import Loaded
from live.drift import DriftMonitor, worst
from live.gateway import RunnerGateway
from live.monitor import SlippageMonitor
from live.record import Event, Stats
from live.rows import Rows
from warehouse.journal import Journal

log = logging.getLogger("live.runner")

NS = 1_000_000_000


class FeedWatch:
    """The wall-clock checks of a live-paced feed: a silent feed, a book invalid for too long."""

    def __init__(self, cfg: AppConfig) -> None:
        self.lc, self.stale_data = cfg.live, cfg.monitor.stale_data
        self.wall_last_tick = time.monotonic_ns()
        self.invalid_since: int | None = None

    def silent_s(self, wall_ns: int) -> float:
        return (wall_ns - self.wall_last_tick) / NS

    def check(
        self, wall_ns: int, book_valid: bool, now: int, alerts: Alerts, halt: Callable[[str], None],
        pause: Callable[[], None], age_ns: int | None = None,
    ) -> None:  # fmt: skip
        """The ``stale`` alert: no data for ``monitor.stale_data`` (silence), or data that old against
        the calendar (``age_ns``: now - the newest book's exchange time); a halt on silence or a
        long-invalid book; ``pause`` when the book turns invalid."""
        lc, silent, stale = self.lc, wall_ns - self.wall_last_tick, self.stale_data
        if silent <= stale and age_ns is not None and age_ns > stale:  # data arrives, but old data
            detail = f"the newest market data is {age_ns / NS:,.1f} s old (alert at {stale / NS:g} s)"
            alerts.update("stale", True, now, age_ns / NS, stale / NS, detail)
        else:
            detail = f"no market data for {silent / NS:.1f} s (alert at {stale / NS:g} s)"
            alerts.update("stale", silent > stale, now, silent / NS, stale / NS, detail)
        if silent > lc.feed_silence:
            halt(f"feed silent for {silent / NS:.1f} s")
        if book_valid:
            self.invalid_since = None
        elif self.invalid_since is None:
            self.invalid_since = wall_ns
            pause()
        elif wall_ns - self.invalid_since > lc.invalid_book:
            halt(f"no valid book for {(wall_ns - self.invalid_since) / NS:.1f} s")


class Watch:
    def __init__(
        self, cfg: AppConfig, model: Loaded, risk: RiskManager, journal: Journal, alerts: Alerts,
        feed: FeedWatch | None,
    ) -> None:  # fmt: skip
        lc = cfg.live
        self.cfg, self.journal, self.alerts, self.feed = cfg, journal, alerts, feed
        self.monitor = SlippageMonitor(lc.slippage_window, lc.markouts)
        self.drift = drift_monitor(cfg, model)
        self.halted_reason = ""
        self.risk_state = risk.state
        self.filled_by_tag: defaultdict[int, float] = defaultdict(float)
        self._ended_parents = 0
        self._seen = {"errors": 0, "rate_limited": 0}
        self._times: dict[str, deque[int]] = {"errors": deque(), "rate_limited": deque()}

    def forget_bursts(self) -> None:
        """An operator resumed: the errors and rate-limit answers that tripped the burst rule are
        behind us; the rule counts afresh (it re-halted at once on them, for a whole window)."""
        for times in self._times.values():
            times.clear()

    def heard(self, wall_ns: int) -> None:
        """Ticks arrived at wall time ``wall_ns``."""
        if self.feed is not None:
            self.feed.wall_last_tick = wall_ns

    def on_events(self, events: list[Event], strategy: Strategy, gw: RunnerGateway) -> bool:
        """Feed the slippage monitor; True if anything filled."""
        fills = False
        parents = strategy.parents
        for e in events:
            if (e.kind == "submit" and e.data.get("order_kind") == "LIMIT") or e.kind == "amend":
                self.monitor.submitted += 1  # post-only requests: each can be refused for crossing
            if e.kind == "fill":
                fills = True
                tag = int(e.data.get("tag", 0))
                self.filled_by_tag[tag] += float(e.data["qty"])
                mid = parents[tag - 1].decision_mid if 0 < tag <= len(parents) else math.nan
                d = e.data
                self.monitor.on_fill(e.ts, d["side"], d["price"], d["qty"], bool(d.get("maker")), mid)
        while self._ended_parents < len(parents) and parents[self._ended_parents].ts_end >= 0:
            p = parents[self._ended_parents]
            self._ended_parents += 1
            self.monitor.on_parent_end(self.filled_by_tag.pop(p.tag, 0.0), p.qty)
        self.monitor.rejected = gw.post_only_rejects
        return fills

    def slippage(self, now: int) -> None:
        fig, limit = self.monitor.figures(), self.cfg.live.slippage_alert_bps
        over = fig.slippage_bps > limit  # NaN (no fills in the window) is not over
        detail = f"rolling arrival slippage {fig.slippage_bps:+.2f} bp against {limit} bp ({fig.line()})"
        self.alerts.update("slippage", over, now, fig.slippage_bps, limit, detail)

    def risk_changed(self, risk: RiskManager, now: int) -> bool:
        """Record a change of the risk manager's state; True if it is HALTED (the kill switch trips)."""
        if risk.state == self.risk_state:
            return False
        self.risk_state = risk.state
        if risk.state == RiskState.HALTED:
            return True
        self.journal.add("risk", now, state=risk.state.name, reason=risk.reason)
        return False

    def check(
        self, wall_ns: int, book_valid: bool, now_ns: int | None, gw: RunnerGateway, m: Loaded,
        halt: Callable[[str], None], pause: Callable[[], None], data_ts: int = -1,
    ) -> None:  # fmt: skip
        """The checks that run on the wall clock; ``now_ns``: the calendar time, for the model's age
        and the data's (``data_ts``: the newest book's exchange time, -1 before the first)."""
        lc = self.cfg.live
        created = m.created_ns
        if created is not None and now_ns is not None and now_ns - created > lc.max_model_age:
            halt(f"model version {m.version} is older than live.max_model_age: promote a fresh one")
        if self.feed is not None:
            age = now_ns - data_ts if now_ns is not None and data_ts > 0 else None
            self.feed.check(wall_ns, book_valid, gw.now, self.alerts, halt, pause, age)
        for counter, limit, what in (
            ("errors", lc.error_burst, "exchange errors"),
            ("rate_limited", lc.rate_limit_burst, "rate-limit answers"),
        ):
            count = int(getattr(gw, counter))
            new, self._seen[counter] = count - self._seen[counter], count
            times = self._times[counter]
            times.extend([wall_ns] * new)
            while times and times[0] < wall_ns - lc.burst_window:
                times.popleft()
            if len(times) >= limit:
                halt(f"{len(times)} {what} within {lc.burst_window / NS:.0f} s")

    def health(
        self, wall_ns: int, now_ns: int, feed: dict[str, int], book_valid: bool, *, gw: RunnerGateway,
        stats: Stats, rows: Rows, m: Loaded, risk: str, peak: float,
    ) -> None:  # fmt: skip
        """A ``health`` record (what the dashboard's health panel shows), the PSI of the live
        features, and the drift and drawdown alerts."""
        s, mc, j = stats, self.cfg.monitor, self.journal
        acct = gw.account()
        lat = np.fromiter(s.latencies_ns, np.int64)
        p50, p90, p99 = (np.quantile(lat, [0.5, 0.9, 0.99]) / 1e3).tolist() if lat.size else [math.nan] * 3
        last = rows.last_book_ts
        data_age = (now_ns - last) / NS if self.feed is not None and last > 0 else math.nan
        warmed = rows.grid.warmed_s()  # seconds of gap-free data in the features' longest window
        j.add(
            "health", gw.now, ticks=s.ticks, decisions=s.decisions, signals=s.signals, fills=s.fills,
            latency_p50_us=p50, latency_p90_us=p90, latency_p99_us=p99, data_ts=last,
            data_age_s=data_age, silent_s=self.feed.silent_s(wall_ns) if self.feed is not None else 0.0,
            book_valid=book_valid, feed=dict(feed), risk=risk,
            halted=self.halted_reason, open_orders=len(gw.open_orders()), model_version=m.version,
            equity=acct["equity"], position=acct["position"], warmed_s=warmed, warming_up=warmed < MAX_LOOKBACK_S,
            rows_not_arrived=rows.unarrived, rows_stale=rows.timing.stale, rows_superseded=rows.superseded,
        )  # fmt: skip
        if self.drift is not None and (psi := self.drift.psi()) is not None:
            j.add("drift", gw.now, model_version=m.version, rows=self.drift.n, psi=psi)
            name, value = worst(psi, mc.drift_ignore)
            detail = f"{name} PSI {value:.3f} against {mc.drift_psi} over the last {self.drift.n} decisions"
            self.alerts.update("drift", value > mc.drift_psi, gw.now, value, mc.drift_psi, detail)
        if math.isfinite(peak) and peak > 0:
            dd = 1.0 - acct["equity"] / peak
            detail = f"equity {acct['equity']:,.2f} is {dd:.2%} under its peak {peak:,.2f} (alert at {mc.drawdown:.1%})"
            self.alerts.update("drawdown", dd > mc.drawdown, gw.now, dd, mc.drawdown, detail)
        j.commit()


def drift_monitor(cfg: AppConfig, m: Loaded) -> DriftMonitor | None:
    """The drift monitor of model ``m`` (None: the model has no training profile)."""
    mc = cfg.monitor
    if m.model.profile is None:
        log.warning("model version %s has no training profile: no drift monitoring (retrain it)", m.version)
        return None
    unknown = sorted(set(mc.drift_ignore) - set(m.model.feature_names))
    if unknown:
        log.warning("monitor.drift_ignore names features model version %s does not use: %s", m.version, unknown)
    return DriftMonitor(m.model.profile, m.columns, list(m.model.feature_names), mc.drift_window, mc.drift_min)
