"""Labels: hand-computed paths, no look-ahead / look-past properties, a brute-force triple-barrier reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.labels import (
    MISSING,
    LabelInputError,
    dead_zone,
    direction,
    forward_return,
    realized_vol,
    triple_barrier,
)
from tests.conftest import examples

# Also run with NUMBA_DISABLE_JIT=1 (make unit): the same tests then trace the kernel's Python source.
pytestmark = pytest.mark.kernels

I64 = np.int64
NAN = math.nan


def arr_i(*v: int) -> np.ndarray:
    return np.array(v, dtype=I64)


def arr_f(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


# A small path used by several hand tests: mid as of ts 10..60.
TS = arr_i(10, 20, 30, 40, 50, 60)
MID = arr_f(100.0, 101.0, 99.0, 102.0, 98.0, 100.0)


# ---------------------------------------------------------------- forward_return / direction / dead_zone


def test_forward_return_hand_path() -> None:
    ts = arr_i(10, 20, 30, 40)
    mid = arr_f(100.0, 101.0, 99.0, 102.0)
    t = arr_i(5, 10, 15, 20, 30, 31)
    got = forward_return(ts, mid, t, 10)
    expected = [
        NAN,  # t before the first update
        math.log(101 / 100),  # t + h == 20 exactly: the update at 20 counts
        math.log(101 / 100),  # mid as of 15 is 100, as of 25 is 101
        math.log(99 / 101),
        math.log(102 / 99),  # t + h == ts[-1]: still labelled
        NAN,  # t + h = 41 runs past the data end
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-13, equal_nan=True)


def test_forward_return_uses_last_update_at_equal_timestamps() -> None:
    ts = arr_i(10, 20, 20, 30)
    mid = arr_f(100.0, 101.0, 105.0, 99.0)
    got = forward_return(ts, mid, arr_i(10, 20), 10)
    np.testing.assert_allclose(got, [math.log(105 / 100), math.log(99 / 105)], rtol=1e-13)


def test_direction_dead_zone_is_strict_and_nan_is_missing() -> None:
    ret = arr_f(0.02, -0.02, 0.01, -0.01, 0.0, NAN, 0.0100001, math.inf, -math.inf)
    got = direction(ret, 0.01)
    assert got.dtype == np.int8
    assert got.tolist() == [1, -1, 0, 0, 0, -128, 1, 1, -1]
    assert MISSING == -128
    assert direction(arr_f(0.0, 1e-300, -1e-300), 0.0).tolist() == [0, 1, -1]


def test_direction_after_forward_return_marks_past_the_end_missing() -> None:
    ts = arr_i(10, 20, 30)
    mid = arr_f(100.0, 103.0, 97.0)
    d = direction(forward_return(ts, mid, arr_i(10, 20, 25), 10), 0.01)
    assert d.tolist() == [1, -1, MISSING]


def test_dead_zone_covers_round_trip_fees() -> None:
    assert dead_zone(0.0002) == pytest.approx(0.0004, rel=1e-15)
    assert dead_zone(0.0002, taker_fee=0.00055) == pytest.approx(0.0004, rel=1e-15)  # maker both legs
    assert dead_zone(0.0002, 0.00055, round_trip_maker=False) == pytest.approx(0.00075, rel=1e-15)
    assert dead_zone(0.0002, extra=0.0001) == pytest.approx(0.0005, rel=1e-15)
    assert dead_zone(-0.0001) == 0.0  # a maker rebate: any tau >= 0 covers it
    # the linearised cost is within f^2 of the exact break-even log((1 + f) / (1 - f))
    f = 0.0002
    assert abs(dead_zone(f) - math.log((1 + f) / (1 - f))) < f * f


# ---------------------------------------------------------------- triple barrier, by hand


def tb(t: list[int], vol: list[float], h: int, tp: float = 1.0, sl: float = 1.0, ts=TS, mid=MID):
    r = triple_barrier(ts, mid, np.array(t, I64), np.array(vol, float), tp, sl, h)
    return r.label.tolist(), r.exit_ns.tolist(), r.ret.tolist()


def test_triple_barrier_take_profit_and_stop() -> None:
    # t=10 (p0 100): 101 (+0.00995), 99 (-0.01005), 102 (+0.0198 >= 0.015) -> +1 at 40
    # t=20 (p0 101): 99 (-0.0200 <= -0.015) -> -1 at 30
    lab, ex, ret = tb([10, 20], [0.015, 0.015], 30)
    assert lab == [1, -1]
    assert ex == [40, 30]
    assert ret == pytest.approx([math.log(102 / 100), math.log(99 / 101)], rel=1e-13)


def test_triple_barrier_touch_exactly_at_a_barrier_is_a_hit() -> None:
    up = math.log(101 / 100)
    lab, ex, ret = tb([10], [up], 50)
    assert (lab, ex, ret) == ([1], [20], [up])
    lab, ex, _ = tb([10], [up / 2], 50, tp=2.0)  # 2 * (up / 2) == up exactly
    assert (lab, ex) == ([1], [20])
    down = -math.log(99 / 100)  # 101 stays inside (0.00995 < 0.01005), 99 touches the stop
    lab, ex, ret = tb([10], [down], 50)
    assert (lab, ex, ret) == ([-1], [30], [math.log(99 / 100)])


def test_triple_barrier_update_exactly_at_horizon_end_is_on_the_path() -> None:
    v = math.log(102 / 100)
    assert tb([10], [v], 30)[:2] == ([1], [40])  # t + h == 40 == ts of the 102 update
    lab, ex, ret = tb([10], [v], 29)  # one ns shorter: time exit, mid as of 39 is 99
    assert (lab, ex) == ([0], [39])
    assert ret == pytest.approx([math.log(99 / 100)], rel=1e-13)


def test_triple_barrier_time_exit_without_updates_on_the_path() -> None:
    assert tb([12], [0.01], 5) == ([0], [17], [0.0])


def test_triple_barrier_past_the_data_end() -> None:
    # t=40 (p0 102), horizon past ts[-1]=60: the stop (98: -0.0400) is touched at 50 before the end
    assert tb([40], [0.03], 100)[:2] == ([-1], [50])
    # no touch before the end: the outcome is unknown
    assert _missing_row(tb([40], [0.1], 100))
    # t + h == ts[-1] exactly is not past the end
    lab, ex, _ = tb([40], [0.1], 20)
    assert (lab, ex) == ([0], [60])


def _missing_row(r: tuple[list[int], list[int], list[float]]) -> bool:
    lab, ex, ret = r
    return lab == [MISSING] and ex == [-1] and math.isnan(ret[0])


def test_triple_barrier_missing_before_data_and_for_bad_vol() -> None:
    for t, v in ((5, 0.01), (10, NAN), (10, 0.0), (10, -0.01), (10, math.inf)):
        assert _missing_row(tb([t], [v], 30)), (t, v)


def test_triple_barrier_infinite_multiplier_disables_a_barrier() -> None:
    # t=10: 99 would hit a 0.005 stop at 30; with the stop disabled the 102 update takes profit
    assert tb([10], [0.005], 50, sl=math.inf)[:2] == ([1], [20])
    assert tb([10], [0.015], 50, sl=math.inf)[:2] == ([1], [40])
    lab, ex, _ = tb([10], [0.005], 50, tp=math.inf, sl=math.inf)
    assert (lab, ex) == ([0], [60])


def test_triple_barrier_every_update_counts_even_at_equal_timestamps() -> None:
    ts = arr_i(10, 20, 20, 30)
    mid = arr_f(100.0, 102.0, 100.0, 100.0)
    v = math.log(102 / 100)
    # the 102 is superseded at the same ts but it was a real book state: it touches the barrier
    assert tb([10], [v], 20, ts=ts, mid=mid)[:2] == ([1], [20])
    # at t=20 the start is the last update at 20 (100), and neither update at 20 is on the path
    assert tb([20], [v], 10, ts=ts, mid=mid) == ([0], [30], [0.0])


# ---------------------------------------------------------------- realized_vol, by hand


def test_realized_vol_hand_path() -> None:
    ts = arr_i(10, 20, 30, 40)
    mid = arr_f(100.0, 101.0, 99.0, 102.0)
    a, b, c = math.log(101 / 100), math.log(99 / 101), math.log(102 / 99)
    got = realized_vol(ts, mid, arr_i(29, 30, 35, 40, 45, 100), 20)
    expected = [
        NAN,  # window starts at 9, before the data
        math.hypot(a, b),  # (10, 30]: the updates at 20 and 30; the one at 10 is outside
        math.hypot(a, b),  # (15, 35]
        math.hypot(b, c),  # (20, 40]
        math.hypot(b, c),  # (25, 45]
        0.0,  # (80, 100]: no update, no variation
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_realized_vol_counts_every_update_at_equal_timestamps() -> None:
    ts = arr_i(10, 20, 20)
    mid = arr_f(100.0, 101.0, 100.0)
    got = realized_vol(ts, mid, arr_i(30), 20)
    assert got[0] == pytest.approx(math.hypot(math.log(101 / 100), math.log(100 / 101)), rel=1e-12)


# ---------------------------------------------------------------- random paths


@st.composite
def paths(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Small tick-grid mid paths with repeated timestamps and repeated prices (so ties happen)."""
    n = draw(st.integers(2, 40))
    gaps = draw(st.lists(st.integers(0, 4), min_size=n - 1, max_size=n - 1))
    steps = draw(st.lists(st.integers(-2, 2), min_size=n - 1, max_size=n - 1))
    t0 = draw(st.integers(0, 1000))
    ts = np.concatenate([[t0], t0 + np.cumsum(gaps)]).astype(I64)
    mid = 100.0 + 0.5 * np.concatenate([[0], np.cumsum(steps)]).astype(float)
    span = range(int(ts[0]) - 3, int(ts[-1]) + 6)
    t = np.array(sorted(draw(st.sets(st.sampled_from(span), min_size=1, max_size=25))), I64)
    h = draw(st.integers(1, 20))
    return ts, mid, t, h


def asof(ts: np.ndarray, x: int) -> int:
    """Index of the last update with ts <= x, -1 if none (by a linear scan)."""
    k = -1
    for j in range(ts.shape[0]):
        if ts[j] <= x:
            k = j
    return k


def reference_triple_barrier(ts, mid, t, vol, tp, sl, h):
    label, exit_ns, ret = [], [], []
    for ti, v in zip(t.tolist(), vol.tolist()):
        a = asof(ts, ti)
        if a < 0 or not (math.isfinite(v) and v > 0):
            label.append(-128)
            exit_ns.append(-1)
            ret.append(NAN)
            continue
        upper, lower = tp * v, -(sl * v)
        out = None
        for j in range(ts.shape[0]):
            if ti < ts[j] <= ti + h:
                r = math.log(mid[j] / mid[a])
                if r >= upper:
                    out = (1, int(ts[j]), r)
                elif r <= lower:
                    out = (-1, int(ts[j]), r)
                if out is not None:
                    break
        if out is None and ti + h <= ts[-1]:
            out = (0, ti + h, math.log(mid[asof(ts, ti + h)] / mid[a]))
        if out is None:
            out = (-128, -1, NAN)
        label.append(out[0])
        exit_ns.append(out[1])
        ret.append(out[2])
    return np.array(label, np.int8), np.array(exit_ns, I64), np.array(ret)


def random_vol(rng: np.random.Generator, ts, mid, t, h) -> np.ndarray:
    """Random barrier widths; a third are set to hit a path point exactly, a few are invalid."""
    vol = rng.uniform(0.001, 0.03, t.shape[0])
    for i, ti in enumerate(t.tolist()):
        a = asof(ts, ti)
        on_path = [j for j in range(ts.shape[0]) if ti < ts[j] <= ti + h]
        u = rng.uniform()
        if a >= 0 and on_path and u < 0.33:
            j = on_path[rng.integers(len(on_path))]
            vol[i] = abs(math.log(mid[j] / mid[a])) or 0.01
        elif u > 0.93:
            vol[i] = (NAN, 0.0, -0.01)[rng.integers(3)]
    return vol


@given(paths(), st.sampled_from([(1.0, 1.0), (2.0, 1.0), (1.0, 0.5), (math.inf, 1.0)]), st.integers(0, 2**32 - 1))
@settings(max_examples=examples(150), deadline=None)
def test_triple_barrier_matches_brute_force_reference(path, mults, seed) -> None:
    ts, mid, t, h = path
    tp, sl = mults
    vol = random_vol(np.random.default_rng(seed), ts, mid, t, h)
    got = triple_barrier(ts, mid, t, vol, tp, sl, h)
    want = reference_triple_barrier(ts, mid, t, vol, tp, sl, h)
    np.testing.assert_array_equal(got.label, want[0])
    np.testing.assert_array_equal(got.exit_ns, want[1])
    np.testing.assert_array_equal(got.ret, want[2])


@given(paths())
@settings(max_examples=examples(100), deadline=None)
def test_forward_return_and_realized_vol_match_brute_force(path) -> None:
    ts, mid, t, h = path
    fr_want, rv_want = [], []
    for ti in t.tolist():
        a, b = asof(ts, ti), asof(ts, ti + h)
        fr_want.append(math.log(mid[b] / mid[a]) if a >= 0 and ti + h <= ts[-1] else NAN)
        inside = [j for j in range(1, ts.shape[0]) if ti - h < ts[j] <= ti]
        sq = math.fsum(math.log(mid[j] / mid[j - 1]) ** 2 for j in inside)
        rv_want.append(math.sqrt(sq) if ti - h >= ts[0] else NAN)
    np.testing.assert_allclose(forward_return(ts, mid, t, h), fr_want, rtol=1e-12, atol=1e-15, equal_nan=True)
    np.testing.assert_allclose(realized_vol(ts, mid, t, h), rv_want, rtol=1e-10, atol=1e-15, equal_nan=True)


@given(paths(), st.integers(0, 2**32 - 1))
@settings(max_examples=examples(100), deadline=None)
def test_labels_ignore_updates_after_the_horizon(path, seed) -> None:
    ts, mid, t, h = path
    rng = np.random.default_rng(seed)
    vol = random_vol(rng, ts, mid, t, h)
    fr, tbar = forward_return(ts, mid, t, h), triple_barrier(ts, mid, t, vol, 1.0, 1.0, h)
    for i, ti in enumerate(t.tolist()):
        later = ts > ti + h
        if not later.any():
            continue
        mid2 = mid.copy()
        mid2[later] *= rng.uniform(0.5, 2.0, int(later.sum()))
        fr2, tbar2 = forward_return(ts, mid2, t, h), triple_barrier(ts, mid2, t, vol, 1.0, 1.0, h)
        np.testing.assert_array_equal(fr2[i], fr[i])
        assert direction(fr2[i : i + 1], 0.004)[0] == direction(fr[i : i + 1], 0.004)[0]
        assert (tbar2.label[i], tbar2.exit_ns[i]) == (tbar.label[i], tbar.exit_ns[i])
        np.testing.assert_array_equal(tbar2.ret[i], tbar.ret[i])


@given(paths())
@settings(max_examples=examples(100), deadline=None)
def test_forward_return_sees_the_horizon(path) -> None:
    ts, mid, t, h = path
    fr = forward_return(ts, mid, t, h)
    for i, ti in enumerate(t.tolist()):
        window = (ts > ti) & (ts <= ti + h)
        if not window.any() or np.isnan(fr[i]):
            continue
        mid2 = mid.copy()
        mid2[window] *= 1.5
        assert forward_return(ts, mid2, t, h)[i] != fr[i]


@given(paths(), st.integers(0, 2**32 - 1))
@settings(max_examples=examples(100), deadline=None)
def test_realized_vol_looks_only_backward(path, seed) -> None:
    ts, mid, t, w = path
    rng = np.random.default_rng(seed)
    rv = realized_vol(ts, mid, t, w)
    for i, ti in enumerate(t.tolist()):
        later = ts > ti
        if later.any():
            mid2 = mid.copy()
            mid2[later] *= rng.uniform(0.5, 2.0, int(later.sum()))
            np.testing.assert_array_equal(realized_vol(ts, mid2, t, w)[i], rv[i])
        if later.any() and not later.all():  # dropping the future entirely changes nothing either
            np.testing.assert_array_equal(realized_vol(ts[~later], mid[~later], t[i : i + 1], w)[0], rv[i])
        last = asof(ts, ti)
        if not np.isnan(rv[i]) and last >= 1 and ts[last] > ti - w:  # the window holds an update: it matters
            mid3 = mid.copy()
            mid3[last] *= 1.5
            assert realized_vol(ts, mid3, t, w)[i] != rv[i]


@given(paths())
@settings(max_examples=examples(100), deadline=None)
def test_rows_past_the_data_end_are_missing_and_rows_before_are_not(path) -> None:
    ts, mid, t, h = path
    before_data, past_end = t < ts[0], t + h > ts[-1]
    fr = forward_return(ts, mid, t, h)
    np.testing.assert_array_equal(np.isnan(fr), before_data | past_end)
    np.testing.assert_array_equal(direction(fr, 0.001) == MISSING, before_data | past_end)
    r = triple_barrier(ts, mid, t, np.full(t.shape[0], 0.005), 1.0, 1.0, h)
    missing = r.label == MISSING
    assert not missing[~before_data & ~past_end].any()
    assert missing[before_data].all()
    np.testing.assert_array_equal(missing, r.exit_ns == -1)
    np.testing.assert_array_equal(missing, np.isnan(r.ret))
    # a labelled row past the end must have touched a barrier at or before ts[-1]
    late = ~missing & past_end
    assert (r.label[late] != 0).all() and (r.exit_ns[late] <= ts[-1]).all()
    # time exits agree with the fixed-horizon return; without barriers every labelled row is a time exit
    exits = r.label == 0
    np.testing.assert_allclose(r.ret[exits], fr[exits], rtol=1e-12, atol=1e-15)
    free = triple_barrier(ts, mid, t, np.full(t.shape[0], 0.005), math.inf, math.inf, h)
    np.testing.assert_array_equal(free.label, np.where(np.isnan(fr), MISSING, 0).astype(np.int8))
    assert (realized_vol(ts, mid, t, h) >= 0).sum() == (t - h >= ts[0]).sum()


# ---------------------------------------------------------------- bad input

T3 = arr_i(10, 20, 30)
V3 = arr_f(0.01, 0.01, 0.01)

BAD_INPUTS = [
    ("mismatched", lambda: forward_return(TS, MID[:-1], T3, 10), "lengths differ"),
    ("ts backwards", lambda: forward_return(TS[::-1].copy(), MID, T3, 10), "ts must be non-decreasing"),
    ("t repeated", lambda: forward_return(TS, MID, arr_i(10, 10), 10), "t must be strictly increasing"),
    ("t backwards", lambda: realized_vol(TS, MID, arr_i(30, 20), 10), "t must be strictly increasing"),
    ("mid zero", lambda: forward_return(TS, np.where(MID == 99.0, 0.0, MID), T3, 10), "mid must be finite and > 0"),
    ("mid negative", lambda: realized_vol(TS, -MID, T3, 10), "mid must be finite and > 0"),
    ("mid nan", lambda: triple_barrier(TS, np.where(MID == 99.0, NAN, MID), T3, V3, 1, 1, 10), "mid must be finite"),
    ("horizon zero", lambda: forward_return(TS, MID, T3, 0), "horizon_ns must be > 0"),
    ("horizon negative", lambda: triple_barrier(TS, MID, T3, V3, 1, 1, -5), "horizon_ns must be > 0"),
    ("horizon float", lambda: forward_return(TS, MID, T3, 1.5), "horizon_ns must be an integer"),  # type: ignore[arg-type]
    ("window zero", lambda: realized_vol(TS, MID, T3, 0), "window_ns must be > 0"),
    ("float ts", lambda: forward_return(TS.astype(float), MID, T3, 10), "ts must be int64"),
    ("float t", lambda: forward_return(TS, MID, T3.astype(float), 10), "t must be int64"),
    ("empty", lambda: forward_return(arr_i(), arr_f(), T3, 10), "ts and mid are empty"),
    ("2-D ts", lambda: forward_return(TS.reshape(2, 3), MID.reshape(2, 3), T3, 10), "must be 1-D"),
    ("overflow", lambda: forward_return(TS, MID, arr_i(2**62), 2**62), "overflows int64"),
    ("vol length", lambda: triple_barrier(TS, MID, T3, V3[:2], 1, 1, 10), "vol must be 1-D with one entry per t"),
    ("tp zero", lambda: triple_barrier(TS, MID, T3, V3, 0.0, 1, 10), "tp_mult must be > 0"),
    ("sl nan", lambda: triple_barrier(TS, MID, T3, V3, 1, NAN, 10), "sl_mult must be > 0"),
    ("tau negative", lambda: direction(V3, -0.001), "tau must be >= 0"),
    ("tau nan", lambda: direction(V3, NAN), "tau must be >= 0"),
    ("fee nan", lambda: dead_zone(NAN), "maker_fee must be a finite fraction"),
    ("fee huge", lambda: dead_zone(0.0002, 1.5, round_trip_maker=False), "taker_fee must be a finite fraction"),
    ("extra negative", lambda: dead_zone(0.0002, extra=-0.0001), "extra must be >= 0"),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_one_line_value_error(call, message) -> None:
    with pytest.raises(LabelInputError, match=message) as err:
        call()
    assert isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


def test_empty_grid_gives_empty_labels() -> None:
    empty = arr_i()
    assert forward_return(TS, MID, empty, 10).shape == (0,)
    assert realized_vol(TS, MID, empty, 10).shape == (0,)
    r = triple_barrier(TS, MID, empty, arr_f(), 1.0, 1.0, 10)
    assert r.label.dtype == np.int8 and r.exit_ns.dtype == I64 and r.label.shape == (0,)


# ---------------------------------------------------------------- speed (compiled only)
