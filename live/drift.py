"""Feature drift: the live features' distribution over the newest decisions against the training window.

Every decision's feature row is binned by the model's training deciles (models/profile.py); the
counts of the newest ``monitor.drift_window`` rows are kept up to date in O(features) per row, and
the population stability index per feature is taken from them when asked (every status interval).
"""

from __future__ import annotations

import numpy as np

from models.profile import BINS, Profile


class DriftMonitor:
    def __init__(self, profile: Profile, columns: np.ndarray, names: list[str], window: int, min_rows: int) -> None:
        self.profile, self.columns, self.names = profile, columns, names
        self.window, self.min_rows = window, min_rows
        n = len(names)
        self.ring = np.zeros((window, n), np.int64)
        self.counts = np.zeros((n, BINS), np.int64)
        self._cols = np.arange(n)
        self.rows = 0  # rows seen; the newest min(rows, window) are counted

    def add(self, x: np.ndarray) -> None:
        """One decision's full feature vector (the catalog); the model's columns are binned."""
        b = self.profile.bins(x[self.columns])
        slot = self.rows % self.window
        if self.rows >= self.window:
            self.counts[self._cols, self.ring[slot]] -= 1  # one bin per feature: no repeated index
        self.counts[self._cols, b] += 1
        self.ring[slot] = b
        self.rows += 1

    @property
    def n(self) -> int:
        return min(self.rows, self.window)

    def psi(self) -> dict[str, float] | None:
        """PSI per feature, worst first; None before ``min_rows`` rows."""
        if self.n < self.min_rows:
            return None
        values = self.profile.psi(self.counts)
        order = np.argsort(-values, kind="stable")
        return {self.names[i]: round(float(values[i]), 5) for i in order}


def worst(psi: dict[str, float], ignore: tuple[str, ...] | list[str] = ()) -> tuple[str, float]:
    """The feature the drift alert is about: the highest PSI among those not ignored (``monitor.drift_ignore``)."""
    return next(((k, v) for k, v in psi.items() if k not in ignore), ("none", 0.0))
