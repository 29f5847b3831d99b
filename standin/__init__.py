"""The Bybit v5 stand-in server: ``python -m standin --port P`` (docs/standin.md)."""

from standin.background import BackgroundStandin
from standin.faults import FAULTS
from standin.server import StandinServer

__all__ = ["FAULTS", "BackgroundStandin", "StandinServer"]
