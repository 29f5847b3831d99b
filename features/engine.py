"""The two drivers of the feature kernels: batch (arrays of a recording) and online (event by event).

    batch = BatchFeatures(tick=0.1)
    x = batch.run(book, trades)           # one row per book update, chunk after chunk

    online = OnlineFeatures(tick=0.1)
    online.update(Trade(ts_ex, ts_local, 65000.1, 0.01, +1))
    vector = online.update(Book(ts_ex, ts_local, epoch, bid_px, bid_qty, ask_px, ask_qty))

Both call the same numba step functions on the same state (features/kernels.py, features/state.py), so the
online vector after an update equals the batch row of that update (tests/test_features.py).
Bad input (NaN, a crossed book, time going backwards) raises ``FeatureInputError`` with one line.
"""

from __future__ import annotations

import numpy as np

from core.records import Book, Books, Trade, Trades
from core.timefmt import format_ns
from features import kernels as kn
from features import state as sk
from features.catalog import MAX_LOOKBACK_S, MIN_LEVELS, N_FEATURES

__all__ = ["BatchFeatures", "FeatureInputError", "OnlineFeatures"]


class FeatureInputError(ValueError):
    """The market data handed to the feature engine is invalid (one line); ``code``: the kernel's
    error code (features.state.ERRORS), when a kernel found it."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _error(code: int, what: str, ts: int) -> FeatureInputError:
    return FeatureInputError(
        f"features: {what} at {format_ns(int(ts))}: {sk.ERRORS.get(code, f'error {code}')}", int(code)
    )


class _Driver:
    def __init__(self, tick: float, capacity: int = sk.CAPACITY) -> None:
        if not tick > 0:
            raise ValueError("tick must be positive")
        self.tick = tick
        self.state = sk.new_state(tick, capacity, capacity)
        self.first_ts: int | None = None

    def grow(self, trades: bool) -> int:
        """Double the trade ring (``trades``) or the book ring, keeping every entry a window still
        holds: the features go on as if the ring had always been that large (a market busier than
        the rings, ERR_OVERFLOW, loses nothing). Returns the new capacity."""
        st = self.state
        ts, ring, tails, head = (
            (st.tring_ts, st.tring, st.ttail, int(st.scalars[0]["thead"]))
            if trades
            else (st.ring_ts, st.ring, st.btail, int(st.scalars[0]["head"]))
        )
        cap = int(ts.shape[0])
        new_ts, new_ring = np.zeros(2 * cap, np.int64), np.zeros((2 * cap, ring.shape[1]))
        held = np.arange(int(tails.min()), head)  # unwrapped indices, so the tails and the head stay valid
        new_ts[held % (2 * cap)] = ts[held % cap]
        new_ring[held % (2 * cap)] = ring[held % cap]
        if trades:
            self.state = st._replace(tring_ts=new_ts, tring=new_ring)
        else:
            self.state = st._replace(ring_ts=new_ts, ring=new_ring)
        return 2 * cap

    def reset(self) -> None:
        """Forget all history (a new session); the vector is then built up again from nothing."""
        sk.reset_state(self.state)
        self.first_ts = None

    def warm_at(self, ts_ex: int) -> bool:
        """Whether every window is fully covered by the data seen, as of ``ts_ex``."""
        return self.first_ts is not None and ts_ex - self.first_ts >= MAX_LOOKBACK_S * sk.NS


def _check_levels(n_levels: int) -> None:
    if n_levels < MIN_LEVELS:
        raise FeatureInputError(f"features: the book has {n_levels} levels per side, at least {MIN_LEVELS} are needed")


class OnlineFeatures(_Driver):
    """The live engine: ``update(event)`` per book update and trade, ``reset()`` after a resync."""

    def __init__(self, tick: float, capacity: int = sk.CAPACITY) -> None:
        super().__init__(tick, capacity)
        self.vector = np.full(N_FEATURES, np.nan)

    def update(self, event: Book | Trade) -> np.ndarray | None:
        """Take one event; after a book update return the feature vector (a view, valid until the next)."""
        if isinstance(event, Trade):
            self.update_trade(event.ts_ex, event.price, event.qty, event.side)
            return None
        return self.update_book(event.ts_ex, event.epoch, event.bid_px, event.bid_qty, event.ask_px, event.ask_qty)

    def update_trade(self, ts_ex: int, price: float, qty: float, side: int) -> None:
        code = kn.on_trade(self.state, ts_ex, float(price), float(qty), int(side))
        if code != sk.OK:
            raise _error(code, "trade", ts_ex)

    def update_book(
        self,
        ts_ex: int,
        epoch: int,
        bid_px: np.ndarray,
        bid_qty: np.ndarray,
        ask_px: np.ndarray,
        ask_qty: np.ndarray,
    ) -> np.ndarray:
        _check_levels(min(bid_px.shape[0], ask_px.shape[0]))
        code = kn.on_book(self.state, ts_ex, epoch, bid_px, bid_qty, ask_px, ask_qty, self.vector)
        if code != sk.OK:
            raise _error(code, "book update", ts_ex)
        if self.first_ts is None:
            self.first_ts = ts_ex
        return self.vector


class BatchFeatures(_Driver):
    """Features of a whole recording, in one call or chunk after chunk (the state carries over)."""

    def __init__(self, tick: float, capacity: int = sk.CAPACITY) -> None:
        super().__init__(tick, capacity)
        self._pending = Trades.empty()
        self.regrown = 0  # how many times a ring doubled (a market busier than the rings)

    def run(self, book: Books, trades: Trades | None = None) -> np.ndarray:
        """One feature row per book update. Trades later than the last update wait for the next chunk
        (all of a chunk's trades when it holds no book update). A market busier than a ring (more
        updates or trades in its longest window than it holds) doubles that ring, every entry kept,
        and goes on from the update or trade it refused: the rows are those of a ring large enough
        from the start, as the live engine's (live/rows.py)."""
        n = len(book)
        out = np.empty((n, N_FEATURES))
        tr = trades if trades is not None else Trades.empty()
        if len(self._pending):
            tr = Trades(*(np.concatenate([a, b]) for a, b in zip(self._pending, tr, strict=True)))
        if n == 0:
            self._pending = tr
            return out
        _check_levels(min(book.bid_px.shape[1], book.ask_px.shape[1]))
        book, tr = book.contiguous(), tr.contiguous()
        i = j = 0
        while True:
            code, di, dj = kn.run(self.state, book.take(slice(i, None)), tr.take(slice(j, None)), out[i:])
            i, j = i + int(di), j + int(dj)
            if code != sk.ERR_OVERFLOW:
                break
            # the kernel stopped before the trade it could not hold (a trade not after update i), or the update
            self.grow(trades=bool(j < len(tr) and tr.ts_ex[j] <= book.ts_ex[i]))
            self.regrown += 1
        if code != sk.OK:
            is_trade = code in (sk.ERR_BAD_TRADE, sk.ERR_TRADE_BACKWARDS)
            raise _error(code, "trade" if is_trade else "book update", tr.ts_ex[j] if is_trade else book.ts_ex[i])
        self._pending = tr.take(slice(j, None))
        if self.first_ts is None:
            self.first_ts = int(book.ts_ex[0])
        return out
