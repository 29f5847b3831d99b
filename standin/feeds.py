"""What the stand-in server replays: the built-in simulator live, or a recorded Bybit file.

A feed yields ``(due_ns, payload)`` pairs: the wall-clock instant (ns since the epoch) at which
the server should publish the message, and the Bybit v5 message text. The server paces itself
and stamps every message with ``wall_ms``: a feed's own times (the simulator's market clock, a
file's recorded one) mapped onto the wall clock, so a client at any speed sees data of "now",
never from the future or the past (its staleness and clock checks hold as against Bybit).
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

    def messages(self, now_ns: int) -> AsyncIterator[tuple[int, str]]: ...

    def wall_ms(self, ms: int) -> int:
        """A timestamp of the feed's messages (ms) as the wall-clock time the server publishes it at."""
        ...


class SimFeed:
    """The simulator: an endless market at Bybit's cadence, started at ``now``.

    With ``history_ns`` the market started that long ago and its past is published first,
    ``catchup`` times faster than real time, then the market runs at wall-clock pace: a client
    that connects at once sees the minutes before ``now`` (what a runner's features need to warm
    up, which on Bybit itself come from the warehouse the 24/7 ingest fills).

    With ``speed`` N the market runs N times faster than the wall clock (a simulated day in
    1/N of a day: the chaos soak), its market time compressed onto the wall clock around ``now``:
    a message of market time t is published, and stamped, at now + (t - now) / N. Clients see N
    times the messages per second, each stamped with the time they receive it, as from Bybit
    at a hectic hour; ``history_ns`` is then market time (history_ns / N of wall time back).
    """

    name = "sim"

    def __init__(
        self,
        sim: SimConfig,
        instrument: InstrumentConfig,
        depth: int,
        history_ns: int = 0,
        catchup: float = 20.0,
        speed: float = 1.0,
    ) -> None:
        if history_ns < 0 or catchup < 1:
            raise UserError("the stand-in's history must be >= 0 and its catch-up speed >= 1")
        if not speed > 0:
            raise UserError(f"the simulator's speed must be > 0, not {speed}")
        self.sim = sim
        self.instrument = instrument
        self.depth = depth
        self.symbol = instrument.venue_symbol
        self.tick_size = instrument.tick_size
        self.history_ns, self.catchup, self.speed = history_ns, catchup, speed
        self._origin_ms = 0  # "now" of messages(): the instant market and wall time agree

    def wall_ms(self, ms: int) -> int:
        return self._origin_ms + int((ms - self._origin_ms) / self.speed)

    async def messages(self, now_ns: int) -> AsyncIterator[tuple[int, str]]:
        from sim import MarketSimulator

        self._origin_ms = now_ns // 1_000_000
        start = now_ns - self.history_ns
        sim = MarketSimulator(self.sim.model_copy(update={"start": start}), self.instrument, self.depth)
        latency = self.sim.feed_latency
        speed = self.speed
        past_ns = self.history_ns / speed  # the history's length on the wall clock
        caught_up = now_ns + int(past_ns / self.catchup)  # when the past has been published
        while True:
            for batch in sim.batches(1_000_000_000, max_batch=4096):
                for m in batch:
                    ts = now_ns + int((m.ts_local - latency - now_ns) / speed)  # on the wall clock
                    if ts < now_ns:
                        yield now_ns + int((ts - now_ns + past_ns) / self.catchup), m.payload
                    else:
                        yield max(ts, caught_up), m.payload


class FileFeed:
    """A recorded Bybit file (archive lines or prefixed recordings), replayed at ``speed``.

    Timestamps are mapped onto the wall clock: the first message is ``now``, the later ones
    ``speed`` times closer together, each stamped with the time it is published at.
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
        self._first_ms = self._now_ms = 0

    def wall_ms(self, ms: int) -> int:
        return self._now_ms + int((ms - self._first_ms) / self.speed)

    async def messages(self, now_ns: int) -> AsyncIterator[tuple[int, str]]:
        first: int | None = None
        async for batch in self.source.raw_batches():
            for m in batch:
                if first is None:
                    first = m.ts_local
                    self._first_ms, self._now_ms = first // 1_000_000, now_ns // 1_000_000
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
