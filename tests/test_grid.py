"""The grid rule is one rule: the runner keeps exactly the rows the feature build stores, across silences."""

from __future__ import annotations

import numpy as np

from core.records import Book
from features.grid import WARMUP_NS, OnlineGrid, rows, segment_starts, sigma_1s
from live.rows import ReplayTiming, Rows

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


def test_a_market_busier_than_the_feature_rings_grows_them_and_warms_up_again() -> None:
    """Ten book updates a second against rings of 1,024 (the 5 min window holds 3,000): the runner's
    features overflowed and the runner crashed (FeatureInputError, then a restart loop, the chaos
    soak at --speed 10); now they start again on rings twice as large, and the grid's warm-up with
    them, until they fit."""
    live = Rows(0.1, GRID, MAX_GAP, 10 * MS, ReplayTiming(), ring=1 << 10)
    due = []
    for t in (T0 + 50 * MS + np.arange(8_000) * 100 * MS).tolist():  # 800 s
        tick = _book(t)
        due += live.arrive(tick)
        live.take(tick)
    due += live.rest()
    assert live.regrown == 2 and live.ring == 1 << 12
    assert due and all(d.row.g - T0 >= 300 * S + WARMUP_NS for d in due)  # only after the last warm-up
    assert all(np.isfinite(d.row.x).all() for d in due)
