"""The compiled passive strategy (execution/compiled_passive*.py) is the Python ``Passive``, decision
for decision: the same market and signals replayed both ways leave the same RunRecord (orders,
fills, parents, equity, counters, decisions, throttled requests, risk refusals and transitions,
floats bit for bit) and the strategy object in the same state."""

from __future__ import annotations

import dataclasses
import itertools
import math
import struct
from typing import Any

import numpy as np
import pytest

from execution.backtest import Signals, replay
from execution.compiled_passive_run import compilable
from execution.engine import Engine
from execution.market import Market, market_data
from execution.risk import RiskLimits, RiskManager
from execution.run_record import RunRecord
from execution.sizing import SizingParams
from execution.strategy import Passive, StrategyParams
from execution.types import EngineConfig, Fees, OrderKind

# the first run compiles the engine's loop with the step: minutes on a loaded machine (then cached)
pytestmark = [pytest.mark.kernels, pytest.mark.timeout(900)]

MS = 1_000_000
S = 1_000 * MS
LEVELS = 5
TICK = 0.1
CFG = EngineConfig(entry_latency_ns=3 * MS, response_latency_ns=4 * MS, fees=Fees(0.0002, 0.00055, 0.0))
SIGMA = 3e-5  # std of 1 s log returns: enough for Kelly to bet on these probabilities


def _market(seed: int, seconds: int, blocks: int) -> list[Market]:
    """A random market of ``LEVELS`` levels: the mid walks by ticks, the spread is mostly one tick
    (sometimes a few), trades hit the best; feed latency 1-20 ms. Cut into ``blocks`` time blocks."""
    rng = np.random.default_rng(seed)
    book: list[tuple[int, int, list[float], list[float], list[float], list[float]]] = []
    trades: list[tuple[int, int, float, float, int]] = []
    t, bid, spread = 0, 500_000, 1
    while t < seconds * S:
        t += int(rng.integers(5, 80)) * MS
        local = t + int(rng.integers(1, 20)) * MS
        if rng.random() < 0.35 and book:
            side = 1 if rng.random() < 0.5 else -1
            px = (bid + spread if side > 0 else bid) * TICK
            trades.append((t, local, px, round(float(rng.lognormal(-2.5, 1.2)), 3) + 0.001, side))
            continue
        bid += int(rng.choice([-1, 0, 0, 1]))
        spread = 1 if rng.random() < 0.8 else int(rng.integers(2, 5))
        bp = [(bid - k) * TICK for k in range(LEVELS)]
        ap = [(bid + spread + k) * TICK for k in range(LEVELS)]
        bq = [round(float(x), 3) for x in rng.uniform(0.05, 3.0, LEVELS)]
        aq = [round(float(x), 3) for x in rng.uniform(0.05, 3.0, LEVELS)]
        book.append((t, local, bp, bq, ap, aq))
    edges = np.linspace(0, t + 1, blocks + 1).astype(np.int64)
    out = []
    for lo, hi in itertools.pairwise(edges):
        bk = [b for b in book if lo <= b[0] < hi]
        tr = [x for x in trades if lo <= x[0] < hi]
        out.append(market_data(*zip(*bk, strict=True), *(zip(*tr, strict=True) if tr else [()] * 5)))
    return out


def _signals(seed: int, seconds: int, flips: float, fades: bool) -> Signals:
    """One signal a second (and a repeated grid time now and then, which replay skips): a direction
    that persists, then flips with probability ``flips``; with ``fades`` its probability sags."""
    rng = np.random.default_rng(seed)
    ts = np.arange(1, seconds) * S
    ts = np.sort(np.concatenate([ts, rng.choice(ts, size=len(ts) // 20)]))
    direction = np.zeros(len(ts), np.int8)
    d = 1
    for i in range(len(ts)):
        if rng.random() < flips:
            d = -d if rng.random() < 0.7 else 0 if d else 1
        direction[i] = d
    p = rng.uniform(0.55, 0.95, len(ts))
    if fades:
        p = np.where(rng.random(len(ts)) < 0.3, rng.uniform(0.05, 0.3, len(ts)), p)
    p_up = np.where(direction > 0, p, 0.04)
    p_down = np.where(direction < 0, p, 0.04)
    return Signals(ts, p_up, p_down, direction, np.full(len(ts), SIGMA))


def _strategy(limits: RiskLimits, **params: Any) -> Passive:
    p = StrategyParams(
        **{"horizon_ns": 5 * S, "order_timeout_ns": 3 * S, "exit_timeout_ns": 2 * S, "tick": TICK, **params}
    )
    sizing = SizingParams(depth_fraction=0.3, depth_bps=5, horizon_s=5.0, tau=0.0001, round_trip_cost=0.0)
    return Passive(p, sizing, RiskManager(limits), name="passive")


LIMITS = RiskLimits(max_position_btc=2.0, max_spread_bps=1.0, min_depth_btc=0.1)
GUARDED = RiskLimits(max_position_btc=2.0, max_spread_bps=0.05, min_depth_btc=4.0)  # wide spreads, thin books
BITING = RiskLimits(max_position_btc=0.05, reduce_drawdown=2e-6, halt_drawdown=8e-6)
CASES: dict[str, tuple[dict[str, Any], RiskLimits, float, float, bool]] = {
    # name: strategy params, risk limits, cash, flip probability, fading signals
    "default": ({}, LIMITS, 100_000.0, 0.1, False),
    "risk limits bite": ({}, BITING, 100_000.0, 0.3, False),
    "fixed hold": ({"fixed_hold": True}, LIMITS, 100_000.0, 0.2, False),
    "execution study": ({"study_notional": 5_000.0}, LIMITS, 100_000.0, 0.2, False),
    "fading and flipping": ({"improve_confidence": 0.7, "cross_confidence": 0.9}, GUARDED, 100_000.0, 0.4, True),
    "tight timeouts": (
        {"order_timeout_ns": 150 * MS, "exit_timeout_ns": 200 * MS, "rate_limit": 5},
        LIMITS,
        100_000.0,
        0.3,
        False,
    ),
}


def _run(case: str, compiled: bool, seed: int = 1) -> tuple[RunRecord, Passive]:
    params, limits, cash, flips, fades = CASES[case]
    seconds = 120
    strategy = _strategy(limits, **params)
    engine = Engine(CFG, LEVELS, cash=cash)
    rec = replay(
        engine, _market(seed, seconds, 3), _signals(seed, seconds, flips, fades), strategy, 10 * MS, compiled=compiled
    )
    return rec, strategy


def _same(a: Any, b: Any) -> bool:
    """Equal, floats bit for bit (NaN equals NaN), arrays byte for byte."""
    if isinstance(a, np.ndarray):
        return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, float):
        return isinstance(b, float) and struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("case", list(CASES))
def test_the_compiled_passive_strategy_leaves_the_same_record_as_the_python_one(case: str) -> None:
    ours, compiled = _run(case, compiled=True)
    theirs, python = _run(case, compiled=False)
    for f in dataclasses.fields(RunRecord):
        assert _same(getattr(ours, f.name), getattr(theirs, f.name)), f.name
    for name in ("target", "hold_until", "confidence", "decisions", "throttled", "cancelling", "amending"):
        assert _same(getattr(compiled, name), getattr(python, name)), name
    assert list(compiled.requests) == list(python.requests)
    assert _same([dataclasses.astuple(p) for p in compiled.parents], [dataclasses.astuple(p) for p in python.parents])
    assert (compiled.active is None) == (python.active is None)
    assert compiled.active is None or compiled.active is compiled.parents[-1]
    for name in ("state", "reason", "peak", "day", "day_start"):
        assert _same(getattr(compiled.risk, name), getattr(python.risk, name)), name
    # the case does what it is named for (else equality would prove little)
    assert len(theirs.fills) > (1 if case == "risk limits bite" else 10) and len(theirs.parents) > 1
    assert theirs.meta["rows_not_arrived"] > 0
    states = {s for _, s, _ in theirs.meta["risk_transitions"]}
    assert ({"REDUCING", "HALTED"} <= states) == (case == "risk limits bite")
    if case == "tight timeouts":
        assert theirs.meta["throttled_requests"] > 0 and any(theirs.orders["kind"] == OrderKind.MARKET)
    if case == "fading and flipping":
        assert any(math.isnan(c) for c in theirs.parents["confidence"])  # exits


def test_only_the_built_in_passive_runs_compiled() -> None:
    class Joiner(Passive):
        pass

    assert compilable(_strategy(LIMITS), LEVELS) and not compilable(_strategy(LIMITS), 1000)
    built = _strategy(LIMITS)
    assert not compilable(Joiner(built.params, built.sizing, built.risk), LEVELS)
    used = _strategy(LIMITS)
    used.decisions, used.parents = 1, []
    used.risk.refused["halted"] += 1
    assert not compilable(used, LEVELS)  # a strategy already run keeps the Python path
