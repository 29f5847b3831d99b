"""What the stand-in server replays: the built-in simulator live, or a recorded Bybit file.

A feed yields ``(due_ns, payload)`` pairs: the wall-clock instant (ns since the epoch) at which
the server should publish the message, and the Bybit v5 message text. The server paces itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from core.config import InstrumentConfig, SimConfig
from core.errors import UserError
from market.sources.files import FileSource, check_paths
from market.venues import BYBIT


class Feed(Protocol):
    name: str
    depth: int
    symbol: str
    tick_size: float
    shift_ms: int  # added to every timestamp of a message, so replayed data looks current

    def messages(self, now_ns: int) -> AsyncIterator[tuple[int, str]]: ...


class SimFeed:
    """The simulator: an endless market at Bybit's cadence, started at ``now``.

    With ``history_ns`` the market started that long ago and its past is published first,
    ``catchup`` times faster than real time, then the market runs at wall-clock pace: a client
    that connects at once sees the minutes before ``now`` (what a runner's features need to warm
    up, which on Bybit itself come from the warehouse the 24/7 ingest fills).
    """

    name = "sim"
    shift_ms = 0

    def __init__(
        self, sim: SimConfig, instrument: InstrumentConfig, depth: int, history_ns: int = 0, catchup: float = 20.0
    ) -> None:
        if history_ns < 0 or catchup < 1:
            raise UserError("the stand-in's history must be >= 0 and its catch-up speed >= 1")
        self.sim = sim
        self.instrument = instrument
        self.depth = depth
        self.symbol = instrument.venue_symbol
        self.tick_size = instrument.tick_size
        self.history_ns, self.catchup = history_ns, catchup

    async def messages(self, now_ns: int) -> AsyncIterator[tuple[int, str]]:
        from sim import MarketSimulator

        start = now_ns - self.history_ns
        sim = MarketSimulator(self.sim.model_copy(update={"start": start}), self.instrument, self.depth)
        latency = self.sim.feed_latency
        caught_up = now_ns + int(self.history_ns / self.catchup)  # when the past has been published
        while True:
            for batch in sim.batches(1_000_000_000, max_batch=4096):
                for m in batch:
                    ts = m.ts_local - latency
                    if ts < now_ns:
                        yield now_ns + int((ts - start) / self.catchup), m.payload
                    else:
                        yield max(ts, caught_up), m.payload


class FileFeed:
    """A recorded Bybit file (archive lines or prefixed recordings), replayed at ``speed``.

    Timestamps are shifted so the first message is ``now``; with ``loop`` the file starts again
    (the server treats the restart as a fresh snapshot).
    """

    name = "file"

    def __init__(self, path: Path | str, speed: float = 1.0, symbol: str = "BTCUSDT") -> None:
        if speed <= 0:
            raise UserError("--speed must be positive")
        paths = check_paths([str(path)])
        self.source = FileSource(paths, batch_lines=2048, symbol=symbol)
        if self.source.venue is not BYBIT:
            raise UserError(f"{path}: the stand-in replays Bybit files only, not {self.source.venue.name}")
        self.path = paths[0]
        self.speed = speed
        self.symbol = symbol
        self.tick_size = BYBIT.tick_size
        self.depth = _depth_of(self.path, symbol)
        self.shift_ms = 0

    async def messages(self, now_ns: int) -> AsyncIterator[tuple[int, str]]:
        first: int | None = None
        async for batch in self.source.batches():
            for m in batch:
                if first is None:
                    first = m.ts_local
                    self.shift_ms = (now_ns - first) // 1_000_000
                yield now_ns + int((m.ts_local - first) / self.speed), m.payload


def _depth_of(path: Path, symbol: str) -> int:
    """The order-book depth of a recorded Bybit file, from its first book topic."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    prefix = "orderbook."
    with opener(path, "rt") as f:
        for n, line in enumerate(f):
            at = line.find('"topic":"' + prefix)
            if at >= 0:
                topic = line[at + 9 : line.find('"', at + 9)]
                parts = topic.split(".")
                if len(parts) == 3 and parts[1].isdigit() and parts[2] == symbol:
                    return int(parts[1])
            if n > 10_000:
                break
    raise UserError(f"{path}: no orderbook.N.{symbol} messages near the start of the file")
