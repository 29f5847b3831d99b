"""Two runs side by side (``python -m flows.backtest --compare A B``) and the project's targets.

The change column is the relative change of b against a, (b - a) / |a|: with |a| in the
denominator a move in the right direction keeps its sign even from a negative baseline (a Sharpe
going from -1.0 to -0.5 is +50 %). It is blank when a is 0 or either value is missing or NaN.

The user's targets, b (the candidate) against a (the baseline), each MET, NOT MET or not
decidable, always with the sample sizes and 95 % intervals behind it:
- slippage down >= 50 %: the per-parent implementation shortfall in bps (fees included: on a
  one-tick market the fee is the cost a passive strategy saves; ``parents.csv``), met when the
  mean b <= a - 0.5 * |a| (from +5 bps the candidate needs <= +2.5 bps, from a gain of -1 bps
  <= -1.5 bps). The difference of the means has Welch's interval (independent parents).
- Sharpe up >= 30 %: the Sharpe of the 1-minute returns the two runs share (``returns.csv``),
  met when b >= a + 0.3 * |a|, which also reads right for a negative baseline (from -1.0 the
  candidate needs >= -0.7). Both strategies ran on the same signals and minutes, so the
  difference is tested on the paired returns (a moving-block bootstrap, execution/stats.py).
- profitable: b's net PnL (close-out included) above 0, its interval from a moving-block
  bootstrap of b's 1-minute PnL.
A claim needs evidence: at least 30 parent orders in each run (30 in b for "profitable") and an
interval that excludes 0 (for the difference, or for b's PnL); otherwise the target is "not
decidable" and the line says why. A significant difference whose point estimate misses the
target, or goes the wrong way, is NOT MET.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from execution.stats import (
    MIN_EVIDENCE,
    block_bootstrap_sum,
    mean_interval,
    paired_sharpe_difference,
    sharpe_inference,
    welch_difference,
)

SLIPPAGE_CUT = 0.5  # slippage down >= 50 %
SHARPE_GAIN = 0.3  # Sharpe up >= 30 %
MINUTES_PER_YEAR = 525_600
MET, NOT_MET, UNDECIDED = "MET", "NOT MET", "not decidable"

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


def compare(a: Numbers, b: Numbers, names: tuple[str, str], keys: Sequence[str] | None = None) -> str:
    """A text table of two metrics dicts: metric, value in a, value in b, relative change b vs a
    (every metric, or ``keys`` in their order)."""
    keys = list(keys) if keys is not None else list(a) + [k for k in b if k not in a]
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
class Samples:
    """What a report holds beyond its metrics: per-parent shortfalls and the 1-minute returns."""

    shortfall_bps: np.ndarray  # one per parent order
    return_ts: np.ndarray  # the 1-minute marks the returns end at (ns)
    returns: np.ndarray  # (E_k - E_{k-1}) / E_0
    equity_start: float


@dataclass(frozen=True)
class TargetVerdict:
    """Each target's status (MET, NOT MET, not decidable) and the lines that say why."""

    slippage: str
    sharpe: str
    profitable: str
    text: str

    @property
    def slippage_met(self) -> bool:
        return self.slippage == MET

    @property
    def sharpe_met(self) -> bool:
        return self.sharpe == MET

    @property
    def met(self) -> bool:
        return self.slippage == self.sharpe == self.profitable == MET


def _f(v: float, spec: str = "+.3g") -> str:
    return format(v, spec) if math.isfinite(v) else "n/a"


def _interval(lo: float, hi: float, spec: str = "+.3g") -> str:
    return f"[{_f(lo, spec)}, {_f(hi, spec)}]"


def _decide(n: tuple[int, int], lo: float, hi: float, meets: bool) -> tuple[str, str]:
    """(status, why) for a difference with 95 % interval [lo, hi] and whether its estimate meets the target."""
    if min(n) < MIN_EVIDENCE:
        return UNDECIDED, f"not enough evidence: {n[0]} and {n[1]} parent orders, {MIN_EVIDENCE} each needed"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return UNDECIDED, "not enough evidence: no interval"
    if lo <= 0.0 <= hi:
        return UNDECIDED, "not enough evidence: the difference's 95 % interval includes 0"
    return (MET, "significant") if meets else (NOT_MET, "significant, but short of the target or the wrong way")


def _slippage(a: Samples, b: Samples, names: tuple[str, str]) -> tuple[str, str]:
    ma, la, ha, na = mean_interval(a.shortfall_bps)
    mb, lb, hb, nb = mean_interval(b.shortfall_bps)
    d, lo, hi = welch_difference(a.shortfall_bps, b.shortfall_bps)
    meets = math.isfinite(ma) and math.isfinite(mb) and mb <= ma - SLIPPAGE_CUT * abs(ma) and mb < ma
    status, why = _decide((na, nb), lo, hi, meets)
    change = relative_change(ma, mb)
    return status, (
        f"slippage (implementation shortfall per parent order, fees included, bps; target down >= 50 %): "
        f"{names[0]} {_f(ma)} {_interval(la, ha)} n={na} -> {names[1]} {_f(mb)} {_interval(lb, hb)} n={nb}; "
        f"difference {_f(d)} {_interval(lo, hi)} ({_f(change * 100, '+.1f')} %): {status} ({why})"
    )


def _aligned(a: Samples, b: Samples) -> tuple[np.ndarray, np.ndarray]:
    _, ia, ib = np.intersect1d(a.return_ts, b.return_ts, assume_unique=True, return_indices=True)
    return a.returns[ia], b.returns[ib]


def _sharpe(a: Samples, b: Samples, n: tuple[int, int], names: tuple[str, str]) -> tuple[str, str]:
    ra, rb = _aligned(a, b)
    k = math.sqrt(MINUTES_PER_YEAR)
    sa, sb = sharpe_inference(ra), sharpe_inference(rb)
    d, lo, hi = paired_sharpe_difference(ra, rb)
    ha, hb = sa.sharpe * k, sb.sharpe * k
    meets = math.isfinite(ha) and math.isfinite(hb) and hb >= ha + SHARPE_GAIN * abs(ha) and hb > ha
    status, why = _decide(n, lo, hi, meets)
    if len(ra) < max(len(a.returns), len(b.returns)) // 2:
        status, why = UNDECIDED, "the runs share too few minutes to be compared"
    change = relative_change(ha, hb)
    return status, (
        f"Sharpe (annualized, on the {len(ra)} minutes both runs share; target up >= 30 %, b >= a + 0.3|a|): "
        f"{names[0]} {_f(ha)} (se {_f(sa.se * k, '.3g')}) -> {names[1]} {_f(hb)} (se {_f(sb.se * k, '.3g')}); "
        f"difference {_f(d * k)} {_interval(lo * k, hi * k)} ({_f(change * 100, '+.1f')} %, paired block bootstrap): "
        f"{status} ({why})"
    )


def _profitable(b: Samples, n_b: int, name: str) -> tuple[str, str]:
    pnl, lo, hi = block_bootstrap_sum(b.returns * b.equity_start)
    if n_b < MIN_EVIDENCE:
        status, why = UNDECIDED, f"not enough evidence: {n_b} parent orders, {MIN_EVIDENCE} needed"
    elif not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0.0 <= hi:
        status, why = UNDECIDED, "not enough evidence: the PnL's 95 % interval includes 0"
    else:
        status, why = (MET, "significant") if lo > 0 else (NOT_MET, "a significant loss")
    return status, (
        f"profitable ({name}'s net PnL after fees, funding and the close-out, USDT; {len(b.returns)} minutes): "
        f"{_f(pnl, '+,.2f')} {_interval(lo, hi, '+,.2f')}: {status} ({why})"
    )


def check_targets(
    a: Numbers,
    b: Numbers,
    names: tuple[str, str] = ("baseline", "candidate"),
    samples: tuple[Samples, Samples] | None = None,
) -> TargetVerdict:
    """Slippage down >= 50 %, Sharpe up >= 30 % and profitable, b against a (rules in the module
    docstring); ``samples``: the two runs' per-parent shortfalls and 1-minute returns."""
    if samples is None:
        why = "not decidable (the reports hold no parents.csv / returns.csv: rerun the backtests)"
        lines = [f"{t}: {why}" for t in ("slippage", "Sharpe", "profitable")]
        lines.append("targets: none decidable")
        return TargetVerdict(UNDECIDED, UNDECIDED, UNDECIDED, "\n".join(lines))
    sa, sb = samples
    n = (int(np.isfinite(sa.shortfall_bps).sum()), int(np.isfinite(sb.shortfall_bps).sum()))
    slip, slip_line = _slippage(sa, sb, names)
    sharpe, sharpe_line = _sharpe(sa, sb, n, names)
    profit, profit_line = _profitable(sb, n[1], names[1])
    statuses = {"slippage": slip, "Sharpe": sharpe, "profitable": profit}
    summary = ", ".join(f"{k} {v}" for k, v in statuses.items())
    return TargetVerdict(slip, sharpe, profit, "\n".join([slip_line, sharpe_line, profit_line, f"targets: {summary}"]))
