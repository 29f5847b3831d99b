"""Feature diagnostics: rank information coefficients of features against forward returns.

Pure numpy: arrays in, arrays out. The report that draws and writes them is flows/feature_report.py.
"""

from __future__ import annotations

import numpy as np


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 0-based, for a 1-D array without NaN."""
    order = np.argsort(values, kind="stable")
    r = np.empty(values.size)
    r[order] = np.arange(values.size, dtype=float)
    sorted_v = values[order]
    # ties: give every member of a run of equal values the run's mean rank
    edges = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [values.size]])
    for a, b in zip(starts[stops - starts > 1], stops[stops - starts > 1], strict=True):
        r[order[a:b]] = (a + b - 1) / 2.0
    return r


def information_coefficient(x: np.ndarray, y: np.ndarray, min_rows: int = 30) -> np.ndarray:
    """Spearman rank correlation of every column of ``x`` (n, F) with ``y`` (n,).

    Rows where the column or ``y`` is NaN are left out of that column's figure; a column with
    fewer than ``min_rows`` usable rows, or constant on them, gets NaN.
    """
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be (n, F) and y (n,): got {x.shape} and {y.shape}")
    out = np.full(x.shape[1], np.nan)
    y_ok = np.isfinite(y)
    for j in range(x.shape[1]):
        ok = y_ok & np.isfinite(x[:, j])
        if ok.sum() < min_rows:
            continue
        rx, ry = ranks(x[ok, j]), ranks(y[ok])
        sx, sy = rx.std(), ry.std()
        if sx == 0.0 or sy == 0.0:
            continue
        out[j] = float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))
    return out
