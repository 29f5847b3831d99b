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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

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
    precision: float  # of the rows at or above the threshold, the share that were positives
    fpr: float  # of the negatives, the share at or above the threshold (false signals)
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
    p = np.clip(p, 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) == 2
    hit = p >= threshold
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


def choose_threshold(
    p: np.ndarray, signed_ret: np.ndarray, cost: float, min_signals: int = 20, z: float = 2.0, demean: bool = True
) -> tuple[float, float]:
    """(threshold, expected profit per signal) maximising the total net-of-fee profit.

    Acting on a signal earns the direction-signed forward log return minus ``cost`` (the round
    trip's fees). Candidates are the distinct probabilities; with fewer than ``min_signals`` rows
    above a candidate it is not considered, nor is one whose mean profit per signal is not above
    zero by ``z`` standard errors. With ``demean`` the block's mean signed return is taken out
    first: a block that happened to trend must not make an uninformative model trade everything
    (the edge has to come from the ranking). If no threshold makes money that way, ``NEVER``.
    """
    if p.shape != signed_ret.shape:
        raise ValueError("p and signed_ret must have the same shape")
    order = np.argsort(-p, kind="stable")
    drift = float(signed_ret.mean()) if demean and signed_ret.size else 0.0
    net = signed_ret[order] - drift - cost
    gains = np.cumsum(net)  # total profit of trading the top k rows
    squares = np.cumsum(net * net)
    ps = p[order]
    best_total, best_threshold, best_k = 0.0, NEVER, 0
    for k in range(max(min_signals, 2), ps.size + 1):
        if k < ps.size and ps[k] == ps[k - 1]:
            continue  # a threshold cannot split equal probabilities
        total = float(gains[k - 1])
        if total <= best_total:
            continue
        mean = total / k
        var = max(float(squares[k - 1]) / k - mean * mean, 0.0) * k / (k - 1)
        if mean - z * np.sqrt(var / k) > 0.0:
            best_total, best_threshold, best_k = total, float(ps[k - 1]), k
    return best_threshold, (best_total / best_k if best_k else 0.0)


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
