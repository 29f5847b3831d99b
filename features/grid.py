"""The grid rule: which grid rows exist, for the feature build and the live runner alike.

A row at grid time ``g`` is the feature vector as of ``g`` (after the last book update at or before
it, by exchange time). It exists only on live data: the book spoke within ``max_gap`` before ``g``
(no silence, e.g. an ingest that was down) and the update's continuous run of data (its segment:
no silence longer than ``max_gap`` inside it) began at least ``MAX_LOOKBACK_S`` before ``g``, so
every window is filled with data of its own segment. A label needs the same of its horizon.

``rows`` applies the rule to a recording's arrays (pipelines/featurebuild.py), ``OnlineGrid``
to updates one at a time (the runner); both call ``row_exists``, so the runner trades on exactly
the rows training saw (tests/test_grid.py replays a recording with a silence through both).
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np

from features.catalog import MAX_LOOKBACK_S

NS = 1_000_000_000
WARMUP_NS = MAX_LOOKBACK_S * NS  # a segment's first row: every window inside it
VOL_FEATURE = "rv_300s_bps"  # the feature sigma_1s is built from (features/catalog.py)
VOL_WINDOW_S = 300.0  # its window


@overload
def row_exists(g: int, update_ts: int, segment_start: int, max_gap: int) -> bool: ...


@overload
def row_exists(g: np.ndarray, update_ts: np.ndarray, segment_start: np.ndarray, max_gap: int) -> np.ndarray: ...


def row_exists(
    g: int | np.ndarray, update_ts: int | np.ndarray, segment_start: int | np.ndarray, max_gap: int
) -> bool | np.ndarray:
    """Whether grid time ``g`` has a row, given its as-of update's time and that update's segment start."""
    return (g - update_ts <= max_gap) & (g - segment_start >= WARMUP_NS)


def segment_starts(ts: np.ndarray, prev_ts: int | None, prev_start: int, max_gap: int) -> np.ndarray:
    """For every update, the first update time of its continuous run (no silence > max_gap);
    ``prev_ts`` / ``prev_start``: the update before ``ts[0]`` and its segment start (None: none)."""
    if ts.size == 0:
        return np.zeros(0, np.int64)
    before = np.concatenate([[prev_ts if prev_ts is not None else ts[0]], ts[:-1]])
    breaks = (ts - before) > max_gap
    if prev_ts is None:
        breaks[0] = True
    marks = np.where(breaks, ts, np.iinfo(np.int64).min)
    if not breaks[0]:
        marks[0] = prev_start
    return np.maximum.accumulate(marks)


def rows(g: np.ndarray, ts: np.ndarray, starts: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid times of ``g`` that have a row, and the index of each one's as-of update in ``ts``
    (``starts``: ``segment_starts`` of ``ts``)."""
    idx = np.searchsorted(ts, g, side="right") - 1
    ok = idx >= 0
    g, idx = g[ok], idx[ok]
    ok = row_exists(g, ts[idx], starts[idx], max_gap)
    return g[ok], idx[ok]


def live_horizon(ts: np.ndarray, g: np.ndarray, horizon: int, max_gap: int) -> np.ndarray:
    """Whether the book was alive from each grid time to its horizon: no silence > max_gap in
    [t, t + h]. A label over a silence (the ingest was down) would be a guess: it stays NULL."""
    a0 = np.searchsorted(ts, g, side="right") - 1
    a1 = np.searchsorted(ts, g + horizon, side="right") - 1
    gaps = np.concatenate([[0], np.cumsum(np.diff(ts) > max_gap)])  # silences before each update
    ok: np.ndarray = (a0 >= 0) & (g - ts[np.maximum(a0, 0)] <= max_gap)
    ok &= g + horizon - ts[np.maximum(a1, 0)] <= max_gap
    ok &= gaps[np.maximum(a1, 0)] == gaps[np.maximum(a0, 0)]
    return ok


@overload
def sigma_1s(rv_300s_bps: float) -> float: ...


@overload
def sigma_1s(rv_300s_bps: np.ndarray) -> np.ndarray: ...


def sigma_1s(rv_300s_bps: float | np.ndarray) -> float | np.ndarray:
    """Per-second volatility (a fraction of the price) from the 300 s realized volatility in bp,
    the sigma of a signal (square-root-of-time scaling)."""
    return rv_300s_bps * 1e-4 / math.sqrt(VOL_WINDOW_S)


class OnlineGrid:
    """The grid rule one update at a time: ``on_book(ts)`` per book update, then ``before(ts)``
    yields the grid times before ``ts`` that have a row (the features as of them are the current ones)."""

    def __init__(self, grid: int, max_gap: int) -> None:
        self.grid, self.max_gap = grid, max_gap
        self.next: int | None = None  # the first grid time not yet passed
        self.last_book_ts = -1
        self.segment_start = -1

    def start(self, ts: int) -> None:
        """The data begins at ``ts`` (any tick): the first grid time is the next whole step."""
        if self.next is None:
            self.next = -(-ts // self.grid) * self.grid

    def before(self, ts: int) -> list[int]:
        """Pass the grid times before ``ts``; those that have a row."""
        out: list[int] = []
        if self.next is None:
            return out
        while self.next < ts:
            g = self.next
            if row_exists(g, self.last_book_ts, self.segment_start, self.max_gap):
                out.append(g)
            self.next = g + self.grid
        return out

    def on_book(self, ts: int) -> None:
        if ts - self.last_book_ts > self.max_gap:
            self.segment_start = ts
        self.last_book_ts = ts

    def warmed_s(self) -> float:
        """Seconds of data in the current segment, up to ``MAX_LOOKBACK_S`` (the warm-up's progress)."""
        have = max(self.last_book_ts - self.segment_start, 0) / NS if self.last_book_ts > 0 else 0.0
        return min(have, MAX_LOOKBACK_S)
