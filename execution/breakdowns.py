"""Execution quality broken down: the markout curve, and markouts and PnL by model confidence and by
queue position at placement (the report's tables and plots; definitions in each function).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from execution.run_record import MARKOUT_HORIZONS_S, RunRecord, fill_pnl_usdt, finite_mean, index_of, markout_bps

CURVE_HORIZONS_S: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
QUEUE_EDGES: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)

CURVE_DTYPE = np.dtype(
    [
        ("horizon_s", np.float64),
        ("fills", np.int64),
        ("mean_bps", np.float64),
        ("lo_bps", np.float64),
        ("hi_bps", np.float64),
    ]
)


def markout_curve(run: RunRecord, horizons: Sequence[float] = CURVE_HORIZONS_S) -> np.ndarray:
    """Mean markout per horizon (seconds) with a 95 % band: mean +- 1.96 * std / sqrt(n) (NaN for n < 2)."""
    out = np.zeros(len(horizons), CURVE_DTYPE)
    for i, h in enumerate(horizons):
        m = markout_bps(run, h)
        m = m[~np.isnan(m)]
        half = 1.96 * m.std(ddof=1) / np.sqrt(len(m)) if len(m) >= 2 else np.nan
        mean = m.mean() if len(m) else np.nan
        out[i] = (h, len(m), mean, mean - half, mean + half)
    return out


CONFIDENCE_DTYPE = np.dtype(
    [
        ("lo", np.float64),
        ("hi", np.float64),
        ("parents", np.int64),
        ("fills", np.int64),
        ("filled_qty", np.float64),
        ("markout_10s_bps", np.float64),
        ("pnl_usdt", np.float64),
    ]
)


def by_confidence(run: RunRecord, buckets: int = 5) -> np.ndarray:
    """Fills, filled qty, mean 10 s markout and net PnL per confidence bucket of the entry parents,
    and one last row for the exits.

    Buckets are quantiles of the entries' confidence (equal parent counts, ties kept together, so a
    bucket can be empty); [lo, hi] are the bucket edges, NaN without entries. Exits carry no model
    confidence (NaN): they are the last row, lo = hi = NaN. A parent's PnL contribution is the sum
    over its fills of the 60 s markout in USDT minus the fee (``fill_pnl_usdt``); fills without a
    parent record are left out.
    """
    p, f = run.parents, run.fills
    out = np.zeros(buckets + 1, CONFIDENCE_DTYPE)
    entry = ~np.isnan(p["confidence"])
    parent_bucket = np.full(len(p), buckets, np.int64)  # the exits' row
    if entry.any():
        edges = np.quantile(p["confidence"][entry], np.linspace(0.0, 1.0, buckets + 1))
        parent_bucket[entry] = np.searchsorted(edges[1:-1], p["confidence"][entry], side="right")
    else:
        edges = np.full(buckets + 1, np.nan)
    row = index_of(p["tag"], f["tag"])
    fill_bucket = np.where(row >= 0, parent_bucket[row] if len(p) else -1, -1)
    markout, pnl = markout_bps(run, 10.0), fill_pnl_usdt(run)
    for b in range(buckets + 1):
        mine = fill_bucket == b
        lo, hi = (edges[b], edges[b + 1]) if b < buckets else (np.nan, np.nan)
        out[b] = (
            lo,
            hi,
            np.sum(parent_bucket == b),
            np.sum(mine),
            f["qty"][mine].sum(),
            finite_mean(markout[mine]),
            pnl[mine].sum(),
        )
    return out


QUEUE_DTYPE = np.dtype(
    [
        ("lo", np.float64),
        ("hi", np.float64),
        ("fills", np.int64),
        ("qty", np.float64),
        ("markout_1s_bps", np.float64),
        ("markout_10s_bps", np.float64),
        ("markout_60s_bps", np.float64),
    ]
)


def by_queue(run: RunRecord, edges: Sequence[float] = QUEUE_EDGES) -> np.ndarray:
    """Mean markouts of maker fills by queue ahead at placement (BTC): buckets [edges[i], edges[i+1]).

    The last bucket is open ended; taker fills have no queue and are left out.
    """
    f = run.fills
    lo = np.asarray(edges, np.float64)
    hi = np.append(lo[1:], np.inf)
    bucket = np.searchsorted(lo, f["queue_ahead"], side="right") - 1
    bucket = np.where(f["maker"] & ~np.isnan(f["queue_ahead"]), bucket, -1)
    marks = [markout_bps(run, h) for h in MARKOUT_HORIZONS_S]
    out = np.zeros(len(lo), QUEUE_DTYPE)
    for b in range(len(lo)):
        mine = bucket == b
        out[b] = (lo[b], hi[b], np.sum(mine), f["qty"][mine].sum(), *(finite_mean(m[mine]) for m in marks))
    return out
