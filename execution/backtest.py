"""The backtest driver: recorded market blocks and model signals through the matching engine.

The model's predictions come precomputed, one per feature-grid time (``Signals``: the features as
of the grid time on the exchange clock). The strategy decides at each grid time plus
``decision_delay`` on the local clock, using only what has arrived by then: a row one of whose
events (stamped at or before its grid time) reaches us later is not decided on (counted in the
run's ``rows_not_arrived``), and is woken between decisions by its fills, order reports and moves
of the best price. Market data arrives in blocks (an hour at a time from the warehouse) so a day
never has to sit in memory at once. The same strategy objects run in the live runner, where
the events come from the feed instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.config import AppConfig
from core.jit import kernel_jit, read_only
from execution.compiled_passive_run import compilable, replay_passive
from execution.engine import Engine, Wake
from execution.loader import SHORT_NAMES, load_strategy
from execution.market import Market
from execution.quality import EQUITY_DTYPE, RunRecord
from execution.risk import RiskLimits, RiskManager
from execution.sizing import SizingParams
from execution.strategy import Passive, Signal, Strategy, StrategyParams
from execution.types import EngineConfig, Fees, QueueModel
from execution.venue import BookView
from features import labels

STRATEGIES: dict[str, type[Strategy]] = SHORT_NAMES


@dataclass(frozen=True)
class Signals:
    """The model's output on the feature grid: one row per grid time."""

    ts: np.ndarray  # int64 grid times (exchange clock: the features are as of them)
    p_up: np.ndarray
    p_down: np.ndarray
    direction: np.ndarray  # int8: the model's thresholds applied
    sigma_1s: np.ndarray  # trailing std of 1 s log returns (a fraction)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def at(self, i: int) -> Signal:
        return Signal(
            int(self.ts[i]), float(self.p_up[i]), float(self.p_down[i]), int(self.direction[i]), float(self.sigma_1s[i])
        )


def engine_config(cfg: AppConfig) -> EngineConfig:
    e = cfg.execution
    return EngineConfig(
        tick=cfg.instrument.tick_size,
        lot=cfg.instrument.lot_size,
        entry_latency_ns=e.entry_latency,
        response_latency_ns=e.response_latency,
        queue_model=QueueModel.PROB if e.queue_model == "prob" else QueueModel.RISK_AVERSE,
        queue_power=e.queue_power,
        rate_limit=e.rate_limit,
        rate_window_ns=e.rate_window,
        fees=Fees(cfg.instrument.maker_fee, cfg.instrument.taker_fee, e.funding_rate, e.funding_interval),
    )


def make_strategy(
    name: str,
    cfg: AppConfig,
    horizon_ns: int,
    tau: float | None = None,
    own_in_book: bool = False,
    study_notional: float = 0.0,
) -> Strategy:
    """The strategy ``name`` names (a short name or module:Name: execution.loader) with the config's
    strategy, sizing and risk settings.

    ``tau``: the model's dead zone (default: the config's, as training sets it); ``own_in_book``:
    the book holds our own orders (a live exchange); ``study_notional`` > 0: an execution study,
    every entry that many USDT for either strategy."""
    cls = load_strategy(name)
    s, z, k, i = cfg.strategy, cfg.sizing, cfg.risk, cfg.instrument
    dead_zone = labels.dead_zone(i.maker_fee, extra=cfg.labels.dead_zone_extra) if tau is None else tau
    params = StrategyParams(
        horizon_ns=horizon_ns,
        baseline_fraction=s.baseline_fraction,
        improve_confidence=s.improve_confidence,
        cross_confidence=s.cross_confidence,
        order_timeout_ns=s.order_timeout,
        exit_timeout_ns=s.exit_timeout,
        reprice_ticks=s.reprice_ticks,
        fade_ratio=s.fade_ratio,
        tick=i.tick_size,
        rate_limit=cfg.execution.rate_limit,
        rate_window_ns=cfg.execution.rate_window,
        own_in_book=own_in_book,
        study_notional=study_notional,
    )
    sizing = SizingParams(
        z.kelly_fraction,
        z.vol_target,
        z.depth_fraction,
        z.depth_bps,
        i.lot_size,
        i.lot_size,
        i.min_notional,
        tau=dead_zone,
        horizon_s=horizon_ns / 1e9,
        # passive: both legs as maker (its exits cross only after exit_timeout); baseline: both as taker
        round_trip_cost=2.0 * (i.maker_fee if issubclass(cls, Passive) else i.taker_fee),
    )
    limits = RiskLimits(
        k.max_position_btc,
        k.max_notional,
        k.daily_loss_limit,
        k.reduce_drawdown,
        k.halt_drawdown,
        k.stale_after,
        k.max_spread_bps,
        k.min_depth_btc,
        i.lot_size,
    )
    return cls(params, sizing, RiskManager(limits), name=name.rpartition(":")[2].lower())


@kernel_jit(cache=True)
def _arrivals(
    b_ex: np.ndarray,
    b_local: np.ndarray,
    t_ex: np.ndarray,
    t_local: np.ndarray,
    since: int,
    ex: np.ndarray,
    out: np.ndarray,
) -> None:
    """The book events and trades merged in exchange-time order (a book event first on a tie) into
    ``ex``, and in ``out`` the latest local arrival of any event up to each (delivery is never before
    the exchange time, nor before ``since``, the previous block's last)."""
    i = j = 0
    n, m = b_ex.shape[0], t_ex.shape[0]
    latest = since
    for k in range(n + m):
        if j >= m or (i < n and b_ex[i] <= t_ex[j]):
            e, loc = b_ex[i], b_local[i]
            i += 1
        else:
            e, loc = t_ex[j], t_local[j]
            j += 1
        latest = max(latest, loc, e)
        ex[k] = e
        out[k] = latest


class _Feed:
    """Loads market blocks into the engine on demand and keeps the mid series for markouts."""

    def __init__(self, engine: Engine, blocks: Iterable[Market]) -> None:
        self.engine, self.blocks = engine, iter(blocks)
        self.mid_ts: list[np.ndarray] = []
        self.mid: list[np.ndarray] = []
        self.events = 0
        self.done = False
        # per block: exchange times in order, and the latest local arrival of any event up to each
        self._ex: list[np.ndarray] = []
        self._arrived: list[np.ndarray] = []

    def next(self) -> bool:
        for block in self.blocks:
            if block.n_events == 0:
                continue
            self.engine.load(block)
            self.events += block.n_events
            self.mid_ts.append(block.books.ts_ex)
            self.mid.append(0.5 * (block.books.bid_px[:, 0] + block.books.ask_px[:, 0]))
            b, t = block.books, block.trades
            ex, arrived = np.empty(block.n_events, np.int64), np.empty(block.n_events, np.int64)
            since = self._arrived[-1][-1] if self._arrived else np.iinfo(np.int64).min
            b_ex, b_local, t_ex, t_local = read_only(b.ts_ex, b.ts_local, t.ts_ex, t.ts_local)
            _arrivals(b_ex, b_local, t_ex, t_local, int(since), ex, arrived)
            self._ex.append(ex)
            self._arrived.append(arrived)
            return True
        self.done = True
        return False

    def arrivals(self) -> tuple[np.ndarray, np.ndarray]:
        """The latest block's event exchange times in order, and when the last event up to each reached us."""
        return self._ex[-1], self._arrived[-1]

    def arrived_by(self, ts_ex: int) -> int:
        """When the last of the events stamped at or before exchange time ``ts_ex`` reached us (local clock)."""
        for ex, arrived in zip(reversed(self._ex), reversed(self._arrived), strict=True):
            k = int(np.searchsorted(ex, ts_ex, side="right"))
            if k:
                return int(arrived[k - 1])
        return -(1 << 62)


def replay(
    engine: Engine,
    blocks: Iterable[Market],
    signals: Signals,
    strategy: Strategy,
    decision_delay_ns: int,
    progress: Callable[[float, str], None] | None = None,
    meta: dict[str, Any] | None = None,
    compiled: bool = True,
) -> RunRecord:
    """Run ``strategy`` on ``signals`` over the market ``blocks``; everything it left behind.

    The built-in ``Passive`` (exactly it, fresh) runs compiled when ``compiled`` (the same record:
    execution/compiled_passive_run.py); any other strategy, or ``compiled=False``, runs in Python."""
    feed = _Feed(engine, blocks)
    if not feed.next():
        raise ValueError("no market data in the backtest window")
    if compiled and compilable(strategy, engine.levels):
        assert isinstance(strategy, Passive)
        unarrived = replay_passive(engine, feed, signals, strategy, decision_delay_ns, progress)
        if progress is not None:
            progress(1.0, f"{len(engine.fills()):,} fills")
        return record(engine, strategy, feed, {**(meta or {}), "rows_not_arrived": unarrived})
    wake = Wake.FILL | Wake.ORDER | Wake.END | (Wake.BOOK if isinstance(strategy, Passive) else Wake.NONE)

    def advance(t: int) -> None:
        nonlocal wake
        while True:
            hit = engine.run_until(t, wake)
            if hit == Wake.NONE:
                return
            if hit & Wake.END and not feed.next():
                wake &= ~Wake.END
            if hit & (Wake.FILL | Wake.ORDER | Wake.BOOK):
                strategy.on_wake(engine)

    n = len(signals)
    step = max(1, n // 200)
    unarrived = 0
    for i in range(n):
        t = int(signals.ts[i]) + decision_delay_ns
        if t <= engine.now:
            continue
        advance(t)
        if feed.done and engine.book().ts_local < 0:
            break
        if feed.arrived_by(int(signals.ts[i])) > t:
            unarrived += 1  # an event the row's features used reaches us after t: no decision on it
            continue
        strategy.on_decision(engine, signals.at(i))
        if progress is not None and i % step == 0:
            progress(i / n, f"{len(engine.fills()):,} fills, position {engine.position():+.3f} BTC")
    end = int(signals.ts[-1]) + decision_delay_ns
    strategy.stop(engine)
    advance(max(end, engine.now) + 1_000_000_000)  # let the cancels land
    if progress is not None:
        progress(1.0, f"{len(engine.fills()):,} fills")
    return record(engine, strategy, feed, {**(meta or {}), "rows_not_arrived": unarrived})


def closeout_cost(book: BookView, position: float, taker_fee: float) -> float:
    """USDT it costs to close ``position`` at market on ``book``: the walk of the visible levels away
    from the mid plus the taker fee (what the visible book cannot hold is priced at its last level)."""
    if abs(position) < 1e-9 or not np.isfinite(book.mid):
        return 0.0
    px, qty = (book.bid_px, book.bid_qty) if position > 0 else (book.ask_px, book.ask_qty)
    left, cost, last = abs(position), 0.0, float(px[0])
    for p, q in zip(px, qty, strict=True):
        if not np.isfinite(p) or left <= 0:
            break
        take = min(left, float(q))
        cost += take * (abs(float(p) - book.mid) + float(p) * taker_fee)
        left -= take
        last = float(p)
    return cost + left * (abs(last - book.mid) + last * taker_fee)


def record(engine: Engine, strategy: Strategy, feed: _Feed, meta: dict[str, Any]) -> RunRecord:
    fills = engine.fills()
    parents = strategy.records()
    mid_ts = np.concatenate(feed.mid_ts) if feed.mid_ts else np.zeros(0, np.int64)
    mid = np.concatenate(feed.mid) if feed.mid else np.zeros(0)
    for p in parents:
        mine = fills[fills["tag"] == p["tag"]]
        qty = float(mine["qty"].sum())
        p["filled_qty"] = qty
        p["vwap"] = float((mine["price"] * mine["qty"]).sum() / qty) if qty > 0 else math.nan
        if p["ts_end"] < 0:
            p["ts_end"] = engine.now
            p["end_mid"] = engine.mid
    samples = engine.samples()
    equity = np.zeros(len(samples), EQUITY_DTYPE)
    for name in ("ts", "equity", "position", "mid"):
        equity[name] = samples[name]
    c = engine.counters()
    return RunRecord(
        fills=fills,
        orders=engine.orders(),
        parents=parents,
        mid_ts=mid_ts,
        mid=mid,
        equity=equity,
        fees=engine.fees_paid(),
        funding=engine.funding_paid(),
        closeout_cost=closeout_cost(engine.book(), engine.position(), engine.cfg.fees.taker),
        horizon_ns=strategy.params.horizon_ns,
        requests=c.requests,
        post_only_rejects=c.post_only_rejects,
        rate_limit_rejects=c.rate_limit_rejects,
        meta={
            **meta,
            "strategy": strategy.name,
            "engine": engine.describe(),
            "events": feed.events,
            "decisions": strategy.decisions,
            "throttled_requests": strategy.throttled,
            "risk_refusals": dict(strategy.risk.refused),
            "risk_transitions": [(t, s.name, why) for t, s, why in strategy.risk.transitions],
        },
    )


def blocks_of(load: Callable[[int, int], Market], start_ns: int, end_ns: int, step_ns: int) -> Iterator[Market]:
    """``load(lo, hi)`` for consecutive windows [lo, hi) covering [start_ns, end_ns)."""
    lo = start_ns
    while lo < end_ns:
        hi = min(lo + step_ns, end_ns)
        yield load(lo, hi)
        lo = hi
