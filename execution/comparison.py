"""Two runs side by side (``python -m flows.backtest --compare A B``) and the project's targets.

The change column is the relative change of b against a, (b - a) / |a|: with |a| in the
denominator a move in the right direction keeps its sign even from a negative baseline (a Sharpe
going from -1.0 to -0.5 is +50 %). It is blank when a is 0 or either value is missing or NaN.

Targets, b (the candidate) against a (the baseline):
- slippage down >= 50 %: mean arrival slippage in bps (``arrival_slippage_mean_bps``; negative is
  a gain), met when b <= a - 0.5 * |a|: from +2 bps the candidate needs <= +1 bps, from a gain
  of -1 bps it needs <= -1.5 bps.
- Sharpe up >= 30 %: met when b >= a + 0.3 * |a|, which also reads right for a negative baseline
  (from -1.0 the candidate needs >= -0.7).
Both also need b strictly better than a (a zero baseline would otherwise pass unchanged) and both
values finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

SLIPPAGE_KEY = "arrival_slippage_mean_bps"
SHARPE_KEY = "sharpe"
SLIPPAGE_CUT = 0.5  # slippage down >= 50 %
SHARPE_GAIN = 0.3  # Sharpe up >= 30 %

Numbers = Mapping[str, float | int]


def _fmt(v: float | int | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool | int):
        return str(int(v))
    return f"{v:.6g}"


def relative_change(a: float | int | None, b: float | int | None) -> float:
    """(b - a) / |a|; NaN when a is 0 or either value is missing or not finite."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return float("nan")
    return (b - a) / abs(a)


def compare(a: Numbers, b: Numbers, names: tuple[str, str]) -> str:
    """A text table of two metrics dicts: metric, value in a, value in b, relative change b vs a."""
    keys = list(a) + [k for k in b if k not in a]
    rows = [("metric", names[0], names[1], "change")]
    for k in keys:
        va, vb = a.get(k), b.get(k)
        change = relative_change(va, vb)
        rows.append((k, _fmt(va), _fmt(vb), f"{change:+.1%}" if math.isfinite(change) else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]).rstrip()
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


@dataclass(frozen=True)
class TargetVerdict:
    """Whether b meets the targets against a, and a plain-language account of it."""

    slippage_met: bool
    sharpe_met: bool
    text: str

    @property
    def met(self) -> bool:
        return self.slippage_met and self.sharpe_met


def _value(m: Numbers, key: str) -> float:
    v = m.get(key)
    return float(v) if v is not None else float("nan")


def check_targets(a: Numbers, b: Numbers, names: tuple[str, str] = ("baseline", "candidate")) -> TargetVerdict:
    """Slippage down >= 50 % and Sharpe up >= 30 %, b against a (rules in the module docstring)."""
    sa, sb = _value(a, SLIPPAGE_KEY), _value(b, SLIPPAGE_KEY)
    ha, hb = _value(a, SHARPE_KEY), _value(b, SHARPE_KEY)
    finite = all(math.isfinite(v) for v in (sa, sb))
    slippage_met = finite and sb <= sa - SLIPPAGE_CUT * abs(sa) and sb < sa
    finite = all(math.isfinite(v) for v in (ha, hb))
    sharpe_met = finite and hb >= ha + SHARPE_GAIN * abs(ha) and hb > ha

    def line(label: str, va: float, vb: float, goal: str, ok: bool) -> str:
        change = relative_change(va, vb)
        shown = f"{change:+.1%}" if math.isfinite(change) else "n/a"
        return f"{label}: {names[0]} {va:.4g} -> {names[1]} {vb:.4g} ({shown}; target {goal}): " + (
            "MET" if ok else "NOT MET"
        )

    lines = [
        line("mean arrival slippage (bps, negative = gain)", sa, sb, "down >= 50 %", slippage_met),
        line("Sharpe (annualized)", ha, hb, "up >= 30 %, b >= a + 0.3*|a|", sharpe_met),
    ]
    missed = [n for n, ok in (("slippage", slippage_met), ("Sharpe", sharpe_met)) if not ok]
    lines.append("targets: all met" if not missed else f"targets: not met ({', '.join(missed)})")
    return TargetVerdict(slippage_met, sharpe_met, "\n".join(lines))
