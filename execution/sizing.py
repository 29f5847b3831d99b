"""Depth-aware position sizing: the minimum of four limits, rounded down to the lot.

REFERENCE section 3: size = min(fractional Kelly scaled by calibrated confidence, a volatility
target, a fraction of the visible depth near the mid (our own resting orders removed), the
risk-limit headroom); round down to the quantity step; skip below the minimum size or notional.

- Volatility target: the position whose annualized volatility is ``vol_target`` of equity,
  ``equity * vol_target / sigma_annual / mid`` BTC, with sigma from the trailing realized vol.
- Kelly: the model gives calibrated P(up beyond the dead zone) and P(down beyond it). A long
  is a bet that wins with p_up, loses with p_down and is a wash otherwise; with equal payoffs the
  Kelly stake of such a bet is (p_win - p_loss) / (p_win + p_loss) of the bankroll (maximise
  p_win ln(1 + f) + p_loss ln(1 - f); Thorp 2006, "The Kelly criterion in blackjack, sports betting
  and the stock market", treats the even-money case). The unit stake is the volatility-target
  position, so confidence scales it down, never up; ``kelly_fraction`` (a quarter by default) tames estimation error.
- Depth: ``depth_fraction`` of the size resting within ``depth_bps`` of the mid on the side the
  order would trade against or join, whichever is thinner, net of our own orders there.
- Headroom: what the risk limits still allow (position and notional), from the risk manager.
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


def kelly_share(p_win: float, p_loss: float) -> float:
    """Kelly stake of a win / push / loss bet with equal payoffs, as a share of the unit stake."""
    if not (p_win > p_loss >= 0.0):
        return 0.0
    return (p_win - p_loss) / (p_win + p_loss)


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
    sigma_year = max(sigma_1s, 1e-8) * math.sqrt(SECONDS_PER_YEAR)
    vol = equity * p.vol_target / sigma_year / mid
    limits = {
        "kelly": p.kelly_fraction * kelly_share(p_win, p_loss) * vol,
        "vol": vol,
        "depth": p.depth_fraction * max(depth, 0.0),
        "headroom": max(headroom, 0.0),
    }
    binding = min(limits, key=lambda k: limits[k])
    qty = floor_lot(limits[binding], p.lot)
    skipped = ""
    if qty < p.min_qty:
        skipped, qty = f"below the minimum size ({binding} limit)", 0.0
    elif qty * mid < p.min_notional:
        skipped, qty = f"below the minimum notional ({binding} limit)", 0.0
    return Size(qty, limits["kelly"], limits["vol"], limits["depth"], limits["headroom"], binding, skipped)
