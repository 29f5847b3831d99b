"""What one run leaves behind (``RunRecord``), and what each of its fills, orders and parents measures.

The record is the input of the execution-quality metrics (execution/quality.py), their breakdowns
(execution/breakdowns.py) and the report. The measures here are one value per fill, order or
parent, NaN where the data does not reach; the definitions are in execution/quality.py's docstring.
Prices in USDT, quantities in BTC, s = +1 buy / -1 sell, bps = 1e-4 of the reference price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from execution.types import EQUITY_DTYPE, FILL_DTYPE, ORDER_DTYPE, PARENT_DTYPE

NS = 1_000_000_000
MINUTE_NS = 60 * NS
BPS = 1e4
MARKOUT_HORIZONS_S: tuple[float, ...] = (1.0, 10.0, 60.0)


@dataclass(frozen=True, eq=False)
class RunRecord:
    """Everything one backtest or paper run leaves behind: the input of the metrics and the report."""

    fills: np.ndarray = field(default_factory=lambda: np.zeros(0, FILL_DTYPE))
    orders: np.ndarray = field(default_factory=lambda: np.zeros(0, ORDER_DTYPE))
    parents: np.ndarray = field(default_factory=lambda: np.zeros(0, PARENT_DTYPE))
    mid_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # exchange clock, sorted
    mid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0, EQUITY_DTYPE))
    fees: float = 0.0  # USDT paid
    funding: float = 0.0  # USDT paid
    closeout_cost: float = 0.0  # USDT it would cost to close the position held at the end (fee + walk from the mid)
    horizon_ns: int = 0  # the signal's horizon: the unfilled part of a parent is priced at the mid then (0: at end_mid)
    requests: int = 0
    post_only_rejects: int = 0
    rate_limit_rejects: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # strategy, model uri/version, data window, config

    def __post_init__(self) -> None:
        for name, dtype in (
            ("fills", FILL_DTYPE),
            ("orders", ORDER_DTYPE),
            ("parents", PARENT_DTYPE),
            ("equity", EQUITY_DTYPE),
        ):
            if getattr(self, name).dtype != dtype:
                raise ValueError(f"RunRecord.{name} must have the {name} dtype")
        if self.mid_ts.shape != self.mid.shape:
            raise ValueError("RunRecord.mid_ts and mid differ in length")
        if np.any(np.diff(self.mid_ts) < 0) or np.any(np.diff(self.equity["ts"]) < 0):
            raise ValueError("RunRecord: mid or equity timestamps go backwards")
        if len(np.unique(self.parents["tag"])) != len(self.parents):
            raise ValueError("RunRecord.parents: duplicate tags")


def ratio(num: float, den: float) -> float:
    """num / den, NaN over nothing."""
    return float(num / den) if den != 0 else float("nan")


def finite_mean(x: np.ndarray) -> float:
    """The mean of the non-NaN values, NaN without any."""
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def finite_median(x: np.ndarray) -> float:
    """The median of the non-NaN values, NaN without any."""
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else float("nan")


def index_of(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The row of each query value in ``keys`` (unique), -1 where absent."""
    if len(keys) == 0:
        return np.full(len(query), -1, np.int64)
    order = np.argsort(keys, kind="stable")
    pos = np.clip(np.searchsorted(keys[order], query), 0, len(keys) - 1)
    return np.where(keys[order][pos] == query, order[pos], -1)


def mid_asof(run: RunRecord, t: np.ndarray) -> np.ndarray:
    """The last mid at or before each time ``t`` (ns); NaN before the first or after the last mid."""
    out = np.full(len(t), np.nan)
    if len(run.mid_ts) == 0:
        return out
    idx = np.searchsorted(run.mid_ts, t, side="right") - 1
    ok = (idx >= 0) & (t <= run.mid_ts[-1])
    out[ok] = run.mid[idx[ok]]
    return out


def markout_bps(run: RunRecord, horizon_s: float) -> np.ndarray:
    """Per fill s * (M_{t+D} - P) / P in bps, D = ``horizon_s``; NaN past the end of the mids."""
    f = run.fills
    later = mid_asof(run, f["ts_ex"] + round(horizon_s * NS))
    return np.asarray(f["side"] * (later - f["price"]) / f["price"] * BPS, np.float64)


def arrival_slippage_bps(run: RunRecord) -> np.ndarray:
    """Per fill s * (P - M_arrival) / M_arrival in bps, M_arrival = the parent's decision_mid."""
    f = run.fills
    row = index_of(run.parents["tag"], f["tag"])
    arrival = np.full(len(f), np.nan)
    arrival[row >= 0] = run.parents["decision_mid"][row[row >= 0]]
    return np.asarray(f["side"] * (f["price"] - arrival) / arrival * BPS, np.float64)


def fill_pnl_usdt(run: RunRecord, horizon_s: float = 60.0) -> np.ndarray:
    """Per fill s * (M_{t+D} - P) * q - fee in USDT (the markout term is 0 past the end of the mids)."""
    f = run.fills
    later = mid_asof(run, f["ts_ex"] + round(horizon_s * NS))
    gain = np.where(np.isnan(later), 0.0, f["side"] * (later - f["price"]) * f["qty"])
    return np.asarray(gain - f["fee"], np.float64)


def time_to_fill_s(run: RunRecord) -> np.ndarray:
    """Per order with a fill: seconds from its arrival at the exchange to its first fill."""
    f, o = run.fills, run.orders
    if len(f) == 0:
        return np.zeros(0)
    by_order = np.lexsort((f["ts_ex"], f["order_id"]))
    ids, first = np.unique(f["order_id"][by_order], return_index=True)
    first_ts = f["ts_ex"][by_order][first]
    row = index_of(o["order_id"], ids)
    ok = row >= 0
    return np.asarray((first_ts[ok] - o["ts_arrive_ex"][row[ok]]) / NS, np.float64)


def minute_marks(run: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """(1-minute marks from the first sample, the equity then), the close-out cost taken off the last."""
    ts, eq = run.equity["ts"], run.equity["equity"]
    if len(ts) == 0 or not eq[0] > 0:
        return np.zeros(0, np.int64), np.zeros(0)
    marks = np.arange(ts[0], ts[-1] + 1, MINUTE_NS)
    e = eq[np.searchsorted(ts, marks, side="right") - 1].astype(np.float64)
    e[-1] -= run.closeout_cost
    return marks, e


def minute_returns(run: RunRecord) -> np.ndarray:
    """Simple 1-minute returns on the starting equity: (E_k - E_{k-1}) / E_0 at 1-minute marks."""
    _, e = minute_marks(run)
    if len(e) == 0:
        return np.zeros(0)
    return np.asarray(np.diff(e) / e[0], np.float64)


def shortfall_terms(run: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per parent the USDT cost of its filled part, of its unfilled part, its fees, and its notional."""
    p, f = run.parents, run.fills
    fees = np.zeros(len(p))
    row = index_of(p["tag"], f["tag"])
    np.add.at(fees, row[row >= 0], f["fee"][row >= 0])
    s = p["side"].astype(np.float64)
    unfilled = np.maximum(p["target_qty"] - p["filled_qty"], 0.0)
    later = p["end_mid"].astype(np.float64)
    if run.horizon_ns > 0 and len(p):
        at_horizon = mid_asof(run, p["ts_decision"] + run.horizon_ns)
        later = np.where(np.isnan(at_horizon), later, at_horizon)
    # A term with zero quantity is zero even when its price is NaN (nothing filled: no VWAP).
    filled_cost = np.where(p["filled_qty"] > 0, s * (p["vwap"] - p["decision_mid"]) * p["filled_qty"], 0.0)
    unfilled_cost = np.where(unfilled > 0, s * (later - p["decision_mid"]) * unfilled, 0.0)
    return filled_cost, unfilled_cost, fees, np.asarray(p["decision_mid"] * p["target_qty"], np.float64)


def parent_shortfall_bps(run: RunRecord) -> np.ndarray:
    """Per parent its implementation shortfall (fees included) in bps of its own notional."""
    filled, unfilled, fees, notional = shortfall_terms(run)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(notional > 0, (filled + unfilled + fees) / notional * BPS, np.nan), np.float64)
