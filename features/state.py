"""What the feature kernels remember between events, and the codes they report bad input with.

``State`` is a NamedTuple of numpy arrays owned by the driver (features/engine.py); the kernels
(features/kernels.py) only read and write into it, so one event at a time and a whole recording
at a time walk through the same state. The scalars are one record row with named fields
(``SCALARS_ROW``); the column constants name the per-update contributions a ring buffer row holds
(a row is summed as a whole into each window's running sum).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)
from features.catalog import BOOK_WINDOWS_S, MLOFI_LEVELS, TIME_CAP_S, TRADE_WINDOWS_S

OK = 0
ERR_NAN = 1
ERR_CROSSED = 2
ERR_BACKWARDS = 3
ERR_EMPTY_SIDE = 4
ERR_OVERFLOW = 5
ERR_BAD_TRADE = 6
ERR_TRADE_BACKWARDS = 7

ERRORS = {
    ERR_NAN: "NaN or negative size in the book",
    ERR_CROSSED: "crossed book (best bid >= best ask)",
    ERR_BACKWARDS: "book update earlier than the previous one (time going backwards)",
    ERR_EMPTY_SIDE: "a side of the book is empty",
    ERR_OVERFLOW: "more book updates or trades in their longest window than their ring buffer holds",
    ERR_BAD_TRADE: "trade with a NaN / non-positive price or size, or a side other than +1 / -1",
    ERR_TRADE_BACKWARDS: "trade earlier than the previous trade (time going backwards)",
}

NS = 1_000_000_000
BW = np.array([w * NS for w in BOOK_WINDOWS_S], np.int64)  # 1s, 10s, 60s, 300s
TW = np.array([w * NS for w in TRADE_WINDOWS_S], np.int64)  # 1s, 10s, 60s
K = MLOFI_LEVELS
DAY_NS = 86_400 * NS
CAP_NS = int(TIME_CAP_S * NS)

# per-update contributions (book ring columns)
C_OFI = 0  # .. C_OFI + K - 1: OFI per level
C_ADD_BID = K
C_CANCEL_BID = K + 1
C_ADD_ASK = K + 2
C_CANCEL_ASK = K + 3
C_SQRET = K + 4
C_MIDCHG = K + 5
C_DEPTH1 = K + 6
C_ONE = K + 7
C_X = K + 8  # signed taker volume since the previous update
C_Y = K + 9  # mid change since the previous update, bps
C_XY = K + 10
C_XX = K + 11
C_MID = K + 12  # not a sum: the mid after the update, for as-of lookups
NV = K + 13

# trade ring columns
T_BUY = 0
T_SELL = 1
T_ONE = 2
NT = 3

# the scalar state, one row (``State.scalars[0]``)
SCALARS_ROW = (
    np.dtype(  # rows are np.record: attributes for numpy too (the kernels run interpreted in the coverage pass)
        (
            np.record,
            [
                ("last_mid", np.float64),  # the mid after the previous update
                ("buy_since", np.float64),  # taker buy volume since the previous update
                ("sell_since", np.float64),
                ("last_ts", np.int64),  # the previous update's time
                ("last_trade_ts", np.int64),
                ("last_midchg_ts", np.int64),  # when the mid last changed
                ("epoch", np.int64),  # the previous update's book epoch
                ("have_prev", np.int64),  # a previous update is held
                ("head", np.int64),  # updates taken (the book ring's next slot, unwrapped)
                ("thead", np.int64),  # trades taken (the trade ring's next slot, unwrapped)
                ("written", np.int64),  # features the last vector wrote: checked against the catalog
            ],
        )
    )
)


class State(NamedTuple):
    """Everything the kernels remember between events (numpy arrays, owned by the driver)."""

    scalars: np.ndarray  # SCALARS_ROW[1]
    ring_ts: np.ndarray  # int64[cap]
    ring: np.ndarray  # float64[cap, NV]
    bsum: np.ndarray  # float64[len(BW), NV]
    btail: np.ndarray  # int64[len(BW)] absolute index of each window's oldest update
    tring_ts: np.ndarray  # int64[tcap]
    tring: np.ndarray  # float64[tcap, NT]
    tsum: np.ndarray  # float64[len(TW), NT]
    ttail: np.ndarray  # int64[len(TW)]
    prev_px: np.ndarray  # float64[2, K] previous update's best K levels (bid row 0, ask row 1)
    prev_qty: np.ndarray  # float64[2, K]
    tick: np.ndarray  # float64[1]


CAPACITY = 1 << 17  # book updates (and trades) the rings hold at the start: the 5 min window at 437 a second


def new_state(tick: float, capacity: int = CAPACITY, trade_capacity: int = CAPACITY) -> State:
    st = State(
        scalars=np.zeros(1, SCALARS_ROW),
        ring_ts=np.zeros(capacity, np.int64),
        ring=np.zeros((capacity, NV)),
        bsum=np.zeros((len(BW), NV)),
        btail=np.zeros(len(BW), np.int64),
        tring_ts=np.zeros(trade_capacity, np.int64),
        tring=np.zeros((trade_capacity, NT)),
        tsum=np.zeros((len(TW), NT)),
        ttail=np.zeros(len(TW), np.int64),
        prev_px=np.full((2, K), np.nan),
        prev_qty=np.zeros((2, K)),
        tick=np.array([tick]),
    )
    reset_state(st)
    return st


def reset_state(st: State) -> None:
    """Forget everything (the online engine's ``reset()``)."""
    st.scalars[0] = 0  # every field
    st.scalars[["last_ts", "last_trade_ts", "epoch"]] = np.iinfo(np.int64).min
    st.bsum[:] = 0.0
    st.btail[:] = 0
    st.tsum[:] = 0.0
    st.ttail[:] = 0
    st.prev_px[:] = np.nan
    st.prev_qty[:] = 0.0


@nb.njit(cache=True, inline="always")
def present(px: float, qty: float) -> bool:
    """Whether a book level holds something (a price and a positive size)."""
    return not math.isnan(px) and qty > 0.0
