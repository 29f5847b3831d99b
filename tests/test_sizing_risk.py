"""Sizing limits and risk-manager states, by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from execution.risk import DAY_NS, MarketState, RiskLimits, RiskManager, RiskState
from execution.sizing import (
    SECONDS_PER_YEAR,
    SizingParams,
    depth_within,
    floor_lot,
    kelly_leverage,
    move_beyond,
    size,
)
from tests.conftest import ConfigFactory

P = SizingParams(kelly_fraction=0.5, vol_target=0.5, depth_fraction=0.1, depth_bps=10, lot=0.001)
SIGMA_1S = 0.4 / math.sqrt(SECONDS_PER_YEAR)  # 40 % a year


def test_kelly_leverage_maximises_the_log_growth_of_the_net_of_cost_bet() -> None:
    p_win, p_loss, move, cost = 0.5, 0.2, 0.001, 0.0002  # win +8 bp, lose -12 bp, push -2 bp
    f = kelly_leverage(p_win, p_loss, move, cost)
    grid = np.linspace(0.0, 1.0 / (move + cost) * 0.999, 200_001)
    growth = p_win * np.log1p(grid * (move - cost)) + p_loss * np.log1p(-grid * (move + cost))
    growth += (1 - p_win - p_loss) * np.log1p(-grid * cost)
    assert f == pytest.approx(grid[np.argmax(growth)], rel=1e-3)
    assert f > 100  # a 30 s bet on a few bp: Kelly's leverage is large, the other limits bind


@pytest.mark.parametrize(
    ("p_win", "p_loss", "why"),
    [
        (0.3, 0.3, "no directional edge"),
        (0.2, 0.3, "the edge is the other way"),
        (0.6, 0.1, "the edge, 0.5 * 5 bp = 2.5 bp, is below the 4 bp round trip"),
    ],
)
def test_no_position_without_an_edge_net_of_cost(p_win: float, p_loss: float, why: str) -> None:
    move, cost = 0.0005, 0.0004
    assert kelly_leverage(p_win, p_loss, move, cost) == 0.0, why
    p = SizingParams(tau=0.0004, horizon_s=30.0, round_trip_cost=cost)
    s = size(p_win, p_loss, equity=100_000, mid=50_000, sigma_1s=1e-5, depth=1e6, headroom=1e6, p=p)
    assert s.qty == 0.0 and s.kelly == 0.0 and "no edge after costs" in s.skipped


def test_the_move_beyond_the_dead_zone_is_the_normal_tail_mean() -> None:
    sigma = 0.0004
    x = np.linspace(0.0, 12 * sigma, 1_200_001)  # |X| for X ~ N(0, sigma^2), by quadrature
    pdf = np.exp(-0.5 * (x / sigma) ** 2)
    for tau in (0.0, 0.0002, 0.0008):
        beyond = x > tau
        assert move_beyond(tau, sigma) == pytest.approx((x * pdf)[beyond].sum() / pdf[beyond].sum(), rel=1e-5)
    assert move_beyond(0.0, sigma) == pytest.approx(sigma * math.sqrt(2 / math.pi))
    assert move_beyond(0.0004, 0.0) == 0.0004


def test_vol_target_binds_when_depth_and_headroom_are_ample() -> None:
    s = size(0.9, 0.0, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=1e6, headroom=1e6, p=P)
    # vol target: 100k * 0.5 / 0.4 / 50k = 2.5 BTC; a 90 % win on a 30 s bet: Kelly far above it
    assert s.vol == pytest.approx(2.5)
    assert s.kelly > s.vol and s.binding == "vol" and s.qty == pytest.approx(2.5)


def test_kelly_binds_and_is_its_fraction_of_the_leverage() -> None:
    p = SizingParams(kelly_fraction=0.001, vol_target=10.0, tau=0.0004, horizon_s=30.0, round_trip_cost=0.0004)
    s = size(0.8, 0.02, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=1e6, headroom=1e6, p=p)
    move = move_beyond(0.0004, SIGMA_1S * math.sqrt(30.0))  # about 6 bp against a 4 bp round trip
    f = kelly_leverage(0.8, 0.02, move, 0.0004)
    assert f > 0 and s.binding == "kelly"
    assert s.kelly == pytest.approx(0.001 * f * 100_000 / 50_000)
    assert s.qty == floor_lot(s.kelly, 0.001)


def test_depth_binds_on_a_thin_book_and_rounds_down_to_the_lot() -> None:
    s = size(0.9, 0.0, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=3.2567, headroom=1e6, p=P)
    assert s.binding == "depth"
    assert s.qty == pytest.approx(0.325)  # 0.32567 rounded down


def test_headroom_binds_and_small_sizes_are_skipped() -> None:
    s = size(0.9, 0.0, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=1e6, headroom=0.2, p=P)
    assert s.binding == "headroom" and s.qty == pytest.approx(0.2)
    tiny = size(0.9, 0.0, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=0.005, headroom=1, p=P)
    assert tiny.qty == 0.0 and "minimum size" in tiny.skipped
    cheap = SizingParams(min_notional=100.0, depth_fraction=1.0)
    low = size(0.9, 0.0, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=0.0015, headroom=1, p=cheap)
    assert low.qty == 0.0 and "notional" in low.skipped


def test_more_confidence_means_a_bigger_kelly_bet() -> None:
    p = SizingParams(kelly_fraction=0.001, vol_target=10.0, tau=0.0004, horizon_s=30.0, round_trip_cost=0.0004)
    hi = size(0.9, 0.02, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=1e6, headroom=1e6, p=p)
    lo = size(0.8, 0.02, equity=100_000, mid=50_000, sigma_1s=SIGMA_1S, depth=1e6, headroom=1e6, p=p)
    assert 0 < lo.qty < hi.qty and lo.binding == hi.binding == "kelly"


def test_depth_within_counts_only_the_band_and_removes_our_own() -> None:
    px = np.array([100.0, 99.95, 99.9, 99.8, np.nan])
    qty = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    assert depth_within(px, qty, mid=100.0, bps=10, own=0.5) == pytest.approx(5.5)  # 100, 99.95, 99.9
    assert depth_within(px, qty, mid=100.0, bps=10, own=9.0) == 0.0


def test_floor_lot_tolerates_float_noise() -> None:
    assert floor_lot(0.3 - 1e-15, 0.001) == pytest.approx(0.3)
    assert floor_lot(-1.0, 0.001) == 0.0


LIM = RiskLimits(
    max_position_btc=1.0, max_notional=1e9, reduce_drawdown=0.02, halt_drawdown=0.04, daily_loss_limit=0.03
)
GOOD = MarketState(now_ns=10, book_ts_ns=5, bid=50_000.0, ask=50_000.1, depth=10.0)


def test_drawdown_moves_active_to_reducing_and_back_then_halts_for_good() -> None:
    rm = RiskManager(LIM)
    assert rm.update(0, 100.0) == RiskState.ACTIVE
    assert rm.update(1, 97.9) == RiskState.REDUCING
    assert rm.update(2, 99.0) == RiskState.ACTIVE
    assert rm.update(3, 95.9) == RiskState.HALTED
    assert rm.update(4, 120.0) == RiskState.HALTED  # sticky
    assert "drawdown" in rm.reason
    rm.reset(5)
    assert rm.state == RiskState.ACTIVE and rm.update(6, 120.0) == RiskState.ACTIVE


def test_daily_loss_is_measured_from_the_utc_day_start() -> None:
    rm = RiskManager(RiskLimits(daily_loss_limit=0.03, reduce_drawdown=0.5, halt_drawdown=0.6))
    rm.update(0, 100.0)
    rm.update(DAY_NS - 1, 110.0)  # peak 110; the day started at 100
    assert rm.update(DAY_NS, 107.0) == RiskState.ACTIVE  # a new day starts at 107
    assert rm.update(DAY_NS + 1, 103.7) == RiskState.HALTED  # -3.08 % on the day
    assert "daily loss" in rm.reason


def test_reducing_refuses_new_exposure_but_allows_reduction() -> None:
    rm = RiskManager(LIM)
    rm.update(0, 100.0)
    rm.update(1, 97.5)
    assert not rm.check(+1, 0.1, position=0.5, pending=0.0, mkt=GOOD).ok
    v = rm.check(-1, 0.1, position=0.5, pending=0.0, mkt=GOOD)
    assert v.ok and v.qty == pytest.approx(0.1)
    assert rm.refused["reducing"] == 1


def test_halted_refuses_everything() -> None:
    rm = RiskManager(LIM)
    rm.halt(0, "feed silent for 12 s")
    v = rm.check(-1, 0.1, position=0.5, pending=0.0, mkt=GOOD)
    assert not v.ok and v.reason == "halted: feed silent for 12 s"


@pytest.mark.parametrize(
    ("mkt", "reason"),
    [
        (MarketState(10, 5, 50_000.1, 50_000.0, 10.0), "invalid book"),
        (MarketState(10, 5, float("nan"), 50_000.0, 10.0), "invalid book"),
        (MarketState(3_000_000_000, 5, 50_000.0, 50_000.1, 10.0), "stale data"),
        (MarketState(10, 5, 50_000.0, 50_100.0, 10.0), "spread guard"),
        (MarketState(10, 5, 50_000.0, 50_000.1, 0.1), "depth guard"),
    ],
)
def test_market_guards_refuse_new_exposure(mkt: MarketState, reason: str) -> None:
    v = RiskManager(LIM).check(+1, 0.1, position=0.0, pending=0.0, mkt=mkt)
    assert not v.ok and v.reason.startswith(reason)


def test_spread_and_depth_guards_still_let_a_position_be_reduced() -> None:
    wide = MarketState(10, 5, 50_000.0, 50_100.0, 0.0)
    assert RiskManager(LIM).check(-1, 0.2, position=0.5, pending=0.0, mkt=wide).ok


def test_orders_are_trimmed_to_the_position_limit_counting_resting_orders() -> None:
    rm = RiskManager(LIM)
    v = rm.check(+1, 0.5, position=0.4, pending=0.3, mkt=GOOD)
    assert v.qty == pytest.approx(0.3) and "trimmed" in v.reason
    assert not rm.check(+1, 0.5, position=0.7, pending=0.3, mkt=GOOD).ok
    notional = RiskManager(RiskLimits(max_position_btc=10, max_notional=25_000.0, min_depth_btc=0))
    assert notional.check(+1, 1.0, position=0.0, pending=0.0, mkt=GOOD).qty == pytest.approx(0.499)
    assert rm.headroom(+1, position=0.4, pending=0.3, price=50_000.0) == pytest.approx(0.3)


def test_the_stale_data_check_reads_the_corrected_arrival_of_a_recording(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """A recorder 1.5 s behind the exchange: the stale check measures the silence from the book's
    corrected arrival (warehouse clock offsets, through load_market), not from the recorded stamp."""
    from execution.backtest import Signals, engine_config, make_strategy, replay
    from execution.engine import Engine
    from execution.market import Market
    from market.sources.files import FileSource
    from pipelines.replay import load_market
    from tests.test_clocks import BEHIND_A, FILE_A, T0, binance, write_recording
    from warehouse.ingest import run_ingest

    ms = 1_000_000
    cfg = binance(make_config(warehouse={"snapshot_levels": 2}, risk={"stale_after": "2s", "max_spread_bps": 20.0}))
    recording = write_recording(tmp_path / "a.gz", FILE_A, BEHIND_A, 1000)
    assert run_ingest(FileSource([recording]), cfg, detail="one file").status == "completed"
    m = load_market(cfg, None, None)
    # the last book update: stamped T0 + 300 ms, recorded 1.5 s earlier + 11 ms of jitter; the file's
    # offset is 1,498 ms (its smallest jitter, 2 ms), so it arrived at T0 + 309 ms
    last = (T0 + 309) * ms
    assert int(m.books.ts_local[-1]) == last

    def decide_at(t: int, market: Market) -> tuple[int, int]:
        """One buy decision at local time ``t`` (baseline, a fixed 50 USDT): orders sent, stale refusals."""
        strategy = make_strategy("baseline", cfg, 60 * 10**9, study_notional=50.0)
        g = t - 10 * ms
        signals = Signals(np.array([g]), np.array([0.9]), np.array([0.05]), np.ones(1, np.int8), np.array([1e-4]))
        run = replay(Engine(engine_config(cfg), 1), [market], signals, strategy, 10 * ms)
        return len(run.orders), strategy.risk.refused["stale data"]

    assert decide_at(last + 1_900 * ms, m) == (1, 0)  # 1.9 s of silence: under stale_after
    assert decide_at(last + 2_100 * ms, m) == (0, 1)  # 2.1 s: stale, no order
    # with the recorded (uncorrected) stamps the book would look 1.498 s older: the 1.9 s decision refused
    raw = Market(
        m.books._replace(ts_local=m.books.ts_local - 1_498 * ms),
        m.trades._replace(ts_local=m.trades.ts_local - 1_498 * ms),
    )
    assert decide_at(last + 1_900 * ms, raw) == (0, 1)
