"""Leak-free splits: no training label window reaches a test block, embargoes are honoured."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.cv import blocks, walk_forward

S = 1_000_000_000


def test_walk_forward_purges_training_rows_whose_labels_reach_the_test_block() -> None:
    ts = np.arange(0, 10_000 * S, S, dtype=np.int64)  # one row per second
    horizon, lookback = 60 * S, 300 * S
    folds = walk_forward(ts, n_folds=4, embargo_ns=horizon + lookback)
    assert len(folds) == 4
    for f in folds:
        assert ts[f.train].max() + horizon + lookback < f.test_start_ns  # label and look-back clear
        assert ts[f.test].min() >= f.test_start_ns and ts[f.test].max() < f.test_end_ns
        dropped = np.flatnonzero((ts >= f.test_start_ns - horizon - lookback) & (ts < f.test_start_ns))
        assert np.intersect1d(dropped, f.train).size == 0 and dropped.size == 360
    tests = np.concatenate([f.test for f in folds])
    assert np.unique(tests).size == tests.size  # test blocks never overlap
    assert all(a.train.size < b.train.size for a, b in itertools.pairwise(folds))  # expanding


def test_blocks_leave_an_embargo_between_fit_calibration_and_test() -> None:
    ts = np.arange(0, 1000 * S, S, dtype=np.int64)
    fit, cal, test = blocks(ts, (0.6, 0.2, 0.2), embargo_ns=30 * S)
    assert fit.size == 600 and cal.size == 170 and test.size == 170
    assert ts[cal[0]] - ts[fit[-1]] > 30 * S and ts[test[0]] - ts[cal[-1]] > 30 * S


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: walk_forward(np.array([], np.int64), 3, 0), "no rows"),
        (lambda: walk_forward(np.array([3, 1, 2]), 3, 0), "sorted"),
        (lambda: walk_forward(np.arange(10) * S, 3, 100 * S), "no fold"),
        (lambda: blocks(np.arange(10), (0.5, 0.4), 0), "sum to 1"),
    ],
)
def test_bad_splits_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
