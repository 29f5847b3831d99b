"""Stylized facts of an L2 stream, computed the same way for real recordings and the simulator.

The stream goes through the project's own normalizer (the path every source takes), then:

- the book is sampled as of a 100 ms grid by exchange time (Binance pushes every diff, Bybit
  every 20 ms: a common grid makes them comparable);
- spread in ticks, best-level sizes (BTC), trade sizes (BTC) and trades per second;
- volatility per second: standard deviation of 1 s log mid returns, in basis points;
- imbalance -> next mid move: for each grid point with best-level imbalance
  I = (qb1 - qa1) / (qb1 + qa1), the direction of the next mid change after it. Reported as
  P(up | I bucket) over five buckets and as the hit rate of sign(I) for |I| > 0.5.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from market.events import RawInput, fixed_to_numpy
from market.normalize import Normalizer
from market.venues.base import Venue

GRID_NS = 100_000_000
IMBALANCE_EDGES = (-1.0, -0.6, -0.2, 0.2, 0.6, 1.0)
_LEVELS = 5


@dataclass(frozen=True)
class Fact:
    name: str
    value: float
    unit: str
    doc: str


@dataclass
class Stream:
    """What the facts are computed from: the as-of book on a grid and the trades."""

    grid_ns: np.ndarray
    bid: np.ndarray  # best bid price at each grid point
    ask: np.ndarray
    bid_qty: np.ndarray  # best-level sizes
    ask_qty: np.ndarray
    trade_ts_ns: np.ndarray
    trade_qty: np.ndarray
    tick: float


def collect(batches: Iterable[RawInput], venue: Venue, symbol: str, tick: float) -> Stream:
    """Normalize the batches and keep the best level of every update plus the trades."""
    norm = Normalizer(venue, symbol, tick, _LEVELS, store_raw=False)
    ts: list[np.ndarray] = []
    top: list[np.ndarray] = []
    trade_ts: list[np.ndarray] = []
    trade_qty: list[np.ndarray] = []
    for batch in batches:
        out = norm.process(batch)
        snaps = out.tables[norm.snapshot_spec.name]
        if snaps.num_rows:
            ts.append(snaps.column("ts_exchange_ns").to_numpy())
            cols = [fixed_to_numpy(snaps.column(c), _LEVELS)[:, 0] for c in ("bid_px", "ask_px", "bid_qty", "ask_qty")]
            top.append(np.column_stack(cols))
        trades = out.tables["trades"]
        if trades.num_rows:
            trade_ts.append(trades.column("ts_exchange_ns").to_numpy())
            trade_qty.append(trades.column("qty").to_numpy())
    if not ts:
        raise ValueError("the stream holds no valid book updates")
    t = np.concatenate(ts)
    book = np.concatenate(top)
    order = np.argsort(t, kind="stable")
    t, book = t[order], book[order]
    grid = np.arange((t[0] // GRID_NS + 1) * GRID_NS, t[-1] + 1, GRID_NS, dtype=np.int64)
    at = np.searchsorted(t, grid, side="right") - 1
    tt = np.concatenate(trade_ts) if trade_ts else np.empty(0, np.int64)
    tq = np.concatenate(trade_qty) if trade_qty else np.empty(0)
    return Stream(grid, book[at, 0], book[at, 1], book[at, 2], book[at, 3], tt, tq, tick)


def imbalance_curve(s: Stream) -> tuple[np.ndarray, np.ndarray]:
    """P(next mid move is up) per imbalance bucket, and the number of grid points in each."""
    imb, nxt = _imbalance_and_next_move(s)
    p_up = np.full(len(IMBALANCE_EDGES) - 1, np.nan)
    n = np.zeros(len(IMBALANCE_EDGES) - 1, np.int64)
    bucket = np.clip(np.searchsorted(IMBALANCE_EDGES, imb, side="right") - 1, 0, len(IMBALANCE_EDGES) - 2)
    for k in range(len(p_up)):
        sel = bucket == k
        n[k] = int(sel.sum())
        if n[k]:
            p_up[k] = float((nxt[sel] > 0).mean())
    return p_up, n


def _imbalance_and_next_move(s: Stream) -> tuple[np.ndarray, np.ndarray]:
    mid = (s.bid + s.ask) / 2
    imb = (s.bid_qty - s.ask_qty) / (s.bid_qty + s.ask_qty)
    change = np.flatnonzero(np.diff(mid) != 0)  # grid index i: mid[i + 1] != mid[i]
    nxt_idx = np.searchsorted(change, np.arange(len(mid)), side="left")
    ok = nxt_idx < len(change)
    j = change[nxt_idx[ok]]
    move = np.sign(mid[j + 1] - mid[j])
    return imb[ok], move


def compute(s: Stream) -> list[Fact]:
    spread_ticks = np.rint((s.ask - s.bid) / s.tick)
    mid = (s.bid + s.ask) / 2
    per_s = mid[:: 1_000_000_000 // GRID_NS]
    ret_bps = np.diff(np.log(per_s)) * 1e4
    seconds = (s.grid_ns[-1] - s.grid_ns[0]) / 1e9
    best = np.concatenate([s.bid_qty, s.ask_qty])
    imb, nxt = _imbalance_and_next_move(s)
    strong = np.abs(imb) > 0.5
    hit = float((np.sign(imb[strong]) == nxt[strong]).mean()) if strong.any() else float("nan")
    p_up, _ = imbalance_curve(s)
    q = s.trade_qty if s.trade_qty.size else np.array([np.nan])
    return [
        Fact("spread_ticks_mean", float(spread_ticks.mean()), "ticks", "mean spread on the 100 ms grid"),
        Fact("spread_one_tick_share", float((spread_ticks <= 1).mean()), "share", "time at a one-tick spread"),
        Fact("best_qty_median", float(np.median(best)), "BTC", "median best bid / ask size"),
        Fact("best_qty_mean", float(best.mean()), "BTC", "mean best bid / ask size"),
        Fact("trade_qty_median", float(np.median(q)), "BTC", "median trade size"),
        Fact("trade_qty_mean", float(np.mean(q)), "BTC", "mean trade size"),
        Fact("trade_qty_p99", float(np.quantile(q, 0.99)), "BTC", "99th percentile trade size"),
        Fact("trades_per_s", s.trade_qty.size / max(seconds, 1e-9), "1/s", "trade prints per second"),
        Fact("vol_1s_bps", float(ret_bps.std()), "bps", "std of 1 s log mid returns"),
        Fact(
            "mid_changes_per_s",
            float((np.diff(mid) != 0).sum() / max(seconds, 1e-9)),
            "1/s",
            "grid steps where the mid moved, per second",
        ),
        Fact("imbalance_hit_rate", hit, "share", "P(next mid move has the sign of I), |I| > 0.5"),
        Fact("p_up_imbalance_low", float(p_up[0]), "share", "P(next move up | I < -0.6)"),
        Fact("p_up_imbalance_high", float(p_up[-1]), "share", "P(next move up | I > 0.6)"),
    ]
