"""The simulator kernel's state and parameters as named records, and the tuples it is called with.

``MarketSimulator`` owns every array; the kernel (``sim.kernel``, ``sim.book``, ``sim.writer``)
reads and writes them by name: ``st = book.state[0]`` (a ``STATE_DTYPE`` row), ``par =
params[0]`` (a ``PARAM_DTYPE`` row), the book's lots per tick in ``Book``, the output in ``Out``.

numba compiles these layouts into the cached kernel; its on-disk cache is keyed on every source a
kernel can depend on (core/jit.py), this module included: an edit here compiles it again.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

I8, F8 = np.int64, np.float64

MAX_META = 16  # metaorders active at once at most (a start beyond is dropped)

# The kernel's scalar state: one row, fields read and written by name. Both dtypes are np.record
# dtypes, so ``row.field`` reads and writes the same way compiled and interpreted (NUMBA_DISABLE_JIT,
# how the coverage run traces the kernels): a plain structured row would only take ``row["field"]``.
STATE_DTYPE = np.dtype(
    (
        np.record,
        [
            ("t_ns", I8),  # simulated time
            ("best_bid", I8),  # ticks
            ("best_ask", I8),
            ("base_tick", I8),  # tick of book index 0
            ("update_id", I8),  # of the last book message written
            ("trade_count", I8),  # trades written (the trade ids' counter)
            ("reform_side", I8),  # 0 none, +1 the bid must follow the ask up, -1 the ask must follow the bid down
            ("reform_at", I8),
            ("next_publish", I8),
            ("n_pub_bid", I8),  # levels of the last published top (Book.pub)
            ("n_pub_ask", I8),
            ("last_trade_tick", I8),
            ("last_trade_dir", I8),
            ("snapshot_due", I8),
            ("meta_net", I8),  # sum of the signs of the active metaorders
            ("meta_end", I8, (MAX_META,)),  # end time (ns) of each active metaorder, 0 when free
            ("meta_sign", I8, (MAX_META,)),  # its sign, +1 buy / -1 sell
            ("regime", F8),  # log activity multiplier (Ornstein-Uhlenbeck)
        ],
    )
)

# The model and output parameters (config.yaml ``sim``), times in ns.
PARAM_DTYPE = np.dtype(
    (
        np.record,
        [
            (name, F8)
            for name in (
                "q",  # best-queue size, BTC (median)
                "q_sigma",
                "limit",  # limit-order rate at each best queue, 1/s
                "refill",
                "cancel",
                "cancel_imb",
                "order_med",  # limit / cancel size, BTC (median)
                "order_sigma",
                "market",  # market-order rate, 1/s
                "market_imb",
                "trade_med",  # market-order size, BTC (median)
                "trade_sigma",
                "trade_max",
                "depth_ticks",
                "depth_occ",
                "depth_med",
                "depth_sigma",
                "depth_rate",
                "pullback",
                "reform_ns",
                "regime_vol",
                "regime_hl_ns",
                "cadence_ns",
                "latency_ns",
                "depth",  # levels published
                "px_mult",  # tick = px_mult * 10**-px_dec
                "px_dec",
                "qty_dec",  # lot = 10**-qty_dec
                "lots_per_btc",  # 10**qty_dec
                "away_scale",
                "meta_rate",  # metaorder starts, 1/s
                "meta_dur_ns",
                "meta_tail",
                "meta_max_ns",
                "meta_tilt",
            )
        ],
    )
)

# message kinds in the output
MSG_SNAPSHOT = 0
MSG_DELTA = 1
MSG_TRADE = 2


class Book(NamedTuple):
    """The simulated market: scalar state, lots per tick on each side, the top last published."""

    state: np.ndarray  # STATE_DTYPE[1]
    bids: np.ndarray  # int64[window]: lots at tick base + i
    asks: np.ndarray
    pub: np.ndarray  # int64[4, depth]: the published top (bid ticks, bid lots, ask ticks, ask lots)
    scratch: np.ndarray  # int64[4, depth]: the current top, same rows

    def copy(self) -> Book:
        return Book(*(a.copy() for a in self))

    def restore(self, saved: Book) -> None:
        """Put a copy's values back into these arrays (the kernel ran out of room)."""
        for a, b in zip(self, saved, strict=True):
            a[...] = b


class Out(NamedTuple):
    """Where the kernel writes: message i is ``buf[end[i - 1]:end[i]]``, received at ``ts[i]``, of
    ``kind[i]`` (MSG_*); the fixed text it copies is ``pieces[offsets[k]:offsets[k + 1]]``."""

    buf: np.ndarray  # uint8
    end: np.ndarray  # int64
    ts: np.ndarray  # int64
    kind: np.ndarray  # int8
    pieces: np.ndarray  # uint8
    offsets: np.ndarray  # int64
