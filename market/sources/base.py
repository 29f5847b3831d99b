"""What a market-data source gives the ingest: batches of raw messages, notes, progress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from market.events import RawInput
from market.parsing import Decoded
from market.venues.base import Venue


@dataclass(frozen=True)
class Note:
    """Something the source wants recorded in sync_events (a reconnect, a resubscribe)."""

    kind: str
    detail: str
    ts_local: int


@dataclass(frozen=True)
class Progress:
    done: float
    total: float | None  # None: open-ended (a live stream without --duration)
    unit: str  # "bytes", "s"


class Source(Protocol):
    """A stream of raw messages for one (venue, symbol).

    ``batches()`` yields messages in arrival order (a list of RawMessage, a RawBatch, or messages
    the source decoded itself: Decoded), a batch
    never spanning two segments; a live source yields at least every ``heartbeat`` seconds
    (possibly an empty list) so the caller can flush and stop promptly.
    """

    name: str
    venue: Venue
    symbol: str
    tick_size: float
    # what the last batch was recorded in: a file's name, or "session" for a live or simulated
    # stream; the ingest estimates one recording-clock offset per segment (warehouse.clocks)
    segment: str
    # whether messages carry their local receive time (archives do not: the exchange's time stands
    # in, and replays read them at ingest.archive_latency)
    local_time: bool

    async def start(self) -> None:
        """Connect / open; afterwards tick_size holds the venue's real value."""
        ...

    def batches(self) -> AsyncIterator[RawInput | Decoded]: ...

    def request_resync(self, reason: str) -> None:
        """The book went invalid: fetch a fresh snapshot if the source can."""
        ...

    def take_notes(self) -> list[Note]: ...

    def progress(self) -> Progress: ...

    def stop(self) -> None:
        """Ask the stream to end after the current batch."""
        ...

    async def aclose(self) -> None: ...
