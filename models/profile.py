"""What a model saw in training, kept with it so the live side can tell when the world moved.

- per feature, the decile edges of the fit block and the share of its rows in each bin: the
  reference for the population stability index (PSI) of the live features,
- the quantiles of the calibrated P(up) and P(down) on the held-out block: the reference for the
  live confidence histogram.

PSI = sum over bins of (live - train) * ln(live / train), shares floored at 1e-4. Read as usual:
under 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a significant one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BINS = 10
FLOOR = 1e-4
QUANTILES = np.linspace(0.0, 1.0, 101)


def _bin(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index (0 .. BINS-1) of every value: how many of its feature's inner edges are <= it."""
    return np.asarray((x[..., None] >= edges).sum(axis=-1), np.int64)


def psi(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """PSI of each row of ``actual`` (counts or shares per bin) against ``expected`` (shares)."""
    a = np.asarray(actual, np.float64)
    a = np.maximum(a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-300), FLOOR)
    e = np.maximum(np.asarray(expected, np.float64), FLOOR)
    return np.asarray(((a - e) * np.log(a / e)).sum(axis=-1), np.float64)


@dataclass(frozen=True)
class Profile:
    edges: np.ndarray  # (n_features, BINS - 1) inner decile edges of the fit block
    expected: np.ndarray  # (n_features, BINS) share of the fit rows in each bin
    p_quantiles: np.ndarray  # (2, 101) quantiles of P(up), P(down) on the held-out block

    @classmethod
    def of(cls, x_fit: np.ndarray, proba_test: np.ndarray) -> Profile:
        x = np.asarray(x_fit, np.float64)
        edges = np.nanquantile(x, np.arange(1, BINS) / BINS, axis=0).T
        edges = np.where(np.isfinite(edges), edges, 0.0)
        return cls(
            edges, cls.shares(_bin(x, edges)), np.quantile(np.asarray(proba_test, np.float64), QUANTILES, axis=0).T
        )

    @staticmethod
    def shares(bins: np.ndarray) -> np.ndarray:
        """(n, n_features) bin indices -> (n_features, BINS) shares."""
        counts = np.stack([np.bincount(b, minlength=BINS) for b in bins.T]).astype(np.float64)
        return np.asarray(counts / max(bins.shape[0], 1), np.float64)

    def bins(self, x: np.ndarray) -> np.ndarray:
        """Bin index per feature of one row (n_features,) or of many (n, n_features)."""
        return _bin(np.asarray(x, np.float64), self.edges)

    def psi(self, counts: np.ndarray) -> np.ndarray:
        """PSI per feature of live bin counts (n_features, BINS)."""
        return psi(self.expected, counts)

    def confidence_share(self, direction: int, edges: np.ndarray) -> np.ndarray:
        """The held-out share of P(up) (0) or P(down) (1) in each bin between ``edges``."""
        cdf = np.interp(edges, self.p_quantiles[direction], QUANTILES, left=0.0, right=1.0)
        return np.asarray(np.diff(cdf), np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": self.edges.tolist(),
            "expected": self.expected.tolist(),
            "p_quantiles": self.p_quantiles.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Profile | None:
        if not d:
            return None
        return cls(*(np.asarray(d[k], np.float64) for k in ("edges", "expected", "p_quantiles")))
