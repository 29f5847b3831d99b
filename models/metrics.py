"""Model evaluation on a held-out block, and the operating threshold chosen by expected value.

All figures are for one direction (a binary target: "the forward return beats the dead zone in
this direction") unless noted. The threshold is not set by hand: it maximises the net-of-fee
profit of acting on the signal, on data the base learners never saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from features.analysis import information_coefficient

NEVER = 1.01  # a threshold no probability reaches: the model does not trade this direction


@dataclass(frozen=True)
class Scores:
    log_loss: float
    brier: float
    auc: float
    precision: float  # of the rows at or above the threshold, the share that were positives
    fpr: float  # of the negatives, the share at or above the threshold (false signals)
    signals: int
    ic: float  # Spearman of the probability with the direction-signed forward return
    threshold: float

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": float(v) for k, v in asdict(self).items()}


def score(p: np.ndarray, y: np.ndarray, signed_ret: np.ndarray, threshold: float) -> Scores:
    """Scores of probabilities ``p`` for binary ``y`` at ``threshold``."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) == 2
    hit = p >= threshold
    neg = y == 0
    return Scores(
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        auc=float(roc_auc_score(y, p)) if both else float("nan"),
        precision=float(y[hit].mean()) if hit.any() else float("nan"),
        fpr=float((hit & neg).sum() / neg.sum()) if neg.any() else float("nan"),
        signals=int(hit.sum()),
        ic=float(information_coefficient(p[:, None], signed_ret, min_rows=10)[0]),
        threshold=float(threshold),
    )


def choose_threshold(p: np.ndarray, signed_ret: np.ndarray, cost: float, min_signals: int = 20) -> tuple[float, float]:
    """(threshold, expected profit per signal) maximising the total net-of-fee profit.

    Acting on a signal earns the direction-signed forward log return minus ``cost`` (the round
    trip's fees). Candidates are the distinct probabilities; with fewer than ``min_signals`` rows
    above a candidate it is not considered. If no threshold makes money, ``NEVER``.
    """
    if p.shape != signed_ret.shape:
        raise ValueError("p and signed_ret must have the same shape")
    order = np.argsort(-p, kind="stable")
    gains = np.cumsum(signed_ret[order] - cost)  # total profit of trading the top k rows
    ps = p[order]
    best_total, best_threshold, best_k = 0.0, NEVER, 0
    for k in range(min_signals, ps.size + 1):
        if k < ps.size and ps[k] == ps[k - 1]:
            continue  # a threshold cannot split equal probabilities
        if gains[k - 1] > best_total:
            best_total, best_threshold, best_k = float(gains[k - 1]), float(ps[k - 1]), k
    return best_threshold, (best_total / best_k if best_k else 0.0)
