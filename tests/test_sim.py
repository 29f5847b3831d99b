"""The market simulator: valid Bybit messages, reproducible, and close to the real recordings."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import orjson
import pytest

from core.config import InstrumentConfig, SimConfig, SimModelConfig
from core.records import Trades
from market.events import RawBatch, RawMessage, fixed_to_numpy
from market.normalize import Normalizer
from market.sources.files import FileSource
from market.venues import BYBIT
from sim import MarketSimulator, facts
from sim.simulator import FIRST_UPDATE_ID
from tests.conftest import episode_paths, real_data

S = 1_000_000_000


def simulate(seconds: float, **model: float) -> list[RawMessage]:
    sim = MarketSimulator(SimConfig(model=SimModelConfig(**model)), InstrumentConfig())
    return [m for b in sim.batches(int(seconds * S)) for m in b]


@pytest.mark.kernels
def test_messages_are_valid_bybit_and_rebuild_a_gap_free_uncrossed_book() -> None:
    msgs = simulate(4)
    first = orjson.loads(msgs[0].payload)
    assert first["type"] == "snapshot" and first["data"]["u"] == FIRST_UPDATE_ID
    assert first["topic"] == "orderbook.50.BTCUSDT"
    assert len(first["data"]["b"]) == 50 and len(first["data"]["a"]) == 50

    u = [orjson.loads(m.payload)["data"]["u"] for m in msgs if "orderbook" in m.payload[:30]]
    assert u == list(range(FIRST_UPDATE_ID, FIRST_UPDATE_ID + len(u)))
    assert len(u) > 4 * 50 * 0.8  # a delta nearly every 20 ms
    ts = [m.ts_local for m in msgs]
    assert ts == sorted(ts)

    norm = Normalizer(BYBIT, "BTCUSDT", 0.1, 50, store_raw=False)
    out = norm.process(msgs)
    assert out.counts["rejected"] == 0 and out.counts["gaps"] == 0
    assert out.counts["book_updates"] == len(u)
    assert out.counts["trades"] > 20
    snaps = out.tables["snapshots"]
    bid = fixed_to_numpy(snaps.column("bid_px"), 50)
    ask = fixed_to_numpy(snaps.column("ask_px"), 50)
    bid_q = fixed_to_numpy(snaps.column("bid_qty"), 50)
    assert (bid[:, 0] < ask[:, 0]).all()
    assert (np.diff(bid, axis=1) < 0).all() and (np.diff(ask, axis=1) > 0).all()  # 50 distinct levels a side
    assert (bid_q > 0).all()
    lots = bid_q / 0.001
    assert np.allclose(lots, np.round(lots))

    trades = out.tables["trades"]
    assert trades.column("trade_id").to_pylist() == list(dict.fromkeys(trades.column("trade_id").to_pylist()))
    assert set(trades.column("side").to_pylist()) == {-1, 1}


def test_book_deltas_match_the_simulators_own_book() -> None:
    sim = MarketSimulator(SimConfig(), InstrumentConfig())
    msgs = [m for b in sim.batches(30 * S) for m in b]
    norm = Normalizer(BYBIT, "BTCUSDT", 0.1, 50, store_raw=False)
    snaps = norm.process(msgs).tables["snapshots"]
    last_bid = fixed_to_numpy(snaps.column("bid_px"), 50)[-1, 0]
    last_ask = fixed_to_numpy(snaps.column("ask_px"), 50)[-1, 0]
    bb, ba = sim.best()
    # the last publish happened within one cadence of the end: the book then and now agree closely
    assert abs(last_bid - bb) < 50 and abs(last_ask - ba) < 50
    assert sim.progress_ns == 30 * S


def test_same_seed_same_messages_however_the_time_is_asked_for() -> None:
    one = MarketSimulator(SimConfig(seed=3), InstrumentConfig())
    many = MarketSimulator(SimConfig(seed=3), InstrumentConfig())
    a = [m for b in one.batches(25 * S) for m in b]
    b = [m for _ in range(50) for batch in many.batches(S // 2, max_batch=7) for m in batch]
    assert a == b
    other = [m for b in MarketSimulator(SimConfig(seed=4), InstrumentConfig()).batches(25 * S) for m in b]
    assert other[1:50] != a[1:50]


def test_batches_respect_max_batch_and_progress_advances() -> None:
    sim = MarketSimulator(SimConfig(), InstrumentConfig())
    sizes = [len(b) for b in sim.batches(12 * S, max_batch=100)]
    assert max(sizes) <= 100 and sum(sizes) > 500
    assert sim.progress_ns == 12 * S


def test_trade_ids_differ_between_runs_with_different_starts() -> None:
    a = MarketSimulator(SimConfig(), InstrumentConfig())
    b = MarketSimulator(SimConfig(start="2026-02-01T00:00:00Z"), InstrumentConfig())

    def first_trade_id(sim: MarketSimulator) -> str:
        for m in itertools.chain.from_iterable(sim.batches(5 * S)):
            if "publicTrade" in m.payload[:40]:
                return str(orjson.loads(m.payload)["data"][0]["i"])
        raise AssertionError("no trade")

    assert first_trade_id(a) != first_trade_id(b)


@pytest.mark.kernels
def test_window_recentres_when_the_price_drifts() -> None:
    # a tiny window and big jumps force re-centring; the book stays valid through it, also when
    # strong metaorders run several depletions the same way between two publishes
    for model in (
        SimModelConfig(depth_ticks=60, pullback_ticks=80.0),
        SimModelConfig(depth_ticks=60, pullback_ticks=150.0, meta_rate=20.0, meta_tilt=0.45),
    ):
        sim = MarketSimulator(SimConfig(model=model), InstrumentConfig(), window_ticks=8 * 60)
        base0 = int(sim.book.state[0]["base_tick"])
        msgs = [m for b in sim.batches(20 * S) for m in b]
        assert int(sim.book.state[0]["base_tick"]) != base0
        out = Normalizer(BYBIT, "BTCUSDT", 0.1, 50, store_raw=False).process(msgs)
        assert out.counts["gaps"] == 0 and out.counts["rejected"] == 0 and out.counts["not_synced"] == 0


def test_bad_instrument_is_refused() -> None:
    with pytest.raises(ValueError, match="lot size"):
        MarketSimulator(SimConfig(), InstrumentConfig(lot_size=0.002))
    with pytest.raises(ValueError, match="window_ticks"):
        MarketSimulator(SimConfig(), InstrumentConfig(), window_ticks=100)


def _facts(seconds: float, **model: float) -> dict[str, float]:
    sim = MarketSimulator(SimConfig(model=SimModelConfig(**model)), InstrumentConfig())
    return {f.name: f.value for f in facts.compute(facts.collect(sim.batches(int(seconds * S)), BYBIT, "BTCUSDT", 0.1))}


def test_metaorders_make_order_signs_persistent_and_flow_predict_returns() -> None:
    # strong metaorders: signs stay correlated 100 orders apart and the last 30 s of flow
    # ranks the next 30 s of return; without them neither holds
    strong = _facts(1800, meta_tilt=0.2)
    none = _facts(1800, meta_rate=0.0)
    assert strong["sign_acf_100"] > 0.1 > 0.03 > none["sign_acf_100"]
    assert strong["flow_ic_30s"] > 0.15 > abs(none["flow_ic_30s"])


def test_signs_of_one_order_count_once() -> None:
    # prints with the same time and side are one market order that walked several levels
    one = np.ones(1)
    ts, side = np.array([1, 1, 2, 2, 3]), np.array([1, 1, 1, -1, -1])
    trades = Trades(ts, ts, np.ones(5), np.ones(5), side.astype(np.int8))
    s = facts.Stream(np.zeros(1, np.int64), one, one, one, one, trades, 0.1)
    assert facts.order_signs(s).tolist() == [1.0, 1.0, -1.0, -1.0]
    assert facts.sign_autocorrelation(np.array([1.0, -1.0] * 50), 1) == pytest.approx(-1.0)
    assert facts.sign_autocorrelation(np.array([1.0, -1.0] * 50), 2) == pytest.approx(1.0)


def _real_facts(name: str) -> dict[str, float]:
    src = FileSource(episode_paths(name))

    async def read() -> list[RawBatch]:
        return [b async for b in src.raw_batches()]

    return {f.name: f.value for f in facts.compute(facts.collect(asyncio.run(read()), src.venue, "BTCUSDT", 0.1))}


@real_data
def test_stylized_facts_are_close_to_the_real_recordings() -> None:
    """Each fact of 30 simulated minutes lies within the range of the two real episodes, widened."""
    real = [_real_facts("2023-04-04"), _real_facts("2024-07-18")]
    mine = _facts(1800)
    tolerance = {  # multiplicative slack around [min, max] of the real episodes
        "spread_one_tick_share": 1.01,
        "best_qty_median": 1.5,
        "trade_qty_median": 1.5,
        "trade_qty_mean": 1.5,
        "trades_per_s": 1.5,
        "vol_1s_bps": 1.5,
        "mid_changes_per_s": 1.5,
        "imbalance_hit_rate": 1.15,
        # metaorders (docs/simulator.md): order-sign memory and the 60 s variance ratio; the
        # further lags and the variance ratio are noisier on minutes of data, hence more slack
        "sign_acf_1": 1.3,
        "sign_acf_10": 1.5,
        "sign_acf_100": 2.0,
        "variance_ratio_60s": 1.5,
    }
    for name, slack in tolerance.items():
        lo = min(r[name] for r in real) / slack
        hi = max(r[name] for r in real) * slack
        assert lo <= mine[name] <= hi, f"{name}: simulator {mine[name]:.4f} outside [{lo:.4f}, {hi:.4f}]"
    # and the imbalance predicts the next move in the right direction
    assert mine["p_up_imbalance_high"] > 0.5 > mine["p_up_imbalance_low"]
