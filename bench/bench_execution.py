"""Matching-engine figures: replay speed of recorded events with the queue model at work.

Reads hours of the simulated day cached by bench_models (bench/.cache/model-day), places a few
large post-only orders at and near the touch on both sides (so the queue model tracks them through
every book event and trade) and replays the block with no strategy: once a minute the orders are
reset to those distances from the best (cancel the rest, place the missing), nothing else runs in Python.
Then the same block with the passive strategy quoting (execution.backtest.replay, the backtester's own
driver, which runs the built-in passive strategy compiled: execution/compiled_passive.py): a decision
every second on a signal that holds one direction for 20 s, then the other, each entry a fixed
``QUOTE_NOTIONAL`` (an execution study's sizing: the Kelly bet on these made-up probabilities is
zero, and the strategy would never quote), so a post-only order is always working, requoted
whenever the best price moves.

Timing: each replay figure is the median of ``REPEAT`` runs after a warm-up on the first 5,000
events (one run on this shared 2-core machine swings by half); the quoting replay's includes the
engine's load of the block and the RunRecord, as a backtest pays them.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_models import _day
from bench.common import entry
from core.config import AppConfig, load_config
from execution.backtest import Signals, engine_config, make_strategy, replay
from execution.engine import Engine
from execution.market import Market
from execution.types import EngineConfig, Side
from pipelines.replay import load_market
from warehouse.db import reading
from warehouse.reader import time_bounds

HOUR_NS = 3600 * 1_000_000_000
HOURS = 6
TICKS_AWAY = (0, 1, 2, 5, 10)  # resting orders per side, this many ticks behind the best
STEP_NS = 60 * 1_000_000_000  # filled ones are re-placed every minute
QUOTE_NOTIONAL = 5_000.0  # USDT per entry of the quoting replay
REPEAT = 3  # each replay figure: the median of this many runs, after a warm-up on a slice


def _top_up(engine: Engine) -> None:
    """Keep one order at each distance from the current best: cancel the others, place the missing."""
    tick = engine.cfg.tick
    want = {(int(Side.BUY), round(engine.best_bid / tick) - k) for k in TICKS_AWAY}
    want |= {(int(Side.SELL), round(engine.best_ask / tick) + k) for k in TICKS_AWAY}
    for o in engine.open_orders():
        key = (o.side, round(o.price / tick))
        if key in want:
            want.discard(key)
        else:
            engine.cancel(o.order_id)
    for side, k in sorted(want):
        engine.submit(side, 50.0, k * tick)


def _replay(market: Market) -> tuple[float, Engine]:
    """Seconds to replay ``market`` with resting orders near the touch, reset every minute."""
    engine = Engine(EngineConfig(), market.levels)
    engine.load(market)
    now = int(market.books.ts_local[0])
    end = int(max(market.books.ts_local[-1], market.trades.ts_local[-1])) + 1
    t0 = time.perf_counter()
    while now < end:
        engine.run_until(now)
        _top_up(engine)
        now += STEP_NS
    engine.run_until(end)
    return time.perf_counter() - t0, engine


def _quoting(cfg: AppConfig, market: Market) -> tuple[float, int]:
    """Seconds to replay ``market`` with the passive strategy always quoting; and its fill count."""
    s = 1_000_000_000
    ts = np.arange(int(market.books.ts_ex[0]) + s, int(market.books.ts_ex[-1]), s, dtype=np.int64)
    direction = np.where((ts // (20 * s)) % 2 == 0, 1, -1).astype(np.int8)
    p_win = np.full(len(ts), 0.55)
    sig = Signals(ts, np.where(direction > 0, p_win, 0.05), np.where(direction < 0, p_win, 0.05), direction,
                  np.full(len(ts), 0.4 / math.sqrt(365 * 86400)))  # fmt: skip
    engine = Engine(engine_config(cfg), market.levels, cash=cfg.backtest.equity)
    t0 = time.perf_counter()
    strategy = make_strategy("passive", cfg, 30 * s, study_notional=QUOTE_NOTIONAL)
    record = replay(engine, [market], sig, strategy, cfg.strategy.decision_delay)
    return time.perf_counter() - t0, len(record.fills)


def run() -> list[dict[str, Any]]:
    cfg = _day(load_config(Path(__file__).resolve().parents[1] / "config.yaml"))
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        start, _ = time_bounds(con, cfg.instrument.venue, cfg.instrument.venue_symbol)
    t0 = time.perf_counter()
    market = load_market(cfg, start, start + HOURS * HOUR_NS)
    load_s = time.perf_counter() - t0
    _replay(Market(market.books.take(slice(5000)), market.trades.take(slice(5000))))  # compile / warm up
    runs = [_replay(market) for _ in range(REPEAT)]
    seconds, engine = statistics.median(s for s, _ in runs), runs[-1][1]
    fills = engine.fills()
    note = (
        f"{market.n_events:,} events ({HOURS} h, {market.levels} levels), {len(TICKS_AWAY) * 2} resting orders "
        f"reset each minute ({len(engine.orders()):,} in all), {len(fills):,} fills"
    )
    warm = Market(market.books.take(slice(5000)), market.trades.take(slice(5000)))
    _quoting(cfg, warm)
    quoting = [_quoting(cfg, market) for _ in range(REPEAT)]
    quoting_s, quoting_fills = statistics.median(s for s, _ in quoting), quoting[-1][1]
    return [
        entry(
            "execution: replay with the passive strategy quoting",
            market.n_events / quoting_s,
            "events/s",
            ">= 2000000",
            f"{market.n_events:,} events, a decision every second, {quoting_fills:,} fills (compiled strategy)",
        ),
        entry(
            "execution: replay with the queue model, no strategy",
            market.n_events / seconds,
            "events/s",
            ">= 1000000",
            note,
        ),
        entry("execution: load the replay block from the warehouse", load_s, "s", None, f"{market.n_events:,} events"),
    ]
