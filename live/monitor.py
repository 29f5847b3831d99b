"""Slippage monitor: how our fills fare, rolling over the last N fills (REFERENCE section 4).

- arrival slippage: what a fill cost against the mid at its parent's decision, in bp (positive: paid),
- markouts: the mid 1 s, 10 s, 60 s (``live.markouts``) after the fill against the fill price, in bp
  (positive: the fill was good),
- fill rate: filled / wanted quantity of the parents that ended,
- maker ratio: the share of filled quantity that rested on the book,
- post-only rejects: the share of our post-only requests (new orders, amends) the exchange refused
  because they would have taken liquidity.

The loop raises the ``slippage`` alert (live/alerts.py) when the rolling arrival slippage goes
above ``live.slippage_alert_bps``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figures:
    fills: int
    slippage_bps: float
    markouts_bps: dict[str, float]  # horizon ("1s", "10s", "60s") -> rolling mean markout
    fill_rate: float
    maker_ratio: float
    submitted: int  # post-only requests: new orders and amends
    rejected: int  # refused because they would have taken

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.submitted if self.submitted else math.nan

    def as_dict(self) -> dict[str, float]:
        out = {"slippage_bps": self.slippage_bps, "fill_rate": self.fill_rate, "maker_ratio": self.maker_ratio}
        out |= {f"markout_{h}_bps": v for h, v in self.markouts_bps.items()}
        return out | {"post_only_rejects": float(self.rejected), "reject_rate": self.reject_rate}

    def line(self) -> str:
        def f(x: float, fmt: str) -> str:
            return "n/a" if math.isnan(x) else format(x, fmt)

        marks = "/".join(f(v, "+.2f") for v in self.markouts_bps.values())
        return (
            f"slippage {f(self.slippage_bps, '+.2f')} bp, markout {'/'.join(self.markouts_bps)} {marks} bp, "
            f"fill rate {f(self.fill_rate, '.0%')}, maker {f(self.maker_ratio, '.0%')} over {self.fills} fills, "
            f"{self.rejected} post-only rejects"
        )


def horizon_name(ns: int) -> str:
    """1s, 10s, 60s: the names the backtest report uses too (markout_60s_bps)."""
    return f"{ns / 1e9:g}s"


class SlippageMonitor:
    def __init__(self, window: int, markouts_ns: Sequence[int]) -> None:
        self.markouts_ns = tuple(markouts_ns)
        self.slip: deque[tuple[float, float]] = deque(maxlen=window)  # (bp, qty)
        self.maker: deque[tuple[bool, float]] = deque(maxlen=window)
        # per horizon: resolved markouts (bp, qty) and the fills waiting for theirs (due ts, side, price, qty)
        self.marks: list[deque[tuple[float, float]]] = [deque(maxlen=window) for _ in self.markouts_ns]
        self.waiting: list[deque[tuple[int, int, float, float]]] = [deque() for _ in self.markouts_ns]
        self.parents: deque[tuple[float, float]] = deque(maxlen=window)  # (filled, wanted)
        self.fills = 0
        self.submitted = 0  # post-only requests sent: new orders and amends
        self.rejected = 0  # post-only orders and amends refused (they would have taken), as the gateway counts

    def on_fill(self, ts_ns: int, side: int, price: float, qty: float, maker: bool, decision_mid: float) -> None:
        self.fills += 1
        if decision_mid > 0 and math.isfinite(decision_mid):
            self.slip.append((side * (price - decision_mid) / decision_mid * 1e4, qty))
        self.maker.append((maker, qty))
        for h, waiting in zip(self.markouts_ns, self.waiting, strict=True):
            waiting.append((ts_ns + h, side, price, qty))

    def on_parent_end(self, filled: float, wanted: float) -> None:
        if wanted > 0:
            self.parents.append((filled, wanted))

    def on_mid(self, ts_ns: int, mid: float) -> None:
        """Resolve the markouts that are due (called with the mid as time goes on)."""
        for waiting, marks in zip(self.waiting, self.marks, strict=True):
            while waiting and waiting[0][0] <= ts_ns:
                _, side, price, qty = waiting.popleft()
                if math.isfinite(mid):
                    marks.append((side * (mid - price) / price * 1e4, qty))

    def figures(self) -> Figures:
        def wmean(rows: deque[tuple[float, float]]) -> float:
            q = sum(w for _, w in rows)
            return sum(v * w for v, w in rows) / q if q > 0 else math.nan

        slip = wmean(self.slip)
        maker_q = sum(q for m, q in self.maker if m)
        all_q = sum(q for _, q in self.maker)
        wanted = sum(w for _, w in self.parents)
        return Figures(
            self.fills,
            slip,
            {horizon_name(h): wmean(m) for h, m in zip(self.markouts_ns, self.marks, strict=True)},
            sum(f for f, _ in self.parents) / wanted if wanted > 0 else math.nan,
            maker_q / all_q if all_q > 0 else math.nan,
            self.submitted,
            self.rejected,
        )
