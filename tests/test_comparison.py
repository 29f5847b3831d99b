"""The statistics behind the targets, and the targets' verdicts: MET, NOT MET or not decidable."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from execution.comparison import MET, NOT_MET, UNDECIDED, Samples, check_targets
from execution.stats import (
    block_bootstrap_sum,
    mean_interval,
    paired_sharpe_difference,
    sharpe_inference,
    welch_difference,
)

MINUTE = 60_000_000_000


def test_sharpe_standard_error_follows_lo_and_mertens_with_skew_and_kurtosis() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.05, -0.01, 0.02, 0.04, -0.03, 0.01])
    s = sharpe_inference(r)
    sr = r.mean() / r.std(ddof=1)
    c = r - r.mean()
    skew = np.mean(c**3) / np.mean(c**2) ** 1.5
    kurt = np.mean(c**4) / np.mean(c**2) ** 2
    se = math.sqrt((1 - skew * sr + (kurt - 1) / 4 * sr**2) / (len(r) - 1))
    assert s.sharpe == pytest.approx(sr) and s.n == 10 and s.se == pytest.approx(se)
    assert s.psr == pytest.approx(st.norm.cdf(sr / se))
    assert list(s.annualized(100.0)) == pytest.approx([10 * sr, 10 * se])
    assert math.isnan(sharpe_inference(np.zeros(5)).sharpe) and math.isnan(sharpe_inference(r[:2]).se)


def test_welch_interval_matches_scipy_and_the_t_interval_its_mean() -> None:
    a = np.array([5.1, 5.6, 5.4, 5.9, 5.5, 5.2])
    b = np.array([2.4, 2.9, 2.2, 2.6, 3.1, 2.5, 2.7])
    d, lo, hi = welch_difference(a, b)
    ref = st.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert [d, lo, hi] == pytest.approx([b.mean() - a.mean(), ref.low, ref.high])
    m, lo, hi, n = mean_interval(a)
    half = st.t.ppf(0.975, 5) * a.std(ddof=1) / math.sqrt(6)
    assert [m, lo, hi] == pytest.approx([a.mean(), a.mean() - half, a.mean() + half]) and n == 6


def test_bootstraps_are_seeded_and_bracket_the_estimate() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, 400)
    b = a + rng.normal(0.3, 0.2, 400)  # the same market moves plus an edge
    first, again = paired_sharpe_difference(a, b), paired_sharpe_difference(a, b)
    assert first == again and first[1] < first[0] < first[2] and first[1] > 0  # paired: the edge is clear
    total, lo, hi = block_bootstrap_sum(b)
    assert lo < total < hi and total == pytest.approx(b.sum())


def samples(shortfall: np.ndarray, returns: np.ndarray, equity: float = 100_000.0) -> Samples:
    return Samples(shortfall, np.arange(1, len(returns) + 1, dtype=np.int64) * MINUTE, returns, equity)


RNG = np.random.default_rng(7)
MARKET = RNG.normal(0.0, 1e-4, 600)  # the minutes both strategies share (demeaned: no drift of its own)
MARKET -= MARKET.mean()
_RUNS = RNG.normal(0.0, 0.3, (2, 100))  # per-parent noise of the shortfall (bps), two runs, demeaned
NOISE = (_RUNS - _RUNS.mean(axis=1, keepdims=True)).ravel()


def verdict(short_a: np.ndarray, short_b: np.ndarray, ret_a: np.ndarray, ret_b: np.ndarray) -> tuple[str, str, str]:
    v = check_targets({}, {}, ("baseline", "passive"), (samples(short_a, ret_a), samples(short_b, ret_b)))
    assert f"targets: slippage {v.slippage}, Sharpe {v.sharpe}, profitable {v.profitable}" in v.text
    return v.slippage, v.sharpe, v.profitable


def test_a_clear_halving_of_cost_a_clear_sharpe_gain_and_a_clear_profit_are_met() -> None:
    edge = MARKET + 2e-5  # the same minutes, each 0.2 bp of equity better
    got = verdict(5.5 + NOISE[:100], 2.5 + NOISE[100:], MARKET, edge)
    assert got == (MET, MET, MET)


def test_significant_but_short_of_the_target_is_not_met() -> None:
    loss = MARKET - 3e-5
    slip, sharpe, profit = verdict(5.5 + NOISE[:100], 4.0 + NOISE[100:], MARKET, loss)
    assert (slip, sharpe, profit) == (NOT_MET, NOT_MET, NOT_MET)  # -27 %; a worse Sharpe; a significant loss


def test_fewer_than_30_parent_orders_is_not_enough_evidence_whatever_the_numbers() -> None:
    v = check_targets({}, {}, ("a", "b"), (samples(5.5 + NOISE[:29], MARKET), samples(1.0 + NOISE[:29], MARKET + 1e-4)))
    assert (v.slippage, v.sharpe, v.profitable) == (UNDECIDED, UNDECIDED, UNDECIDED)
    assert v.text.count("not enough evidence: 29") == 3 and not v.met


def test_an_interval_that_includes_zero_is_not_decidable() -> None:
    slip, sharpe, profit = verdict(5.5 + NOISE[:100], 5.45 + NOISE[100:], MARKET, MARKET.copy())
    assert slip == sharpe == profit == UNDECIDED


def test_one_parent_order_held_to_the_end_claims_nothing() -> None:
    """The demo's degenerate study: one parent per strategy, the block's drift as PnL."""
    drift = np.full(600, 2e-5) + MARKET
    v = check_targets(
        {}, {}, ("baseline", "passive"), (samples(np.array([5.5]), drift), samples(np.array([2.0]), drift * 1.3))
    )
    assert (v.slippage, v.sharpe, v.profitable) == (UNDECIDED, UNDECIDED, UNDECIDED)
    assert "MET" not in v.text.replace("NOT MET", "")


def test_reports_without_samples_decide_nothing() -> None:
    v = check_targets({"sharpe": 1.0}, {"sharpe": 2.0})
    assert (v.slippage, v.sharpe, v.profitable) == (UNDECIDED, UNDECIDED, UNDECIDED) and not v.met
