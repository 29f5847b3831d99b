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
The run record and its per-fill, per-order and per-parent measures live in execution/run_record.py,
the breakdowns (markout curve, by confidence, by queue) in execution/breakdowns.py, ``compare`` and
``check_targets`` in execution/comparison.py; all are re-exported here.
"""

from __future__ import annotations

import numpy as np

from execution.breakdowns import by_confidence, by_queue, markout_curve
from execution.comparison import TargetVerdict, check_targets, compare
from execution.run_record import (
    BPS,
    MARKOUT_HORIZONS_S,
    NS,
    RunRecord,
    arrival_slippage_bps,
    fill_pnl_usdt,
    finite_mean,
    finite_median,
    markout_bps,
    mid_asof,
    minute_marks,
    minute_returns,
    parent_shortfall_bps,
    ratio,
    shortfall_terms,
    time_to_fill_s,
)
from execution.stats import mean_interval, sharpe_inference
from execution.types import EQUITY_DTYPE, OrderStatus, RejectReason

__all__ = [
    "EQUITY_DTYPE",
    "MARKOUT_HORIZONS_S",
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
    "minute_marks",
    "minute_returns",
    "parent_shortfall_bps",
    "sharpe_sortino",
    "time_to_fill_s",
]

MINUTES_PER_YEAR = 525_600
SPREAD_HORIZON_S = 10.0

Metrics = dict[str, float | int]


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


def _shortfall(run: RunRecord) -> tuple[float, float, float]:
    """Notional-weighted implementation shortfall terms (filled, unfilled, fees) in bps."""
    filled, unfilled, fees, notional = shortfall_terms(run)
    total = float(notional.sum())
    return (
        ratio(float(filled.sum()) * BPS, total),
        ratio(float(unfilled.sum()) * BPS, total),
        ratio(float(fees.sum()) * BPS, total),
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
    return finite_mean(effective), finite_mean(realized), finite_mean(impact)


def metrics(run: RunRecord) -> Metrics:
    """The execution-quality metrics of one run (keys and definitions in the module docstring)."""
    return {**_pnl_and_risk(run), **_orders(run), **_costs(run), **_after_the_fill(run)}


def _pnl_and_risk(run: RunRecord) -> Metrics:
    """net_pnl to turnover: the equity curve's figures."""
    eq = run.equity["equity"]
    marked = float(eq[-1] - eq[0]) if len(eq) else 0.0
    net = marked - run.closeout_cost
    returns = minute_returns(run)
    sharpe, sortino = sharpe_sortino(returns)
    inference = sharpe_inference(returns)
    _, sharpe_se = inference.annualized(MINUTES_PER_YEAR)
    dd_frac, dd_usdt = _drawdowns(eq)
    total_notional = float(np.sum(run.fills["price"] * run.fills["qty"]))
    return {
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
        "turnover": ratio(total_notional, float(eq.mean())) if len(eq) else float("nan"),
    }


def _orders(run: RunRecord) -> Metrics:
    """orders to maker_ratio: counts and rates of the order records."""
    f, o, p = run.fills, run.orders, run.parents
    status = o["status"]
    accepted = ~np.isin(status, (OrderStatus.REJECTED, OrderStatus.PENDING)) | (o["filled"] > 0)
    post_only = o["post_only"]
    po_rejected = post_only & (status == OrderStatus.REJECTED) & (o["reject"] == RejectReason.POST_ONLY_WOULD_TAKE)
    notional = f["price"] * f["qty"]
    return {
        "orders": len(o),
        "fills": len(f),
        "requests": int(run.requests),
        "post_only_rejects": int(run.post_only_rejects),
        "rate_limit_rejects": int(run.rate_limit_rejects),
        "fill_rate_count": ratio(float(np.sum(accepted & (o["filled"] > 0))), float(accepted.sum())),
        "fill_rate_qty": ratio(float(p["filled_qty"].sum()), float(p["target_qty"].sum())),
        "post_only_reject_rate": ratio(float(po_rejected.sum()), float(post_only.sum())),
        "maker_ratio": ratio(float(notional[f["maker"]].sum()), float(notional.sum())),
    }


def _costs(run: RunRecord) -> Metrics:
    """Arrival slippage, implementation shortfall and the spreads: what the fills cost."""
    f, p = run.fills, run.parents
    slip = arrival_slippage_bps(run)
    has_slip = ~np.isnan(slip)
    is_filled, is_unfilled, is_fees = _shortfall(run)
    effective, realized, impact = _spreads(run)
    slip_mean, slip_lo, slip_hi, slip_n = mean_interval(slip)
    per_parent = mean_interval(parent_shortfall_bps(run))
    exits = int(np.sum(np.isnan(p["confidence"])))
    return {
        "arrival_slippage_mean_bps": slip_mean,
        "arrival_slippage_lo_bps": slip_lo,
        "arrival_slippage_hi_bps": slip_hi,
        "arrival_slippage_n": slip_n,
        "arrival_slippage_median_bps": finite_median(slip),
        "arrival_slippage_qty_mean_bps": ratio(
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


def _after_the_fill(run: RunRecord) -> Metrics:
    """The markouts, the time to fill and the cancel and amend counts per fill."""
    o, n_fills = run.orders, len(run.fills)
    out: Metrics = {}
    for h in MARKOUT_HORIZONS_S:
        mean, lo, hi, n = mean_interval(markout_bps(run, h))
        out[f"markout_{h:g}s_bps"] = mean
        out[f"markout_{h:g}s_lo_bps"], out[f"markout_{h:g}s_hi_bps"], out[f"markout_{h:g}s_n"] = lo, hi, n
    out["time_to_fill_median_s"] = finite_median(time_to_fill_s(run))
    out["cancel_to_fill"] = ratio(float(np.sum(o["status"] == OrderStatus.CANCELLED)), n_fills)
    out["amend_to_fill"] = ratio(float(o["amends"].sum()), n_fills)
    return out
