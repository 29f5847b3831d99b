"""Feature figures: the online vector after one book update, and batch throughput on one core.

Input: one simulated hour, normalized exactly as the ingest does, 50 levels per side.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import entry
from core.config import load_config
from core.records import Books, Trades
from features import BatchFeatures, OnlineFeatures
from market.normalize import Normalizer
from market.venues import BYBIT
from sim import MarketSimulator

LEVELS = 50
HOUR_NS = 3600 * 1_000_000_000


def recording() -> tuple[Books, Trades]:
    cfg = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    norm = Normalizer(BYBIT, cfg.instrument.venue_symbol, cfg.instrument.tick_size, LEVELS, store_raw=False)
    books: list[Books] = []
    trades: list[Trades] = []
    for batch in MarketSimulator(cfg.sim, cfg.instrument, LEVELS).batches(HOUR_NS):
        out = norm.process(batch)
        books.append(out.books)
        trades.append(out.trades)
    return Books.concat(books), Trades.concat(trades)


def run() -> list[dict[str, Any]]:
    book, trades = recording()
    n = len(book)
    BatchFeatures(0.1).run(book.take(slice(1000)), trades)  # compile / load the kernels
    best = float("inf")
    for _ in range(3):
        engine = BatchFeatures(0.1)
        t = time.perf_counter()
        engine.run(book, trades)
        best = min(best, time.perf_counter() - t)
    online = OnlineFeatures(0.1)
    lat = np.empty(n)
    j = 0
    clock = time.perf_counter_ns
    for i in range(n):
        while j < len(trades) and trades.ts_ex[j] <= book.ts_ex[i]:
            online.update_trade(int(trades.ts_ex[j]), float(trades.price[j]), float(trades.qty[j]), int(trades.side[j]))
            j += 1
        t0 = clock()
        online.update_book(
            int(book.ts_ex[i]), int(book.epoch[i]), book.bid_px[i], book.bid_qty[i], book.ask_px[i], book.ask_qty[i]
        )
        lat[i] = clock() - t0
    warm = lat[n // 10 :] / 1000.0  # after the first windows filled
    return [
        entry(
            "features batch: book updates per second (63 features, 50 levels)",
            n / best,
            "updates/s",
            ">= 500000",
            f"{n:,} updates, {len(trades):,} trades",
        ),
        entry("features online: one book update, median", float(np.median(warm)), "us", "<= 50"),
        entry("features online: one book update, p99", float(np.percentile(warm, 99)), "us", "<= 250"),
    ]
