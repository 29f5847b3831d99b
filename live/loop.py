"""The runner's event loop: ticks in, features, decisions, orders, journal out.

Every tick updates the online features (the training code's kernels). At every grid time ``g``
whose feature row is valid by the warehouse's rules (a live book, every window filled) the vector
as of ``g`` is kept, and the model predicts, the strategy works its orders and the risk manager
checks them at the row's decision time on the local clock:

- a replay decides at ``g + decision_delay`` on what had arrived by then (a row one of whose ticks
  arrived later is not decided on): exactly what the backtester does with stored rows;
- a live feed decides when it learns that ``g + decision_delay`` has passed: at the arrival of the
  first tick stamped after it (a row then is complete). A row older than the risk manager's
  ``stale_after`` by then (a feed catching up) is not decided on; of several rows made due by one
  tick only the newest is.

Time follows the data, so a replay runs as fast as the machine allows. The paper exchange runs on
the exchange stamps of the ticks pushed into it (it never runs ahead of the feed) and is driven to
each decision's local time once every tick stamped up to then is in: an order decided on a tick's
arrival is sent at that arrival and reaches the exchange an entry latency later.

The kill switch (drawdown and daily loss in the risk manager; here a silent feed, an invalid
book, a burst of exchange errors or rate-limit answers, an operator's ``halt``) cancels every
order and leaves the runner HALTED until a restart or a ``resume`` command.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.config import AppConfig
from core.timefmt import format_ns
from execution.engine import Wake
from execution.risk import RiskState
from execution.strategy import Passive, Signal, Strategy
from execution.venue import BookView
from features import MAX_LOOKBACK_S, NAMES, OnlineFeatures
from live.alerts import Alerts
from live.drift import DriftMonitor, worst
from live.feed import BookTick, Tick
from live.monitor import SlippageMonitor
from live.paper import WAKE, PaperGateway
from models.model import StackedModel
from warehouse.journal import Journal

log = logging.getLogger("live.runner")

NS = 1_000_000_000
VOL = NAMES.index("rv_300s_bps")
VOL_WINDOW_S = 300.0


@dataclass
class Loaded:
    """A model as the loop uses it: the model, its version and its columns in the catalog."""

    model: StackedModel
    version: str
    columns: np.ndarray
    created_ns: int | None = None  # when the version was registered (None: not from the registry)

    @classmethod
    def of(cls, model: StackedModel, version: str, created_ns: int | None = None) -> Loaded:
        return cls(model, version, model.columns_for(NAMES), created_ns)


@dataclass
class Stats:
    ticks: int = 0
    decisions: int = 0
    signals: int = 0
    fills: int = 0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=100_000))

    def latency(self, q: float) -> float:
        """Tick-to-decision latency quantile, microseconds (NaN before the first decision)."""
        return float(np.quantile(np.fromiter(self.latencies_ns, np.int64), q)) / 1e3 if self.latencies_ns else math.nan


class Loop:
    def __init__(
        self,
        cfg: AppConfig,
        gateway: Any,  # PaperGateway or live.bybit_gateway.BybitGateway
        strategy: Strategy,
        model: Loaded,
        journal: Journal,
        live_feed: bool,
        alerts: Alerts | None = None,
    ) -> None:
        self.cfg, self.gw, self.strategy, self.m, self.journal = cfg, gateway, strategy, model, journal
        self.paper = isinstance(gateway, PaperGateway)
        self.live_feed = live_feed  # wall-clock sources: the silence and invalid-book checks apply
        self.features = OnlineFeatures(cfg.instrument.tick_size)
        self.grid, self.delay, self.max_gap = cfg.features.grid, cfg.strategy.decision_delay, cfg.features.max_gap
        self.next_grid: int | None = None
        # (grid time, the vector as of it, how long its last book update took the features, ns, when the
        # last tick stamped at or before the grid time reached us)
        self.pending: deque[tuple[int, np.ndarray, int, int]] = deque()
        # paper: (decision time on the local clock, grid time, vector, feature ns), waiting until the paper
        # exchange holds every tick stamped up to the decision time
        self.scheduled: deque[tuple[int, int, np.ndarray, int]] = deque()
        self.arrived = -1  # the latest arrival (local time, never before exchange time) of the ticks so far
        self.unarrived = 0  # rows not decided on: a tick of theirs reached us after grid time + delay
        self.stale_rows = 0  # live feed: rows older than the risk manager's stale_after when they became due
        self.superseded = 0  # live feed: rows made due by the same tick as a newer one
        self.stale_ns = strategy.risk.limits.stale_after_ns
        self.feature_ns = 0
        self.sim_ns = 0  # time spent in the paper exchange during the current tick (not decision latency)
        self.last_book_ts = -1
        self.data_before = -1  # the market time of the account a restart continues
        self.last_tick_ts = -1
        self.segment_start = -1
        self.stats = Stats()
        lc = cfg.live
        self.monitor = SlippageMonitor(lc.slippage_window, lc.markouts)
        self.alerts = alerts or Alerts(journal)
        self.drift = self._drift_monitor()
        self.halted_reason = ""
        self.errors: deque[int] = deque()
        self.rate_limits: deque[int] = deque()
        self._seen_errors = 0
        self._seen_rl = 0
        self._ended_parents = 0
        self.filled_by_tag: defaultdict[int, float] = defaultdict(float)
        self._risk_state = strategy.risk.state
        self._tick_t0 = 0
        self.wall_last_tick = time.monotonic_ns()
        self.wall_invalid_since: int | None = None
        self.wake = self._wake_flags()

    def _drift_monitor(self) -> DriftMonitor | None:
        m, mc = self.m, self.cfg.monitor
        if m.model.profile is None:
            log.warning("model version %s has no training profile: no drift monitoring (retrain it)", m.version)
            return None
        unknown = sorted(set(mc.drift_ignore) - set(m.model.feature_names))
        if unknown:
            log.warning("monitor.drift_ignore names features model version %s does not use: %s", m.version, unknown)
        return DriftMonitor(m.model.profile, m.columns, list(m.model.feature_names), mc.drift_window, mc.drift_min)

    def _wake_flags(self) -> Wake:
        return WAKE if isinstance(self.strategy, Passive) else WAKE & ~Wake.BOOK

    # -- ticks -----------------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        self._tick_t0 = time.perf_counter_ns()
        self.sim_ns = 0
        self.stats.ticks += 1
        ts = tick.ts_ex
        self.last_tick_ts = max(self.last_tick_ts, ts)  # a late trade does not move the data's time back
        if self.next_grid is None:
            self.next_grid = -(-ts // self.grid) * self.grid
        self._rows_before(ts)
        self.arrived = max(self.arrived, tick.ts_local, ts)  # this tick has arrived: the time of its decisions
        due: list[tuple[int, np.ndarray, int, int]] = []
        while self.pending and self.pending[0][0] + self.delay < ts:
            due.append(self.pending.popleft())
        if self.live_feed and len(due) > 1:
            self.superseded += len(due) - 1  # one instant, one decision: on the newest row
            due = due[-1:]
        for row in due:
            self._due(*row)
        if self.paper:
            self._run_to(ts - 1)
            self.gw.push(tick)
        if isinstance(tick, BookTick):
            if tick.ts_ex - self.last_book_ts > self.max_gap:
                self.segment_start = tick.ts_ex
            self.last_book_ts = tick.ts_ex
            t0 = time.perf_counter_ns()
            self.features.update_book(tick.ts_ex, tick.epoch, tick.bid_px, tick.bid_qty, tick.ask_px, tick.ask_qty)
            self.feature_ns = time.perf_counter_ns() - t0
            if not self.paper:
                self.gw.set_book(BookView(tick.ts_local, tick.bid_px, tick.bid_qty, tick.ask_px, tick.ask_qty))
            self.monitor.on_mid(tick.ts_ex, 0.5 * (tick.bid_px[0] + tick.ask_px[0]))
        else:
            self.features.update_trade(tick.ts_ex, tick.price, tick.qty, tick.side)

    def _rows_before(self, ts: int) -> None:
        """Keep the feature rows of the grid times before ``ts`` (as of g: after the last book update <= g)."""
        assert self.next_grid is not None
        while self.next_grid < ts:
            g = self.next_grid
            if g - self.last_book_ts <= self.max_gap and g - self.segment_start >= MAX_LOOKBACK_S * NS:
                self.pending.append((g, self.features.vector.copy(), self.feature_ns, self.arrived))
            self.next_grid = g + self.grid

    def finish(self) -> None:
        """The recorded data ended: the rows up to its last tick are decided (a replay, as the backtester)."""
        if self.next_grid is None:
            return
        self._rows_before(self.last_tick_ts + 1)
        while self.pending:
            self._tick_t0, self.sim_ns = time.perf_counter_ns(), 0
            self._due(*self.pending.popleft())
            if self.paper:
                self._run_to(self.scheduled[-1][0] if self.scheduled else self.gw.now)

    def advance(self, t: int) -> None:
        """Paper: run the simulated exchange to ``t``, waking the strategy on the way (as the backtester)."""
        while True:
            t0 = time.perf_counter_ns()
            hit = self.gw.advance(t)
            self.sim_ns += time.perf_counter_ns() - t0
            if not hit:
                return
            self.strategy.on_wake(self.gw)
            self.after_step()

    # -- decisions -------------------------------------------------------------------------------

    def _due(self, g: int, x: np.ndarray, feature_ns: int, arrived: int) -> None:
        """Row ``g`` is due: decide on it at its decision time on the local clock, g + delay in a replay (if
        all its ticks had reached us by then: the backtester's rule, execution.backtest.replay), the
        arrival of the tick that made it due on a live feed (unless the row is stale by then). Paper: once
        the paper exchange holds every tick stamped up to that time (``_run_to``)."""
        t = g + self.delay
        if self.live_feed:
            t = max(t, self.arrived)
            if t - g > self.stale_ns:
                self.stale_rows += 1
                return
        if arrived > t:
            self.unarrived += 1
            return
        if self.paper:
            self.scheduled.append((t, g, x, feature_ns))
        else:
            self.decide(g, x, feature_ns, t)

    def _run_to(self, t: int) -> None:
        """Paper: take the scheduled decisions due by local time ``t``, each at its time, then run to ``t``."""
        while self.scheduled and self.scheduled[0][0] <= t:
            at, g, x, feature_ns = self.scheduled.popleft()
            self.decide(g, x, feature_ns, at)
        self.advance(t)

    def decide(self, g: int, x: np.ndarray, feature_ns: int = 0, t: int | None = None) -> None:
        """Predict, let the strategy work its orders and the risk manager check them, at local time ``t``
        (default: g + delay).

        Latency: from the tick during which the decision is taken (paper, live feed: the first tick
        stamped after its time) to the strategy's last request, less the paper exchange's own
        simulation, plus the features' update of the row's book update."""
        t = g + self.delay if t is None else t
        if self.paper:
            if t <= self.gw.now:
                return
            self.advance(t)
        book = self.gw.book()  # the book the decision sees (journalled: the dashboard's price chart)
        if book.ts_local < 0:
            return
        m = self.m
        proba = m.model.predict_proba(x[m.columns])
        direction = int(m.model.signal(proba)[0])
        sigma = float(x[VOL]) * 1e-4 / math.sqrt(VOL_WINDOW_S)
        signal = Signal(g, float(proba[0, 0]), float(proba[0, 1]), direction, sigma)
        if self.halted_reason:
            self.strategy.stop(self.gw)
        else:
            self.strategy.on_decision(self.gw, signal)
        latency = time.perf_counter_ns() - self._tick_t0 - self.sim_ns + feature_ns
        self.stats.latencies_ns.append(latency)
        self.stats.decisions += 1
        self.stats.signals += direction != 0
        self.journal.add(
            "decision",
            t,
            grid_ns=g,
            feature_set=m.model.feature_set,
            model_version=m.version,
            p_up=signal.p_up,
            p_down=signal.p_down,
            direction=direction,
            confidence=max(signal.p_up, signal.p_down),
            target=self.strategy.target,
            size=abs(self.strategy.target),
            latency_us=latency / 1e3,
            bid=book.bid,
            ask=book.ask,
        )
        if self.drift is not None:
            self.drift.add(x)
        self.after_step()

    def swap(self, model: Loaded) -> None:
        """A newly promoted model, between decisions: the strategy keeps its state."""
        old, self.m = self.m.version, model
        self.drift = self._drift_monitor()
        if model.model.horizon_ns != self.strategy.params.horizon_ns:
            self.strategy.params = replace(self.strategy.params, horizon_ns=model.model.horizon_ns)
        horizon_s = model.model.horizon_ns / 1e9  # the Kelly bet is the new model's
        self.strategy.sizing = replace(self.strategy.sizing, tau=model.model.tau, horizon_s=horizon_s)
        self.journal.add("model", self.gw.now, version=model.version, previous=old, feature_set=model.model.feature_set,
                         thresholds=self.thresholds())  # fmt: skip
        self.journal.commit()
        log.info("model swapped: version %s -> %s", old, model.version)

    # -- after every step: journal, monitor, risk ------------------------------------------------

    def after_step(self) -> None:
        j, gw = self.journal, self.gw
        fills = False
        for ev in gw.take_events():
            kind, ts, oid = ev.pop("kind"), ev.pop("ts_ns"), ev.pop("order_id", None)
            j.add(kind, ts, oid, **ev)
            if (kind == "submit" and ev.get("order_kind") == "LIMIT") or kind == "amend":
                self.monitor.submitted += 1  # post-only requests: each can be refused for crossing
            if kind == "fill":
                fills = True
                self.stats.fills += 1
                tag = int(ev.get("tag", 0))
                self.filled_by_tag[tag] += float(ev["qty"])
                parents = self.strategy.parents
                mid = parents[tag - 1].decision_mid if 0 < tag <= len(parents) else math.nan
                self.monitor.on_fill(ts, ev["side"], ev["price"], ev["qty"], bool(ev.get("maker")), mid)
        self._parents_ended()
        self.monitor.rejected = gw.post_only_rejects
        if fills:
            self.record_account()
            fig, limit = self.monitor.figures(), self.cfg.live.slippage_alert_bps
            over = fig.slippage_bps > limit  # NaN (no fills in the window) is not over
            detail = f"rolling arrival slippage {fig.slippage_bps:+.2f} bp against {limit} bp ({fig.line()})"
            self.alerts.update("slippage", over, gw.now, fig.slippage_bps, limit, detail)
        state = self.strategy.risk.state
        if state != self._risk_state:
            self._risk_state = state
            if state == RiskState.HALTED:
                self.halt(self.strategy.risk.reason)
            else:
                j.add("risk", gw.now, state=state.name, reason=self.strategy.risk.reason)
        j.commit()

    def _parents_ended(self) -> None:
        parents = self.strategy.parents
        while self._ended_parents < len(parents) and parents[self._ended_parents].ts_end >= 0:
            p = parents[self._ended_parents]
            self._ended_parents += 1
            self.monitor.on_parent_end(self.filled_by_tag.pop(p.tag, 0.0), p.qty)

    def record_account(self) -> None:
        r = self.strategy.risk
        acct = self.gw.account()
        fig = self.monitor.figures()
        self.journal.add(
            "account",
            self.gw.now,
            **acct,
            data_ts=max(self.last_book_ts, self.data_before),  # the market time it is marked at (replay: the data's)
            peak=r.peak,
            day=r.day,
            day_start=r.day_start,
            risk=r.state.name,
            execution=fig.as_dict(),
        )

    # -- the kill switch -------------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        """Cancel everything and stay HALTED (the strategy refuses every new order)."""
        if self.halted_reason:
            return
        self.halted_reason = reason
        now = self.gw.now
        self.strategy.risk.halt(now, reason)
        self._risk_state = RiskState.HALTED
        self.strategy.stop(self.gw)
        self.gw.cancel_all()
        log.error("HALTED: %s: every order cancelled; restart or send 'resume' to trade again", reason)
        self.journal.add("halt", now, reason=reason)
        self.record_account()
        self.after_step()

    def resume(self) -> None:
        if not self.halted_reason:
            return
        self.halted_reason = ""
        self.strategy.risk.reset(self.gw.now)
        self._risk_state = self.strategy.risk.state
        self.wall_invalid_since = None
        log.warning("resumed by an operator command")
        self.journal.add("resume", self.gw.now)
        self.journal.commit()

    def watch(self, wall_ns: int, book_valid: bool, now_ns: int | None = None) -> None:
        """The checks that run on the wall clock (every batch, ticks or not); ``now_ns``: the
        calendar time, for the model's age."""
        lc = self.cfg.live
        created = self.m.created_ns
        if created is not None and now_ns is not None and now_ns - created > lc.max_model_age:
            self.halt(f"model version {self.m.version} is older than live.max_model_age: promote a fresh one")
        if self.live_feed:
            silent, stale = wall_ns - self.wall_last_tick, self.cfg.monitor.stale_data
            detail = f"no market data for {silent / NS:.1f} s (alert at {stale / NS:g} s)"
            self.alerts.update("stale", silent > stale, self.gw.now, silent / NS, stale / NS, detail)
            if silent > lc.feed_silence:
                self.halt(f"feed silent for {(wall_ns - self.wall_last_tick) / NS:.1f} s")
            if book_valid:
                self.wall_invalid_since = None
            elif self.wall_invalid_since is None:
                self.wall_invalid_since = wall_ns
                if self.gw.open_orders():
                    log.warning("book invalid: cancelling our orders until it is resynced")
                    self.strategy.stop(self.gw)
                    self.after_step()
            elif wall_ns - self.wall_invalid_since > lc.invalid_book:
                self.halt(f"no valid book for {(wall_ns - self.wall_invalid_since) / NS:.1f} s")
        for counter, seen_attr, times, limit, what in (
            (self.gw.errors, "_seen_errors", self.errors, lc.error_burst, "exchange errors"),
            (self.gw.rate_limited, "_seen_rl", self.rate_limits, lc.rate_limit_burst, "rate-limit answers"),
        ):
            new = counter - getattr(self, seen_attr)
            setattr(self, seen_attr, counter)
            times.extend([wall_ns] * new)
            while times and times[0] < wall_ns - lc.burst_window:
                times.popleft()
            if len(times) >= limit:
                self.halt(f"{len(times)} {what} within {lc.burst_window / NS:.0f} s")

    def health(self, wall_ns: int, now_ns: int, feed: dict[str, int], book_valid: bool) -> None:
        """Every status interval: a ``health`` record (what the dashboard's health panel shows), the
        PSI of the live features, and the drift and drawdown alerts."""
        s, mc, gw = self.stats, self.cfg.monitor, self.gw
        acct = gw.account()
        lat = np.fromiter(s.latencies_ns, np.int64)
        p50, p90, p99 = (np.quantile(lat, [0.5, 0.9, 0.99]) / 1e3).tolist() if lat.size else [math.nan] * 3
        data_age = (now_ns - self.last_book_ts) / NS if self.live_feed and self.last_book_ts > 0 else math.nan
        self.journal.add(
            "health", gw.now, ticks=s.ticks, decisions=s.decisions, signals=s.signals, fills=s.fills,
            latency_p50_us=p50, latency_p90_us=p90, latency_p99_us=p99, data_ts=self.last_book_ts,
            data_age_s=data_age, silent_s=(wall_ns - self.wall_last_tick) / NS if self.live_feed else 0.0,
            book_valid=book_valid, feed=dict(feed), risk=self.risk_state(),
            halted=self.halted_reason, open_orders=len(gw.open_orders()), model_version=self.m.version,
            equity=acct["equity"], position=acct["position"], warming_up=s.decisions == 0,
            rows_not_arrived=self.unarrived, rows_stale=self.stale_rows, rows_superseded=self.superseded,
        )  # fmt: skip
        if self.drift is not None and (psi := self.drift.psi()) is not None:
            self.journal.add("drift", gw.now, model_version=self.m.version, rows=self.drift.n, psi=psi)
            name, value = worst(psi, mc.drift_ignore)
            detail = f"{name} PSI {value:.3f} against {mc.drift_psi} over the last {self.drift.n} decisions"
            self.alerts.update("drift", value > mc.drift_psi, gw.now, value, mc.drift_psi, detail)
        peak = self.strategy.risk.peak
        if math.isfinite(peak) and peak > 0:
            dd = 1.0 - acct["equity"] / peak
            detail = f"equity {acct['equity']:,.2f} is {dd:.2%} under its peak {peak:,.2f} (alert at {mc.drawdown:.1%})"
            self.alerts.update("drawdown", dd > mc.drawdown, gw.now, dd, mc.drawdown, detail)
        self.journal.commit()

    def thresholds(self) -> dict[str, float]:
        """The operating thresholds in use (a study's may differ from the registered model's)."""
        return {"up": self.m.model.threshold_up, "down": self.m.model.threshold_down}

    def risk_state(self) -> str:
        return "HALTED" if self.halted_reason else self.strategy.risk.state.name

    def status(self) -> str:
        s, gw = self.stats, self.gw
        acct = gw.account()
        state = self.risk_state()
        return (
            f"{gw.name} | model v{self.m.version} | data {format_ns(max(self.last_book_ts, 0))}"
            f" | pos {acct['position']:+.3f} BTC | equity {acct['equity']:,.2f} | fees {acct['fees']:,.2f}"
            f" | decisions {s.decisions:,} ({s.signals:,} signals) | fills {s.fills:,} | open {len(gw.open_orders())}"
            f" | {state} | {self._latency_text()} | {self.monitor.figures().line()}"
        )

    def _latency_text(self) -> str:
        s = self.stats
        if s.decisions:
            return f"latency p50 {s.latency(0.5):.0f} us p99 {s.latency(0.99):.0f} us"
        have = max(self.last_book_ts - self.segment_start, 0) / NS if self.last_book_ts > 0 else 0.0
        return f"warming up: {min(have, MAX_LOOKBACK_S):.0f} of {MAX_LOOKBACK_S} s of data"
