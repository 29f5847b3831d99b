"""The built-in simulator as a source: as fast as possible, or paced in real time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from core.clock import Clock, SystemClock
from core.config import InstrumentConfig, SimConfig
from market.events import RawMessage
from market.sources.base import Note, Progress
from market.venues import BYBIT
from sim import MarketSimulator

_HEARTBEAT_NS = 100_000_000


class SimSource:
    """Simulated Bybit messages; with ``realtime`` the market starts now and runs at wall-clock pace."""

    name = "sim"
    segment = "session"
    local_time = True  # every message is stamped when it arrives

    def __init__(
        self,
        sim: SimConfig,
        instrument: InstrumentConfig,
        depth: int,
        duration_ns: int,
        realtime: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.realtime = realtime
        if realtime:
            sim = sim.model_copy(update={"start": self.clock.now_ns()})
        self.sim_cfg = sim
        self.venue = BYBIT
        self.symbol = instrument.venue_symbol
        self.tick_size = instrument.tick_size
        self.duration_ns = duration_ns
        self._sim = MarketSimulator(sim, instrument, depth)
        self._stopped = False

    async def start(self) -> None:
        return None

    async def batches(self) -> AsyncIterator[list[RawMessage]]:
        if not self.realtime:
            for batch in self._sim.batches(self.duration_ns):
                yield batch
                await asyncio.sleep(0)
                if self._stopped:
                    return
            return
        due: list[RawMessage] = []
        for batch in self._sim.batches(self.duration_ns, max_batch=256):
            for msg in batch:
                while msg.ts_local > self.clock.now_ns():
                    if due:
                        yield due
                        due = []
                    if self._stopped:
                        return
                    wait = min(msg.ts_local - self.clock.now_ns(), _HEARTBEAT_NS)
                    await asyncio.sleep(max(wait, 0) / 1e9)
                    if wait >= _HEARTBEAT_NS:
                        yield []  # heartbeat: lets the caller flush and notice a stop
                due.append(msg)
        if due:
            yield due

    def request_resync(self, reason: str) -> None:
        return None

    def take_notes(self) -> list[Note]:
        return []

    def progress(self) -> Progress:
        return Progress(self._sim.progress_ns / 1e9, self.duration_ns / 1e9, "s")

    def stop(self) -> None:
        self._stopped = True

    async def aclose(self) -> None:
        return None
