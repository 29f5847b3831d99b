"""The hftbacktest benchmark's two runners: our engine (the quoting rule compiled into its loop, or
from Python between ``run_until`` calls) and hftbacktest (the rule in a numba loop around
``elapse``), on the shared settings; each times its replay loop alone.

hftbacktest is loaded from bench/.cache/hbt (``make bench`` installs it there, never into .venv).
"""

from __future__ import annotations

import importlib
import sys
import time
from types import ModuleType
from typing import Any, NamedTuple

import numba as nb
import numpy as np

from bench.common import CACHE
from bench.hbt_episodes import delivery
from bench.quoting import quote, quote_state, quote_step
from execution.compiled import CompiledStrategy
from execution.engine import Engine
from execution.market import Market
from execution.types import EngineConfig, FillRule, QueueModel

HBT_DIR = CACHE / "hbt"  # pip install --target, by `make bench`
STEP_NS = 100_000_000
QTY = 0.001
CONFIG = EngineConfig(queue_model=QueueModel.PROB, queue_power=2.0, rate_limit=0, fill_rule=FillRule.HFTBACKTEST)

# hftbacktest's order constants (hftbacktest.order), compiled into the numba strategy below;
# hftbacktest() checks them against the installed package.
HBT_BUY, HBT_SELL, HBT_GTX, HBT_LIMIT = 1, -1, 1, 0
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # hftbacktest's best tick of an empty side


class Run(NamedTuple):
    seconds: float
    orders: int
    fills: int
    filled: float  # BTC


def ours(market: Market, python: bool = False) -> Run:
    """Our engine with the quoting rule: compiled into the engine's loop, or (``python``) run from
    Python between ``run_until`` calls."""
    engine = Engine(CONFIG, market.levels)
    engine.load(market)
    now = int(market.books.ts_local[0])
    end = int(max(market.books.ts_ex[-1], delivery(market)[-1], market.trades.ts_ex[-1])) + 1
    strategy = CompiledStrategy(quote_step, quote_state(QTY), STEP_NS, now, 0)
    t0 = time.perf_counter()
    if python:
        while now < end:
            engine.run_until(now)
            quote(engine, QTY)
            now += STEP_NS
        engine.run_until(end)
    else:
        engine.drive(strategy, end)
    seconds = time.perf_counter() - t0
    qty = engine.fills()["qty"]
    real = qty[qty >= CONFIG.lot / 2]  # leaves out float-residue fills of ~1e-17 BTC (records.whole_lots)
    return Run(seconds, len(engine.orders()), len(real), float(real.sum()))


def hftbacktest() -> ModuleType | None:
    """The hftbacktest package from bench/.cache/hbt, or None when it is not installed there."""
    if not (HBT_DIR / "hftbacktest").is_dir():
        return None
    if str(HBT_DIR) not in sys.path:
        sys.path.append(str(HBT_DIR))
    hbt = importlib.import_module("hftbacktest")
    order = importlib.import_module("hftbacktest.order")
    assert (order.BUY, order.SELL, order.GTX, order.LIMIT) == (HBT_BUY, HBT_SELL, HBT_GTX, HBT_LIMIT)
    return hbt


@nb.njit()
def _hbt_quote(hbt: Any, start: int, step: int, qty: float) -> tuple[int, int]:
    """The quoting rule inside hftbacktest's loop: (orders sent, the last elapse code; 1 = end of data)."""
    sent = 0
    code = hbt.elapse(0)  # starts the clock at the first event
    now = hbt.current_timestamp
    first = start + max(-((start - now) // step), 0) * step  # our engine's grid: start + k * step
    if code == 0 and first > now:
        code = hbt.elapse(first - now)
    while code == 0:
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bid, ask, tick = depth.best_bid_tick, depth.best_ask_tick, depth.tick_size
        if bid != INT64_MIN and ask != INT64_MAX:
            have_buy, have_sell = False, False
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                if o.side == HBT_BUY and o.price_tick == bid:
                    have_buy = True
                elif o.side == HBT_SELL and o.price_tick == ask:
                    have_sell = True
                elif o.cancellable:
                    hbt.cancel(0, o.order_id, False)
            if not have_buy:
                sent += 1
                hbt.submit_buy_order(0, sent, bid * tick, qty, HBT_GTX, HBT_LIMIT, False)
            if not have_sell:
                sent += 1
                hbt.submit_sell_order(0, sent, ask * tick, qty, HBT_GTX, HBT_LIMIT, False)
        code = hbt.elapse(step)
    return sent, code


def theirs(hbt: ModuleType, events: np.ndarray, start: int) -> Run:
    """hftbacktest with the quoting rule on ``events``, its grid of decisions starting at ``start``."""
    asset = (
        hbt.BacktestAsset()
        .data([events])
        .linear_asset(1.0)
        .constant_order_latency(CONFIG.entry_latency_ns, CONFIG.response_latency_ns)
        .power_prob_queue_model3(CONFIG.queue_power)
        .no_partial_fill_exchange()
        .trading_value_fee_model(CONFIG.fees.maker, CONFIG.fees.taker)
        .tick_size(CONFIG.tick)
        .lot_size(CONFIG.lot)
    )
    bt = hbt.HashMapMarketDepthBacktest([asset])
    t0 = time.perf_counter()
    sent, code = _hbt_quote(bt, start, STEP_NS, QTY)
    seconds = time.perf_counter() - t0
    if code != 1:
        raise RuntimeError(f"hftbacktest stopped with code {code} before the end of the data")
    state = bt.state_values(0)
    fills, filled = int(state.num_trades), float(state.trading_volume)
    bt.close()
    return Run(seconds, sent, fills, filled)
