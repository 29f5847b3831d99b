"""Sample sizes and 95 % intervals for the execution figures: a figure over three fills says so.

A mean (arrival slippage, a markout) gets Student's t interval over its per-fill values, a share
(maker fills, post-only rejects) Wilson's score interval (Wilson 1927; Brown, Cai and DasGupta,
"Interval Estimation for a Binomial Proportion", Statistical Science 16(2), 2001, recommend it
over the normal interval for small n). Below ``MIN_EVIDENCE`` samples the page writes "not enough
evidence" beside the figure: its interval is too wide to act on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MIN_EVIDENCE = 30
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A figure, the number of samples behind it and its 95 % interval (NaN where there is none)."""

    n: int
    value: float
    lo: float = math.nan
    hi: float = math.nan

    @property
    def enough(self) -> bool:
        return self.n >= MIN_EVIDENCE

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "value": self.value, "lo": self.lo, "hi": self.hi, "enough": self.enough}


def mean_interval(values: Iterable[float]) -> Estimate:
    """The mean of the finite ``values`` with its t interval (none below two values)."""
    x = [v for v in values if math.isfinite(v)]
    n = len(x)
    if n == 0:
        return Estimate(0, math.nan)
    mean = sum(x) / n
    if n < 2:
        return Estimate(1, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return Estimate(n, mean, mean - half, mean + half)


def proportion(k: int, n: int) -> Estimate:
    """The share ``k / n`` with Wilson's score interval."""
    if n <= 0:
        return Estimate(0, math.nan)
    p, z2 = k / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo, hi = (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)  # exact at the ends
    return Estimate(n, p, max(0.0, lo), min(1.0, hi))


@lru_cache(maxsize=512)
def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.special import stdtrit  # the inverse of Student's t distribution (lighter than scipy.stats)

    return float(stdtrit(df, 0.975))
