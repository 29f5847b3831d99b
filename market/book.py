"""The L2 order book: sequence checks, validation and top-N extraction in one numba kernel.

The book is two dense arrays of sizes indexed by price tick inside a window (region of interest)
of ``window`` ticks around the price, as in hftbacktest's ROIVectorMarketDepth: updates are O(1),
the best prices are tracked incrementally, and the top N levels are a short walk from the best.
Levels outside the window (e.g. Binance's 1000.00 bids) are ignored; the window re-centres when
the price drifts towards its edge.

Sequence rules (Bybit v5 orderbook docs, Binance USD-M "How to manage a local order book"):
- a snapshot replaces the book and opens a new epoch; the next message must bridge it:
  ``last_id <= L`` is stale (dropped), ``first_id <= L + 1`` applies, anything else is a gap;
- afterwards each delta must follow the previous one: ``prev_id == last applied id``
  (Bybit: prev = u - 1; Binance: prev = pu), else the book is invalid until the next snapshot;
- a book that ends up crossed, or time that runs backwards, invalidates the book as well.
Invalid data is never patched: the caller records the event and resyncs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)
from core.records import Books

# Message status codes returned by apply_updates.
APPLIED = 0
STALE = 1  # older than the snapshot it follows; dropped, harmless
GAP = 2  # update ids not contiguous: book invalid until the next snapshot
NOT_SYNCED = 3  # no valid book to apply to (before the first snapshot or after a gap)
CROSSED = 4  # applying it crossed the book: book invalid
TIME_BACKWARDS = 5  # exchange time earlier than the previous update: book invalid
SKIPPED = 6  # rejected by the caller before reaching the book (bad fields)

STATUS_NAMES = ("applied", "stale", "gap", "not_synced", "crossed", "time_backwards", "skipped")

# Sync states.
INVALID = 0
BRIDGING = 1
SYNCED = 2

# The book's own state, one row (``BookState.meta[0]``); per-side fields: [0] bids, [1] asks.
META_ROW = np.dtype(  # rows are np.record: attributes for numpy too (the kernels run interpreted in the coverage pass)
    (
        np.record,
        [
            ("first_tick", np.int64),  # the price tick of the window's index 0
            ("best", np.int64, (2,)),  # window index of the best level (-1: the side is empty)
            ("n", np.int64, (2,)),  # levels held in the window
            ("last_id", np.int64),  # the last update id applied
            ("state", np.int64),  # INVALID, BRIDGING or SYNCED
            ("epoch", np.int64),  # exchange time of the snapshot the book descends from
            ("last_ts", np.int64),  # exchange time of the last update applied
            ("dropped", np.int64),  # levels ignored because they lay outside the window
        ],
    )
)
BID = 0
ASK = 1

DEFAULT_WINDOW = 1 << 18  # 262,144 ticks: +-13,107 USD around the price at a 0.1 tick


@nb.njit(cache=True)
def _recenter(bid_q: np.ndarray, ask_q: np.ndarray, m: Any, center_tick: int) -> None:
    """Move the window so that ``center_tick`` is its middle (``m``: the meta row)."""
    w = bid_q.shape[0]
    new_base = center_tick - w // 2
    shift = new_base - m.first_tick
    if shift == 0:
        return
    for s, q in ((BID, bid_q), (ASK, ask_q)):
        tmp = np.zeros(w)
        n = 0
        for i in range(w):
            j = i + shift
            if 0 <= j < w and q[j] > 0.0:
                tmp[i] = q[j]
                n += 1
            elif q[i] > 0.0 and not (0 <= i - shift < w):
                m.dropped += 1
        q[:] = tmp
        m.n[s] = n
        if m.best[s] >= 0:
            m.best[s] -= shift
            if not (0 <= m.best[s] < w):
                m.best[s] = -1
    m.first_tick = new_base


@nb.njit(cache=True)
def _find_best_bid(bid_q: np.ndarray, start: int, n: int) -> int:
    if n == 0:
        return -1
    i = start
    while i >= 0:
        if bid_q[i] > 0.0:
            return i
        i -= 1
    return -1


@nb.njit(cache=True)
def _find_best_ask(ask_q: np.ndarray, start: int, n: int) -> int:
    if n == 0:
        return -1
    w = ask_q.shape[0]
    i = start
    while i < w:
        if ask_q[i] > 0.0:
            return i
        i += 1
    return -1


@nb.njit(cache=True)
def _set_level(q: np.ndarray, m: Any, idx: int, qty: float, is_bid: bool) -> None:
    """Set the size at window index ``idx`` of one side, keeping its count and best (``m``: the meta row)."""
    w = q.shape[0]
    if idx < 0 or idx >= w:
        if qty > 0.0:
            m.dropped += 1
        return
    old = q[idx]
    q[idx] = qty
    s = BID if is_bid else ASK
    if old > 0.0 and qty == 0.0:
        m.n[s] -= 1
        if idx == m.best[s]:
            if is_bid:
                m.best[s] = _find_best_bid(q, idx - 1, m.n[s])
            else:
                m.best[s] = _find_best_ask(q, idx + 1, m.n[s])
    elif qty > 0.0:
        if old == 0.0:
            m.n[s] += 1
        best = m.best[s]
        if best < 0 or (is_bid and idx > best) or (not is_bid and idx < best):
            m.best[s] = idx


@nb.njit(cache=True)
def _write_top(
    q: np.ndarray,
    m: Any,
    tick: float,
    is_bid: bool,
    out_px: np.ndarray,
    out_qty: np.ndarray,
    row: int,
) -> None:
    levels = out_px.shape[1]
    w = q.shape[0]
    s = BID if is_bid else ASK
    base = m.first_tick
    best = m.best[s]
    k = 0
    if best >= 0:
        n_side = m.n[s]
        i = best
        step = -1 if is_bid else 1
        while k < levels and k < n_side and 0 <= i < w:
            if q[i] > 0.0:
                out_px[row, k] = round((base + i) * tick, 9)
                out_qty[row, k] = q[i]
                k += 1
            i += step
    while k < levels:
        out_px[row, k] = np.nan
        out_qty[row, k] = 0.0
        k += 1


class BookState(NamedTuple):
    """The book kernel's state: sizes by price tick inside the window, and its meta row (META_ROW)."""

    bid_q: np.ndarray  # float64[window]
    ask_q: np.ndarray
    meta: np.ndarray  # META_ROW[1]
    tick: float


class Updates(NamedTuple):
    """Parsed book messages as the kernel reads them (levels flattened: message i owns
    ``bid_px[bid_off[i]:bid_off[i + 1]]``)."""

    skip: np.ndarray  # bool: rejected before the book (bad fields)
    is_snap: np.ndarray
    first_id: np.ndarray
    last_id: np.ndarray
    prev_id: np.ndarray
    ts_ex: np.ndarray
    ts_local: np.ndarray
    bid_off: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_off: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


@nb.njit(cache=True, nogil=True)  # releases the GIL: the warehouse writer thread runs meanwhile
def apply_updates(book: BookState, u: Updates, status: np.ndarray, out: Books) -> None:
    """Apply n parsed book messages in order; ``status[i]`` says what became of message i.

    For every APPLIED message, row i of ``out`` is the book after it (its times, epoch and top levels).
    """
    bid_q, ask_q, meta, tick = book
    m = meta[0]
    skip, is_snap, first_id, last_id, prev_id, ts_ex, ts_local, bid_off, bid_px, bid_qty, ask_off, ask_px, ask_qty = u
    n = is_snap.shape[0]
    w = bid_q.shape[0]
    for i in range(n):
        if skip[i]:
            status[i] = SKIPPED
            continue
        state = m.state
        if is_snap[i]:
            bid_q[:] = 0.0
            ask_q[:] = 0.0
            for s in range(2):
                m.n[s] = 0
                m.best[s] = -1
            # centre the window on the snapshot's touch
            b0 = bid_off[i]
            a0 = ask_off[i]
            if bid_off[i + 1] > b0 and ask_off[i + 1] > a0:
                center = np.int64(round((bid_px[b0] + ask_px[a0]) / 2.0 / tick))
            elif bid_off[i + 1] > b0:
                center = np.int64(round(bid_px[b0] / tick))
            elif ask_off[i + 1] > a0:
                center = np.int64(round(ask_px[a0] / tick))
            else:
                center = m.first_tick + w // 2
            m.first_tick = center - w // 2
            m.epoch = ts_ex[i]
            m.state = BRIDGING
        else:
            if state == INVALID:
                status[i] = NOT_SYNCED
                continue
            if state == BRIDGING:
                if last_id[i] <= m.last_id:
                    status[i] = STALE
                    continue
                if first_id[i] > m.last_id + 1:
                    m.state = INVALID
                    status[i] = GAP
                    continue
            elif prev_id[i] != m.last_id:
                m.state = INVALID
                status[i] = GAP
                continue
            if ts_ex[i] < m.last_ts:
                m.state = INVALID
                status[i] = TIME_BACKWARDS
                continue
            m.state = SYNCED
        base = m.first_tick
        for j in range(bid_off[i], bid_off[i + 1]):
            _set_level(bid_q, m, np.int64(round(bid_px[j] / tick)) - base, bid_qty[j], True)
        for j in range(ask_off[i], ask_off[i + 1]):
            _set_level(ask_q, m, np.int64(round(ask_px[j] / tick)) - base, ask_qty[j], False)
        m.last_id = last_id[i]
        m.last_ts = ts_ex[i]
        bb = m.best[BID]
        ba = m.best[ASK]
        if bb >= 0 and ba >= 0 and bb >= ba:
            m.state = INVALID
            status[i] = CROSSED
            continue
        # keep the touch away from the window's edges
        edge = w // 8
        if (bb >= 0 and bb < edge) or (ba >= 0 and ba > w - edge):
            ref = bb if bb >= 0 else ba
            _recenter(bid_q, ask_q, m, m.first_tick + ref)
        _write_top(bid_q, m, tick, True, out.bid_px, out.bid_qty, i)
        _write_top(ask_q, m, tick, False, out.ask_px, out.ask_qty, i)
        out.ts_ex[i] = ts_ex[i]
        out.ts_local[i] = ts_local[i]
        out.epoch[i] = m.epoch
        status[i] = APPLIED


class L2Book:
    """A price-level order book for one instrument, fed with parsed messages in batches."""

    def __init__(self, tick_size: float, levels: int, window: int = DEFAULT_WINDOW) -> None:
        if tick_size <= 0:
            raise ValueError("tick_size must be positive")
        self.tick = float(tick_size)
        self.levels = levels
        self.bid_q = np.zeros(window)
        self.ask_q = np.zeros(window)
        self.meta = np.zeros(1, META_ROW)
        self.meta["best"] = -1
        self.meta["last_ts"] = np.iinfo(np.int64).min

    def _meta(self, field: str) -> np.ndarray:
        """One field of the meta row (per-side fields: [BID], [ASK])."""
        out: np.ndarray = self.meta[field][0]
        return out

    @property
    def state(self) -> int:
        return int(self._meta("state"))

    @property
    def is_valid(self) -> bool:
        return self.state != INVALID

    @property
    def last_update_id(self) -> int:
        return int(self._meta("last_id"))

    @property
    def dropped_levels(self) -> int:
        """Levels ignored because they lay outside the price window."""
        return int(self._meta("dropped"))

    def invalidate(self) -> None:
        self.meta["state"] = INVALID

    def best(self) -> tuple[float, float, float, float]:
        """(bid price, bid size, ask price, ask size); NaN prices for an empty side."""
        base = int(self._meta("first_tick"))
        bb, ba = (int(b) for b in self._meta("best"))
        bid = (round((base + bb) * self.tick, 9), float(self.bid_q[bb])) if bb >= 0 else (np.nan, 0.0)
        ask = (round((base + ba) * self.tick, 9), float(self.ask_q[ba])) if ba >= 0 else (np.nan, 0.0)
        return bid[0], bid[1], ask[0], ask[1]

    def depth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every level in the window: (bid px desc, bid qty, ask px asc, ask qty)."""
        base = int(self._meta("first_tick"))
        bi = np.flatnonzero(self.bid_q)[::-1]
        ai = np.flatnonzero(self.ask_q)
        return (
            np.round((base + bi) * self.tick, 9),
            self.bid_q[bi].copy(),
            np.round((base + ai) * self.tick, 9),
            self.ask_q[ai].copy(),
        )

    @property
    def state_arrays(self) -> BookState:
        return BookState(self.bid_q, self.ask_q, self.meta, self.tick)

    def apply(self, updates: Updates) -> tuple[np.ndarray, Books]:
        """Apply a batch of parsed messages in order: what became of each (``status``, int8) and, in the
        rows of the APPLIED ones, the book after it (the other rows are not written)."""
        n = updates.is_snap.shape[0]
        status, out = np.empty(n, np.int8), Books.alloc(n, self.levels)
        apply_updates(self.state_arrays, updates, status, out)
        return status, out
