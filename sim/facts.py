"""Stylized facts of an L2 stream, computed the same way for real recordings and the simulator.

The stream goes through the project's own normalizer (the path every source takes), then:

- the book is sampled as of a 100 ms grid by exchange time (Binance pushes every diff, Bybit
  every 20 ms: a common grid makes them comparable);
- spread in ticks, best-level sizes (BTC), trade sizes (BTC) and trades per second;
- volatility per second: standard deviation of 1 s log mid returns, in basis points;
- imbalance -> next mid move: for each grid point with best-level imbalance
  I = (qb1 - qa1) / (qb1 + qa1), the direction of the next mid change after it. Reported as
  P(up | I bucket) over five buckets and as the hit rate of sign(I) for |I| > 0.5;
- trade-sign autocorrelation: prints with the same exchange time and side are one market order;
  the autocorrelation of the order signs (+1 buy, -1 sell) at lags 1, 10 and 100 orders
  (long memory from split metaorders: Lillo, Mike & Farmer 2005; Bouchaud, Farmer & Lillo 2009);
- variance ratio: E[r_60s^2] / (60 E[r_1s^2]) over overlapping 60 s log mid returns on the 1 s
  grid (Lo & MacKinlay 1988; uncentred, the drift is negligible at these horizons). 1 for a
  martingale, above 1 when returns trend, below 1 when they revert;
- flow -> return: Spearman correlation, on the 1 s grid, of the taker-flow imbalance over the
  last 30 s ((buy - sell size) / total) with the next 30 s log mid return. Not a calibration
  target: minutes of real data hold about twenty independent 30 s windows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from core.records import Books, Trades
from market.events import RawInput
from market.normalize import Normalizer
from market.venues.base import Venue

GRID_NS = 100_000_000
SIGN_LAGS = (1, 10, 100)
VR_HORIZON_S = 60
FLOW_WINDOW_S = 30
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
    trades: Trades
    tick: float


def collect(batches: Iterable[RawInput], venue: Venue, symbol: str, tick: float) -> Stream:
    """Normalize the batches and keep the best level of every update plus the trades."""
    norm = Normalizer(venue, symbol, tick, _LEVELS, store_raw=False)
    tops: list[Books] = [Books.empty(1)]
    prints: list[Trades] = [Trades.empty()]
    for batch in batches:
        out = norm.process(batch)
        tops.append(out.books.top(1))
        prints.append(out.trades)
    books, trades = Books.concat(tops), Trades.concat(prints)
    if not len(books):
        raise ValueError("the stream holds no valid book updates")
    order = np.argsort(books.ts_ex, kind="stable")
    t = books.ts_ex[order]
    grid = np.arange((t[0] // GRID_NS + 1) * GRID_NS, t[-1] + 1, GRID_NS, dtype=np.int64)
    at = order[np.searchsorted(t, grid, side="right") - 1]
    best = (books.bid_px[at, 0], books.ask_px[at, 0], books.bid_qty[at, 0], books.ask_qty[at, 0])
    return Stream(grid, *best, trades, tick)


def order_signs(s: Stream) -> np.ndarray:
    """The sign of each market order: consecutive prints with the same time and side are one."""
    if s.trades.side.size == 0:
        return np.empty(0)
    new = np.ones(s.trades.side.size, bool)
    new[1:] = (np.diff(s.trades.ts_ex) != 0) | (np.diff(s.trades.side) != 0)
    return s.trades.side[new].astype(float)


def sign_autocorrelation(signs: np.ndarray, lag: int) -> float:
    """Sample autocorrelation of a sign series at ``lag`` (NaN when too short)."""
    if signs.size <= lag + 1:
        return float("nan")
    x = signs - signs.mean()
    var = float(np.mean(x * x))
    return float(np.mean(x[:-lag] * x[lag:]) / var) if var > 0 else float("nan")


def variance_ratio(s: Stream, horizon_s: int = VR_HORIZON_S) -> float:
    """E[r_h^2] / (h E[r_1^2]) over overlapping h-second log mid returns on the 1 s grid."""
    log_mid = np.log((s.bid + s.ask) / 2)[:: 1_000_000_000 // GRID_NS]
    if log_mid.size <= horizon_s + 1:
        return float("nan")
    r1 = np.diff(log_mid)
    rh = log_mid[horizon_s:] - log_mid[:-horizon_s]
    denom = horizon_s * float(np.mean(r1 * r1))
    return float(np.mean(rh * rh)) / denom if denom > 0 else float("nan")


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


def flow_return_ic(s: Stream, window_s: int = FLOW_WINDOW_S, horizon_s: int = FLOW_WINDOW_S) -> float:
    """Spearman IC of the trailing taker-flow imbalance with the forward log mid return (1 s grid)."""
    step = 1_000_000_000 // GRID_NS
    t = s.grid_ns[::step]
    log_mid = np.log((s.bid + s.ask) / 2)[::step]
    if t.size <= window_s + horizon_s + 2:
        return float("nan")
    signed = np.concatenate([[0.0], np.cumsum(s.trades.side * s.trades.qty)])
    volume = np.concatenate([[0.0], np.cumsum(s.trades.qty)])
    hi = np.searchsorted(s.trades.ts_ex, t, side="right")
    lo = np.searchsorted(s.trades.ts_ex, t - window_s * 1_000_000_000, side="right")
    vol = volume[hi] - volume[lo]
    tfi = np.divide(signed[hi] - signed[lo], vol, out=np.zeros(t.size), where=vol > 0)
    x = tfi[window_s:-horizon_s]
    y = (log_mid[horizon_s:] - log_mid[:-horizon_s])[window_s:]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy.stats import rankdata  # here: scipy.stats costs every simulating process a second to import

    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


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
    q = s.trades.qty if s.trades.qty.size else np.array([np.nan])
    signs = order_signs(s)
    acf = [
        Fact(f"sign_acf_{lag}", sign_autocorrelation(signs, lag), "corr", f"autocorrelation of order signs, lag {lag}")
        for lag in SIGN_LAGS
    ]
    return [
        Fact("spread_ticks_mean", float(spread_ticks.mean()), "ticks", "mean spread on the 100 ms grid"),
        Fact("spread_one_tick_share", float((spread_ticks <= 1).mean()), "share", "time at a one-tick spread"),
        Fact("best_qty_median", float(np.median(best)), "BTC", "median best bid / ask size"),
        Fact("best_qty_mean", float(best.mean()), "BTC", "mean best bid / ask size"),
        Fact("trade_qty_median", float(np.median(q)), "BTC", "median trade size"),
        Fact("trade_qty_mean", float(np.mean(q)), "BTC", "mean trade size"),
        Fact("trade_qty_p99", float(np.quantile(q, 0.99)), "BTC", "99th percentile trade size"),
        Fact("trades_per_s", s.trades.qty.size / max(seconds, 1e-9), "1/s", "trade prints per second"),
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
        *acf,
        Fact(
            "variance_ratio_60s",
            variance_ratio(s),
            "ratio",
            f"E[r_{VR_HORIZON_S}s^2] / ({VR_HORIZON_S} E[r_1s^2]), log mid returns",
        ),
        Fact(
            f"flow_ic_{FLOW_WINDOW_S}s",
            flow_return_ic(s),
            "IC",
            f"Spearman IC: {FLOW_WINDOW_S} s taker-flow imbalance -> next {FLOW_WINDOW_S} s mid return",
        ),
    ]
