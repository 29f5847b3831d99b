"""Simulator figures: messages and book updates per second, and the time for one simulated day."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import entry
from core.config import load_config
from sim import MarketSimulator

DAY_NS = 86_400 * 1_000_000_000


def run() -> list[dict[str, Any]]:
    cfg = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    list(MarketSimulator(cfg.sim, cfg.instrument).batches(60 * 1_000_000_000))  # compile / load the kernel
    sim = MarketSimulator(cfg.sim, cfg.instrument)
    messages = deltas = 0
    t = time.perf_counter()
    for batch in sim.batches(DAY_NS):
        messages += len(batch)
        deltas += sum(1 for m in batch if m.payload[10] == "o")  # {"topic":"orderbook...
    seconds = time.perf_counter() - t
    return [
        entry(
            "simulator: one day at 20 ms cadence, wall time",
            seconds,
            "s",
            "< 300",
            f"{deltas:,} book updates, {messages - deltas:,} trade messages",
        ),
        entry("simulator: book updates per second", deltas / seconds, "updates/s", None),
        entry("simulator: messages per second (book + trades)", messages / seconds, "msg/s", ">= 50000"),
        entry("simulator: simulated hours per wall minute", DAY_NS / 3.6e12 / (seconds / 60), "h/min", None),
    ]
