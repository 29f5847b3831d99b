"""A warm start: the runner's online features take the warehouse's latest minutes before the feed's.

The features look back ``MAX_LOOKBACK_S`` (five minutes): started cold, a runner takes its first
decision five minutes after every start. The 24/7 ingest has those minutes in the warehouse. On
its first live tick the runner reads the stored book updates and trades of the same instrument
from the look-back (and a margin) before that tick, the rows the batch feature build reads, and
its features and grid take them as they would the feed's; the feed then goes on. The result is
the batch features' (tests/test_warm.py holds the two equal).

Only when the stored data reaches the first live tick without a silence longer than
``features.max_gap`` (the ingest is running): otherwise the features would start a new segment
at the feed anyway, and the start is cold, saying why. The join is a resync for the features: the
feed's first snapshot opens a new book epoch, as a reconnect does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from core.config import AppConfig
from core.errors import UserError
from core.records import Books
from core.timefmt import format_duration, format_ns
from features import MAX_LOOKBACK_S
from live.feed import merge
from live.rows import Rows

log = logging.getLogger("live.runner")
NS = 1_000_000_000
MARGIN_NS = 30 * NS  # more than the look-back: the first grid times after it have a row


@dataclass(frozen=True)
class WarmStart:
    ticks: int
    start_ns: int
    end_ns: int
    warmed_s: float  # of the look-back, as the grid counts it (MAX_LOOKBACK_S: the next row is decided)

    def line(self) -> str:
        return (
            f"warm start: {self.ticks:,} stored book updates and trades {format_ns(self.start_ns)} .. "
            f"{format_ns(self.end_ns)}, features warmed {self.warmed_s:.0f} of {MAX_LOOKBACK_S} s"
        )


def warm_start(cfg: AppConfig, rows: Rows, first_ns: int) -> WarmStart | None:
    """Feed ``rows`` the stored data before the first live tick (exchange time ``first_ns``) when
    it reaches it; None (and the reason logged) for a cold start."""
    from pipelines.replay import load_market  # the warehouse: read here only, never by the feed
    from warehouse.db import one, reading

    path = cfg.resolve(cfg.warehouse.path)
    if not path.exists():
        log.info("cold start: no warehouse at %s", path)
        return None
    lo = first_ns - MAX_LOOKBACK_S * NS - MARGIN_NS
    try:
        with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
            last = one(
                con,
                "SELECT max(ts_exchange_ns) FROM snapshots WHERE venue = ? AND symbol = ? "
                "AND ts_exchange_ns >= ? AND ts_exchange_ns < ?",
                [cfg.instrument.venue, cfg.instrument.venue_symbol, lo, first_ns],
            )
        if last is None or last[0] is None:
            log.info("cold start: the warehouse holds no book in the look-back before the feed's first tick")
            return None
        if first_ns - int(last[0]) > cfg.features.max_gap:
            log.info(
                "cold start: the warehouse's newest book is %s before the feed's first tick (more than "
                "features.max_gap: is the ingest running?)",
                format_duration(first_ns - int(last[0])),
            )
            return None
        m = load_market(cfg, lo, first_ns, cfg.features.levels)
    except (UserError, ValueError) as exc:  # locked, no schema, a stored book that fails validation
        log.warning("cold start: cannot read the warehouse: %s", str(exc).splitlines()[0])
        return None
    b = m.books  # as the feed's arrays (writable float64 rows): the kernels then run as compiled, nothing new
    ticks = merge(Books(b.ts_ex, b.ts_local, b.epoch, *(np.array(a, np.float64, order="C") for a in b[3:])), m.trades)
    rows.warm(ticks)
    w = WarmStart(len(ticks), ticks[0].ts_ex, ticks[-1].ts_ex, rows.grid.warmed_s())
    log.info(w.line())
    return w
