"""The feature library: hand-computed golden values, batch == online parity, no look-ahead, bad input."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from core.config import AppConfig
from core.records import Book, Books, Trade, Trades
from core.timefmt import parse_time_ns
from features import (
    INDEX,
    N_FEATURES,
    NAMES,
    BatchFeatures,
    FeatureInputError,
    OnlineFeatures,
)
from market.events import TRADES, fixed_to_numpy
from market.normalize import Normalizer
from market.sources.files import FileSource
from market.venues import BYBIT
from sim import MarketSimulator
from tests.conftest import REPO, episode_paths, real_data

T0 = parse_time_ns("2026-01-05T00:00:00Z")
S = 1_000_000_000
L = 10


def _levels(best: float, step: float, sizes: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return best + step * np.arange(len(sizes)), np.array(sizes, dtype=float)


BID_SIZES = [2, 1, 3, 1, 1, 2, 1, 1, 1, 1]
ASK_SIZES = [1, 3, 1, 2, 1, 1, 1, 1, 1, 2]


def _golden_events() -> list[Book | Trade]:
    """u1 at 0 s; a taker sell of 0.5 at 0.2 s; u2 at 0.5 s (bid 2 -> 1.5, ask 1 -> 1.8); u3 at
    1.2 s (a new best bid 65000.5 x 0.7 in front of the others)."""
    bp1, bq1 = _levels(65000.0, -5.0, [float(x) for x in BID_SIZES])
    ap1, aq1 = _levels(65001.0, 5.0, [float(x) for x in ASK_SIZES])
    bq2, aq2 = bq1.copy(), aq1.copy()
    bq2[0], aq2[0] = 1.5, 1.8
    bp3 = np.concatenate([[65000.5], bp1[:-1]])
    bq3 = np.concatenate([[0.7], bq2[:-1]])
    return [
        Book(T0, T0, T0, bp1, bq1, ap1, aq1),
        Trade(T0 + S // 5, T0 + S // 5, 65000.0, 0.5, -1),
        Book(T0 + S // 2, T0 + S // 2, T0, bp1, bq2, ap1, aq2),
        Book(T0 + 6 * S // 5, T0 + 6 * S // 5, T0, bp3, bq3, ap1, aq2),
    ]


def _online(events: list[Book | Trade]) -> np.ndarray:
    eng = OnlineFeatures(tick=0.1)
    rows = [v.copy() for e in events if (v := eng.update(e)) is not None]
    return np.array(rows)


@pytest.mark.kernels
def test_golden_values_of_a_hand_made_book_sequence() -> None:
    x = _online(_golden_events())
    u1, u2, u3 = ({n: x[r, i] for n, i in INDEX.items()} for r in range(3))
    m1 = (65000.0 + 65001.0) / 2
    assert u1["spread_bps"] == pytest.approx(1.0 / m1 * 1e4, rel=1e-12)
    assert u1["spread_ticks"] == pytest.approx(10.0, rel=1e-12)
    assert u1["imbalance_l1"] == pytest.approx((2 - 1) / (2 + 1), rel=1e-12)
    assert u1["imbalance_l5"] == pytest.approx((8 - 8) / 16, abs=1e-12)
    assert u1["imbalance_l10"] == pytest.approx((14 - 14) / 28, abs=1e-12)
    w = (65000.0 * 1 + 65001.0 * 2) / 3
    assert u1["microprice_offset_bps"] == pytest.approx((w - m1) / m1 * 1e4, rel=1e-12)
    # bids 65000, 64995, ... : within 2 bps (>= 64987.5) the best 3, within 5 bps (>= 64968.0) the best 7
    assert u1["depth_bid_2bps"] == pytest.approx(2 + 1 + 3)
    assert u1["depth_bid_5bps"] == pytest.approx(2 + 1 + 3 + 1 + 1 + 2 + 1)
    assert u1["depth_bid_10bps"] == pytest.approx(sum(BID_SIZES))
    assert u1["depth_ask_10bps"] == pytest.approx(sum(ASK_SIZES))
    # buying 5 BTC: 1 @ 65001 + 3 @ 65006 + 1 @ 65011
    vwap = (65001.0 + 3 * 65006.0 + 65011.0) / 5
    assert u1["walk_cost_buy_5btc_bps"] == pytest.approx((vwap - m1) / m1 * 1e4, rel=1e-12)
    assert u1["ofi_l1_1s"] == 0.0  # the first update has nothing to compare with
    # u2: same prices, bid 2 -> 1.5 and ask 1 -> 1.8: e = (1.5 - 2) - (1.8 - 1)
    assert u2["ofi_l1_1s"] == pytest.approx(-0.5 - 0.8, rel=1e-12)
    assert u2["cancel_bid_1s"] == 0.0  # the 0.5 that left the bid was the taker sell
    assert u2["add_ask_1s"] == pytest.approx(0.8, rel=1e-12)
    assert u2["time_since_mid_change_s"] == pytest.approx(0.5)
    assert u2["tfi_10s"] == -1.0 and u2["trade_count_1s"] == 1.0
    # u3 at 1.2 s: the window (0.2 s, 1.2 s] holds u2 and u3 but not the trade at exactly 0.2 s
    assert u3["ofi_l1_1s"] == pytest.approx(-1.3 + 0.7, rel=1e-12)
    assert u3["ofi_l1_10s"] == pytest.approx(-1.3 + 0.7, rel=1e-12)
    assert u3["trade_count_1s"] == 0.0 and u3["tfi_1s"] == 0.0
    assert u3["trade_count_10s"] == 1.0 and u3["tfi_10s"] == -1.0 and u3["trade_volume_10s"] == 0.5
    assert u3["add_bid_1s"] == pytest.approx(0.7, rel=1e-12)
    m3 = (65000.5 + 65001.0) / 2
    assert u3["ret_1s_bps"] == pytest.approx(math.log(m3 / m1) * 1e4, rel=1e-9)
    assert math.isnan(u3["ret_10s_bps"])  # less than 10 s of data
    assert u3["rv_10s_bps"] == pytest.approx(abs(math.log(m3 / m1)) * 1e4, rel=1e-9)
    assert u3["mid_changes_10s"] == 1.0 and u3["time_since_mid_change_s"] == 0.0
    assert u3["time_since_trade_s"] == pytest.approx(1.0)
    assert u3["tod_sin"] == pytest.approx(math.sin(2 * math.pi * 1.2 / 86400), rel=1e-9)


@pytest.mark.untraced
def test_the_catalog_holds_the_named_features_once_each() -> None:
    assert N_FEATURES >= 40 and len(set(NAMES)) == N_FEATURES
    for name in ("spread_bps", "imbalance_l1", "imbalance_l5", "microprice_offset_bps", "depth_bid_10bps"):
        assert name in INDEX
    for name in ("depth_ask_10bps", "ofi_l1_1s", "tfi_10s"):
        assert name in INDEX
    out = subprocess.run(
        [sys.executable, "-m", "features", "catalog", "--format", "md"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0
    assert all(f"`{n}`" in out.stdout for n in NAMES) and f"{N_FEATURES} features" in out.stdout


def _recording(seconds: int, seed: int = 3) -> tuple[Books, Trades]:
    """A simulated Bybit recording, normalized exactly as the ingest does."""
    cfg = AppConfig()
    sim = MarketSimulator(cfg.sim.model_copy(update={"seed": seed}), cfg.instrument, 50)
    norm = Normalizer(BYBIT, "BTCUSDT", 0.1, 20, store_raw=False)
    books: list[Books] = []
    trades: list[Trades] = []
    for batch in sim.batches(seconds * S):
        out = norm.process(batch)
        books.append(out.books)
        trades.append(out.trades)
    return Books.concat(books), Trades.concat(trades)


def _arrays(book: pa.Table, trades: pa.Table, levels: int) -> tuple[Books, Trades]:
    """A stored recording's tables as the records (the warehouse's column names mapped)."""
    return (
        Books(
            book.column("ts_exchange_ns").to_numpy(),
            book.column("ts_local_ns").to_numpy(),
            book.column("epoch_ns").to_numpy(),
            fixed_to_numpy(book.column("bid_px"), levels),
            fixed_to_numpy(book.column("bid_qty"), levels),
            fixed_to_numpy(book.column("ask_px"), levels),
            fixed_to_numpy(book.column("ask_qty"), levels),
        ),
        Trades(
            trades.column("ts_exchange_ns").to_numpy(),
            trades.column("ts_local_ns").to_numpy(),
            trades.column("price").to_numpy(),
            trades.column("qty").to_numpy(),
            trades.column("side").to_numpy().astype(np.int8),
        ),
    )


def _replay(book: Books, trades: Trades) -> np.ndarray:
    """Event by event through the online engine, trades first at equal times."""
    eng = OnlineFeatures(tick=0.1)
    out = np.empty((len(book), N_FEATURES))
    j = 0
    for i in range(len(book)):
        while j < len(trades) and trades.ts_ex[j] <= book.ts_ex[i]:
            eng.update(trades.row(j))
            j += 1
        out[i] = eng.update(book.row(i))
    return out


def _assert_parity(batch: np.ndarray, online: np.ndarray) -> None:
    assert batch.shape == online.shape
    same_nan = np.isnan(batch) == np.isnan(online)
    assert same_nan.all()
    ok = np.isnan(batch) | (np.abs(batch - online) <= 1e-9 * np.maximum(np.abs(batch), 1e-300))
    bad = np.argwhere(~ok)
    assert bad.size == 0, [(int(r), NAMES[c], batch[r, c], online[r, c]) for r, c in bad[:5]]


def test_online_replay_equals_batch_on_a_simulated_recording() -> None:
    book, trades = _recording(400)
    assert len(book) > 10_000 and len(trades) > 3_000
    batch = BatchFeatures(tick=0.1).run(book, trades)
    _assert_parity(batch, _replay(book, trades))
    assert np.isfinite(batch[-1]).all()  # after 300 s every window is covered: no NaN


def test_chunked_batch_equals_one_call() -> None:
    book, trades = _recording(120, seed=5)
    whole = BatchFeatures(tick=0.1).run(book, trades)
    eng = BatchFeatures(tick=0.1)
    parts = []
    cuts = [0, 7, 1000, 1001, 3333, len(book)]
    for a, b in itertools.pairwise(cuts):
        sub = book.take(slice(a, b))
        t_lo = 0 if a == 0 else int(np.searchsorted(trades.ts_ex, book.ts_ex[a - 1], "right"))
        t_hi = int(np.searchsorted(trades.ts_ex, book.ts_ex[b - 1], "right"))
        parts.append(eng.run(sub, trades.take(slice(t_lo, t_hi))))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_a_market_busier_than_the_batch_rings_grows_them_and_every_row_is_kept() -> None:
    """Rings of 256 against two minutes of about 50 book updates and 22 trades a second (the book's
    5 min window holds all 5,896 of them, the trades' 60 s window about 1,300): the scheduled feature
    build stopped at the first window busier than its ring ("more book updates or trades in their
    longest window than their ring buffer holds": the chaos soak's features flow, every 15 minutes,
    on a market at speed 24 whose 60 s of trades were about 200,000 against rings of 131,072). Now
    each ring doubles, every entry kept, and the rows are those of rings large enough from the
    start, in one call or chunk after chunk."""
    book, trades = _recording(120, seed=5)
    whole = BatchFeatures(tick=0.1).run(book, trades)
    small = BatchFeatures(tick=0.1, capacity=1 << 8)
    np.testing.assert_array_equal(small.run(book, trades), whole)
    rings = small.state.ring_ts.shape[0], small.state.tring_ts.shape[0]
    assert rings[0] == 256 << math.ceil(math.log2((len(book) + 1) / 256))  # the first doubling that holds them all
    assert rings[1] > 256 and small.regrown == sum(round(math.log2(r // 256)) for r in rings)
    chunked, parts = BatchFeatures(tick=0.1, capacity=1 << 8), []
    for a, b in itertools.pairwise([0, 500, 501, 2000, len(book)]):
        t_lo = 0 if a == 0 else int(np.searchsorted(trades.ts_ex, book.ts_ex[a - 1], "right"))
        t_hi = int(np.searchsorted(trades.ts_ex, book.ts_ex[b - 1], "right"))
        parts.append(chunked.run(book.take(slice(a, b)), trades.take(slice(t_lo, t_hi))))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_a_chunk_without_book_updates_keeps_its_trades_for_the_next() -> None:
    book, trades = _recording(120, seed=5)
    whole = BatchFeatures(tick=0.1).run(book, trades)
    # the gap between two book updates with the most trades in it: those trades come as a chunk of their own
    after = np.searchsorted(trades.ts_ex, book.ts_ex, "right")  # trades up to each book update
    b = int(np.argmax(np.diff(after))) + 1
    lo, hi = int(after[b - 1]), int(after[b])
    assert hi - lo >= 2
    eng = BatchFeatures(tick=0.1)
    first = eng.run(book.take(slice(b)), trades.take(slice(lo)))
    alone = eng.run(book.take(slice(b, b)), trades.take(slice(lo, hi)))  # no book update: no row
    rest = eng.run(book.take(slice(b, None)), trades.take(slice(hi, None)))
    assert alone.shape == (0, N_FEATURES)
    np.testing.assert_array_equal(np.concatenate([first, rest]), whole)


def test_nothing_after_t_changes_a_feature_at_t() -> None:
    book, trades = _recording(90, seed=11)
    rng = np.random.default_rng(0)
    full = BatchFeatures(tick=0.1).run(book, trades)
    for cut in rng.integers(100, len(book) - 100, 4):
        t = book.ts_ex[cut]
        # perturb every book update after t and every trade after t, then recompute
        pert = Books(
            book.ts_ex,
            book.ts_local,
            book.epoch,
            book.bid_px,
            np.where(book.ts_ex[:, None] > t, book.bid_qty * rng.uniform(0.1, 3, book.bid_qty.shape), book.bid_qty),
            book.ask_px,
            np.where(book.ts_ex[:, None] > t, book.ask_qty * 2.0, book.ask_qty),
        )
        later = trades.ts_ex > t
        ptr = Trades(
            trades.ts_ex,
            trades.ts_local,
            trades.price,
            np.where(later, trades.qty * 5, trades.qty),
            np.where(later, -trades.side, trades.side).astype(np.int8),
        )
        again = BatchFeatures(tick=0.1).run(pert, ptr)
        upto = book.ts_ex <= t
        np.testing.assert_array_equal(again[upto], full[upto])
        assert not np.array_equal(again[~upto], full[~upto])  # the perturbation was real


@pytest.mark.kernels
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("nan_qty", "NaN or negative size"),
        ("negative_qty", "NaN or negative size"),
        ("crossed", "crossed book"),
        ("backwards", "time going backwards"),
        ("empty_bid", "side of the book is empty"),
    ],
)
def test_bad_book_input_is_a_clear_error(change: str, message: str) -> None:
    events = _golden_events()
    u2 = events[2]
    assert isinstance(u2, Book)
    bq, ap, bp = u2.bid_qty.copy(), u2.ask_px.copy(), u2.bid_px.copy()
    ts = u2.ts_ex
    if change == "nan_qty":
        bq[3] = np.nan
    elif change == "negative_qty":
        bq[1] = -1.0
    elif change == "crossed":
        ap[0] = bp[0]
    elif change == "backwards":
        ts = T0 - 1
    else:
        bp[:] = np.nan
        bq[:] = 0.0
    eng = OnlineFeatures(tick=0.1)
    eng.update(events[0])
    with pytest.raises(FeatureInputError, match=message) as err:
        eng.update(Book(ts, ts, u2.epoch, bp, bq, ap, u2.ask_qty))
    assert "\n" not in str(err.value) and "at 2026-01-0" in str(err.value)
    # the batch driver refuses the same input the same way
    bad = Books(
        np.array([T0, ts]),
        np.array([T0, ts]),
        np.array([T0, T0]),
        np.stack([events[0].bid_px, bp]),
        np.stack([events[0].bid_qty, bq]),
        np.stack([events[0].ask_px, ap]),
        np.stack([events[0].ask_qty, u2.ask_qty]),
    )
    with pytest.raises(FeatureInputError, match=message):
        BatchFeatures(tick=0.1).run(bad)


@pytest.mark.kernels
def test_bad_trades_and_thin_books_are_clear_errors() -> None:
    eng = OnlineFeatures(tick=0.1)
    with pytest.raises(FeatureInputError, match="trade with a NaN"):
        eng.update(Trade(T0, T0, float("nan"), 1.0, 1))
    with pytest.raises(FeatureInputError, match="side other than"):
        eng.update(Trade(T0, T0, 65000.0, 1.0, 0))
    eng.update(Trade(T0 + 5, T0 + 5, 65000.0, 1.0, 1))
    with pytest.raises(FeatureInputError, match="trade earlier than the previous trade"):
        eng.update(Trade(T0 + 4, T0 + 4, 65000.0, 1.0, 1))
    five = np.arange(5.0)
    with pytest.raises(FeatureInputError, match="at least 10 are needed"):
        eng.update(Book(T0, T0, T0, 65000 - five, five + 1, 65001 + five, five + 1))


@pytest.mark.kernels
def test_a_new_book_epoch_starts_the_flow_afresh_and_reset_forgets_everything() -> None:
    events = _golden_events()
    u2 = events[2]
    assert isinstance(u2, Book)
    resynced = Book(u2.ts_ex, u2.ts_local, u2.ts_ex, u2.bid_px, u2.bid_qty, u2.ask_px, u2.ask_qty)
    x = _online([events[0], events[1], resynced])
    assert x[1, INDEX["ofi_l1_1s"]] == 0.0 and x[1, INDEX["add_ask_1s"]] == 0.0  # no diff across a resync
    eng = OnlineFeatures(tick=0.1)
    for e in events:
        eng.update(e)
    eng.reset()
    first = eng.update(events[0])
    assert first is not None
    np.testing.assert_array_equal(first, _online([events[0]])[0])
    assert not eng.warm_at(T0 + 299 * S) and eng.warm_at(T0 + 300 * S)


@real_data
@pytest.mark.real_data
@pytest.mark.parametrize("episode", ["2023-04-04", "2024-07-18"])
def test_online_replay_equals_batch_on_the_real_recordings(episode: str) -> None:
    import asyncio

    from market.venues import BINANCE_USDM

    source = FileSource(episode_paths(episode))
    norm = Normalizer(BINANCE_USDM, "BTCUSDT", 0.1, 20, store_raw=False)
    books: list[pa.Table] = []
    trades: list[pa.Table] = []

    async def read() -> None:
        async for batch in source.batches():
            out = norm.process(batch)
            books.append(out.tables[norm.snapshot_spec.name])
            trades.append(out.tables[TRADES.name])

    asyncio.run(read())
    book, tr = _arrays(pa.concat_tables(books), pa.concat_tables(trades), 20)
    assert len(book) > 8000 and len(tr) > 4000
    batch = BatchFeatures(tick=0.1).run(book, tr)
    _assert_parity(batch, _replay(book, tr))


def test_information_coefficient_is_spearman() -> None:
    from scipy.stats import spearmanr

    from features.analysis import information_coefficient, ranks

    np.testing.assert_array_equal(ranks(np.array([3.0, 1.0, 2.0, 1.0])), [3.0, 0.5, 2.0, 0.5])
    rng = np.random.default_rng(4)
    y = rng.normal(size=500)
    x = np.column_stack([y + rng.normal(size=500), -(y**3), rng.normal(size=500), np.ones(500)])
    x[::7, 0] = np.nan  # NaN rows are left out of that column only
    ic = information_coefficient(x, y)
    ok = np.isfinite(x[:, 0])
    assert ic[0] == pytest.approx(spearmanr(x[ok, 0], y[ok]).statistic, abs=1e-12)
    assert ic[1] == pytest.approx(-1.0)  # monotone: rank correlation is exactly -1
    assert ic[2] == pytest.approx(spearmanr(x[:, 2], y).statistic, abs=1e-12)
    assert np.isnan(ic[3])  # a constant feature has no IC
    with pytest.raises(ValueError, match="must be"):
        information_coefficient(x[:, 0], y)


@pytest.mark.kernels
def test_the_kernels_write_exactly_the_catalogs_features() -> None:

    eng = OnlineFeatures(tick=0.1)
    for e in _golden_events():
        eng.update(e)
    assert eng.state.scalars["written"][0] == N_FEATURES
