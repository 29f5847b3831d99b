"""The operating threshold at the strategy's real cost, confirmed on data it was not chosen on.

Training (pipelines/training.py) cuts its calibration block by time into a *choice* part and a later
*confirmation* part, an embargo of one label horizon between them (neighbouring rows share their
forward windows). On the choice part:

1. the strategy the runner trades (``promotion.backtest_strategy``) runs through the matching
   engine once at a permissive threshold (each skilled direction's ``PERMISSIVE`` quantile: the
   cost is not the edge, it needs many round trips, not good ones), each position held for the
   label horizon (``StrategyParams.fixed_hold``: a renewed signal neither extends it nor adds to
   it, so a round trip spans what its label spans), and its round-trip cost is measured
   (``measure_cost``, log return per round trip): the labels' mean signed return at its entry
   decisions minus its mean net return per filled round trip. That is the fees it really pays
   (maker entry, maker or taker exit), the price given up against the mid at the decisions on
   entry and exit, and adverse selection (the move against a passive order before it fills, and
   which entries fill at all);
2. ``models.metrics.choose_threshold`` picks the threshold that maximises the labels' net profit at
   that cost (never below the fees alone), counted in the bets the strategy makes: one per label
   horizon at most, whose forward windows do not overlap.

The chosen threshold is then confirmed by one engine run on the confirmation part
(``confirm_run``): the mean net return per entry order (an order that never filled earns 0) must be
above zero by ``training.threshold_z`` standard errors, from at least ``training.min_orders`` orders; else it gets
``NEVER``. Choosing on one block and testing once on a later, disjoint one is what keeps the best
of many candidate thresholds from passing on luck (REFERENCE section 7); the two directions are two
such tests, left uncorrected. Without an engine (``execution=None``: unit tests, synthetic data)
the confirmation uses the labels at the given cost (``confirm_labels``).

Outcomes are per *episode*: from the fill that takes the position off flat until it is flat again
(a flip closes one and opens the next), net of fees, marked at the last mid when the run ends
open, in units of the entry notional. Funding is left out (a few seconds' hold pays ~1e-6).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from execution.quality import RunRecord
from models.metrics import NEVER, bets, mean_se
from models.result import Confirmation, Cost, Evidence

PERMISSIVE = 0.5  # the cost run signals above this quantile of each direction's probability


class Execution(Protocol):
    """The strategy the runner trades, run through the matching engine over training rows."""

    strategy: str

    def __call__(self, rows: np.ndarray, p_up: np.ndarray, p_down: np.ndarray, direction: np.ndarray) -> RunRecord:
        """Replay the market over ``rows`` (indices into the training arrays, in time order) acting
        on the given probabilities and signals (+1 / -1 / 0 per row)."""
        ...


def episodes(run: RunRecord) -> np.ndarray:
    """Per entry parent order: (tag, side, ts_decision, filled, ret) with ret the net return of the
    episode it opened (0 for an entry that never filled, or that only added to an open position)."""
    p = run.parents
    entry = np.isfinite(p["confidence"])  # exits carry no model confidence
    out = np.zeros(
        int(entry.sum()),
        [("tag", np.int64), ("side", np.int8), ("ts_decision", np.int64), ("filled", np.bool_), ("ret", np.float64)],
    )
    out["tag"], out["side"], out["ts_decision"] = p["tag"][entry], p["side"][entry], p["ts_decision"][entry]
    row_of = {int(t): i for i, t in enumerate(out["tag"])}
    f = np.sort(run.fills, order=["ts_ex", "order_id"], kind="stable")
    pos = cash = fees = peak = 0.0
    owner = -1  # the row of the entry that opened the current episode
    last_mid = float(run.mid[-1]) if run.mid.size else float("nan")

    def close(mark: float) -> None:
        nonlocal cash, fees, peak, owner
        if owner >= 0 and peak > 0:
            out["ret"][owner] = (cash + pos * mark - fees) / peak
            out["filled"][owner] = True
        cash = fees = peak = 0.0
        owner = -1

    for fill in f:
        side, price, qty, fee = int(fill["side"]), float(fill["price"]), float(fill["qty"]), float(fill["fee"])
        remaining = qty
        if pos != 0.0 and np.sign(pos) != side and qty >= abs(pos) - 1e-12:  # closes (and maybe flips)
            part = abs(pos)
            cash += -side * price * part
            fees += fee * part / qty
            pos = 0.0
            close(price)
            remaining = qty - part
            if remaining < 1e-12:
                continue
        if pos == 0.0:
            owner = row_of.get(int(fill["tag"]), -1)
        cash += -side * price * remaining
        fees += fee * remaining / qty
        pos += side * remaining
        peak = max(peak, abs(pos) * price)
    if pos != 0.0 and np.isfinite(last_mid):
        close(last_mid)
    return out


def rows_of(ts_rows: np.ndarray, ts_decision: np.ndarray) -> np.ndarray:
    """The grid row each decision acted on: the latest grid time at or before it (-1: before all)."""
    return np.searchsorted(ts_rows, ts_decision, side="right") - 1


def measure_cost(run: RunRecord, ts_rows: np.ndarray, signed: dict[int, np.ndarray], need: Evidence) -> Cost:
    """The strategy's round-trip cost in a run at a permissive threshold.

    ``signed[side]`` is the labels' forward log return signed for that side (+1 up, -1 down) on the
    rows ``ts_rows``. cost = mean over entries of the label's return at the decision - mean net
    return per filled round trip: charged on every bet in the threshold search, it makes the
    search's expected profit at this threshold equal to what a filled round trip really earned.
    The run must hold each position for the label horizon (``StrategyParams.fixed_hold``), else
    the two returns span different times (a hold extended past the horizon earns more than its
    label and the "cost" turns negative). ``se``: of the filled round trips' label minus realized.
    """
    e = episodes(run)
    row = rows_of(ts_rows, e["ts_decision"])
    ok = row >= 0
    e, row = e[ok], row[ok]
    label = np.array([signed[int(s)][r] for s, r in zip(e["side"], row, strict=True)], np.float64)
    filled = e["filled"]
    if not filled.any():
        lab = float(label.mean()) if label.size else float("nan")
        return Cost(float("nan"), len(e), 0, lab, float("nan"), float("nan"), need.min_orders)
    realized = float(e["ret"][filled].mean())
    lab = float(label.mean())
    se = mean_se(label[filled] - e["ret"][filled], 0)
    return Cost(lab - realized, len(e), int(filled.sum()), lab, realized, se, need.min_orders)


def confirm_run(run: RunRecord, side: int, need: Evidence) -> Confirmation:
    """Does acting on the signals of one side make money per entry order in this run?

    Every entry order counts, an unfilled one as 0. The round trips follow each other in time (one
    position at a time, held for the label horizon), so their returns are taken as uncorrelated:
    the iid standard error."""
    e = episodes(run)
    r = e["ret"][e["side"] == side]
    n = int(r.size)
    if n < need.min_orders:
        ev = float(r.mean()) if n else float("nan")
        return Confirmation(False, n, ev, float("nan"), f"{n} orders: not enough evidence")
    ev, se = float(r.mean()), mean_se(r, 0)
    ok = ev - need.z * se > 0.0
    why = f"{ev * 1e4:+.2f} bps per order (se {se * 1e4:.2f}, n {n})"
    return Confirmation(ok, n, ev, se, why if ok else f"{why}: not above zero by {need.z:g} se")


def confirm_labels(
    p: np.ndarray, signed_ret: np.ndarray, threshold: float, cost: float, lag: int, need: Evidence
) -> Confirmation:
    """The labels' version of ``confirm_run``: net return per bet on the rows above ``threshold``
    (``models.metrics.bets``: one position at a time, held ``lag`` rows), demeaned by the block's
    drift, the iid standard error over the bets (their windows do not overlap), at least
    ``need.min_orders`` bets."""
    if threshold >= NEVER:
        return Confirmation(False, 0, float("nan"), float("nan"), "no threshold")
    hit = p > threshold
    rows = bets(hit, lag)
    n = int(rows.size)
    if n < need.min_orders:
        return Confirmation(False, n, float("nan"), float("nan"), f"{n} orders: not enough evidence")
    net = signed_ret[rows] - float(signed_ret.mean()) - cost
    ev, se = float(net.mean()), mean_se(net, 0)
    ok = ev - need.z * se > 0.0
    why = f"{ev * 1e4:+.2f} bps per order (se {se * 1e4:.2f}, {n} orders on {int(hit.sum())} signalled rows)"
    return Confirmation(ok, n, ev, se, why if ok else f"{why}: not above zero by {need.z:g} se")
