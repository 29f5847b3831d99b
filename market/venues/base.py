"""What every venue adapter provides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.config import InstrumentConfig
from core.errors import UserError
from market.events import RawInput
from market.parsing import Parsed

Parser = Callable[[RawInput, str, float], Parsed]


@dataclass(frozen=True)
class Venue:
    """Facts about a venue, declared as data (cryptofeed style)."""

    name: str
    parse: Parser  # (messages, venue symbol, tick size) -> Parsed
    tick_size: float  # default for BTCUSDT; live sources re-read it from the exchange
    lot_size: float
    # Binance: diffs received before the REST snapshot are replayed after it (its sync procedure).
    replay_pending_on_snapshot: bool
    # Where resyncs come from: "resubscribe" (a live stream sends a new snapshot) or "none" (a file).
    doc: str


_REGISTRY: dict[str, Venue] = {}


def register(venue: Venue) -> Venue:
    _REGISTRY[venue.name] = venue
    return venue


def tick_size(instrument: InstrumentConfig, venue: str) -> float:
    """The price tick of data from ``venue``: the configured instrument's on its own venue (the one
    source: config.yaml, re-read from the exchange when online), the venue module's for recordings
    of another venue."""
    return instrument.tick_size if venue == instrument.venue else venue_by_name(venue).tick_size


def venue_by_name(name: str) -> Venue:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown venue '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None
