"""Before the runner connects to anything: a rehearsal that readies every kernel it needs.

numba compiles a kernel at its first call (or loads it from the on-disk cache, core/jit.py). Left
to the first batch of a live feed, that is tens of seconds on a fresh checkout inside the event
loop: nothing is read meanwhile, the feed's stall watchdog reconnects and loses updates, and the
silent-feed kill switch cannot fire while a position may be open. So the runner first runs itself,
the same ``Runner`` with the same strategy and model, on a market of its own: the simulator, as
fast as it computes, into a fresh paper account and a throwaway journal in a temporary folder.
Nothing of it reaches the real journal, the alert webhook or the log (its alerts are about its own
simulated market, which starts in the past: below ERROR it is silent).

The rehearsal is long enough for the first decisions (the features' look-back and a minute), and
it checks its own work: a kernel readied after it (``core.jit.Kernels``) is logged by the runner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import AppConfig
from core.jit import Kernels
from features import MAX_LOOKBACK_S
from live.decide import Loaded
from live.feed import SourceFeed
from live.wiring import Options

if TYPE_CHECKING:
    from live.runner import Runner

NS = 1_000_000_000
SPAN_NS = (MAX_LOOKBACK_S + 60) * NS  # the look-back, then a minute of decisions


@dataclass(frozen=True)
class Rehearsal:
    seconds: float
    readied: int  # kernel signatures compiled or loaded from the cache by the rehearsal
    decisions: int
    fills: int

    def line(self) -> str:
        return (
            f"kernels ready in {self.seconds:.1f} s ({self.readied} readied on a rehearsal: "
            f"{self.decisions} decisions, {self.fills} fills on the simulator)"
        )


def rehearse(cfg: AppConfig, o: Options, model: Loaded) -> Rehearsal:
    """Run the runner of ``o`` (always on paper) on the simulator in a temporary folder."""
    from live.runner import Runner
    from sim.source import SimSource

    t0 = time.monotonic()
    before = Kernels.snapshot()
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp, _quiet():
        start = time.time_ns() - SPAN_NS
        rc = cfg.model_copy(
            update={
                "live": cfg.live.model_copy(update={"journal_dir": Path(tmp), "log_dir": Path(tmp)}),
                "monitor": cfg.monitor.model_copy(update={"webhook_url": ""}),
                "sim": cfg.sim.model_copy(update={"start": start}),
            }
        )
        ro = dataclasses.replace(
            o, live=False, source="sim", model=o.model or "rehearsal", duration_ns=None, start_ns=None,
            end_ns=None, journal=Path(tmp) / "rehearsal.sqlite", wait=False,
        )  # fmt: skip
        runner: Runner = Runner(rc, ro, model)
        runner.kernels = None  # readying them is what it is for
        runner.feed = SourceFeed(SimSource(rc.sim, rc.instrument, rc.ingest.depth, SPAN_NS), rc)
        summary = asyncio.run(runner.run())
    return Rehearsal(time.monotonic() - t0, Kernels.snapshot().readied_since(before), summary.decisions, summary.fills)


@contextmanager
def _quiet() -> Iterator[None]:
    """The rehearsal's own log lines stay out of the runner's log (errors still show)."""
    logger = logging.getLogger("live")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
