"""Model evaluation on a held-out block, and the operating threshold chosen by expected value.

All figures are for one direction (a binary target: "the forward return beats the dead zone in
this direction") unless noted. The threshold is not set by hand: it maximises the net-of-fee
profit of acting on the signal, on data the base learners never saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
