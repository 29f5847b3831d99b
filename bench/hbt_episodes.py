"""The hftbacktest benchmark's data: the two Binance episodes as our Market, and as hftbacktest's
event array (per-level depth changes between consecutive top-20 snapshots, and trades).

The recordings (../shared/data) are imported once with the file source into warehouses cached in
bench/.cache and read back with load_market; why the conversion can differ from hftbacktest's own
feed is in bench/bench_hftbacktest.py's docstring.
"""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType

import numpy as np

from bench.common import CACHE, ROOT, SHARED
from core.config import AppConfig, load_config
from execution.market import Market
from market.sources.files import FileSource
from pipelines.replay import load_market
from warehouse.ingest import run_ingest

DATA = SHARED / "binance-usdm-btcusdt"
EPISODES = (
    ("2023-04-04", ("btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz")),
    ("2024-07-18", ("btcusdt_20240718.gz", "btcusdt_20240719.gz")),
)
VENUE = "binance-usdm"  # the venue the file source stores the recordings under
LEVELS = 20


def episode(name: str, files: tuple[str, ...]) -> Market:
    """The episode's Market, from a warehouse built once in bench/.cache."""
    base = load_config(ROOT / "config.yaml")
    directory = CACHE / f"binance-{name}"
    wh = base.warehouse.model_copy(
        update={"path": directory / "l2.duckdb", "spool_dir": directory / "spool", "snapshot_levels": LEVELS}
    )
    cfg = base.model_copy(update={"warehouse": wh})
    marker = directory / "built"
    if not marker.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        result = run_ingest(FileSource([DATA / f for f in files]), cfg, detail=f"bench {name}")
        if result.status != "completed":
            raise RuntimeError(f"import of {name} failed: {result.error}")
        marker.write_text(f"{result.summary()}\n")
    # load_market reads the configured pair; the recordings are Binance's (model_copy skips validation)
    pair: AppConfig = cfg.model_copy(update={"instrument": cfg.instrument.model_copy(update={"venue": VENUE})})
    return load_market(pair, None, None, LEVELS)


def delivery(market: Market) -> np.ndarray:
    """Local delivery time of each book event in our engine: max(ts_local, ts_ex, the previous one)."""
    return np.maximum.accumulate(np.maximum(market.books.ts_local, market.books.ts_ex))


def first_events(market: Market, n: int) -> Market:
    """The first ``n`` book events and the trades up to the last of them (the warm-up data)."""
    cut = int(np.searchsorted(market.trades.ts_ex, market.books.ts_ex[n - 1], side="right"))
    return Market(market.books.take(slice(n)), market.trades.take(slice(cut)))


def _side_changes(
    held: dict[int, float], ticks: list[int], qtys: list[float], full: bool, bid: bool
) -> tuple[list[tuple[int, float]], list[int]]:
    """(levels to set, levels to delete) turning what hftbacktest holds into one side of a snapshot.

    A held level is deleted when it lies within the shown range (or anywhere, when the side shows
    fewer than ``full`` levels) and is not shown; beyond the last shown level it is left alone."""
    shown = dict(zip(ticks, qtys, strict=True))
    if not full or not ticks:
        gone = [k for k in held if k not in shown]
    elif bid:
        gone = [k for k in held if k >= ticks[-1] and k not in shown]
    else:
        gone = [k for k in held if k <= ticks[-1] and k not in shown]
    for k in gone:
        del held[k]
    changed = [(k, q) for k, q in shown.items() if held.get(k) != q]
    held.update(changed)
    return changed, gone


def hbt_events(hbt: ModuleType, market: Market, tick: float) -> np.ndarray:
    """hftbacktest's event array: per-level depth changes between consecutive snapshots, and trades.

    Depth rows carry the exchange time and our engine's local delivery time (both flags); trades
    are exchange-only (the quoting rule reads no trades). Trades precede book rows at equal
    exchange time, as in our engine; deletions precede updates within a snapshot, so the book
    never crosses in between."""
    depth, exch, local = int(hbt.DEPTH_EVENT), int(hbt.EXCH_EVENT), int(hbt.LOCAL_EVENT)
    buy, sell = int(hbt.BUY_EVENT), int(hbt.SELL_EVENT)
    rows: list[tuple[int, int, int, float, float]] = []  # ev, exch_ts, local_ts, px, qty
    held: tuple[dict[int, float], dict[int, float]] = ({}, {})
    delivered = delivery(market).tolist()
    for i, (ts, loc) in enumerate(zip(market.books.ts_ex.tolist(), delivered, strict=True)):
        sides = []
        for j, (px, qty, flag) in enumerate(
            (
                (market.books.bid_px[i], market.books.bid_qty[i], buy),
                (market.books.ask_px[i], market.books.ask_qty[i], sell),
            )
        ):
            ok = ~np.isnan(px)
            ticks = np.rint(px[ok] / tick).astype(np.int64).tolist()
            changed, gone = _side_changes(held[j], ticks, qty[ok].tolist(), len(ticks) == LEVELS, j == 0)
            sides.append((flag, changed, gone))
        ev = depth | exch | local
        for flag, _, gone in sides:
            rows.extend((ev | flag, ts, loc, k * tick, 0.0) for k in gone)
        for flag, changed, _ in sides:
            rows.extend((ev | flag, ts, loc, k * tick, q) for k, q in changed)
    book = np.zeros(len(rows), hbt.event_dtype)
    if rows:
        cols = list(zip(*rows, strict=True))
        for name, col in zip(("ev", "exch_ts", "local_ts", "px", "qty"), cols, strict=True):
            book[name] = col
    trades = np.zeros(len(market.trades.ts_ex), hbt.event_dtype)
    trades["ev"] = np.where(market.trades.side > 0, buy, sell) | int(hbt.TRADE_EVENT) | exch
    trades["exch_ts"], trades["local_ts"] = market.trades.ts_ex, market.trades.ts_local
    trades["px"], trades["qty"] = market.trades.price, market.trades.qty
    merged = np.concatenate([trades, book])
    out = merged[np.argsort(merged["exch_ts"], kind="stable")]
    importlib.import_module("hftbacktest.data.validation").validate_event_order(out)
    return out
