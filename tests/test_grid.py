"""The grid rule is one rule: the runner keeps exactly the rows the feature build stores, across silences."""

from __future__ import annotations

import numpy as np

from core.records import Book, Trade
from features.grid import WARMUP_NS, OnlineGrid, rows, segment_starts, sigma_1s
from live.rows import Due, ReplayTiming, Rows

MS = 1_000_000
S = 1_000 * MS
T0 = 1_700_000_000 * S
GRID, MAX_GAP = S, 5 * S


def _stamps() -> np.ndarray:
    """Book updates every 100 ms for 400 s, a 3 s pause (not a silence), 100 s more, a 20 s silence
    (longer than max_gap), then 350 s more: rows before the silence, none in it nor for the warm-up
    after it, rows again after."""
    a = T0 + 50 * MS + np.arange(4_000) * 100 * MS
    b = a[-1] + 3 * S + np.arange(1_000) * 100 * MS
    c = b[-1] + 20 * S + np.arange(3_500) * 100 * MS
    return np.concatenate([a, b, c]).astype(np.int64)


def _batch(ts: np.ndarray, split: int) -> np.ndarray:
    """The feature build's rows, its updates read in two chunks (the segment carries over)."""
    first = segment_starts(ts[:split], None, 0, MAX_GAP)
    starts = np.concatenate([first, segment_starts(ts[split:], int(ts[split - 1]), int(first[-1]), MAX_GAP)])
    g = np.arange(-(-int(ts[0]) // GRID) * GRID, int(ts[-1]) + 1, GRID, dtype=np.int64)
    kept, idx = rows(g, ts, starts, MAX_GAP)
    assert (ts[idx] <= kept).all() and (kept - ts[idx] <= MAX_GAP).all()
    return kept


def _book(ts: int) -> Book:
    bids = 50_000.0 - 0.1 * np.arange(20)
    asks = 50_000.1 + 0.1 * np.arange(20)
    return Book(ts, ts + 10 * MS, 0, bids, np.ones(20), asks, np.ones(20))


def test_the_runner_keeps_the_rows_the_feature_build_stores_across_a_silence() -> None:
    ts = _stamps()
    batch = _batch(ts, split=4_321)
    silence_end = int(ts[5_000])
    assert batch.size > 100 and (batch < silence_end).any()
    assert not ((batch > int(ts[4_999]) + MAX_GAP) & (batch < silence_end + WARMUP_NS)).any()
    assert (batch >= silence_end + WARMUP_NS).any()

    grid = OnlineGrid(GRID, MAX_GAP)  # the online rule alone
    online: list[int] = []
    for t in ts.tolist():
        grid.start(t)
        online += grid.before(t)
        grid.on_book(t)
    online += grid.before(int(ts[-1]) + 1)
    assert online == batch.tolist()

    live = Rows(0.1, GRID, MAX_GAP, 10 * MS, ReplayTiming())  # the runner's part, features and all
    due = []
    for t in ts.tolist():
        tick = _book(t)
        due += live.arrive(tick)
        live.take(tick)
    due += live.rest()
    assert [d.row.g for d in due] == batch.tolist()
    assert all(d.t == d.row.g + 10 * MS for d in due)


def test_sigma_1s_is_the_300s_volatility_per_second_for_a_row_and_for_arrays() -> None:
    assert sigma_1s(30.0) == 30.0 * 1e-4 / np.sqrt(300.0)
    np.testing.assert_array_equal(sigma_1s(np.array([0.0, 30.0])), [0.0, sigma_1s(30.0)])


def _market(seconds: int, seed: int = 5) -> list[Book | Trade]:
    """Ten book updates a second on a random-walk mid, three trades between each two."""
    rng = np.random.default_rng(seed)
    ticks: list[Book | Trade] = []
    mid = 50_000.0
    for k in range(seconds * 10):
        t = T0 + 50 * MS + k * 100 * MS
        mid += 0.1 * rng.integers(-1, 2)
        bids, asks = mid - 0.05 - 0.1 * np.arange(20), mid + 0.05 + 0.1 * np.arange(20)
        ticks.append(Book(t, t + 10 * MS, 0, bids, rng.uniform(0.1, 2, 20), asks, rng.uniform(0.1, 2, 20)))
        for j in range(3):
            side = int(rng.choice([-1, 1]))
            ticks.append(Trade(t + (j + 1) * 20 * MS, t + (j + 1) * 20 * MS, mid + 0.05 * side, 0.01, side))
    return ticks


def _due(live: Rows, ticks: list[Book | Trade]) -> list[Due]:
    due: list[Due] = []
    for tick in ticks:
        due += live.arrive(tick)
        live.take(tick)
    return due + live.rest()


def test_a_market_busier_than_the_feature_rings_grows_them_and_loses_nothing() -> None:
    """Ten book updates and thirty trades a second against rings of 1,024 (the book's 5 min window
    holds 3,000, the trades' 60 s window 1,800): the runner's features overflowed and the runner crashed (the chaos soak at
    --speed 10), then started again on larger rings and warmed up again (the soak at --speed 24
    never decided: each doubling cost another five minutes). Now each ring doubles with every entry
    it held: the rows are those of rings that were large enough from the start."""
    ticks = _market(800)
    small = Rows(0.1, GRID, MAX_GAP, 10 * MS, ReplayTiming(), ring=1 << 10)
    grown, large = _due(small, ticks), _due(Rows(0.1, GRID, MAX_GAP, 10 * MS, ReplayTiming()), ticks)
    assert small.rings == {"book": 1 << 12, "trade": 1 << 11} and small.regrown == 2 + 1
    assert len(grown) == len(large) > 400  # the rows of 500 s after the 300 s warm-up, none lost
    assert [d.row.g for d in grown] == [d.row.g for d in large] and grown[0].row.g - T0 < 302 * S
    np.testing.assert_array_equal(np.array([d.row.x for d in grown]), np.array([d.row.x for d in large]))
    assert np.isfinite(grown[-1].row.x).sum() > 0.9 * grown[-1].row.x.size
