"""The held-out AUC's moving-block bootstrap interval (models.metrics.auc_interval)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.metrics import auc_interval, score


def _normal_scores(rng: np.random.Generator, n: int, shift: float, rate: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Positives score N(shift, 1), negatives N(0, 1): the population AUC is Phi(shift / sqrt 2)."""
    y = (rng.uniform(size=n) < rate).astype(float)
    return rng.normal(size=n) + shift * y, y


def _episodes(rng: np.random.Generator, episodes: int, length: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent draws, each repeated over ``length`` neighbouring rows: as strongly dependent as
    1 s rows whose forward windows overlap completely."""
    p, y = _normal_scores(rng, episodes, shift)
    return np.repeat(p, length), np.repeat(y, length)


def test_one_block_of_all_rows_gives_exactly_the_sample_auc_ties_included() -> None:
    rng = np.random.default_rng(0)
    p, y = _normal_scores(rng, 700, 0.8)
    p = np.round(p, 1)  # many ties: they count a half, as in roc_auc_score
    lo, hi = auc_interval(p, y, block=len(p))
    assert lo == pytest.approx(roc_auc_score(y, p), abs=1e-12) and hi == pytest.approx(lo, abs=1e-12)


def test_an_uninformative_score_covers_one_half_and_a_strong_one_excludes_it() -> None:
    rng = np.random.default_rng(1)
    p, y = _normal_scores(rng, 5000, 0.0)
    lo, hi = auc_interval(p, y, block=30)
    assert lo < 0.5 < hi and hi - lo < 0.1
    p, y = _normal_scores(rng, 5000, 0.5)
    lo, hi = auc_interval(p, y, block=30)
    assert 0.5 < lo < roc_auc_score(y, p) < hi


def test_dependent_rows_widen_the_interval_against_the_iid_bootstrap() -> None:
    p, y = _episodes(np.random.default_rng(2), episodes=150, length=30, shift=0.5)
    iid = auc_interval(p, y, block=1)
    blocks = auc_interval(p, y, block=30)
    # 4,500 rows but only 150 independent draws: the honest interval is about sqrt(30) ~ 5.5 times wider
    assert blocks[1] - blocks[0] > 3 * (iid[1] - iid[0])


def test_the_interval_covers_the_true_auc_about_as_often_as_it_claims() -> None:
    shift, length = 0.6, 20
    truth = 0.5 * (1.0 + math.erf(shift / 2.0))  # Phi(shift / sqrt 2)
    rng = np.random.default_rng(3)
    hits = {1: 0, length: 0}
    trials = 120
    for t in range(trials):
        p, y = _episodes(rng, episodes=120, length=length, shift=shift)
        for block in hits:
            lo, hi = auc_interval(p, y, block=block, n_boot=200, seed=t)
            hits[block] += lo <= truth <= hi
    # blocks as long as the dependence: near the nominal 95 % (0.86-0.93 over other seeds; the
    # percentile interval runs a little short on 120 independent draws)
    assert hits[length] / trials >= 0.8
    assert hits[1] / trials <= 0.5  # single rows resampled: about a third, a precision the data does not have


def test_the_interval_is_seeded_and_handles_a_single_class() -> None:
    p, y = _normal_scores(np.random.default_rng(4), 2000, 0.3)
    assert auc_interval(p, y, 25, seed=7) == auc_interval(p, y, 25, seed=7)
    assert auc_interval(p, y, 25, seed=7) != auc_interval(p, y, 25, seed=8)
    assert all(math.isnan(v) for v in auc_interval(p, np.zeros_like(y), 25))
    s = score(p, y, np.zeros_like(p), 0.9, block=25)
    assert s.auc_lo < s.auc < s.auc_hi
    assert math.isnan(score(p, y, np.zeros_like(p), 0.9).auc_lo)  # no block: no interval
