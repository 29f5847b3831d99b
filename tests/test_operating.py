"""The operating threshold's engine path (pipelines/operating.py), on scripted markets worked out by hand.

The engine scenarios drive the matching engine the way training's ``pipelines.train.StrategyRun`` does
(``Signals`` -> ``make_strategy`` -> ``replay``), on a market written here: a book every 100 ms, one
tick wide, 5 BTC at each of three levels, so a market order fills whole at the touch. The baseline
strategy (market orders both ways) then trades at prices we know in advance:

- a signal on grid row ``s`` (a second) is decided at ``s`` + ``strategy.decision_delay``; its market
  order reaches the exchange ``execution.entry_latency`` later and buys the ask (sells the bid) of
  the book stamped ``s``;
- the signal holds the position for the strategy's horizon (2 s here): the exit is decided on row
  ``s + 2`` and fills at the touch of the book stamped ``s + 2``.

Each episode takes three seconds: the level is ``BID`` from its entry second until its exit second,
where it stands ``d`` higher (``BID + d`` bid, one tick more ask) for one second. The net return of a
long episode in units of its entry notional is then ``(BID + d - ASK) / ASK - fee (ASK + BID + d) / ASK``
with ``fee`` the taker fee (the fee of each fill is ``fee * price * qty``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from core.config import AppConfig, TrainingConfig
from execution.backtest import Signals, engine_config, make_strategy, replay
from execution.engine import Engine
from execution.market import Market, market_data
from execution.quality import RunRecord
from execution.types import FILL_DTYPE, PARENT_DTYPE
from models.result import Evidence
from pipelines.operating import confirm_run, episodes, measure_cost, rows_of
from tests.conftest import ConfigFactory

NEED = Evidence.of(TrainingConfig())
MIN_ORDERS, Z = NEED

S = 1_000_000_000
T0 = 3600 * S  # an hour after the epoch: no funding time falls inside the scripted market
L = 3
TICK = 0.1
BID = 50_000.0
ASK = BID + TICK
HORIZON = 2 * S


# -- scripted markets --------------------------------------------------------------------------------


def scripted(level: dict[int, float], seconds: int) -> Market:
    """A book every 100 ms for ``seconds`` s from T0; second ``k``'s best bid is ``BID + level.get(k, 0)``."""
    ts = T0 + np.arange(seconds * 10, dtype=np.int64) * (S // 10)
    bid = BID + np.array([level.get(int(k), 0.0) for k in (ts - T0) // S])
    steps = np.arange(L) * TICK
    bids, asks = bid[:, None] - steps, bid[:, None] + TICK + steps
    size = np.full((len(ts), L), 5.0)
    return market_data(ts, ts + 1, bids, size, asks, size)


def run_baseline(cfg: AppConfig, market: Market, rows: int, direction: np.ndarray) -> RunRecord:
    """The baseline strategy on grid rows T0 + i s (i < rows) acting on ``direction``, as StrategyRun runs it."""
    ts = T0 + np.arange(rows, dtype=np.int64) * S
    p = np.full(rows, 0.6)
    signals = Signals(ts, p, p, direction.astype(np.int8), np.full(rows, 1e-5))
    engine = Engine(engine_config(cfg), L, sample_ns=cfg.backtest.sample, cash=cfg.backtest.equity)
    # a fixed notional per entry, each held for the label horizon: as StrategyRun trades
    strategy = make_strategy(
        "baseline", cfg, HORIZON, study_notional=cfg.strategy.baseline_fraction * cfg.backtest.equity
    )
    strategy.params = replace(strategy.params, fixed_hold=True)
    return replay(engine, [market], signals, strategy, cfg.strategy.decision_delay)


def episode_plan(moves: list[float], sides: list[int] | None = None) -> tuple[dict[int, float], np.ndarray, int]:
    """Entries on rows 3k + 1 (long unless ``sides`` says -1), the exit second 3k + 3 at ``moves[k]``."""
    sides = sides or [1] * len(moves)
    rows = 3 * len(moves) + 2
    direction = np.zeros(rows, np.int8)
    level = {}
    for k, (d, side) in enumerate(zip(moves, sides, strict=True)):
        direction[3 * k + 1] = side
        level[3 * k + 3] = d
    return level, direction, rows


def net_long(d: float, fee: float) -> float:
    """Buy the ask, sell the bid ``d`` higher, a taker fee on both fills."""
    exit_bid = BID + d
    return (exit_bid - ASK) / ASK - fee * (ASK + exit_bid) / ASK


def net_short(d: float, fee: float) -> float:
    """Sell the bid, buy back the ask ``d`` higher."""
    exit_ask = BID + d + TICK
    return (BID - exit_ask) / BID - fee * (BID + exit_ask) / BID


@pytest.fixture
def cfg(make_config: ConfigFactory) -> AppConfig:
    c = make_config()
    assert c.instrument.tick_size == TICK and c.execution.entry_latency < c.strategy.decision_delay < S // 10
    return c


# -- the engine path ---------------------------------------------------------------------------------


def test_each_filled_entry_earns_its_round_trip_at_the_prices_the_market_was_scripted_with(cfg: AppConfig) -> None:
    moves = [30.0, -20.0, 0.0, 50.0]
    sides = [1, 1, -1, -1]
    level, direction, rows = episode_plan(moves, sides)
    run = run_baseline(cfg, scripted(level, rows + 3), rows, direction)
    e = episodes(run)
    fee = cfg.instrument.taker_fee
    want = [net_long(d, fee) if s > 0 else net_short(d, fee) for d, s in zip(moves, sides, strict=True)]
    assert len(e) == 4 and e["filled"].all()  # four entries; the four exits are not counted as entries
    assert e["side"].tolist() == sides
    np.testing.assert_allclose(e["ret"], want, rtol=0, atol=1e-12)
    delay = cfg.strategy.decision_delay
    assert e["ts_decision"].tolist() == [T0 + (3 * k + 1) * S + delay for k in range(4)]
    assert rows_of(T0 + np.arange(rows, dtype=np.int64) * S, e["ts_decision"]).tolist() == [1, 4, 7, 10]


def test_measured_cost_is_the_labels_mean_minus_what_a_filled_entry_earned(cfg: AppConfig) -> None:
    n = MIN_ORDERS + 2
    moves = [40.0 if k % 2 else 10.0 for k in range(n)]
    sides = [1] * (n - 4) + [-1] * 4
    level, direction, rows = episode_plan(moves, sides)
    run = run_baseline(cfg, scripted(level, rows + 3), rows, direction)
    ret = np.zeros(rows)  # the labels: +30 bp after each long entry, -10 bp after each short one
    for k, s in enumerate(sides):
        ret[3 * k + 1] = 30e-4 if s > 0 else -10e-4
    ts = T0 + np.arange(rows, dtype=np.int64) * S
    c = measure_cost(run, ts, {1: ret, -1: -ret}, NEED)
    fee = cfg.instrument.taker_fee
    realized = [net_long(d, fee) if s > 0 else net_short(d, fee) for d, s in zip(moves, sides, strict=True)]
    label = ((n - 4) * 30e-4 + 4 * 10e-4) / n  # signed for each entry's side: the short's -10 bp is +10
    assert (c.entries, c.filled) == (n, n) and c.measured
    assert c.label_mean == pytest.approx(label, abs=1e-15)
    assert c.realized_mean == pytest.approx(float(np.mean(realized)), abs=1e-12)
    assert c.cost == pytest.approx(label - float(np.mean(realized)), abs=1e-12)
    gap = np.array([30e-4 if s > 0 else 10e-4 for s in sides]) - np.array(realized)  # label minus realized
    assert c.se == pytest.approx(float(gap.std(ddof=1) / math.sqrt(n)), rel=1e-9)
    # the cost folds in the spread and both taker fees: at flat exits it is at least the fees
    assert c.cost > 2 * fee


def test_a_renewed_or_opposite_signal_during_the_hold_neither_extends_nor_flips_the_bet(cfg: AppConfig) -> None:
    # long signals on rows 1 and 2, a short one on row 3 (each inside the first bet's 2 s hold):
    # the bet still ends on row 3 at +30; then flat, a long on row 5 ends on row 7 at -10
    direction = np.zeros(9, np.int8)
    direction[[1, 2, 5]], direction[3] = 1, -1
    level = {3: 30.0, 4: 90.0, 7: -10.0, 8: 60.0}  # an exit a second late would see +90 or +60
    run = run_baseline(cfg, scripted(level, 12), 9, direction)
    e = episodes(run)
    fee = cfg.instrument.taker_fee
    assert e["side"].tolist() == [1, 1] and e["filled"].all()
    np.testing.assert_allclose(e["ret"], [net_long(30.0, fee), net_long(-10.0, fee)], rtol=0, atol=1e-12)
    assert len(run.parents) == 4  # two entries, two exits: no added size, no flip


def test_fewer_than_min_orders_filled_entries_leave_the_cost_unmeasured(cfg: AppConfig) -> None:
    n = MIN_ORDERS - 1
    level, direction, rows = episode_plan([20.0] * n)
    run = run_baseline(cfg, scripted(level, rows + 3), rows, direction)
    c = measure_cost(run, T0 + np.arange(rows, dtype=np.int64) * S, {1: np.zeros(rows), -1: np.zeros(rows)}, NEED)
    assert (c.entries, c.filled) == (n, n) and math.isfinite(c.cost) and not c.measured


def test_a_strategy_whose_entries_never_fill_has_no_cost(cfg: AppConfig) -> None:
    # a market too thin for the risk limits (min_depth_btc): every entry is refused before it is sent
    level, direction, rows = episode_plan([20.0] * (MIN_ORDERS + 1))
    m = scripted(level, rows + 3)
    thin = m._replace(books=m.books._replace(bid_qty=m.books.bid_qty * 0 + 0.01, ask_qty=m.books.ask_qty * 0 + 0.01))
    run = run_baseline(cfg, thin, rows, direction)
    zero = np.zeros(rows)
    c = measure_cost(run, T0 + np.arange(rows, dtype=np.int64) * S, {1: zero, -1: zero}, NEED)
    assert c.filled == 0 and math.isnan(c.cost) and math.isnan(c.realized_mean) and not c.measured


def test_confirmation_needs_the_mean_per_order_above_zero_by_two_standard_errors(cfg: AppConfig) -> None:
    fee = cfg.instrument.taker_fee
    n = MIN_ORDERS + 2
    # longs that clear the round trip: exits 60 and 80 (12 and 16 bp) above the entry bid, alternating
    good = [60.0 if k % 2 else 80.0 for k in range(n)]
    level, direction, rows = episode_plan(good)
    c = confirm_run(run_baseline(cfg, scripted(level, rows + 3), rows, direction), 1, NEED)
    r = np.array([net_long(d, fee) for d in good])
    se = float(r.std(ddof=1) / math.sqrt(n))
    assert c.n == n and c.ev == pytest.approx(r.mean(), abs=1e-12) and c.se == pytest.approx(se, rel=1e-9)
    assert r.mean() - Z * se > 0 and c.ok and "not above zero" not in c.why
    # the same mean spread wide: exits at +280 and -140 (56 and -28 bp): positive, but not by two se
    wide = [280.0 if k % 2 else -140.0 for k in range(n)]
    level, direction, rows = episode_plan(wide)
    c = confirm_run(run_baseline(cfg, scripted(level, rows + 3), rows, direction), 1, NEED)
    r = np.array([net_long(d, fee) for d in wide])
    assert r.mean() > 0 and r.mean() - Z * float(r.std(ddof=1) / math.sqrt(n)) < 0
    assert c.n == n and c.ev == pytest.approx(r.mean(), abs=1e-12) and not c.ok and "not above zero" in c.why
    # and the side asked for: these were all longs
    short = confirm_run(run_baseline(cfg, scripted(level, rows + 3), rows, direction), -1, NEED)
    assert short.n == 0 and not short.ok and "not enough evidence" in short.why


def test_each_side_is_confirmed_on_its_own_entries(cfg: AppConfig) -> None:
    fee = cfg.instrument.taker_fee
    n = MIN_ORDERS
    sides = [-1 if k % 2 else 1 for k in range(2 * n)]
    # the market rises after every entry, by 80 or 100: the longs earn, the shorts lose
    moves = [80.0 if k % 4 < 2 else 100.0 for k in range(2 * n)]
    level, direction, rows = episode_plan(moves, sides)
    run = run_baseline(cfg, scripted(level, rows + 3), rows, direction)
    longs, shorts = confirm_run(run, 1, NEED), confirm_run(run, -1, NEED)
    want_long = [net_long(d, fee) for d, s in zip(moves, sides, strict=True) if s > 0]
    want_short = [net_short(d, fee) for d, s in zip(moves, sides, strict=True) if s < 0]
    assert longs.n == shorts.n == n
    assert longs.ev == pytest.approx(float(np.mean(want_long)), abs=1e-12) and longs.ok
    assert shorts.ev == pytest.approx(float(np.mean(want_short)), abs=1e-12) and not shorts.ok


def test_too_few_orders_is_not_enough_evidence_whatever_they_earned(cfg: AppConfig) -> None:
    n = MIN_ORDERS - 1
    level, direction, rows = episode_plan([200.0] * n)  # every one 40 bp up: still only 29 orders
    c = confirm_run(run_baseline(cfg, scripted(level, rows + 3), rows, direction), 1, NEED)
    assert c.n == n and c.ev == pytest.approx(net_long(200.0, cfg.instrument.taker_fee), abs=1e-12)
    assert not c.ok and math.isnan(c.se) and c.why == f"{n} orders: not enough evidence"


def test_the_evidence_it_needs_is_the_configs(cfg: AppConfig) -> None:
    """training.min_orders and training.threshold_z decide, not numbers written in the code."""
    n = 12
    level, direction, rows = episode_plan([200.0 if k % 3 else -60.0 for k in range(n)])
    run = run_baseline(cfg, scripted(level, rows + 3), rows, direction)
    assert confirm_run(run, 1, Evidence(n + 1, 2.0)).why == f"{n} orders: not enough evidence"
    loose = confirm_run(run, 1, Evidence(n, 0.0))
    assert loose.n == n and loose.ok and loose.ev > 0
    assert not confirm_run(run, 1, Evidence(n, loose.ev / loose.se + 0.01)).ok  # just out of reach


# -- episodes from fills written by hand -------------------------------------------------------------


def record(parents: list[tuple[int, int, int, float]], fills: list[tuple[int, int, int, float, float, float]],
           mid: float = math.nan) -> RunRecord:  # fmt: skip
    """Parents (tag, side, ts_decision, confidence: NaN for an exit) and fills (ts, tag, side, price,
    qty, fee), one final mid at the end of the run."""
    p = np.zeros(len(parents), PARENT_DTYPE)
    for i, (tag, side, ts, conf) in enumerate(parents):
        p[i]["tag"], p[i]["side"], p[i]["ts_decision"], p[i]["confidence"] = tag, side, ts, conf
    f = np.zeros(len(fills), FILL_DTYPE)
    for i, (ts, tag, side, price, qty, fee) in enumerate(fills):
        f[i]["ts_ex"], f[i]["order_id"], f[i]["tag"], f[i]["side"] = ts, i + 1, tag, side
        f[i]["price"], f[i]["qty"], f[i]["fee"] = price, qty, fee
    mids = np.array([mid]) if math.isfinite(mid) else np.zeros(0)
    return RunRecord(fills=f, parents=p, mid_ts=np.arange(len(mids), dtype=np.int64), mid=mids)


def test_an_unfilled_entry_counts_as_zero_and_an_added_entry_earns_nothing_of_its_own() -> None:
    run = record(
        [(1, 1, 10, 0.7), (2, 1, 20, 0.7), (3, 1, 30, 0.8), (4, -1, 40, math.nan)],
        [
            (11, 1, 1, 100.0, 1.0, 0.1),  # entry 1 opens the position
            (31, 3, 1, 102.0, 1.0, 0.2),  # entry 3 adds to it (entry 2 never filled)
            (41, 4, -1, 103.0, 1.0, 0.2),  # the exit closes both, in two fills
            (42, 4, -1, 103.0, 1.0, 0.2),
        ],
    )
    e = episodes(run)
    # one episode owned by entry 1: bought 100 + 102, sold 206, fees 0.7, peak notional 2 x 102 (the
    # largest position, not the last)
    assert e["tag"].tolist() == [1, 2, 3] and e["filled"].tolist() == [True, False, False]
    assert e["ret"].tolist() == pytest.approx([(206.0 - 202.0 - 0.7) / 204.0, 0.0, 0.0], abs=1e-15)
    c = confirm_run(run, 1, NEED)
    assert c.n == 3 and c.ev == pytest.approx((206.0 - 202.0 - 0.7) / 204.0 / 3, abs=1e-15)


def test_one_fill_that_flips_closes_one_episode_and_opens_the_next() -> None:
    run = record(
        [(1, 1, 10, 0.7), (2, -1, 20, 0.9)],
        [
            (11, 1, 1, 100.0, 1.0, 0.05),
            (21, 2, -1, 110.0, 3.0, 0.3),  # 1 closes the long, 2 open a short owned by entry 2
        ],
        mid=105.0,  # the short is still open at the end: marked at the last mid
    )
    e = episodes(run)
    long = (110.0 - 100.0 - 0.05 - 0.1) / 100.0  # the close carries a third of the 0.3 fee
    short = (2 * 110.0 - 2 * 105.0 - 0.2) / (2 * 110.0)
    assert e["filled"].all() and e["ret"].tolist() == pytest.approx([long, short], abs=1e-15)


def test_an_open_episode_without_a_mid_to_mark_at_is_not_counted_as_filled() -> None:
    run = record([(1, 1, 10, 0.7)], [(11, 1, 1, 100.0, 1.0, 0.05)])
    e = episodes(run)
    assert e["filled"].tolist() == [False] and e["ret"].tolist() == [0.0]


def test_a_decision_before_the_first_row_is_left_out_of_the_cost() -> None:
    run = record(
        [(1, 1, 5, 0.7), (2, 1, 25, 0.7)],
        [
            (6, 1, 1, 100.0, 1.0, 0.0),
            (8, 0, -1, 101.0, 1.0, 0.0),
            (26, 2, 1, 100.0, 1.0, 0.0),
            (28, 0, -1, 99.0, 1.0, 0.0),
        ],
    )
    ts = np.array([10, 20, 30], np.int64)
    assert rows_of(ts, np.array([5, 10, 25, 31])).tolist() == [-1, 0, 1, 2]
    ret = np.array([0.5, 0.02, 0.9])
    c = measure_cost(run, ts, {1: ret, -1: -ret}, NEED)
    # only entry 2 (row 1) counts: label 0.02, realized -1 %
    assert (c.entries, c.filled) == (1, 1) and c.cost == pytest.approx(0.02 + 0.01, abs=1e-15)
