"""The statistics behind every execution figure a desk decides on (REFERENCE section 7).

- ``sharpe_inference``: the Sharpe ratio of per-period returns with its standard error, which
  grows with skew and fat tails, SE = sqrt((1 - skew SR + (kurt - 1) / 4 SR^2) / (n - 1)) (Lo
  2002; Mertens 2002; kurt is the plain, not the excess, kurtosis), and the probabilistic Sharpe
  ratio PSR(SR*) = Phi((SR - SR*) / SE) (Bailey & Lopez de Prado 2012), the probability that the
  true Sharpe exceeds SR* (0 here). All per period; annualizing multiplies SR and SE by
  sqrt(periods a year), after, never before.
- ``paired_sharpe_difference``: two strategies on the same signals and the same periods share the
  market's moves, so their Sharpe ratios are compared on paired per-period returns: a moving-block
  bootstrap resamples the same blocks of periods for both (Kunsch 1989; Ledoit & Wolf 2008 use the
  same idea with a studentized statistic); the percentile interval of SR_b - SR_a.
- ``welch_difference``: the difference of two means from independent samples (per-parent
  shortfalls of two runs) with Welch's t interval (unequal variances, Welch-Satterthwaite degrees
  of freedom).
- ``block_bootstrap_sum``: a percentile interval for the sum of per-period values (a run's PnL).

Everything is deterministic: the bootstraps draw from a seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
N_BOOT = 2000
MIN_EVIDENCE = 30  # fewer parent orders than this: not enough evidence for a claim


@dataclass(frozen=True)
class SharpeInference:
    """A Sharpe ratio per period with its standard error, PSR(0) and the number of returns."""

    sharpe: float
    se: float
    psr: float
    n: int

    def annualized(self, periods_per_year: float) -> tuple[float, float]:
        """(Sharpe, its standard error) annualized: both times sqrt(periods a year)."""
        k = math.sqrt(periods_per_year)
        return self.sharpe * k, self.se * k


def sharpe_inference(returns: np.ndarray) -> SharpeInference:
    """Sharpe ratio of ``returns`` (per period, std with ddof 1), its Lo/Mertens standard error and
    PSR against 0; NaN where undefined (fewer than 3 returns or a zero standard deviation)."""
    r = np.asarray(returns, np.float64)
    n = len(r)
    nan = float("nan")
    if n < 3:
        return SharpeInference(nan, nan, nan, n)
    sd = float(r.std(ddof=1))
    if not sd > 0:
        return SharpeInference(nan, nan, nan, n)
    sr = float(r.mean()) / sd
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / m2**1.5
    kurt = float(np.mean(centred**4)) / m2**2
    var = max(1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr, 1e-12) / (n - 1)
    se = math.sqrt(var)
    return SharpeInference(sr, se, 0.5 * (1.0 + math.erf(sr / se / math.sqrt(2.0))), n)  # the normal cdf


def block_length(n: int) -> int:
    """Moving-block length for n periods: n^(1/3) (Hall, Horowitz & Jing 1995), at least 1."""
    root: float = math.pow(n, 1.0 / 3.0)
    return max(1, math.floor(root + 0.5))


def _block_starts(rng: np.random.Generator, n: int, block: int, n_boot: int) -> np.ndarray:
    """Row indices of ``n_boot`` moving-block resamples of n rows (blocks glued, the last one cut)."""
    k = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, k))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, k * block)
    return idx[:, :n]


def _sharpe_rows(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, x.mean(axis=1) / sd, np.nan)


def paired_sharpe_difference(
    ra: np.ndarray, rb: np.ndarray, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(SR_b - SR_a, lo, hi) per period from paired returns (the same periods, in order), the
    interval from a moving-block bootstrap of the pairs; NaN with fewer than 3 pairs."""
    a, b = np.asarray(ra, np.float64), np.asarray(rb, np.float64)
    if a.shape != b.shape:
        raise ValueError("paired returns must cover the same periods")
    n = len(a)
    nan = float("nan")
    if n < 3:
        return nan, nan, nan
    diff = float(_sharpe_rows(b[None, :])[0] - _sharpe_rows(a[None, :])[0])
    idx = _block_starts(np.random.default_rng(seed), n, block_length(n), n_boot)
    boot = _sharpe_rows(b[idx]) - _sharpe_rows(a[idx])
    boot = boot[np.isfinite(boot)]
    if len(boot) < n_boot // 2:
        return diff, nan, nan
    tail = (1.0 - level) / 2.0
    return diff, float(np.quantile(boot, tail)), float(np.quantile(boot, 1.0 - tail))


def block_bootstrap_sum(
    x: np.ndarray, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(sum, lo, hi) of per-period values, the interval from a moving-block bootstrap."""
    v = np.asarray(x, np.float64)
    nan = float("nan")
    if len(v) < 3:
        return float(v.sum()), nan, nan
    idx = _block_starts(np.random.default_rng(seed), len(v), block_length(len(v)), n_boot)
    boot = v[idx].sum(axis=1)
    tail = (1.0 - level) / 2.0
    return float(v.sum()), float(np.quantile(boot, tail)), float(np.quantile(boot, 1.0 - tail))


def mean_interval(x: np.ndarray, level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) with Student's t interval; NaN bounds with fewer than 2 values."""
    v = np.asarray(x, np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    nan = float("nan")
    if n == 0:
        return nan, nan, nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, nan, nan, n
    half = _t_quantile(0.5 + level / 2.0, n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def welch_difference(xa: np.ndarray, xb: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean_b - mean_a, lo, hi) with Welch's t interval; NaN bounds with fewer than 2 values a side."""
    a, b = (np.asarray(x, np.float64) for x in (xa, xb))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    nan = float("nan")
    if len(a) == 0 or len(b) == 0:
        return nan, nan, nan
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, nan, nan
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    half = _t_quantile(0.5 + level / 2.0, df) * se
    return diff, diff - half, diff + half


def _t_quantile(p: float, df: float) -> float:
    """Student's t quantile. scipy.stats is imported here, not with the module: it costs every
    process that imports the engine (the runner, each flow command) about a second at start-up."""
    from scipy import stats

    return float(stats.t.ppf(p, df))
