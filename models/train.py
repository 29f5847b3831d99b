"""Fit the stacked model on time-ordered rows and score it, with its base learners, on held-out data.

The rows are cut by time into fit / calibrate / test blocks with an embargo between them (at least
the label horizon plus the longest feature look-back). The stacks are fitted on the fit block,
calibrated and given their operating thresholds on the calibration block, and every learner is
scored on the test block, which nothing was fitted or chosen on, its AUC with a moving-block
bootstrap interval whose blocks span one label horizon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.cv import blocks
from models.metrics import Scores, choose_threshold, score
from models.model import StackedModel
from models.profile import Profile
from models.stack import BoostParams, fit_direction

DIRECTIONS = (("up", 1), ("down", -1))


@dataclass
class TrainResult:
    model: StackedModel
    scores: dict[str, dict[str, Scores]]  # direction -> learner (lgb, xgb, stack) -> scores
    rows: dict[str, int]
    verdict: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Held-out figures by MLflow name (``up_stack/auc``, ``rows/test``: models.metrics.metric_key)."""
        out: dict[str, float] = {f"rows/{k}": float(v) for k, v in self.rows.items()}
        for d, learners in self.scores.items():
            for name, s in learners.items():
                out.update(s.as_dict(d, name))
        return out


def block_rows(ts: np.ndarray, horizon_ns: int) -> int:
    """Rows one label horizon spans on the grid of ``ts``: the AUC bootstrap's block length."""
    step = float(np.median(np.diff(ts))) if ts.size > 1 else float(horizon_ns)
    return max(1, math.ceil(horizon_ns / max(step, 1.0)))


def train(
    x: np.ndarray,
    ts: np.ndarray,
    ret: np.ndarray,
    direction: np.ndarray,
    feature_names: list[str],
    feature_set: str,
    label_set: str,
    horizon_ns: int,
    tau: float,
    params: BoostParams,
    n_folds: int,
    shares: tuple[float, float, float],
    embargo_ns: int,
    progress: Callable[[float, str], None] | None = None,
) -> TrainResult:
    """Fit both direction stacks and score lgb, xgb and the stack on the held-out block."""
    fit, cal, test = blocks(ts, shares, embargo_ns)
    if min(fit.size, cal.size, test.size) < 100:
        raise ValueError(
            f"too few rows for fit / calibration / test ({fit.size} / {cal.size} / {test.size}): "
            "a longer training window is needed"
        )
    stacks = {}
    thresholds = {}
    scores: dict[str, dict[str, Scores]] = {}
    held_out: list[np.ndarray] = []  # the stacks' probabilities on the test block, up then down
    block = block_rows(ts[test], horizon_ns)
    for k, (name, sign) in enumerate(DIRECTIONS):
        y = (direction == sign).astype(np.float64)
        signed = sign * ret
        if progress is not None:
            progress(k / 2, f"fitting the {name} stack")
        stack = fit_direction(x[fit], y[fit], ts[fit], x[cal], y[cal], params, embargo_ns, n_folds)
        cal_lgb, cal_xgb = stack.base(x[cal])
        cal_stack = stack.calibrate(stack.meta(cal_lgb, cal_xgb))
        th = {
            learner: choose_threshold(p, signed[cal], tau)[0]
            for learner, p in (("lgb", cal_lgb), ("xgb", cal_xgb), ("stack", cal_stack))
        }
        t_lgb, t_xgb = stack.base(x[test])
        t_stack = stack.calibrate(stack.meta(t_lgb, t_xgb))
        held_out.append(t_stack)
        scores[name] = {
            learner: score(p, y[test], signed[test], th[learner], block=block, seed=params.seed)
            for learner, p in (("lgb", t_lgb), ("xgb", t_xgb), ("stack", t_stack))
        }
        stacks[name] = stack
        thresholds[name] = th["stack"]
    model = StackedModel(
        feature_names=list(feature_names),
        feature_set=feature_set,
        label_set=label_set,
        horizon_ns=horizon_ns,
        tau=tau,
        up=stacks["up"],
        down=stacks["down"],
        threshold_up=thresholds["up"],
        threshold_down=thresholds["down"],
        profile=Profile.of(x[fit], np.column_stack(held_out)),
    )
    if progress is not None:
        progress(1.0, "fitted")
    result = TrainResult(model, scores, {"fit": int(fit.size), "calibrate": int(cal.size), "test": int(test.size)})
    result.verdict = verdict(scores)
    return result


def verdict(scores: dict[str, dict[str, Scores]]) -> list[str]:
    """Plain sentences: does the stack beat each base learner, does it cut false positives?"""
    lines = []
    for d, s in scores.items():
        st = s["stack"]
        for base in ("lgb", "xgb"):
            b = s[base]
            better = st.log_loss < b.log_loss
            lines.append(
                f"{d}: the stack {'beats' if better else 'does NOT beat'} {base} on held-out log loss "
                f"({st.log_loss:.4f} vs {b.log_loss:.4f}; AUC {st.auc:.3f} vs {b.auc:.3f})"
            )
        lg = s["lgb"]
        if np.isnan(st.fpr) or np.isnan(lg.fpr):
            lines.append(f"{d}: false positives cannot be compared (no negatives in the test block)")
        else:
            cut = st.fpr < lg.fpr
            lines.append(
                f"{d}: at their operating points the stack {'cuts' if cut else 'does NOT cut'} false positives "
                f"against a single LightGBM ({st.fpr:.4f} vs {lg.fpr:.4f}; {st.signals} vs {lg.signals} signals, "
                f"precision {st.precision:.3f} vs {lg.precision:.3f})"
            )
    return lines
