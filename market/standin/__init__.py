"""The Bybit v5 stand-in server: ``python -m market.standin --port P`` (docs/standin.md)."""

from market.standin.background import BackgroundStandin
from market.standin.server import FAULTS, StandinServer

__all__ = ["FAULTS", "BackgroundStandin", "StandinServer"]
