"""The runner's rows: the online features, which grid rows exist, and when each is decided on.

Every tick updates the online features (the training code's kernels); at every grid time ``g``
that has a row by the grid rule (features/grid.py, the feature build's own) the vector as of
``g`` is kept. When a row is decided on, on the local clock, depends on the feed (the runner
wires one ``Timing``):

- ``ReplayTiming``: a replay decides at ``g + decision_delay`` on what had arrived by then: exactly
  what the backtester does with stored rows;
- ``FeedTiming``: a live feed decides when it learns that ``g + decision_delay`` has passed, at the
  arrival of the first tick stamped after it. A row older than the risk manager's ``stale_after``
  by then (a feed catching up) is not decided on; of several rows made due by one tick only the
  newest is.

Either way a row one of whose ticks arrived after its decision time is not decided on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from core.records import Book
from features import FeatureInputError, OnlineFeatures
from features.grid import OnlineGrid
from features.state import CAPACITY, ERR_OVERFLOW
from live.feed import Tick


class Row(NamedTuple):
    """A kept grid row: its time, the vector as of it, how long the features took its last book
    update (ns), and the latest arrival of the ticks stamped up to it."""

    g: int
    x: np.ndarray
    feature_ns: int
    arrived: int


class Due(NamedTuple):
    """A row to decide on at local time ``t``."""

    t: int
    row: Row


class Timing(Protocol):
    """When a row is decided on (None: it is not); ``stale``: rows refused as too old."""

    stale: int

    def pick(self, due: list[Row]) -> list[Row]: ...

    def time_of(self, row: Row, delay: int, arrived: int) -> int | None: ...


class ReplayTiming:
    """At grid time + delay, every row: the backtester's rule (execution.backtest.replay)."""

    stale = 0

    def pick(self, due: list[Row]) -> list[Row]:
        return due

    def time_of(self, row: Row, delay: int, arrived: int) -> int | None:
        return row.g + delay


class FeedTiming:
    """At the arrival of the tick that made the row due, unless older than ``stale_ns`` by then;
    one instant, one decision: the newest row."""

    def __init__(self, stale_ns: int) -> None:
        self.stale_ns = stale_ns
        self.stale = 0

    def pick(self, due: list[Row]) -> list[Row]:
        return due[-1:]

    def time_of(self, row: Row, delay: int, arrived: int) -> int | None:
        t = max(row.g + delay, arrived)
        if t - row.g > self.stale_ns:
            self.stale += 1
            return None
        return t


log = logging.getLogger(__name__)


class Rows:
    """Ticks in, the rows due for a decision out (``arrive``), then the features take the tick (``take``).

    The features keep their longest window (5 min) of book updates and trades in rings of ``ring``
    entries (features/state.py): 437 a second, nine times Bybit's book cadence. A market busier
    than that for five minutes (a burst, or the stand-in's simulator at ``--speed``) overflows one:
    it is made twice as large with every entry it held (``OnlineFeatures.grow``), and the features
    and the grid go on as if it had always been that large: nothing is lost, no warm-up again.
    """

    def __init__(
        self, tick_size: float, grid: int, max_gap: int, delay: int, timing: Timing, ring: int = CAPACITY
    ) -> None:
        self.tick_size = tick_size
        self.rings = {"book": ring, "trade": ring}  # each ring's capacity
        self.regrown = 0  # times a ring overflowed and was made larger
        self.features = OnlineFeatures(tick_size, ring)
        self.grid = OnlineGrid(grid, max_gap)
        self.delay, self.timing = delay, timing
        self.pending: deque[Row] = deque()
        self.feature_ns = 0
        self.arrived = -1  # the latest arrival (local time, never before exchange time) of the ticks so far
        self.last_tick_ts = -1
        self.unarrived = 0  # rows not decided on: a tick of theirs reached us after their decision time
        self.superseded = 0  # rows made due by the same tick as a newer one

    @property
    def last_book_ts(self) -> int:
        return self.grid.last_book_ts

    def arrive(self, tick: Tick) -> list[Due]:
        """Before the features take ``tick``: keep the rows of the grid times before it, and return
        the rows it makes due, each with its decision time."""
        ts = tick.ts_ex
        self.last_tick_ts = max(self.last_tick_ts, ts)  # a late trade does not move the data's time back
        self.grid.start(ts)
        self._keep_before(ts)
        self.arrived = max(self.arrived, tick.ts_local, ts)  # this tick has arrived: the time of its decisions
        due: list[Row] = []
        while self.pending and self.pending[0].g + self.delay < ts:
            due.append(self.pending.popleft())
        kept = self.timing.pick(due)
        self.superseded += len(due) - len(kept)
        return self._timed(kept)

    def warm(self, ticks: Sequence[Tick]) -> None:
        """History before the feed (a warm start, live/warm.py): the features and the grid take
        ``ticks`` as they would take the feed's, and no row of theirs is kept or decided on."""
        for tick in ticks:
            ts = tick.ts_ex
            self.last_tick_ts = max(self.last_tick_ts, ts)
            self.grid.start(ts)
            self.grid.before(ts)  # the grid times of the past: passed, not decided on
            self.take(tick)

    def take(self, tick: Tick) -> None:
        try:
            self._take(tick)
        except FeatureInputError as exc:
            if exc.code != ERR_OVERFLOW:
                raise
            which = "book" if isinstance(tick, Book) else "trade"
            self.rings[which] = self.features.grow(trades=which == "trade")
            self.regrown += 1
            log.info("%s: the %s ring now holds %d, every entry kept", exc, which, self.rings[which])
            self.take(tick)  # again: one doubling may not be enough

    def _take(self, tick: Tick) -> None:
        if isinstance(tick, Book):
            self.grid.on_book(tick.ts_ex)
            t0 = time.perf_counter_ns()
            self.features.update_book(tick.ts_ex, tick.epoch, tick.bid_px, tick.bid_qty, tick.ask_px, tick.ask_qty)
            self.feature_ns = time.perf_counter_ns() - t0
        else:
            self.features.update_trade(tick.ts_ex, tick.price, tick.qty, tick.side)

    def rest(self) -> list[Due]:
        """The data ended: every row up to its last tick, with its decision time (a replay, as the backtester)."""
        if self.grid.next is None:
            return []
        self._keep_before(self.last_tick_ts + 1)
        due = list(self.pending)
        self.pending.clear()
        return self._timed(due)

    def _keep_before(self, ts: int) -> None:
        for g in self.grid.before(ts):  # as of g: after the last book update <= g
            self.pending.append(Row(g, self.features.vector.copy(), self.feature_ns, self.arrived))

    def _timed(self, rows: list[Row]) -> list[Due]:
        out: list[Due] = []
        for row in rows:
            t = self.timing.time_of(row, self.delay, self.arrived)
            if t is None:
                continue
            if row.arrived > t:
                self.unarrived += 1
                continue
            out.append(Due(t, row))
        return out
