"""The runner's event loop: ticks in, rows, decisions, orders, journal out, in small parts.

- rows (live/rows.py): the online features, which grid rows exist, when each is decided on;
- decide (live/decide.py): model -> signal, for the strategy;
- act: the gateway (live/gateway.py), paper or live, which also keeps its own time;
- record (live/record.py): the journal of events, decisions and the account;
- watch (live/watch.py): execution quality, alerts, drift, the kill switch's checks, health.

The runner wires the parts for its mode and feed (live/wiring.py ``make_loop``); the loop has no
mode of its own. Decisions wait, in order, until the gateway can take them: the paper exchange
holds every tick stamped up to a decision's local time before it is run there (it never runs
ahead of the feed), so an order decided on a tick's arrival is sent at that arrival and reaches
the exchange an entry latency later; the live gateway takes them at once.

The kill switch (drawdown and daily loss in the risk manager; the watch's checks; an operator's
``halt``) cancels every order and leaves the runner HALTED until a restart or a ``resume``.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np

from core.records import Book
from core.timefmt import format_ns
from execution.risk import RiskState
from execution.strategy import Strategy
from features import MAX_LOOKBACK_S
from live.decide import Decide, Loaded
from live.drift import DriftMonitor
from live.feed import Tick
from live.gateway import RunnerGateway
from live.record import Record, Stats
from live.rows import Due, Rows
from live.watch import Watch, drift_monitor

log = logging.getLogger("live.runner")
RECANCEL_NS = 1_000_000_000  # HALTED with orders open: the cancel-all is sent again at most this often

__all__ = ["Loaded", "Loop"]


class Loop:
    """Every tick through the parts: the rows it makes due wait for the gateway, are decided on in
    order, and every step's events are recorded and watched."""

    def __init__(
        self, gw: RunnerGateway, strategy: Strategy, rows: Rows, decide: Decide, record: Record, watch: Watch
    ) -> None:
        self.gw, self.strategy, self.rows, self.decider = gw, strategy, rows, decide
        self.record, self.watch = record, watch
        self.scheduled: deque[Due] = deque()  # decisions waiting until the gateway can take them
        self.sim_ns = 0  # time spent in the paper exchange during the current tick (not decision latency)
        self._tick_t0 = 0
        self._recancel_ns = 0  # HALTED with orders still open: when the cancel-all was last sent again

    # -- what the runner, the status line and the benchmark read --------------------------------

    @property
    def m(self) -> Loaded:
        return self.decider.m

    @property
    def stats(self) -> Stats:
        return self.record.stats

    @property
    def drift(self) -> DriftMonitor | None:
        return self.watch.drift

    @property
    def halted_reason(self) -> str:
        return self.watch.halted_reason

    @property
    def last_book_ts(self) -> int:
        return self.rows.last_book_ts

    # -- ticks -----------------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        self._tick_t0, self.sim_ns = time.perf_counter_ns(), 0
        self.record.stats.ticks += 1
        self.scheduled.extend(self.rows.arrive(tick))
        self._run_to(self.gw.ready_until(tick.ts_ex))
        self.gw.on_tick(tick)
        self.rows.take(tick)
        if isinstance(tick, Book):
            self.watch.monitor.on_mid(tick.ts_ex, 0.5 * (tick.bid_px[0] + tick.ask_px[0]))

    def finish(self) -> None:
        """The recorded data ended: the rows up to its last tick are decided (a replay, as the backtester)."""
        for due in self.rows.rest():
            self._tick_t0, self.sim_ns = time.perf_counter_ns(), 0
            self.scheduled.append(due)
            self._run_to(self.scheduled[-1].t)

    def advance(self, t: int) -> None:
        """Run the gateway to local time ``t``, waking the strategy on the way (as the backtester)."""
        while True:
            t0 = time.perf_counter_ns()
            hit = self.gw.run_to(t)
            self.sim_ns += time.perf_counter_ns() - t0
            if not hit:
                return
            self.strategy.on_wake(self.gw)
            self.after_step()

    def _run_to(self, t: int) -> None:
        """Take the waiting decisions due by local time ``t``, each at its time, then run to ``t``."""
        while self.scheduled and self.scheduled[0].t <= t:
            at, row = self.scheduled.popleft()
            self.decide(row.g, row.x, row.feature_ns, at)
        self.advance(t)

    # -- decisions -------------------------------------------------------------------------------

    def decide(self, g: int, x: np.ndarray, feature_ns: int, t: int) -> None:
        """Predict, let the strategy work its orders and the risk manager check them, at local time ``t``.

        Latency: from the tick during which the decision is taken (paper, live feed: the first tick
        stamped after its time) to the strategy's last request, less the paper exchange's own
        simulation, plus the features' update of the row's book update."""
        if self.gw.passed(t):
            return
        self.advance(t)
        book = self.gw.book()  # the book the decision sees (journalled: the dashboard's price chart)
        if book.ts_local < 0:
            return
        signal = self.decider.signal(g, x)
        if self.watch.halted_reason:
            self.strategy.stop(self.gw)
        else:
            self.strategy.on_decision(self.gw, signal)
        latency = time.perf_counter_ns() - self._tick_t0 - self.sim_ns + feature_ns
        self.record.decision(t, signal, self.m, self.strategy.target, latency, book)
        if self.watch.drift is not None:
            self.watch.drift.add(x)
        self.after_step()

    def swap(self, model: Loaded) -> None:
        """A newly promoted model, between decisions: the strategy keeps its state."""
        old = self.decider.swap(model)
        self.watch.drift = drift_monitor(self.watch.cfg, model)
        self.record.journal.add("model", self.gw.now, version=model.version, previous=old,
                                feature_set=model.model.feature_set, thresholds=self.decider.thresholds())  # fmt: skip
        self.record.journal.commit()
        log.info("model swapped: version %s -> %s", old, model.version)

    # -- after every step: journal, monitor, risk ------------------------------------------------

    def after_step(self) -> None:
        if self.watch.on_events(self.record.events(self.gw), self.strategy, self.gw):
            self.record_account()
            self.watch.slippage(self.gw.now)
        if self.watch.risk_changed(self.strategy.risk, self.gw.now):
            self.halt(self.strategy.risk.reason)
        self.record.journal.commit()

    async def cancel_everything(self, wait_ns: int, tries: int = 5) -> list[int]:
        """Cancel every open order and see it gone (a shutdown): a cancel-all the exchange refused
        (its rate limit, a lost request) is sent again ``wait_ns`` later, on the data's clock for the
        paper exchange and the wall clock live, up to ``tries`` times. Returns the ids still open."""
        for i in range(tries):
            if i:
                await self.gw.pause(wait_ns)
            self.gw.cancel_all()
            await self.gw.sync()
            if self.last_book_ts >= 0:  # paper: the exchange answers the cancels (live: a no-op)
                self.advance(self.gw.now + wait_ns)
            self.after_step()
            if not (left := [o.order_id for o in self.gw.open_orders()]):
                return []
            log.warning("shutdown: %d orders still open after cancel-all %d of %d", len(left), i + 1, tries)
        return left

    def record_account(self) -> None:
        fig = self.watch.monitor.figures()
        self.record.account(self.gw, self.strategy.risk, self.rows.last_book_ts, fig.as_dict())

    # -- the kill switch -------------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        """Cancel everything and stay HALTED (the strategy refuses every new order)."""
        if self.watch.halted_reason:
            return
        self.watch.halted_reason = reason
        self._recancel_ns = time.monotonic_ns()  # the runner's wall clock (``check``)
        now = self.gw.now
        self.strategy.risk.halt(now, reason)
        self.watch.risk_state = RiskState.HALTED
        self.strategy.stop(self.gw)
        self.gw.cancel_all()
        log.error("HALTED: %s: every order cancelled; restart or send 'resume' to trade again", reason)
        self.record.journal.add("halt", now, reason=reason)
        self.record_account()
        self.after_step()

    def resume(self) -> None:
        if not self.watch.halted_reason:
            return
        self.watch.halted_reason = ""
        self.strategy.risk.reset(self.gw.now)
        self.watch.risk_state = self.strategy.risk.state
        if self.watch.feed is not None:
            self.watch.feed.invalid_since = None
        self.watch.forget_bursts()
        log.warning("resumed by an operator command")
        self.record.journal.add("resume", self.gw.now)
        self.record.journal.commit()

    def check(self, wall_ns: int, book_valid: bool, now_ns: int | None = None) -> None:
        """The watch's wall-clock checks (every batch, ticks or not); ``now_ns``: the calendar time."""
        self.watch.check(wall_ns, book_valid, now_ns, self.gw, self.m, self.halt, self._pause, self.rows.last_book_ts)
        if self.watch.halted_reason and wall_ns - self._recancel_ns >= RECANCEL_NS and self.gw.open_orders():
            self._recancel_ns = wall_ns  # a cancel the exchange refused (its rate limit): sent again
            log.warning("HALTED with %d orders still open: cancel-all again", len(self.gw.open_orders()))
            self.gw.cancel_all()

    def _pause(self) -> None:
        """The book turned invalid: our orders are cancelled until it is resynced."""
        if self.gw.open_orders():
            log.warning("book invalid: cancelling our orders until it is resynced")
            self.strategy.stop(self.gw)
            self.after_step()

    def health(self, wall_ns: int, now_ns: int, feed: dict[str, int], book_valid: bool) -> None:
        r = self.strategy.risk
        self.watch.health(wall_ns, now_ns, feed, book_valid, gw=self.gw, stats=self.stats, rows=self.rows, m=self.m,
                          risk=self.risk_state(), peak=r.peak)  # fmt: skip

    def risk_state(self) -> str:
        return "HALTED" if self.watch.halted_reason else self.strategy.risk.state.name

    def status(self) -> str:
        s, gw = self.stats, self.gw
        acct = gw.account()
        return (
            f"{gw.name} | model v{self.m.version} | data {format_ns(max(self.rows.last_book_ts, 0))}"
            f" | pos {acct['position']:+.3f} BTC | equity {acct['equity']:,.2f} | fees {acct['fees']:,.2f}"
            f" | decisions {s.decisions:,} ({s.signals:,} signals) | fills {s.fills:,} | open {len(gw.open_orders())}"
            f" | {self.risk_state()} | {self._latency_text()} | {self.watch.monitor.figures().line()}"
        )

    def _latency_text(self) -> str:
        """Decision latency; while the features' longest window is not yet filled with gap-free
        data (at the start, and again after the book went silent for longer than the grid's
        ``max_gap``: rows need it whole, as the batch build does), how far the warm-up has come."""
        s, warmed = self.stats, self.rows.grid.warmed_s()
        latency = f"latency p50 {s.latency(0.5):.0f} us p99 {s.latency(0.99):.0f} us" if s.decisions else ""
        if warmed >= MAX_LOOKBACK_S:
            return latency
        again = " again after a gap in the book" if s.decisions else ""
        return ", ".join(filter(None, [f"warming up{again}: {warmed:.0f} of {MAX_LOOKBACK_S} s of data", latency]))
