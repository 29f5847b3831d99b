"""Execution quality of one run: what the fills cost and earned (REFERENCE section 3).

Prices in USDT, quantities in BTC, s = +1 buy / -1 sell, bps = 1e-4 of the reference price.
M_x is the mid as of x (the last mid at or before x, exchange clock); a fill whose x is after the
last mid gets NaN and is left out of that mean. The keys of ``metrics``:

- net_pnl: equity end - start - closeout_cost (USDT, net of fees and funding): a position still open
  at the end is closed out at the exit cost, the same way for every strategy (closeout_cost: the
  taker fee plus the walk of the last book from the mid, set by the backtest driver);
  net_pnl_marked is the same before the close-out (the position at the mid), position_end the BTC
  still held. gross_pnl = net_pnl + fees + funding.
- fees, funding: USDT paid over the run (the engine's totals, positive = paid).
- sharpe, sortino: the equity curve read at 1-minute marks from its first sample (E_k = the
  last equity at or before mark k; a last partial minute is dropped), r_k = (E_k - E_{k-1}) / E_0
  (simple returns on the starting equity); sharpe = mean(r) / std(r, ddof=1) * sqrt(525600), the
  minutes of a 365-day year (crypto trades around the clock); sortino = mean(r) / DD * sqrt(525600)
  with the downside deviation DD = sqrt(mean(min(r, 0)^2)) over all r (Sortino & Price 1994,
  target 0). NaN with fewer than 2 returns, a zero std (sharpe) or no losing minute (sortino).
  The close-out cost comes off the last minute. sharpe_se is its standard error (Lo 2002 / Mertens
  2002, with the returns' skew and kurtosis, annualized like the ratio), sharpe_lo / sharpe_hi
  the 95 % interval sharpe -+ 1.96 se, sharpe_psr the probabilistic Sharpe ratio PSR(0) (the
  probability that the true Sharpe is above 0), returns_n the number of 1-minute returns
  (execution/stats.py).
- max_drawdown: max of (peak_t - E_t) / peak_t on the raw curve; max_drawdown_usdt: max of
  peak_t - E_t. Each is its own maximum: they may come from different troughs.
- turnover: traded notional sum(P * q) / mean equity.
- orders, fills: record counts; requests, post_only_rejects, rate_limit_rejects: engine counters.
- fill_rate_count: orders with any fill / orders accepted (neither rejected nor left pending).
- fill_rate_qty: sum of the parents' filled_qty / sum of their target_qty.
- post_only_reject_rate: post-only orders rejected as would-take / post-only orders submitted
  (both from the order records).
- maker_ratio: maker notional / total notional.
- arrival_slippage_mean_bps, _median_bps, _qty_mean_bps: per fill s * (P - M_a) / M_a with M_a
  the decision_mid of the fill's parent (fills without a parent record are left out); the mean,
  the median and the quantity-weighted mean. Negative is a gain (a maker earning the spread).
- implementation_shortfall_bps: per parent s*(VWAP - P_d)*Q_filled + s*(P_h - P_d)*Q_unfilled
  + fees of its fills, over P_d * target_qty, with P_h the mid at the signal's horizon (decision
  time + ``RunRecord.horizon_ns``: what the unfilled part would have earned; the end_mid of the
  parent when no horizon is set or the data ends first); the notional-weighted mean (weights
  P_d * target_qty) is sum(numerators) / sum(P_d * target_qty). implementation_shortfall_filled_bps,
  _unfilled_bps and _fees_bps are its three terms alone (they add up to it). Funding belongs to
  the position, not to a parent: it is in net_pnl, not here. parent_shortfall_mean_bps, _lo_bps,
  _hi_bps: the plain mean of the per-parent shortfalls with its 95 % t interval; parents, entries
  and exits count the parent orders (exits carry no confidence).
- effective_spread_bps 2s(P - M_t)/M_t, realized_spread_bps 2s(P - M_{t+D})/M_t and
  price_impact_bps 2s(M_{t+D} - M_t)/M_t with D = 10 s and t the fill's exchange time, means per
  fill (effective = realized + impact fill by fill).
- markout_1s_bps, markout_10s_bps, markout_60s_bps: s * (M_{t+D} - P) / P, mean per fill; with
  _n (fills with a mid at t + D) and _lo_bps / _hi_bps (95 % t interval). arrival_slippage_n,
  _lo_bps, _hi_bps: the same for the mean arrival slippage.
- time_to_fill_median_s: per order with a fill, its first fill time - its arrival at the exchange.
- cancel_to_fill: cancelled orders / fills; amend_to_fill: amends of all orders / fills.

Every value is defined for an empty run: counts and sums are 0, ratios over nothing are NaN.
``compare`` and ``check_targets`` live in execution/comparison.py and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from execution.comparison import TargetVerdict, check_targets, compare
from execution.stats import mean_interval, sharpe_inference
from execution.types import EQUITY_DTYPE, FILL_DTYPE, ORDER_DTYPE, PARENT_DTYPE, OrderStatus, RejectReason

__all__ = [
    "EQUITY_DTYPE",
    "Metrics",
    "RunRecord",
    "TargetVerdict",
    "arrival_slippage_bps",
    "by_confidence",
    "by_queue",
    "check_targets",
    "compare",
    "fill_pnl_usdt",
    "markout_bps",
    "markout_curve",
    "metrics",
    "mid_asof",
    "minute_returns",
    "parent_shortfall_bps",
    "sharpe_sortino",
    "time_to_fill_s",
]

NS = 1_000_000_000
MINUTE_NS = 60 * NS
MINUTES_PER_YEAR = 525_600
BPS = 1e4
MARKOUT_HORIZONS_S: tuple[float, ...] = (1.0, 10.0, 60.0)
SPREAD_HORIZON_S = 10.0
CURVE_HORIZONS_S: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
QUEUE_EDGES: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)

# The equity curve on the engine's regular clock (net of fees and funding). Candidate for types.py.

Metrics = dict[str, float | int]


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


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den != 0 else float("nan")


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def _median(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else float("nan")


def _index_of(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
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
    row = _index_of(run.parents["tag"], f["tag"])
    arrival = np.full(len(f), np.nan)
    arrival[row >= 0] = run.parents["decision_mid"][row[row >= 0]]
    return np.asarray(f["side"] * (f["price"] - arrival) / arrival * BPS, np.float64)


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


def sharpe_sortino(returns: np.ndarray) -> tuple[float, float]:
    """Annualized Sharpe and Sortino ratios of 1-minute returns (NaN when undefined)."""
    nan = float("nan")
    if len(returns) < 2:
        return nan, nan
    mean = float(returns.mean())
    std = float(returns.std(ddof=1))
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
    scale = np.sqrt(MINUTES_PER_YEAR)
    sharpe = mean / std * scale if std > 0 else nan
    sortino = mean / downside * scale if downside > 0 else nan
    return float(sharpe), float(sortino)


def _drawdowns(equity: np.ndarray) -> tuple[float, float]:
    if len(equity) == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max((peak - equity) / peak)), float(np.max(peak - equity))


def _shortfall_terms(run: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per parent the USDT cost of its filled part, of its unfilled part, its fees, and its notional."""
    p, f = run.parents, run.fills
    fees = np.zeros(len(p))
    row = _index_of(p["tag"], f["tag"])
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
    filled, unfilled, fees, notional = _shortfall_terms(run)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(notional > 0, (filled + unfilled + fees) / notional * BPS, np.nan), np.float64)


def _shortfall(run: RunRecord) -> tuple[float, float, float]:
    """Notional-weighted implementation shortfall terms (filled, unfilled, fees) in bps."""
    filled, unfilled, fees, notional = _shortfall_terms(run)
    total = float(notional.sum())
    return (
        _ratio(float(filled.sum()) * BPS, total),
        _ratio(float(unfilled.sum()) * BPS, total),
        _ratio(float(fees.sum()) * BPS, total),
    )


def _spreads(run: RunRecord) -> tuple[float, float, float]:
    """Mean effective spread, realized spread and price impact in bps (D = 10 s)."""
    f = run.fills
    s = f["side"]
    now = mid_asof(run, f["ts_ex"])
    later = mid_asof(run, f["ts_ex"] + round(SPREAD_HORIZON_S * NS))
    effective = 2 * s * (f["price"] - now) / now * BPS
    realized = 2 * s * (f["price"] - later) / now * BPS
    impact = 2 * s * (later - now) / now * BPS
    return _mean(effective), _mean(realized), _mean(impact)


def time_to_fill_s(run: RunRecord) -> np.ndarray:
    """Per order with a fill: seconds from its arrival at the exchange to its first fill."""
    f, o = run.fills, run.orders
    if len(f) == 0:
        return np.zeros(0)
    by_order = np.lexsort((f["ts_ex"], f["order_id"]))
    ids, first = np.unique(f["order_id"][by_order], return_index=True)
    first_ts = f["ts_ex"][by_order][first]
    row = _index_of(o["order_id"], ids)
    ok = row >= 0
    return np.asarray((first_ts[ok] - o["ts_arrive_ex"][row[ok]]) / NS, np.float64)


def metrics(run: RunRecord) -> Metrics:
    """The execution-quality metrics of one run (keys and definitions in the module docstring)."""
    f, o, p, eq = run.fills, run.orders, run.parents, run.equity["equity"]
    notional = f["price"] * f["qty"]
    total_notional = float(notional.sum())
    marked = float(eq[-1] - eq[0]) if len(eq) else 0.0
    net = marked - run.closeout_cost
    returns = minute_returns(run)
    sharpe, sortino = sharpe_sortino(returns)
    inference = sharpe_inference(returns)
    _, sharpe_se = inference.annualized(MINUTES_PER_YEAR)
    dd_frac, dd_usdt = _drawdowns(eq)

    status = o["status"]
    accepted = ~np.isin(status, (OrderStatus.REJECTED, OrderStatus.PENDING)) | (o["filled"] > 0)
    post_only = o["post_only"]
    po_rejected = post_only & (status == OrderStatus.REJECTED) & (o["reject"] == RejectReason.POST_ONLY_WOULD_TAKE)

    slip = arrival_slippage_bps(run)
    has_slip = ~np.isnan(slip)
    is_filled, is_unfilled, is_fees = _shortfall(run)
    effective, realized, impact = _spreads(run)
    n_fills = len(f)
    slip_mean, slip_lo, slip_hi, slip_n = mean_interval(slip)
    per_parent = mean_interval(parent_shortfall_bps(run))
    exits = int(np.sum(np.isnan(p["confidence"])))
    out: Metrics = {
        "net_pnl": net,
        "net_pnl_marked": marked,
        "position_end": float(run.equity["position"][-1]) if len(eq) else 0.0,
        "closeout_cost": float(run.closeout_cost),
        "gross_pnl": net + run.fees + run.funding,
        "fees": float(run.fees),
        "funding": float(run.funding),
        "sharpe": sharpe,
        "sharpe_se": sharpe_se,
        "sharpe_lo": sharpe - 1.96 * sharpe_se,
        "sharpe_hi": sharpe + 1.96 * sharpe_se,
        "sharpe_psr": inference.psr,
        "returns_n": len(returns),
        "sortino": sortino,
        "max_drawdown": dd_frac,
        "max_drawdown_usdt": dd_usdt,
        "turnover": _ratio(total_notional, float(eq.mean())) if len(eq) else float("nan"),
        "orders": len(o),
        "fills": n_fills,
        "requests": int(run.requests),
        "post_only_rejects": int(run.post_only_rejects),
        "rate_limit_rejects": int(run.rate_limit_rejects),
        "fill_rate_count": _ratio(float(np.sum(accepted & (o["filled"] > 0))), float(accepted.sum())),
        "fill_rate_qty": _ratio(float(p["filled_qty"].sum()), float(p["target_qty"].sum())),
        "post_only_reject_rate": _ratio(float(po_rejected.sum()), float(post_only.sum())),
        "maker_ratio": _ratio(float(notional[f["maker"]].sum()), total_notional),
        "arrival_slippage_mean_bps": slip_mean,
        "arrival_slippage_lo_bps": slip_lo,
        "arrival_slippage_hi_bps": slip_hi,
        "arrival_slippage_n": slip_n,
        "arrival_slippage_median_bps": _median(slip),
        "arrival_slippage_qty_mean_bps": _ratio(
            float(np.sum(slip[has_slip] * f["qty"][has_slip])), float(f["qty"][has_slip].sum())
        ),
        "implementation_shortfall_bps": is_filled + is_unfilled + is_fees,
        "implementation_shortfall_filled_bps": is_filled,
        "implementation_shortfall_unfilled_bps": is_unfilled,
        "implementation_shortfall_fees_bps": is_fees,
        "parents": len(p),
        "entries": len(p) - exits,
        "exits": exits,
        "parent_shortfall_mean_bps": per_parent[0],
        "parent_shortfall_lo_bps": per_parent[1],
        "parent_shortfall_hi_bps": per_parent[2],
        "effective_spread_bps": effective,
        "realized_spread_bps": realized,
        "price_impact_bps": impact,
    }
    for h in MARKOUT_HORIZONS_S:
        mean, lo, hi, n = mean_interval(markout_bps(run, h))
        out[f"markout_{h:g}s_bps"] = mean
        out[f"markout_{h:g}s_lo_bps"], out[f"markout_{h:g}s_hi_bps"], out[f"markout_{h:g}s_n"] = lo, hi, n
    out["time_to_fill_median_s"] = _median(time_to_fill_s(run))
    out["cancel_to_fill"] = _ratio(float(np.sum(status == OrderStatus.CANCELLED)), n_fills)
    out["amend_to_fill"] = _ratio(float(o["amends"].sum()), n_fills)
    return out


CURVE_DTYPE = np.dtype(
    [
        ("horizon_s", np.float64),
        ("fills", np.int64),
        ("mean_bps", np.float64),
        ("lo_bps", np.float64),
        ("hi_bps", np.float64),
    ]
)


def markout_curve(run: RunRecord, horizons: Sequence[float] = CURVE_HORIZONS_S) -> np.ndarray:
    """Mean markout per horizon (seconds) with a 95 % band: mean +- 1.96 * std / sqrt(n) (NaN for n < 2)."""
    out = np.zeros(len(horizons), CURVE_DTYPE)
    for i, h in enumerate(horizons):
        m = markout_bps(run, h)
        m = m[~np.isnan(m)]
        half = 1.96 * m.std(ddof=1) / np.sqrt(len(m)) if len(m) >= 2 else np.nan
        mean = m.mean() if len(m) else np.nan
        out[i] = (h, len(m), mean, mean - half, mean + half)
    return out


CONFIDENCE_DTYPE = np.dtype(
    [
        ("lo", np.float64),
        ("hi", np.float64),
        ("parents", np.int64),
        ("fills", np.int64),
        ("filled_qty", np.float64),
        ("markout_10s_bps", np.float64),
        ("pnl_usdt", np.float64),
    ]
)


def fill_pnl_usdt(run: RunRecord, horizon_s: float = 60.0) -> np.ndarray:
    """Per fill s * (M_{t+D} - P) * q - fee in USDT (the markout term is 0 past the end of the mids)."""
    f = run.fills
    later = mid_asof(run, f["ts_ex"] + round(horizon_s * NS))
    gain = np.where(np.isnan(later), 0.0, f["side"] * (later - f["price"]) * f["qty"])
    return np.asarray(gain - f["fee"], np.float64)


def by_confidence(run: RunRecord, buckets: int = 5) -> np.ndarray:
    """Fills, filled qty, mean 10 s markout and net PnL per confidence bucket of the entry parents,
    and one last row for the exits.

    Buckets are quantiles of the entries' confidence (equal parent counts, ties kept together, so a
    bucket can be empty); [lo, hi] are the bucket edges, NaN without entries. Exits carry no model
    confidence (NaN): they are the last row, lo = hi = NaN. A parent's PnL contribution is the sum
    over its fills of the 60 s markout in USDT minus the fee (``fill_pnl_usdt``); fills without a
    parent record are left out.
    """
    p, f = run.parents, run.fills
    out = np.zeros(buckets + 1, CONFIDENCE_DTYPE)
    entry = ~np.isnan(p["confidence"])
    parent_bucket = np.full(len(p), buckets, np.int64)  # the exits' row
    if entry.any():
        edges = np.quantile(p["confidence"][entry], np.linspace(0.0, 1.0, buckets + 1))
        parent_bucket[entry] = np.searchsorted(edges[1:-1], p["confidence"][entry], side="right")
    else:
        edges = np.full(buckets + 1, np.nan)
    row = _index_of(p["tag"], f["tag"])
    fill_bucket = np.where(row >= 0, parent_bucket[row] if len(p) else -1, -1)
    markout, pnl = markout_bps(run, 10.0), fill_pnl_usdt(run)
    for b in range(buckets + 1):
        mine = fill_bucket == b
        lo, hi = (edges[b], edges[b + 1]) if b < buckets else (np.nan, np.nan)
        out[b] = (
            lo,
            hi,
            np.sum(parent_bucket == b),
            np.sum(mine),
            f["qty"][mine].sum(),
            _mean(markout[mine]),
            pnl[mine].sum(),
        )
    return out


QUEUE_DTYPE = np.dtype(
    [
        ("lo", np.float64),
        ("hi", np.float64),
        ("fills", np.int64),
        ("qty", np.float64),
        ("markout_1s_bps", np.float64),
        ("markout_10s_bps", np.float64),
        ("markout_60s_bps", np.float64),
    ]
)


def by_queue(run: RunRecord, edges: Sequence[float] = QUEUE_EDGES) -> np.ndarray:
    """Mean markouts of maker fills by queue ahead at placement (BTC): buckets [edges[i], edges[i+1]).

    The last bucket is open ended; taker fills have no queue and are left out.
    """
    f = run.fills
    lo = np.asarray(edges, np.float64)
    hi = np.append(lo[1:], np.inf)
    bucket = np.searchsorted(lo, f["queue_ahead"], side="right") - 1
    bucket = np.where(f["maker"] & ~np.isnan(f["queue_ahead"]), bucket, -1)
    marks = [markout_bps(run, h) for h in MARKOUT_HORIZONS_S]
    out = np.zeros(len(lo), QUEUE_DTYPE)
    for b in range(len(lo)):
        mine = bucket == b
        out[b] = (lo[b], hi[b], np.sum(mine), f["qty"][mine].sum(), *(_mean(m[mine]) for m in marks))
    return out
