"""The execution package's shared records: one dtype per record, defined once.

The matching engine writes fills and order records as numpy structured arrays of these dtypes;
the strategies write parent (intent) records; the quality metrics and reports read all three.
Times are int64 ns: ``ts_ex`` on the exchange clock, ``ts_local`` on ours. Sides: +1 buy,
-1 sell. Prices in quote currency (USDT), quantities in BTC, fees in USDT (positive = paid).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Side(IntEnum):
    BUY = 1
    SELL = -1


class OrderKind(IntEnum):
    LIMIT = 0  # rests on the book (post-only when ``post_only``)
    MARKET = 1  # walks the visible book, pays the taker fee


class OrderStatus(IntEnum):
    PENDING = 0  # sent, not yet at the exchange (entry latency)
    OPEN = 1  # resting
    FILLED = 2
    CANCELLED = 3
    REJECTED = 4  # post-only would cross, rate limit, invalid
    EXPIRED = 5  # a market order with no visible liquidity left


class RejectReason(IntEnum):
    NONE = 0
    POST_ONLY_WOULD_TAKE = 1  # Bybit EC_PostOnlyWillTakeLiquidity
    RATE_LIMIT = 2  # Bybit retCode 10006
    INVALID = 3  # bad price / size, unknown order
    TOO_LATE = 4  # cancel / amend of an order already filled or cancelled


class FillRule(IntEnum):
    """What fills a resting order when the opposite best reaches its price (REFERENCE section 2, point 7).

    The recorded book never held our order: the opposite side shown there is what would have
    traded with it. CAPPED fills only the size displayed at or better than our price (less what
    our orders already took from it while the book stayed crossed), and nets the prints since the
    last book event out of the book a market order walks or a new order queues behind
    (NautilusTrader's L2 matching fills a passive order from the book's levels in the same way).
    HFTBACKTEST fills the whole order and never nets prints (hftbacktest's exchange models): kept
    for the side-by-side benchmark, which must compare like with like."""

    CAPPED = 0
    HFTBACKTEST = 1


class QueueModel(IntEnum):
    PROB = 0  # size decreases not explained by trades split front/back: p_front = 1 - (f/(f+b))^n
    RISK_AVERSE = 1  # every cancel is behind us (the pessimistic bound)


# One fill of one of our orders (a partial fill is one row; a print is used at most once).
FILL_DTYPE = np.dtype(
    [
        ("ts_ex", np.int64),
        ("ts_local", np.int64),  # when the strategy learns of it (ts_ex + response latency)
        ("order_id", np.int64),
        ("tag", np.int64),  # the strategy's parent id, copied from the order
        ("side", np.int8),
        ("price", np.float64),
        ("qty", np.float64),
        ("fee", np.float64),  # USDT paid (maker or taker fee on price * qty)
        ("maker", np.bool_),
        ("queue_ahead", np.float64),  # BTC ahead of the order when it was placed at its price
    ]
)

# The life of one order, written when it ends (filled, cancelled, rejected, expired) or at the end.
ORDER_DTYPE = np.dtype(
    [
        ("order_id", np.int64),
        ("tag", np.int64),
        ("side", np.int8),
        ("kind", np.int8),  # OrderKind
        ("post_only", np.bool_),
        ("price", np.float64),  # last limit price (NaN for market orders)
        ("qty", np.float64),  # last requested size
        ("filled", np.float64),
        ("status", np.int8),  # OrderStatus
        ("reject", np.int8),  # RejectReason
        ("amends", np.int32),
        ("ts_submit_local", np.int64),
        ("ts_arrive_ex", np.int64),
        ("ts_done_ex", np.int64),  # -1 while open
    ]
)

# One trading intent of a strategy (a parent order): what it wanted, and what it got.
PARENT_DTYPE = np.dtype(
    [
        ("tag", np.int64),
        ("ts_decision", np.int64),  # local time of the decision
        ("side", np.int8),
        ("target_qty", np.float64),
        ("decision_mid", np.float64),
        ("confidence", np.float64),  # calibrated probability behind the decision
        ("filled_qty", np.float64),
        ("vwap", np.float64),  # NaN when nothing filled
        ("ts_end", np.int64),  # local time the intent ended (filled, cancelled, timed out)
        ("end_mid", np.float64),  # mid then: the opportunity cost of the unfilled part uses it
        ("strategy", "U16"),
    ]
)

# The engine's equity curve on the exchange clock: cash is net of fees and funding, equity = cash + position * mid.
SAMPLE_DTYPE = np.dtype(
    [("ts", np.int64), ("mid", np.float64), ("position", np.float64), ("cash", np.float64), ("equity", np.float64)]
)

# The equity curve a run leaves behind (net of fees and funding), on the exchange clock.
EQUITY_DTYPE = np.dtype([("ts", np.int64), ("equity", np.float64), ("position", np.float64), ("mid", np.float64)])


@dataclass(frozen=True)
class Fees:
    """Bybit VIP 0 perpetual fees by default (REFERENCE section 1); funding per interval."""

    maker: float = 0.0002
    taker: float = 0.00055
    funding_rate: float = 0.0001  # per funding interval, longs pay shorts when positive
    funding_interval_ns: int = 8 * 3600 * 1_000_000_000  # at 00:00, 08:00, 16:00 UTC


@dataclass(frozen=True)
class EngineConfig:
    """Everything that shapes simulated fills; written into every run's metadata."""

    tick: float = 0.1
    lot: float = 0.001
    entry_latency_ns: int = 5_000_000  # order -> exchange
    response_latency_ns: int = 5_000_000  # exchange -> us (acks, fills, rejects)
    queue_model: QueueModel = QueueModel.PROB
    queue_power: float = 2.0  # n in p_front = 1 - (front / (front + back))^n
    fill_rule: FillRule = FillRule.CAPPED  # touch fills capped by the displayed size (HFTBACKTEST: whole order)
    rate_limit: int = 10  # order create / amend / cancel requests per window (Bybit: ~10/s)
    rate_window_ns: int = 1_000_000_000
    fees: Fees = Fees()
