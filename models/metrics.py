"""Model evaluation on a held-out block, and the operating threshold chosen by expected value.

All figures are for one direction (a binary target: "the forward return beats the dead zone in
this direction") unless noted. The threshold is not set by hand: it maximises the net-of-fee
profit of acting on the signal, on data the base learners never saw.

Held-out AUCs carry a moving-block bootstrap interval (``auc_interval``): neighbouring rows on a 1 s
grid share most of their forward window, so resampling single rows would make the interval far
too narrow (REFERENCE section 7); blocks of at least the label horizon keep that dependence.

MLflow names (``metric_key``): ``<direction>_<learner>/<figure>``, e.g. ``up_stack/auc``,
``down_lgb/log_loss``. The MLflow UI puts every metric in the chart section named by the part
before its last ``/``, so each direction and learner gets one section with the same chart names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)
from features.analysis import information_coefficient

NEVER = 1.01  # a threshold no probability reaches: the model does not trade this direction


LEVEL = 0.95  # confidence of the AUC intervals
N_BOOT = 400  # bootstrap resamples per interval


def metric_key(direction: str, learner: str, figure: str) -> str:
    """The MLflow name of one held-out figure: ``up_stack/auc`` (UI chart section ``up_stack``)."""
    return f"{direction}_{learner}/{figure}"


@dataclass(frozen=True)
class Scores:
    log_loss: float
    brier: float
    auc: float
    auc_lo: float  # moving-block bootstrap interval of the AUC (NaN when not computed)
    auc_hi: float
    precision: float  # of the rows above the threshold, the share that were positives
    fpr: float  # of the negatives, the share above the threshold (false signals)
    signals: int
    ic: float  # Spearman of the probability with the direction-signed forward return
    threshold: float

    def as_dict(self, direction: str, learner: str) -> dict[str, float]:
        """Every figure under its MLflow name (``metric_key``)."""
        return {metric_key(direction, learner, k): float(v) for k, v in asdict(self).items()}


def score(
    p: np.ndarray, y: np.ndarray, signed_ret: np.ndarray, threshold: float, block: int | None = None, seed: int = 0
) -> Scores:
    """Scores of probabilities ``p`` for binary ``y`` at ``threshold``; with ``block`` (rows, at
    least the label horizon) also the AUC's moving-block bootstrap interval."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score  # pulls in scipy: where scored

    hit_p = p
    p = np.clip(p, 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) == 2
    hit = hit_p > threshold  # strictly, as StackedModel.signal (on the unclipped probabilities)
    neg = y == 0
    lo, hi = auc_interval(p, y, block, seed=seed) if block is not None and both else (float("nan"), float("nan"))
    return Scores(
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        auc=float(roc_auc_score(y, p)) if both else float("nan"),
        auc_lo=lo,
        auc_hi=hi,
        precision=float(y[hit].mean()) if hit.any() else float("nan"),
        fpr=float((hit & neg).sum() / neg.sum()) if neg.any() else float("nan"),
        signals=int(hit.sum()),
        ic=float(information_coefficient(p[:, None], signed_ret, min_rows=10)[0]),
        threshold=float(threshold),
    )


class Choice(NamedTuple):
    """An operating threshold and the evidence behind it."""

    threshold: float  # NEVER when no candidate makes money by z standard errors
    per_bet: float  # mean net profit per bet at it (0 without one)
    se: float  # its standard error (over the bets, which do not overlap; NaN without a threshold)
    signals: int  # rows above it
    bets: int  # the bets a strategy holding each for ``lag`` rows makes on those rows: its orders

    @property
    def per_signal(self) -> float:
        """The mean net profit per bet (the name of earlier versions)."""
        return self.per_bet

    @property
    def episodes(self) -> int:
        """The bets (the name of earlier versions)."""
        return self.bets


def choose_threshold(
    p: np.ndarray,
    signed_ret: np.ndarray,
    cost: float,
    lag: int = 0,
    *,
    min_signals: int,
    z: float,
    demean: bool = True,
    candidates: int = 1000,
) -> Choice:
    """The threshold maximising the total net profit, if it makes money by ``z`` standard errors.

    ``p`` and ``signed_ret`` are rows in time order, ``signed_ret`` the direction-signed forward log
    return over the label horizon, ``lag`` rows. Evidence is counted in the bets a strategy acting
    on the signal makes (``bets``): a signalled row opens a position held for the label horizon,
    signals while it is held add nothing, the next signalled row after it opens the next. Each bet
    earns its row's ``signed_ret`` minus ``cost`` (the strategy's round trip). Their forward windows
    do not overlap, so their standard error is the plain one over the bets: overlapping windows of
    neighbouring signalled rows (most of a continuous signal's rows) are not counted as separate
    evidence, and the Newey-West correction they would need is not needed (REFERENCE section 7). A
    candidate counts only with at least ``min_signals`` bets whose mean is above zero by ``z``
    standard errors; of those, the one with the largest total wins. With ``demean`` the block's mean
    signed return is taken out first: a block that happened to trend must not make an uninformative
    model trade everything (the edge has to come from the ranking).

    Candidates are the cuts between distinct probabilities, at most ``candidates`` of them evenly
    spread over the number of rows taken. The best of many candidates looks better than it is (the
    search is a multiple test): training therefore confirms the chosen threshold on a later,
    disjoint block (pipelines/training.py).

    The threshold returned lies between the last probability taken and the next one down, so the
    model's strict rule (``p > threshold``, ``StackedModel.signal``) signals on exactly those rows.
    """
    p = np.asarray(p, np.float64)
    signed_ret = np.asarray(signed_ret, np.float64)
    if p.shape != signed_ret.shape or p.ndim != 1:
        raise ValueError("p and signed_ret must be 1-D and of the same shape")
    if p.size == 0:
        return Choice(NEVER, 0.0, float("nan"), 0, 0)
    order = np.argsort(-p, kind="stable")
    drift = float(signed_ret.mean()) if demean else 0.0
    net = signed_ret - drift - cost
    ps = p[order]
    cuts = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True]) + 1  # top-k sets that split no tie
    if cuts.size > candidates:
        cuts = cuts[np.unique(np.linspace(0, cuts.size - 1, candidates).round().astype(np.int64))]
    rank = np.empty(p.size, np.int64)
    rank[order] = np.arange(p.size)
    k, total, var, n_bets = _search(rank, net, cuts, max(int(lag), 1), max(int(min_signals), 1), float(z))
    if k == 0:
        return Choice(NEVER, 0.0, float("nan"), 0, 0)
    hi = float(ps[k - 1])
    lo = float(ps[k]) if k < ps.size else float(np.nextafter(hi, -np.inf))
    mid = 0.5 * (hi + lo)
    threshold = mid if lo <= mid < hi else lo
    return Choice(threshold, total / n_bets, float(np.sqrt(var)), k, n_bets)


def bets(picked: np.ndarray, lag: int) -> np.ndarray:
    """The rows (in time order) where a strategy holding each position for ``lag`` rows opens one:
    the first picked row, then the first picked row at least ``lag`` rows after the last opened."""
    return _bets(np.asarray(picked, np.bool_), max(int(lag), 1))


def episodes(picked: np.ndarray, lag: int) -> int:
    """How many bets (``bets``) a strategy holding each position for ``lag`` rows makes on ``picked``."""
    return int(bets(picked, lag).size)


@nb.njit(cache=True)
def _bets(picked: np.ndarray, gap: int) -> np.ndarray:
    out = np.empty(picked.size, np.int64)
    n, free = 0, 0
    for r in range(picked.size):
        if picked[r] and r >= free:
            out[n] = r
            n += 1
            free = r + gap
    return out[:n]


@nb.njit(cache=True)
def _search(
    rank: np.ndarray, net: np.ndarray, cuts: np.ndarray, gap: int, min_bets: int, z: float
) -> tuple[int, float, float, int]:
    """(k, total, variance of the mean, bets) of the best top-k candidate, k = 0 for none.

    For each cut k (the rows of rank < k taken) the bets are laid out greedily in time order, one
    position held ``gap`` rows at a time: O(rows) per candidate."""
    best_k, best_total, best_var, best_n = 0, 0.0, 0.0, 0
    for k in cuts:
        n, free = 0, 0
        s = s2 = 0.0
        for r in range(net.size):
            if rank[r] < k and r >= free:
                x = net[r]
                s += x
                s2 += x * x
                n += 1
                free = r + gap
        if n < max(min_bets, 2) or s <= best_total:
            continue
        m = s / n
        var = max(s2 - n * m * m, 0.0) / (n * (n - 1.0))
        if m - z * math.sqrt(var) > 0.0:
            best_k, best_total, best_var, best_n = k, s, var, n
    return best_k, best_total, best_var, best_n


def long_run_sum(e: np.ndarray, lag: int) -> float:
    """Newey-West's sum over the time-ordered deviations ``e``: e.e + 2 sum_d (1 - d/(lag+1)) e_t e_(t+d)."""
    e = np.asarray(e, np.float64)
    s = float(e @ e)
    for d in range(1, min(lag, e.size - 1) + 1):
        s += 2.0 * (1.0 - d / (lag + 1.0)) * float(e[d:] @ e[:-d])
    return max(s, 0.0)


def mean_se(x: np.ndarray, lag: int) -> float:
    """Newey-West standard error of the mean of the time-ordered series ``x`` (``lag=0``: iid)."""
    x = np.asarray(x, np.float64)
    n = x.size
    if n < 2:
        return float("nan")
    return float(np.sqrt(long_run_sum(x - x.mean(), lag) / (n * (n - 1.0))))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Mean predicted vs observed frequency in quantile bins of ``p`` (the training diagnostics' deciles)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    nb = max(len(edges) - 1, 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, nb - 1)
    count = np.bincount(which, minlength=nb)
    pred, obs = np.bincount(which, p, nb), np.bincount(which, y, nb)
    keep = count > 0
    return [
        {"predicted": float(a / c), "observed": float(b / c), "count": int(c)}
        for a, b, c in zip(pred[keep], obs[keep], count[keep], strict=True)
    ]


def auc_interval(
    p: np.ndarray, y: np.ndarray, block: int, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the AUC of ``p`` for binary ``y`` from a moving-block bootstrap.

    Each resample glues ``ceil(n / block)`` blocks of ``block`` consecutive rows, started at
    uniformly drawn rows, and cuts the last one to give ``n`` rows (Kunsch 1989; Lahiri 2003,
    ch. 2). ``block`` should be at least the label horizon in rows, longer when the scores are
    slower than the labels; ``block=1`` is the iid bootstrap. A resample is a count per row, so
    its AUC is a weighted Mann-Whitney statistic over the rows sorted once (ties count a half):
    vectorised over resamples, no re-sorting. Seeded: the same inputs give the same interval.
    """
    p, y = np.asarray(p, np.float64).ravel(), np.asarray(y).ravel().astype(np.float64)
    n = p.size
    if n != y.size:
        raise ValueError("p and y must have the same length")
    if n < 2 or y.min() == y.max():
        return float("nan"), float("nan")
    block = int(min(max(block, 1), n))
    order = np.argsort(p, kind="stable")
    starts_of_ties = np.flatnonzero(np.r_[True, np.diff(p[order]) != 0])
    pos_sorted, neg_sorted = y[order], 1.0 - y[order]
    k = -(-n // block)
    lengths = np.full(k, block)
    lengths[-1] = n - (k - 1) * block
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    chunk = max(1, min(n_boot, 4_000_000 // (n + 1)))  # resamples per pass: bounds the memory to ~32 MB per array
    for first in range(0, n_boot, chunk):
        b = min(chunk, n_boot - first)
        starts = rng.integers(0, n - block + 1, size=(b, k))
        rows = np.arange(b)[:, None] * (n + 1)
        # +1 where a block starts, -1 just after it ends; the running sum counts each row's copies
        marks = np.bincount((rows + starts).ravel(), minlength=b * (n + 1))
        marks -= np.bincount((rows + starts + lengths).ravel(), minlength=b * (n + 1))
        counts = np.cumsum(marks.reshape(b, n + 1)[:, :n], axis=1)[:, order]
        pos = np.add.reduceat(counts * pos_sorted, starts_of_ties, axis=1)
        neg = np.add.reduceat(counts * neg_sorted, starts_of_ties, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower than each tie group
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs[first : first + b] = (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
    aucs = aucs[np.isfinite(aucs)]  # a resample with a single class has no AUC
    if aucs.size < n_boot // 2:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(aucs, [tail, 1.0 - tail])
    return float(lo), float(hi)
