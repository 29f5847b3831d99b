"""The feature catalog: every feature's name, definition, window, unit and source, in output order.

Notation (../shared/REFERENCE.md section 4): best bid / ask b1, a1 with sizes qb1, qa1; levels
i = 1..L; mid m = (a1 + b1) / 2; sizes in BTC. Windows are trailing and by exchange time: a
window w at time t holds the events with t - w < ts <= t. Features are defined at every book
update; trades come from the trade stream.

The kernel (features/kernels.py) writes the vector in exactly this order, family by family.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CKS = "Cont, Kukanov & Stoikov 2014, The price impact of order book events"
XGH = "Xu, Gould & Howison 2019, Multi-level order-flow imbalance in a limit order book"
GB = "Gould & Bonart 2016, Queue imbalance as a one-tick-ahead price predictor"
STOIKOV = "Stoikov 2018, The micro-price (weighted mid as its first approximation)"
KYLE = "Kyle 1985, Continuous auctions and insider trading (lambda by regression)"
ABDL = "Andersen, Bollerslev, Diebold & Labys 2003, realized volatility"
BOOK = "order book (this project's definition)"
TRADES = "Bybit v5 publicTrade stream (S = taker side)"

VERSION = 1  # bump when a definition changes: it is part of the feature-set id

BOOK_WINDOWS_S = (1, 10, 60, 300)  # windows over book updates (ring buffer eviction)
TRADE_WINDOWS_S = (1, 10, 60)  # windows over trades
MAX_LOOKBACK_S = 300  # no feature depends on anything older: incremental builds warm up this long
MLOFI_LEVELS = 5  # per-level OFI and add/cancel flow use the best 5 levels per side
MIN_LEVELS = 10  # the book must carry at least this many levels per side
TIME_CAP_S = 300.0  # "time since" features are capped (bounded look-back)


@dataclass(frozen=True)
class Feature:
    name: str
    definition: str
    window: str  # "" for instantaneous features
    unit: str
    source: str


def _ofi_def(level: int) -> str:
    if level == 1:
        return (
            "sum over book updates n in the window of e_n = 1{b1 >= b1'} qb1 - 1{b1 <= b1'} qb1' "
            "- 1{a1 <= a1'} qa1 + 1{a1 >= a1'} qa1' (primes: the previous update)"
        )
    return f"OFI of level {level}: e_n with b{level}, a{level}, qb{level}, qa{level} in place of level 1"


def _book_state() -> list[Feature]:
    """Instantaneous book state: spread, imbalance, micro-price, depth, slope, walk costs."""
    f: list[Feature] = []
    add = f.append
    add(Feature("spread_bps", "(a1 - b1) / m * 1e4", "", "bps", BOOK))
    add(Feature("spread_ticks", "(a1 - b1) / tick", "", "ticks", BOOK))
    for n in (1, 3, 5, 10):
        sizes = "qb1, qa1" if n == 1 else f"sizes summed over the best {n} levels per side"
        add(Feature(f"imbalance_l{n}", f"(qb - qa) / (qb + qa), {sizes}", "", "ratio [-1, 1]", GB))
    add(
        Feature(
            "microprice_offset_bps",
            "(w - m) / m * 1e4, w = (b1 * qa1 + a1 * qb1) / (qa1 + qb1)",
            "",
            "bps",
            STOIKOV,
        )
    )
    for d in (2, 5, 10):
        add(Feature(f"depth_bid_{d}bps", f"total size of bid levels with price >= m * (1 - {d}e-4)", "", "BTC", BOOK))
        add(Feature(f"depth_ask_{d}bps", f"total size of ask levels with price <= m * (1 + {d}e-4)", "", "BTC", BOOK))
    for d in (5, 10):
        add(
            Feature(
                f"depth_imbalance_{d}bps",
                f"(depth_bid_{d}bps - depth_ask_{d}bps) / (their sum), 0 when both are 0",
                "",
                "ratio [-1, 1]",
                BOOK,
            )
        )
    for side in ("bid", "ask"):
        add(
            Feature(
                f"book_slope_{side}",
                f"cumulative {side} size over the best 10 levels / distance from m to the 10th level, in bps",
                "",
                "BTC/bps",
                BOOK,
            )
        )
    for x in (1, 5):
        for side, verb in (("buy", "lifting asks"), ("sell", "hitting bids")):
            add(
                Feature(
                    f"walk_cost_{side}_{x}btc_bps",
                    f"|VWAP of {verb} for {x} BTC - m| / m * 1e4 over the visible levels; "
                    "size beyond them is priced at the last visible level (a lower bound)",
                    "",
                    "bps",
                    BOOK,
                )
            )
    add(Feature("log_qty_bid_l1", "ln(qb1)", "", "ln BTC", BOOK))
    add(Feature("log_qty_ask_l1", "ln(qa1)", "", "ln BTC", BOOK))
    return f


def _order_flow() -> list[Feature]:
    """Order flow over book updates: OFI per level, multi-level OFI, adds and cancels."""
    f: list[Feature] = []
    add = f.append
    for w in (1, 10, 60):
        add(Feature(f"ofi_l1_{w}s", _ofi_def(1), f"{w}s", "BTC", CKS))
    for level in range(2, MLOFI_LEVELS + 1):
        for w in (1, 10):
            add(Feature(f"ofi_l{level}_{w}s", _ofi_def(level), f"{w}s", "BTC", XGH))
    add(
        Feature(
            "ofi_l1_norm_10s",
            "ofi_l1_10s / mean over the window's updates of (qb1 + qa1) / 2",
            "10s",
            "ratio",
            CKS,
        )
    )
    add(Feature("mlofi_sum_10s", "sum of ofi_l1_10s .. ofi_l5_10s", "10s", "BTC", XGH))
    for w in (1, 10):
        for side in ("bid", "ask"):
            add(
                Feature(
                    f"add_{side}_{w}s",
                    f"size added to the best {MLOFI_LEVELS} {side} levels between consecutive updates "
                    "(growth of a level at an unchanged price, or a new level inside the previous range)",
                    f"{w}s",
                    "BTC",
                    BOOK,
                )
            )
            taker = "sell" if side == "bid" else "buy"
            add(
                Feature(
                    f"cancel_{side}_{w}s",
                    f"size removed from the best {MLOFI_LEVELS} {side} levels, net of taker-{taker} "
                    "volume traded between the two updates (floored at 0)",
                    f"{w}s",
                    "BTC",
                    BOOK,
                )
            )
    return f


def _prices() -> list[Feature]:
    """Prices and volatility: returns, realized volatility, mid changes, Kyle's lambda."""
    f: list[Feature] = []
    add = f.append
    for w in (1, 10, 60):
        add(Feature(f"ret_{w}s_bps", f"ln(m / m as of t - {w}s) * 1e4 (NaN before {w}s of data)", f"{w}s", "bps", BOOK))
    for w in (10, 60, 300):
        add(
            Feature(
                f"rv_{w}s_bps",
                "sqrt(sum of squared ln mid changes between consecutive updates in the window) * 1e4",
                f"{w}s",
                "bps",
                ABDL,
            )
        )
    add(Feature("mid_changes_10s", "number of book updates in the window that changed the mid", "10s", "count", BOOK))
    add(
        Feature(
            "kyle_lambda_60s",
            "OLS slope of the mid change (bps) on the signed taker volume (BTC) between consecutive "
            "updates, over the window's updates; 0 when the volume does not vary",
            "60s",
            "bps/BTC",
            KYLE,
        )
    )
    return f


def _trades() -> list[Feature]:
    """Trades: flow imbalance, counts, volume, mean size."""
    f: list[Feature] = []
    add = f.append
    for w in TRADE_WINDOWS_S:
        add(
            Feature(
                f"tfi_{w}s",
                "(taker-buy size - taker-sell size) / (their sum) over trades in the window, 0 when none",
                f"{w}s",
                "ratio [-1, 1]",
                TRADES,
            )
        )
    for w in (1, 10):
        add(Feature(f"trade_count_{w}s", "number of trades in the window", f"{w}s", "count", TRADES))
    add(Feature("trade_volume_10s", "total traded size in the window", "10s", "BTC", TRADES))
    add(Feature("trade_size_mean_10s", "mean trade size in the window, 0 when none", "10s", "BTC", TRADES))
    return f


def _time() -> list[Feature]:
    """Time: since the last mid change and the last trade, time of day."""
    f: list[Feature] = []
    add = f.append
    add(
        Feature(
            "time_since_mid_change_s",
            f"seconds since the last update that changed the mid (capped at {TIME_CAP_S:.0f})",
            "",
            "s",
            BOOK,
        )
    )
    add(Feature("time_since_trade_s", f"seconds since the last trade (capped at {TIME_CAP_S:.0f})", "", "s", TRADES))
    add(Feature("tod_sin", "sin(2 pi * seconds since 00:00 UTC / 86400)", "", "", BOOK))
    add(Feature("tod_cos", "cos(2 pi * seconds since 00:00 UTC / 86400)", "", "", BOOK))
    return f


FEATURES: tuple[Feature, ...] = (*_book_state(), *_order_flow(), *_prices(), *_trades(), *_time())  # output order
NAMES: tuple[str, ...] = tuple(x.name for x in FEATURES)
INDEX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
N_FEATURES = len(FEATURES)


def feature_set_id(params: str = "") -> str:
    """Identifies the feature definitions (and the config that parametrises them): 16 hex chars."""
    blob = f"v{VERSION}|{','.join(NAMES)}|{params}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def feature_set_for(config_digest: str, tick: float) -> str:
    """The feature set of a features config (its digest) on an instrument of this tick size: what
    the warehouse stores rows under, what a model is trained on, what the live engine computes."""
    return feature_set_id(f"{config_digest}|tick={tick}")
