"""Depth-aware position sizing: the minimum of four limits, rounded down to the lot.

REFERENCE section 3: size = min(fractional Kelly of the net-of-cost bet, a volatility target, a
fraction of the visible depth near the mid, the risk-limit headroom); round down to the quantity
step; skip below the minimum size or notional.

- Volatility target: the position whose annualized volatility is ``vol_target`` of equity,
  ``equity * vol_target / sigma_annual / mid`` BTC, with sigma from the trailing realized vol.
- Kelly, net of cost: the model gives calibrated P(up beyond the dead zone tau) and P(down beyond
  it) over its horizon h. A position in the signal's direction is a bet with three outcomes: the
  move beyond tau in our favour, +m - c (probability p_win); against us, -m - c (p_loss); inside
  the dead zone, -c (the rest), with c the strategy's round-trip cost and m the size of a move
  beyond tau, E[|X| given |X| > tau] for X ~ N(0, (sigma_1s sqrt(h))^2) (the inverse Mills ratio).
  The Kelly leverage f maximises p_win ln(1 + f(m - c)) + p_loss ln(1 - f(m + c)) + p_push
  ln(1 - f c) (Kelly 1956; Thorp 2006, "The Kelly criterion in blackjack, sports betting and the
  stock market", sec. 3-7), solved by bisection on its derivative; the position is
  ``kelly_fraction * f * equity / mid`` BTC. A bet whose expected net payoff
  p_win (m - c) - p_loss (m + c) - p_push c is zero or negative has f = 0: no position.
- Depth: ``depth_fraction`` of the size resting within ``depth_bps`` of the mid on the side the
  order would trade against or join, whichever is thinner. Our own orders are removed only where
  the book holds them (a live exchange's); a recorded or simulated book never did.
- Headroom: what the risk limits still allow (position and notional, resting and in-flight orders
  counted), from the risk manager.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SECONDS_PER_YEAR = 365.0 * 24 * 3600


@dataclass(frozen=True)
class SizingParams:
    kelly_fraction: float = 0.25
    vol_target: float = 0.5
    depth_fraction: float = 0.05
    depth_bps: float = 10.0
    lot: float = 0.001
    min_qty: float = 0.001
    min_notional: float = 5.0
    tau: float = 0.0004  # the model's dead zone (a fraction): p_win / p_loss are of moves beyond it
    horizon_s: float = 30.0  # the model's horizon: the bet lasts this long
    round_trip_cost: float = 0.0004  # the strategy's fees for entering and leaving (a fraction of notional)


@dataclass(frozen=True)
class Size:
    """The chosen size and every limit that went into it (BTC); ``binding`` names the smallest."""

    qty: float
    kelly: float
    vol: float
    depth: float
    headroom: float
    binding: str
    skipped: str = ""  # why the size is zero, if it is


def move_beyond(tau: float, sigma_h: float) -> float:
    """E[|X| given |X| > tau] for X ~ N(0, sigma_h^2): the size of a move beyond the dead zone
    (sigma_h * phi(k) / (1 - Phi(k)), k = tau / sigma_h; tau itself when sigma_h is 0)."""
    if not sigma_h > 0.0:
        return tau
    k = tau / sigma_h
    tail = 0.5 * math.erfc(k / math.sqrt(2.0))
    if tail < 1e-300:  # far in the tail: the mean excess over tau is sigma_h^2 / tau
        return tau + sigma_h * sigma_h / tau
    return sigma_h * math.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi) / tail


def kelly_leverage(p_win: float, p_loss: float, move: float, cost: float) -> float:
    """The Kelly leverage (position notional / equity) of the three-outcome bet +move - cost (p_win),
    -move - cost (p_loss), -cost (the rest): 0 when its expected payoff is not positive, inf when
    it cannot lose."""
    p_push = max(0.0, 1.0 - p_win - p_loss)
    win, loss = move - cost, move + cost  # a loss and the push cost are positive numbers here
    edge = p_win * win - p_loss * loss - p_push * cost
    if not edge > 0.0:
        return 0.0
    worst = max(loss if p_loss > 0 else 0.0, cost if p_push > 0 else 0.0)
    if worst <= 0.0:
        return math.inf

    def slope(f: float) -> float:  # d/df of the expected log growth, decreasing in f
        return p_win * win / (1.0 + f * win) - p_loss * loss / (1.0 - f * loss) - p_push * cost / (1.0 - f * cost)

    lo, hi = 0.0, 1.0 / worst
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if slope(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return lo


def depth_within(px: np.ndarray, qty: np.ndarray, mid: float, bps: float, own: float = 0.0) -> float:
    """Visible size within ``bps`` of ``mid`` on one side of the book, minus our own there."""
    band = mid * bps * 1e-4
    near = np.abs(px - mid) <= band
    return max(0.0, float(qty[near & np.isfinite(px)].sum()) - own)


def floor_lot(qty: float, lot: float) -> float:
    """Round down to the lot (with a tolerance for float noise just below a whole lot)."""
    if qty <= 0:
        return 0.0
    return math.floor(qty / lot + 1e-9) * lot


def size(
    p_win: float,
    p_loss: float,
    equity: float,
    mid: float,
    sigma_1s: float,
    depth: float,
    headroom: float,
    p: SizingParams,
) -> Size:
    """The order size for one decision; ``sigma_1s`` is the std of 1 s log returns (a fraction)."""
    if not (mid > 0 and equity > 0 and math.isfinite(sigma_1s)):
        return Size(0.0, 0.0, 0.0, 0.0, headroom, "none", "no price, equity or volatility")
    sigma_1s = max(sigma_1s, 1e-8)
    sigma_year = sigma_1s * math.sqrt(SECONDS_PER_YEAR)
    vol = equity * p.vol_target / sigma_year / mid
    move = move_beyond(p.tau, sigma_1s * math.sqrt(p.horizon_s))
    limits = {
        "kelly": p.kelly_fraction * kelly_leverage(p_win, p_loss, move, p.round_trip_cost) * equity / mid,
        "vol": vol,
        "depth": p.depth_fraction * max(depth, 0.0),
        "headroom": max(headroom, 0.0),
    }
    binding = min(limits, key=lambda k: limits[k])
    qty = floor_lot(limits[binding], p.lot)
    skipped = ""
    if limits["kelly"] <= 0.0:
        skipped, qty = "no edge after costs (Kelly 0)", 0.0
    elif qty < p.min_qty:
        skipped, qty = f"below the minimum size ({binding} limit)", 0.0
    elif qty * mid < p.min_notional:
        skipped, qty = f"below the minimum notional ({binding} limit)", 0.0
    return Size(qty, limits["kelly"], limits["vol"], limits["depth"], limits["headroom"], binding, skipped)
