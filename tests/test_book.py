"""The L2 book kernel: golden sequences, sequence rules, and properties against a reference book."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import book as bk
from market.book import L2Book, Updates
from tests.conftest import examples

# Also run with NUMBA_DISABLE_JIT=1 (make unit): the same tests then trace the kernels' Python source.
pytestmark = pytest.mark.kernels

TICK = 0.1


def msgs(*items: tuple[bool, int, int, int, int, list[tuple[float, float]], list[tuple[float, float]]]):
    """items: (is_snap, first_id, last_id, prev_id, ts, bids, asks) -> arrays for L2Book.apply."""
    n = len(items)
    b_off, a_off = [0], [0]
    bp, bq, ap, aq = [], [], [], []
    for _, _, _, _, _, bids, asks in items:
        bp += [p for p, _ in bids]
        bq += [q for _, q in bids]
        ap += [p for p, _ in asks]
        aq += [q for _, q in asks]
        b_off.append(len(bp))
        a_off.append(len(ap))
    return Updates(
        skip=np.zeros(n, bool),
        is_snap=np.array([i[0] for i in items]),
        first_id=np.array([i[1] for i in items], np.int64),
        last_id=np.array([i[2] for i in items], np.int64),
        prev_id=np.array([i[3] for i in items], np.int64),
        ts_ex=np.array([i[4] for i in items], np.int64),
        ts_local=np.array([i[4] for i in items], np.int64) + 1,
        bid_off=np.array(b_off, np.int64),
        bid_px=np.array(bp, float),
        bid_qty=np.array(bq, float),
        ask_off=np.array(a_off, np.int64),
        ask_px=np.array(ap, float),
        ask_qty=np.array(aq, float),
    )


def snap(u, ts, bids, asks):
    return (True, u, u, -1, ts, bids, asks)


def delta(u, ts, bids, asks, prev=None):
    return (False, u, u, u - 1 if prev is None else prev, ts, bids, asks)


def test_snapshot_then_deltas_golden() -> None:
    b = L2Book(TICK, 3)
    status, top = b.apply(
        msgs(
            snap(10, 1, [(100.0, 1.0), (99.9, 2.0), (99.5, 3.0)], [(100.1, 1.5), (100.3, 2.5)]),
            delta(11, 2, [(100.0, 0.0)], [(100.2, 4.0)]),  # best bid deleted, ask inserted between levels
            delta(12, 3, [(100.0, 0.7)], []),  # new best bid
        )
    )
    assert status.tolist() == [bk.APPLIED] * 3
    assert top.bid_px[0].tolist() == [100.0, 99.9, 99.5]
    assert top.ask_px[0, :2].tolist() == [100.1, 100.3] and np.isnan(top.ask_px[0, 2])
    assert top.ask_qty[0, 2] == 0.0
    assert top.bid_px[1, :2].tolist() == [99.9, 99.5] and np.isnan(top.bid_px[1, 2])
    assert top.ask_px[1].tolist() == [100.1, 100.2, 100.3]
    assert top.ask_qty[1].tolist() == [1.5, 4.0, 2.5]
    assert top.bid_px[2].tolist() == [100.0, 99.9, 99.5] and top.bid_qty[2, 0] == 0.7
    assert top.epoch.tolist() == [1, 1, 1]
    assert b.best() == (100.0, 0.7, 100.1, 1.5)
    assert b.last_update_id == 12


def test_delta_after_gap_invalidates_book_until_next_snapshot() -> None:
    b = L2Book(TICK, 2)
    status, top = b.apply(
        msgs(
            snap(10, 1, [(100.0, 1.0)], [(100.1, 1.0)]),
            delta(12, 2, [(99.9, 1.0)], []),  # 11 is missing
            delta(13, 3, [(99.8, 1.0)], []),
            snap(20, 4, [(101.0, 1.0)], [(101.1, 1.0)]),
            delta(21, 5, [(100.9, 2.0)], []),
        )
    )
    assert status.tolist() == [bk.APPLIED, bk.GAP, bk.NOT_SYNCED, bk.APPLIED, bk.APPLIED]
    assert top.epoch[3] == 4 and top.epoch[4] == 4
    assert top.bid_px[4].tolist() == [101.0, 100.9]
    assert b.is_valid


def test_bridge_after_snapshot_drops_stale_and_applies_spanning_diff() -> None:
    # Binance: diffs carry [U, u] ranges and pu; the first applied one spans lastUpdateId + 1
    b = L2Book(TICK, 1)
    status, top = b.apply(
        msgs(
            snap(100, 1, [(100.0, 1.0)], [(100.1, 1.0)]),
            (False, 90, 99, 89, 1, [(100.0, 5.0)], []),  # entirely before the snapshot: stale
            (False, 95, 105, 99, 2, [(100.0, 2.0)], []),  # spans 101: applies
            (False, 106, 110, 105, 3, [(100.0, 3.0)], []),  # pu == previous u: applies
            (False, 115, 120, 112, 4, [(100.0, 9.0)], []),  # pu != 110: gap
        )
    )
    assert status.tolist() == [bk.APPLIED, bk.STALE, bk.APPLIED, bk.APPLIED, bk.GAP]
    assert top.bid_qty[3, 0] == 3.0


def test_first_diff_after_snapshot_must_not_skip_updates() -> None:
    b = L2Book(TICK, 1)
    status, _ = b.apply(msgs(snap(100, 1, [(100.0, 1.0)], [(100.1, 1.0)]), (False, 103, 104, 102, 2, [], [])))
    assert status.tolist() == [bk.APPLIED, bk.GAP]


def test_crossed_book_is_rejected_and_invalidates() -> None:
    b = L2Book(TICK, 1)
    status, _ = b.apply(
        msgs(
            snap(1, 1, [(100.0, 1.0)], [(100.1, 1.0)]),
            delta(2, 2, [(100.2, 1.0)], []),  # bid above the ask
            delta(3, 3, [(99.0, 1.0)], []),
        )
    )
    assert status.tolist() == [bk.APPLIED, bk.CROSSED, bk.NOT_SYNCED]
    assert not b.is_valid


def test_time_running_backwards_invalidates() -> None:
    b = L2Book(TICK, 1)
    status, _ = b.apply(msgs(snap(1, 10, [(100.0, 1.0)], [(100.1, 1.0)]), delta(2, 9, [(99.9, 1.0)], [])))
    assert status.tolist() == [bk.APPLIED, bk.TIME_BACKWARDS]


def test_skipped_message_leaves_book_untouched() -> None:
    b = L2Book(TICK, 1)
    m = msgs(snap(1, 1, [(100.0, 1.0)], [(100.1, 1.0)]), delta(2, 2, [(100.0, 7.0)], []))
    m.skip[1] = True
    status, _ = b.apply(m)
    assert status.tolist() == [bk.APPLIED, bk.SKIPPED]
    assert b.best()[1] == 1.0


def test_levels_outside_the_window_are_counted_not_kept() -> None:
    b = L2Book(TICK, 2, window=1000)
    status, top = b.apply(msgs(snap(1, 1, [(100.0, 1.0), (1.0, 50.0)], [(100.1, 1.0)])))
    assert status[0] == bk.APPLIED
    assert b.dropped_levels == 1
    assert np.isnan(top.bid_px[0, 1])


def test_window_recenters_when_price_drifts() -> None:
    b = L2Book(TICK, 1, window=1000)  # +-50 USD around 100
    steps = [snap(1, 1, [(100.0, 1.0)], [(100.1, 1.0)])]
    price = 100.0
    for u in range(2, 60):  # walk the price up by 1.0 per update: leaves the window without recentering
        new = round(price + 1.0, 1)
        steps.append(
            delta(u, u, [(new, 1.0), (price, 0.0)], [(round(new + 0.1, 1), 1.0), (round(price + 0.1, 1), 0.0)])
        )
        price = new
    status, top = b.apply(msgs(*steps))
    assert (status == bk.APPLIED).all()
    assert top.bid_px[-1, 0] == pytest.approx(price)
    assert b.best()[0] == pytest.approx(price)


def test_empty_book_side_gives_nan_prices() -> None:
    b = L2Book(TICK, 2)
    status, top = b.apply(msgs(snap(1, 1, [], [(100.1, 1.0)])))
    assert status[0] == bk.APPLIED
    assert np.isnan(top.bid_px[0]).all() and (top.bid_qty[0] == 0).all()
    assert np.isnan(b.best()[0])


def test_depth_lists_every_level() -> None:
    b = L2Book(TICK, 1)
    b.apply(msgs(snap(1, 1, [(100.0, 1.0), (99.0, 2.0)], [(100.1, 3.0)])))
    bp, bq, ap, aq = b.depth()
    assert bp.tolist() == [100.0, 99.0] and bq.tolist() == [1.0, 2.0]
    assert ap.tolist() == [100.1] and aq.tolist() == [3.0]


def test_invalid_tick_size_is_refused() -> None:
    with pytest.raises(ValueError):
        L2Book(0.0, 5)


# -- properties: random valid delta streams against a plain dict book ----------------------------

level_ticks = st.integers(min_value=-40, max_value=40)


@st.composite
def streams(draw: st.DrawFn, moving: bool = True) -> list[tuple[list[tuple[int, float]], list[tuple[int, float]]]]:
    """Deltas as (bid changes, ask changes) in ticks around 1,000.0; with ``moving`` the centre
    wanders, so some deltas would cross the book (the reference test skips those)."""
    out = []
    for _ in range(draw(st.integers(1, 40))):
        mid = draw(st.integers(-5, 5)) if moving else 0
        bids = draw(st.lists(st.tuples(st.integers(1, 30), st.sampled_from([0.0, 0.001, 0.5, 1.25, 3.0])), max_size=6))
        asks = draw(st.lists(st.tuples(st.integers(1, 30), st.sampled_from([0.0, 0.002, 0.75, 2.0])), max_size=6))
        out.append(([(mid - d, q) for d, q in bids], [(mid + d, q) for d, q in asks]))
    return out


def _reference_apply(ref_b: dict[int, float], ref_a: dict[int, float], bids, asks) -> None:
    for t, q in bids:
        ref_b.pop(t, None) if q == 0 else ref_b.__setitem__(t, q)
    for t, q in asks:
        ref_a.pop(t, None) if q == 0 else ref_a.__setitem__(t, q)


@settings(max_examples=examples(150), deadline=None)
@given(streams())
def test_top_levels_match_reference_book_after_any_valid_stream(stream) -> None:
    levels = 5
    b = L2Book(TICK, levels)
    ref_b: dict[int, float] = {-1: 1.0, -2: 2.0}
    ref_a: dict[int, float] = {1: 1.0, 2: 2.0}
    items = [
        snap(
            1, 1, [(1000.0 + t * TICK, q) for t, q in ref_b.items()], [(1000.0 + t * TICK, q) for t, q in ref_a.items()]
        )
    ]
    expect = []
    for u, (bids, asks) in enumerate(stream, start=2):
        trial_b, trial_a = dict(ref_b), dict(ref_a)
        _reference_apply(trial_b, trial_a, bids, asks)
        if trial_b and trial_a and max(trial_b) >= min(trial_a):
            continue  # the generator made a crossing delta: real venues never send one
        ref_b, ref_a = trial_b, trial_a
        items.append(
            delta(
                len(items) + 1,
                u,
                [(round(1000.0 + t * TICK, 1), q) for t, q in bids],
                [(round(1000.0 + t * TICK, 1), q) for t, q in asks],
            )
        )
        expect.append((sorted(ref_b.items(), reverse=True)[:levels], sorted(ref_a.items())[:levels]))
    status, top = b.apply(msgs(*items))
    assert (status == bk.APPLIED).all()
    for row, (eb, ea) in enumerate(expect, start=1):
        got_b = [(round((p - 1000.0) / TICK), q) for p, q in zip(top.bid_px[row], top.bid_qty[row]) if q > 0]
        got_a = [(round((p - 1000.0) / TICK), q) for p, q in zip(top.ask_px[row], top.ask_qty[row]) if q > 0]
        assert got_b == eb and got_a == ea
        # invariant: best bid < best ask whenever both sides exist
        if got_b and got_a:
            assert top.bid_px[row, 0] < top.ask_px[row, 0]


@settings(max_examples=examples(60), deadline=None)
@given(streams(moving=False), st.integers(1, 39))
def test_snapshot_plus_remaining_deltas_equals_replaying_everything(stream, cut) -> None:
    """Replaying all deltas == starting from the book at `cut` (as a snapshot) and replaying the rest."""
    base = [snap(1, 1, [(1000.0 - 0.1, 1.0)], [(1000.0 + 0.1, 1.0)])]
    items = list(base)
    for u, (bids, asks) in enumerate(stream, start=2):
        items.append(
            delta(
                u,
                u,
                [(round(1000.0 + t * TICK, 1), q) for t, q in bids],
                [(round(1000.0 + t * TICK, 1), q) for t, q in asks],
            )
        )
    full = L2Book(TICK, 10)
    status_full, top_full = full.apply(msgs(*items))
    assert (status_full == bk.APPLIED).all()  # bids below 1000.0, asks above: never crossed
    k = min(cut, len(items) - 1)
    head = L2Book(TICK, 10)
    head.apply(msgs(*items[:k]))
    bp, bq, ap, aq = head.depth()
    resumed = L2Book(TICK, 10)
    rest = [snap(items[k - 1][2], items[k - 1][4], list(zip(bp, bq)), list(zip(ap, aq))), *items[k:]]
    status_res, top_res = resumed.apply(msgs(*rest))
    assert (status_res == bk.APPLIED).all()
    np.testing.assert_array_equal(top_res.bid_qty[-1], top_full.bid_qty[-1])
    np.testing.assert_array_equal(top_res.ask_px[-1], top_full.ask_px[-1])
