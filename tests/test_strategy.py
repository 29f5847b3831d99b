"""The strategies on scripted books through the real matching engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.records import Trades
from execution.backtest import Signals, replay
from execution.engine import Engine
from execution.market import Market, market_data
from execution.quality import metrics
from execution.risk import RiskLimits, RiskManager, RiskState
from execution.sizing import SizingParams
from execution.strategy import Baseline, Parent, Passive, Signal, Strategy, StrategyParams
from execution.types import EngineConfig, Fees, OrderKind, OrderStatus

pytestmark = pytest.mark.kernels

MS = 1_000_000
S = 1_000 * MS
CFG = EngineConfig(entry_latency_ns=MS, response_latency_ns=MS, fees=Fees(0.0002, 0.00055, 0.0))
LEVELS = 3
# no costs in the sizing: these tests are about working orders, the Kelly bet is tested in test_sizing_risk
SIZING = SizingParams(
    kelly_fraction=1.0, vol_target=10.0, depth_fraction=0.5, depth_bps=10, lot=0.001, round_trip_cost=0.0
)
LIMITS = RiskLimits(max_position_btc=5, max_notional=1e9, stale_after_ns=10 * S, max_spread_bps=50, min_depth_btc=0)


def books(times: list[int], bid: list[float], ask: list[float] | None = None, qty: float = 2.0) -> Market:
    """A book with ``LEVELS`` levels one tick apart under ``bid`` and over ``ask`` (spread one tick)."""
    asks = ask or [b + 0.1 for b in bid]
    bp = [[b - 0.1 * k for k in range(LEVELS)] for b in bid]
    ap = [[a + 0.1 * k for k in range(LEVELS)] for a in asks]
    q = [[qty] * LEVELS for _ in bid]
    return market_data(times, times, bp, q, ap, q)


def strategy(cls: type[Strategy], **kw: float) -> Strategy:
    p = StrategyParams(horizon_ns=5 * S, order_timeout_ns=3 * S, exit_timeout_ns=2 * S, **kw)  # type: ignore[arg-type]
    return cls(p, SIZING, RiskManager(LIMITS), name=cls.__name__.lower())


def signals(times: list[int], direction: list[int], p: float = 0.55, quiet: float = 0.05) -> Signals:
    """``p`` in the signalled direction, ``quiet`` elsewhere."""
    d = np.asarray(direction, np.int8)
    return Signals(
        np.asarray(times, np.int64),
        np.where(d > 0, p, quiet),
        np.where(d < 0, p, quiet),
        d,
        np.full(len(times), 0.4 / math.sqrt(365 * 86400)),
    )


def run(st: Strategy, m: Market, sig: Signals, cash: float = 100_000.0) -> tuple[Engine, np.ndarray]:
    eng = Engine(CFG, LEVELS, cash=cash)
    rec = replay(eng, [m], sig, st, decision_delay_ns=MS)
    return eng, rec.fills


def test_baseline_buys_five_percent_of_equity_at_market_and_exits_after_the_horizon() -> None:
    m = books([k * S for k in range(12)], [50_000.0] * 12)
    eng, fills = run(strategy(Baseline), m, signals([k * S for k in range(1, 10)], [1] + [0] * 8))
    qty = math.floor(0.05 * 100_000 / 50_000.05 * 1000) / 1000  # 0.099
    assert [(int(f["side"]), float(f["price"]), bool(f["maker"])) for f in fills] == [
        (1, 50_000.1, False),
        (-1, 50_000.0, False),
    ]
    assert fills["qty"] == pytest.approx([qty, qty])
    assert fills[1]["ts_ex"] >= S + 5 * S  # held for the model's horizon, then flat
    assert eng.position() == pytest.approx(0.0)
    assert fills["fee"].sum() == pytest.approx(0.00055 * qty * (50_000.1 + 50_000.0))


def test_passive_joins_the_bid_and_follows_it_up_with_an_amend() -> None:
    m = books([0, S, 2 * S, 3 * S], [50_000.0, 50_000.0, 50_000.3, 50_000.3])
    st = strategy(Passive)
    eng = Engine(CFG, LEVELS, cash=100_000.0)
    eng.load(m)
    eng.run_until(S + MS)
    st.on_decision(eng, Signal(S, 0.55, 0.05, 1, 0.4 / math.sqrt(365 * 86400)))
    eng.run_until(S + 5 * MS)
    (o,) = eng.open_orders()
    assert (o.side, o.price) == (1, 50_000.0)  # joins: confidence below improve_confidence
    assert eng.orders()[0]["post_only"] and eng.orders()[0]["kind"] == OrderKind.LIMIT
    eng.run_until(2 * S + MS)
    st.on_wake(eng)
    eng.run_until(2 * S + 5 * MS)
    (o,) = eng.open_orders()
    assert o.price == pytest.approx(50_000.3)  # requoted at the new best bid
    assert eng.orders()[0]["amends"] == 1


def test_passive_keeps_following_the_best_price_with_one_amend_in_flight_at_a_time() -> None:
    bids = [50_000.0, 50_000.0, 50_000.3, 50_000.6, 50_000.9]
    m = books([0, S, 2 * S, 2 * S + 2 * MS, 3 * S], bids)
    st = strategy(Passive)
    eng = Engine(CFG, LEVELS, cash=100_000.0)
    eng.load(m)
    eng.run_until(S + MS)
    st.on_decision(eng, Signal(S, 0.55, 0.05, 1, 0.4 / math.sqrt(365 * 86400)))
    eng.run_until(2 * S + MS)
    st.on_wake(eng)  # the bid moved: amend to 50,000.3
    eng.run_until(2 * S + 2 * MS)
    st.on_wake(eng)  # moved again while that amend is in flight: wait for its report
    assert len(st.amending) == 1 and list(st.requests) == [2 * S + MS]  # one amend, not two
    eng.run_until(2 * S + 5 * MS)
    st.on_wake(eng)  # the first amend is acknowledged: follow to 50,000.6
    eng.run_until(3 * S + MS)
    st.on_wake(eng)  # and again to 50,000.9
    eng.run_until(3 * S + 5 * MS)
    (o,) = eng.open_orders()
    assert o.price == pytest.approx(50_000.9) and eng.orders()[0]["amends"] == 3


def test_passive_quotes_inside_a_wide_spread_when_confident_and_crosses_only_when_very_sure() -> None:
    m = books([0, S], [50_000.0] * 2, [50_000.5] * 2)
    for p, kind, price in ((0.7, OrderKind.LIMIT, 50_000.1), (0.9, OrderKind.MARKET, math.nan)):
        st = strategy(Passive)
        eng = Engine(CFG, LEVELS, cash=100_000.0)
        eng.load(m)
        eng.run_until(S + MS)
        st.on_decision(eng, Signal(S, p, 0.05, 1, 0.4 / math.sqrt(365 * 86400)))
        order = eng.orders()[0]
        assert order["kind"] == kind
        assert order["price"] == pytest.approx(price, nan_ok=True)


def test_an_unfilled_passive_entry_is_cancelled_after_the_timeout_and_nothing_is_held() -> None:
    m = books([k * S for k in range(8)], [50_000.0] * 8)
    # the probability stays near its start (no fade) but below the threshold: only the time-out ends it
    eng, fills = run(strategy(Passive), m, signals([S, 2 * S, 3 * S, 4 * S, 5 * S], [1, 0, 0, 0, 0], quiet=0.5))
    assert len(fills) == 0
    orders = eng.orders()
    assert len(orders) == 1 and orders[0]["status"] == OrderStatus.CANCELLED
    assert orders[0]["ts_done_ex"] >= S + 3 * S  # order_timeout


def test_a_filled_passive_entry_exits_passively_then_crosses_after_the_exit_timeout() -> None:
    t = [k * S for k in range(16)]
    m0 = books(t, [50_000.0] * 16)
    # a seller hits our bid at 1.5 s, taking the whole level (2 BTC ahead of us plus ours)
    m = m0._replace(
        trades=Trades(
            np.array([int(1.5 * S)], np.int64),
            np.array([int(1.5 * S)], np.int64),
            np.array([50_000.0]),
            np.array([3.0]),
            np.array([-1], np.int8),
        )
    )
    eng, fills = run(strategy(Passive), m, signals(t[1:12], [1] + [0] * 10))
    assert len(fills) == 2
    entry, exit_ = fills
    assert (entry["side"], entry["maker"], entry["price"]) == (1, True, 50_000.0)
    assert (exit_["side"], exit_["maker"]) == (-1, False)  # nobody lifted our ask: crossed after exit_timeout
    assert exit_["qty"] == pytest.approx(entry["qty"])
    assert eng.position() == pytest.approx(0.0)
    assert exit_["ts_ex"] >= S + 5 * S + 2 * S  # horizon, then exit_timeout


def test_a_halt_cancels_every_order_and_sends_nothing_new() -> None:
    m = books([0, S, 2 * S, 3 * S], [50_000.0] * 4)
    st = strategy(Passive)
    eng = Engine(CFG, LEVELS, cash=100_000.0)
    eng.load(m)
    eng.run_until(S + MS)
    st.on_decision(eng, Signal(S, 0.55, 0.05, 1, 1e-5))
    eng.run_until(S + 5 * MS)
    assert len(eng.open_orders()) == 1
    st.risk.halt(eng.now, "operator")
    st.on_decision(eng, Signal(2 * S, 0.55, 0.05, 1, 1e-5))
    eng.run_until(2 * S + 5 * MS)
    assert eng.open_orders() == [] and len(eng.orders()) == 1
    assert st.risk.state == RiskState.HALTED


def test_replay_record_adds_up() -> None:
    t = [k * S for k in range(20)]
    mids = 50_000.0 + 0.1 * np.round(5 * np.sin(np.arange(20) / 3))
    m = books(t, list(mids))
    st = strategy(Baseline)
    eng = Engine(CFG, LEVELS, cash=100_000.0)
    rec = replay(eng, [m], signals(t[1:15], [1, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0]), st, MS)
    m_ = metrics(rec)
    assert m_["fills"] == len(rec.fills) >= 3
    assert rec.fees == pytest.approx(float(rec.fills["fee"].sum()))
    cash = 100_000.0 - float((rec.fills["side"] * rec.fills["price"] * rec.fills["qty"]).sum()) - rec.fees
    pos = float((rec.fills["side"] * rec.fills["qty"]).sum())
    assert eng.cash() == pytest.approx(cash) and eng.position() == pytest.approx(pos)
    assert rec.parents["filled_qty"].sum() == pytest.approx(float(rec.fills["qty"].sum()))
    assert set(rec.fills["tag"]) <= set(rec.parents["tag"])


@pytest.mark.parametrize(("p_next", "kept"), [(0.2, False), (0.4, True)])
def test_an_entry_is_dropped_when_its_signal_fades_but_not_on_a_flicker(p_next: float, kept: bool) -> None:
    m = books([0, S, 2 * S, 3 * S], [50_000.0] * 4)
    st = strategy(Passive)
    eng = Engine(CFG, LEVELS, cash=100_000.0)
    eng.load(m)
    eng.run_until(S + MS)
    st.on_decision(eng, Signal(S, 0.55, 0.05, 1, 1e-5))
    eng.run_until(2 * S + MS)
    st.on_decision(eng, Signal(2 * S, p_next, 0.05, 0, 1e-5))  # below the threshold now; half of 0.55 is 0.275
    eng.run_until(2 * S + 5 * MS)
    assert (len(eng.open_orders()) == 1) == kept
    assert eng.orders()[0]["status"] == (OrderStatus.OPEN if kept else OrderStatus.CANCELLED)


@pytest.mark.parametrize(("own_in_book", "depth_qty"), [(False, 3.0), (True, 2.5)])
def test_the_depth_cap_removes_our_orders_only_from_a_book_that_holds_them(own_in_book: bool, depth_qty: float) -> None:
    m = books([0, S], [50_000.0] * 2)  # 3 levels of 2 BTC a side, all within 10 bp: 6 BTC, half of it 3
    st = strategy(Passive, own_in_book=own_in_book)
    eng = Engine(CFG, LEVELS, cash=100_000.0)
    eng.load(m)
    eng.run_until(MS)
    eng.submit(1, 1.0, 49_999.9)  # ours, resting within the band on the bid
    eng.run_until(10 * MS)
    qty = st.entry_size(eng, eng.book(), -1, 0.9, 0.01, 1e-5, 0.0)
    # a recording never held our 1 BTC: 6 BTC a side; a live book does: 5 on the bid, 0.5 * 5 = 2.5
    assert qty == pytest.approx(depth_qty)


def test_position_limits_count_resting_and_in_flight_orders() -> None:
    m = books([0, S], [50_000.0] * 2)
    st = strategy(Passive)
    st.risk = RiskManager(RiskLimits(max_position_btc=1.0, max_notional=1e9, stale_after_ns=10 * S, min_depth_btc=0))
    eng = Engine(CFG, LEVELS, cash=100_000.0)
    eng.load(m)
    eng.run_until(MS)
    eng.submit(1, 0.5, 49_999.8)  # resting once acknowledged
    eng.run_until(10 * MS)
    eng.submit(1, 0.3, 49_999.9)  # still on its way to the exchange
    assert [eng.order_status(o.order_id) for o in eng.open_orders()] == [OrderStatus.OPEN, OrderStatus.PENDING]
    # 1 BTC allowed, 0.8 resting or in flight: a buy may add 0.2, a sell is not limited by them
    assert st.entry_size(eng, eng.book(), 1, 0.9, 0.01, 1e-5, 0.0) == pytest.approx(0.2)
    st.active = Parent(tag=7, side=1, qty=0.5, ts_decision=eng.now, decision_mid=eng.mid, confidence=0.9, exit=False)
    st._send(eng, eng.book(), 1, 0.5, 49_999.9, OrderKind.LIMIT)
    assert eng.orders()["qty"][-1] == pytest.approx(0.2) and st.risk.refused.total() == 0


def test_an_execution_study_gives_both_strategies_the_same_sizes() -> None:
    t = [k * S for k in range(20)]
    m = books(t, [50_000.0] * 20)
    sig = signals(t[1:15], [1, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0], p=0.9)
    sizes = []
    for cls in (Baseline, Passive):
        eng = Engine(CFG, LEVELS, cash=100_000.0)
        rec = replay(eng, [m], sig, strategy(cls, study_notional=5_000.0), decision_delay_ns=MS)
        entries = rec.parents[~np.isnan(rec.parents["confidence"])]
        sizes.append(list(entries["target_qty"]))
    qty = math.floor(5_000.0 / 50_000.05 * 1000) / 1000  # 0.099 at the decision mid
    assert sizes[0] == sizes[1] == pytest.approx([qty, qty])
