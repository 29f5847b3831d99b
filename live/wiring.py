"""The runner's wiring: which feed, which gateway and which loop parts a mode and a source get.

This is the one place that knows the modes. ``--paper`` and ``--live`` differ in the gateway
(the backtester's matching engine, or real orders on Bybit), a replay and a live-paced source in
when rows are decided on and whether the feed is watched on the wall clock; the loop itself has
no mode (live/loop.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import AppConfig
from execution.strategy import Strategy
from live.alerts import Alerts
from live.decide import Decide, Loaded
from live.feed import Feed, ReplayFeed, SourceFeed
from live.gateway import RunnerGateway
from live.loop import Loop
from live.paper import PaperGateway
from live.record import Record
from live.rows import FeedTiming, ReplayTiming, Rows, Timing
from live.watch import FeedWatch, Watch
from warehouse.journal import Journal, Restored


@dataclass
class Options:
    live: bool
    source: str
    model: str | None
    duration_ns: int | None
    start_ns: int | None
    end_ns: int | None
    strategy: str
    speed: float | None
    threshold: float | None = None
    journal: Path | None = None  # None: live.journal_dir/<mode>-<source>.sqlite
    wait: bool = False  # with no champion yet, wait for one instead of exiting


def make_feed(cfg: AppConfig, o: Options) -> Feed:
    if o.source == "replay":
        return ReplayFeed(cfg, o.start_ns, o.end_ns, cfg.live.replay_speed if o.speed is None else o.speed)
    if o.source == "sim":
        from sim.source import SimSource

        span = o.duration_ns or 365 * 86_400 * 1_000_000_000
        return SourceFeed(SimSource(cfg.sim, cfg.instrument, cfg.ingest.depth, span, realtime=True), cfg)
    from market.sources.bybit import BybitSource

    return SourceFeed(BybitSource(cfg, None), cfg)


def make_loop(
    cfg: AppConfig,
    gateway: RunnerGateway,
    strategy: Strategy,
    model: Loaded,
    journal: Journal,
    paced: bool,
    alerts: Alerts | None = None,
) -> Loop:
    """The loop's parts for a gateway and a feed: ``paced`` (a live-paced feed, not a replay)
    decides on arrival and watches the feed on the wall clock."""
    timing: Timing = FeedTiming(strategy.risk.limits.stale_after_ns) if paced else ReplayTiming()
    f = cfg.features
    rows = Rows(cfg.instrument.tick_size, f.grid, f.max_gap, cfg.strategy.decision_delay, timing)
    watch = Watch(cfg, model, strategy.risk, journal, alerts or Alerts(journal), FeedWatch(cfg) if paced else None)
    return Loop(gateway, strategy, rows, Decide(model, strategy), Record(journal), watch)


def make_gateway(
    cfg: AppConfig, o: Options, restored: Restored, session: str, keys: tuple[str, str] | None
) -> RunnerGateway:
    """Real orders with ``--live`` (the keys), else the paper exchange on the restored account."""
    if o.live:
        from live.bybit_gateway import BybitGateway

        assert keys is not None
        return BybitGateway(cfg, keys[0], keys[1], session)
    return PaperGateway(cfg, restored.account, restored.last_order_id, cfg.backtest.sample)
