"""Leak-free splits for time-ordered samples whose labels look forward (REFERENCE section 5).

A sample at time t has a label built from (t, t + horizon] and features from (t - lookback, t].
Training samples are *purged* when their label window reaches into the block they are evaluated
against, and every block that follows another starts only after an *embargo* (at least the label
horizon plus the longest feature look-back), so no test feature window overlaps a training label.

    walk-forward:  [train ........][purge+embargo][test 1]
                   [train ....................][purge+embargo][test 2] ...
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    train: np.ndarray  # row indices
    test: np.ndarray
    test_start_ns: int
    test_end_ns: int


def walk_forward(ts: np.ndarray, n_folds: int, embargo_ns: int, min_train: float = 0.3) -> list[Fold]:
    """Expanding-window folds over time-sorted ``ts``: each test block follows all its training rows.

    The first ``min_train`` share of the time span is training only; the rest is cut into
    ``n_folds`` equal test blocks. Training rows are those with t < test_start - embargo.
    """
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError("no rows to split")
    if np.any(np.diff(ts) < 0):
        raise ValueError("rows must be sorted by time")
    if n_folds < 1 or not 0.0 < min_train < 1.0 or embargo_ns < 0:
        raise ValueError("n_folds >= 1, 0 < min_train < 1 and embargo >= 0 are required")
    lo, hi = int(ts[0]), int(ts[-1]) + 1
    first = lo + int((hi - lo) * min_train)
    edges = np.linspace(first, hi, n_folds + 1).astype(np.int64)
    folds = []
    for a, b in itertools.pairwise(edges):
        test = np.flatnonzero((ts >= a) & (ts < b))
        train = np.flatnonzero(ts < a - embargo_ns)
        if test.size and train.size:
            folds.append(Fold(train, test, int(a), int(b)))
    if not folds:
        raise ValueError("no fold has both training and test rows: more data or a shorter embargo is needed")
    return folds


def blocks(ts: np.ndarray, shares: tuple[float, ...], embargo_ns: int) -> list[np.ndarray]:
    """Consecutive time blocks with the given shares of the span, each after an embargo.

    E.g. (0.6, 0.2, 0.2) -> fit, calibrate, held-out test; rows in an embargo belong to no block.
    """
    if abs(sum(shares) - 1.0) > 1e-9 or any(s <= 0 for s in shares):
        raise ValueError("shares must be positive and sum to 1")
    if ts.size == 0:
        raise ValueError("no rows to split")
    lo, hi = int(ts[0]), int(ts[-1]) + 1
    cuts = lo + (np.cumsum((0.0, *shares)) * (hi - lo)).astype(np.int64)
    cuts[-1] = hi
    out = []
    for k, (a, b) in enumerate(itertools.pairwise(cuts)):
        start = a + (embargo_ns if k else 0)
        out.append(np.flatnonzero((ts >= start) & (ts < b)))
    return out
