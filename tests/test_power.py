"""The gate's power side: evidence counted in the bets a strategy makes, the training runs' strategy
holding each bet for the label horizon, and a planted ranking that pays the cost gets a threshold
while the same search on noise does not."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import TrainingConfig
from execution.strategy import Baseline
from models.metrics import NEVER, bets, choose_threshold
from models.result import Evidence
from pipelines.operating import confirm_labels
from tests.test_strategy import books, run, signals, strategy

NEED = Evidence.of(TrainingConfig())
MIN_ORDERS = NEED.min_orders

S = 1_000_000_000
H = 10  # label horizon in rows


def test_bets_hold_one_position_per_horizon() -> None:
    picked = np.zeros(40, np.bool_)
    picked[[0, 1, 2, 9, 10, 11, 25, 34, 35]] = True
    # 0 opens (held through 9), 10 is the first signalled row after it, 25, then 35 (34 < 25 + 10)
    assert bets(picked, H).tolist() == [0, 10, 25, 35]
    assert bets(picked, 0).tolist() == np.flatnonzero(picked).tolist()  # a one-row hold: every row


def test_a_continuous_signal_is_one_bet_per_horizon_not_one_per_row() -> None:
    # 300 signalled rows in a row, each earning 1 (overlapping windows): 30 bets, not 300 signals' worth
    p = np.r_[np.full(300, 0.9), np.full(700, 0.1)]
    ret = np.r_[np.ones(300), np.zeros(700)]
    c = choose_threshold(p, ret, 0.5, lag=H, min_signals=30, z=0.0, demean=False)
    assert c.signals == 300 and c.bets == 30 and c.per_bet == pytest.approx(0.5)
    # 31 bets needed: the same rows are not enough evidence, however many signals they hold
    assert choose_threshold(p, ret, 0.5, lag=H, min_signals=31, z=0.0, demean=False).threshold == NEVER


def _planted(seed: int, n: int, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """A score and forward returns over H rows of a random walk whose next H steps drift by ``edge``
    per step when the (slow) score is high: neighbouring rows share their windows."""
    rng = np.random.default_rng(seed)
    z = np.convolve(rng.normal(size=n + 19), np.ones(20) / np.sqrt(20), mode="valid")  # a slow state
    steps = rng.normal(size=n + H) + np.r_[edge * (z > 0.7), np.zeros(H)]
    ret = np.convolve(steps, np.ones(H), mode="valid")[1 : n + 1]  # rows t+1 .. t+H
    p = 1.0 / (1.0 + np.exp(-z + rng.normal(scale=0.3, size=n)))
    return p, ret


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_planted_ranking_that_pays_the_cost_is_chosen_and_confirmed_and_noise_is_not(seed: int) -> None:
    n = 6000
    p, ret = _planted(seed, n, edge=1.0)  # a high state adds H over the horizon: well above the cost
    cost = 3.0
    first, later = slice(0, n // 2), slice(n // 2, n)
    c = choose_threshold(p[first], ret[first], cost, lag=H, min_signals=NEED.min_orders, z=NEED.z)
    assert c.threshold < NEVER and c.bets >= MIN_ORDERS and c.per_bet - 2 * c.se > 0
    assert confirm_labels(p[later], ret[later], c.threshold, cost, H, NEED).ok
    noise = _planted(seed, n, edge=0.0)[1]
    c0 = choose_threshold(p[first], noise[first], cost, lag=H, min_signals=NEED.min_orders, z=NEED.z)
    assert c0.threshold == NEVER or not confirm_labels(p[later], noise[later], c0.threshold, cost, H, NEED).ok


def test_the_training_runs_strategy_holds_each_bet_for_the_horizon_and_ignores_renewed_signals() -> None:
    # a signal on every second for 14 s; the horizon is 5 s: the runner's rule would hold all along
    # (each signal extends the hold: one entry, one exit); fixed_hold enters at 1 s, exits at the
    # first decision at or after 6 s, enters again at the next decision once flat, and so on
    times = [k * S for k in range(30)]
    m = books(times, [50_000.0] * 30)
    sig = signals([k * S for k in range(1, 28)], [1] * 14 + [0] * 13)
    _, extended = run(strategy(Baseline), m, sig)
    assert extended["side"].tolist() == [1, -1]
    _, fixed = run(strategy(Baseline, fixed_hold=True), m, sig)
    assert fixed["side"].tolist() == [1, -1, 1, -1, 1, -1]
    entries = fixed["ts_ex"][fixed["side"] == 1]
    exits = fixed["ts_ex"][fixed["side"] == -1]
    assert np.all(exits - entries >= 5 * S) and np.all(exits - entries < 6 * S)  # the horizon, to the decision
