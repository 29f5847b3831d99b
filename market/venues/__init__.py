"""Venue adapters: each declares its facts as data and parses its own message shapes."""

from market.venues.base import Venue, tick_size, venue_by_name
from market.venues.binance import BINANCE_USDM
from market.venues.bybit import BYBIT

__all__ = ["BINANCE_USDM", "BYBIT", "Venue", "tick_size", "venue_by_name"]
