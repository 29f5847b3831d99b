"""Slippage monitor: how our fills fare, rolling over the last N fills (REFERENCE section 4).

- arrival slippage: what a fill cost against the mid at its parent's decision, in bp (positive: paid),
- markout: the mid ``markout`` after the fill against the fill price, in bp (positive: the fill was good),
- fill rate: filled / wanted quantity of the parents that ended,
- maker ratio: the share of filled quantity that rested on the book.

``alert`` is set (and logged once per crossing) when the rolling arrival slippage goes above the
configured threshold; it clears when it falls back under.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Figures:
    fills: int
    slippage_bps: float
    markout_bps: float
    fill_rate: float
    maker_ratio: float
    alert: bool

    def line(self) -> str:
        def f(x: float, fmt: str) -> str:
            return "n/a" if math.isnan(x) else format(x, fmt)

        return (
            f"slippage {f(self.slippage_bps, '+.2f')} bp, markout {f(self.markout_bps, '+.2f')} bp, "
            f"fill rate {f(self.fill_rate, '.0%')}, maker {f(self.maker_ratio, '.0%')} over {self.fills} fills"
        )


class SlippageMonitor:
    def __init__(self, window: int, alert_bps: float, markout_ns: int) -> None:
        self.alert_bps, self.markout_ns = alert_bps, markout_ns
        self.slip: deque[tuple[float, float]] = deque(maxlen=window)  # (bp, qty)
        self.maker: deque[tuple[bool, float]] = deque(maxlen=window)
        self.marks: deque[tuple[float, float]] = deque(maxlen=window)  # resolved markouts (bp, qty)
        self.waiting: deque[tuple[int, int, float, float]] = deque()  # (due ts, side, price, qty)
        self.parents: deque[tuple[float, float]] = deque(maxlen=window)  # (filled, wanted)
        self.fills = 0
        self.alert = False

    def on_fill(self, ts_ns: int, side: int, price: float, qty: float, maker: bool, decision_mid: float) -> None:
        self.fills += 1
        if decision_mid > 0 and math.isfinite(decision_mid):
            self.slip.append((side * (price - decision_mid) / decision_mid * 1e4, qty))
        self.maker.append((maker, qty))
        self.waiting.append((ts_ns + self.markout_ns, side, price, qty))

    def on_parent_end(self, filled: float, wanted: float) -> None:
        if wanted > 0:
            self.parents.append((filled, wanted))

    def on_mid(self, ts_ns: int, mid: float) -> None:
        """Resolve the markouts that are due (called with the mid as time goes on)."""
        while self.waiting and self.waiting[0][0] <= ts_ns:
            _, side, price, qty = self.waiting.popleft()
            if math.isfinite(mid):
                self.marks.append((side * (mid - price) / price * 1e4, qty))

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
            wmean(self.marks),
            sum(f for f, _ in self.parents) / wanted if wanted > 0 else math.nan,
            maker_q / all_q if all_q > 0 else math.nan,
            self.alert,
        )

    def check(self) -> str | None:
        """An alert line when the rolling slippage crosses the threshold (once per crossing)."""
        fig = self.figures()
        over = not math.isnan(fig.slippage_bps) and fig.slippage_bps > self.alert_bps
        if over and not self.alert:
            self.alert = True
            over_by = f"{fig.slippage_bps:+.2f} bp > {self.alert_bps} bp"
            return f"ALERT slippage: rolling arrival slippage {over_by} ({fig.line()})"
        if not over and self.alert:
            self.alert = False
            log.info("slippage back under %.2f bp: %s", self.alert_bps, fig.line())
        return None
