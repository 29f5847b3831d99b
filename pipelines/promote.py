"""Promote a challenger to champion on evidence: the job ``python -m flows.promote`` runs."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from core.config import AppConfig
from core.errors import UserError
from models import registry
from models.metrics import NEVER
from models.model import StackedModel
from pipelines.dataset import TrainingData, load


def evaluate(model: StackedModel, data: TrainingData) -> dict[str, float]:
    """Log loss and AUC per direction of ``model`` on ``data`` (the feature sets must match)."""
    if model.feature_set != data.feature_set:
        raise UserError(
            f"feature-set mismatch: the model was trained on {model.feature_set}, the warehouse has {data.feature_set}"
        )
    proba = np.clip(model.predict_proba(model.take(data.x, data.feature_names)), 1e-6, 1 - 1e-6)
    out = {}
    for j, (name, sign) in enumerate((("up", 1), ("down", -1))):
        y = (data.direction == sign).astype(float)
        out[f"{name}_log_loss"] = float(log_loss(y, proba[:, j], labels=[0, 1]))
        out[f"{name}_auc"] = float(roc_auc_score(y, proba[:, j])) if len(np.unique(y)) == 2 else float("nan")
    out["log_loss"] = (out["up_log_loss"] + out["down_log_loss"]) / 2
    return out


def skill_gate(cfg: AppConfig, model: StackedModel, fresh: dict[str, float]) -> tuple[bool, str]:
    """The gate every challenger passes first, the first model too: it has skill and trades.

    Skill was tested in training (pipelines/training.py): a direction trades only when its held-out AUC
    interval lies above 0.5 and its threshold was confirmed on data it was not chosen on. A model
    trading in neither direction fails; so does one whose AUC on ``fresh`` data (``evaluate``) is
    below ``promotion.min_auc`` in a direction it trades."""
    trading = [d for d, t in (("up", model.threshold_up), ("down", model.threshold_down)) if t < NEVER]
    if not trading:
        return False, "no skill: neither direction has a confirmed operating threshold (see the training verdict)"
    weak = [d for d in trading if not np.isfinite(fresh[f"{d}_auc"]) or fresh[f"{d}_auc"] < cfg.promotion.min_auc]
    aucs = ", ".join(f"{d} {fresh[f'{d}_auc']:.3f}" for d in trading)
    if weak:
        return False, f"fresh AUC {aucs} of the direction(s) it trades below the minimum {cfg.promotion.min_auc:.3f}"
    return True, f"trades {' and '.join(trading)} (fresh AUC {aucs})"


def decide(cfg: AppConfig, challenger: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, str]:
    """The score rules: both AUCs reach ``promotion.min_auc`` (the first model too), and against a
    champion the mean log loss gains more than ``promotion.min_log_loss_gain``."""
    p = cfg.promotion
    aucs = [challenger["up_auc"], challenger["down_auc"]]
    if any(not np.isfinite(a) or a < p.min_auc for a in aucs):
        return False, f"challenger AUC up {aucs[0]:.3f} / down {aucs[1]:.3f} below the minimum {p.min_auc:.3f}"
    if champion is None:
        return True, f"first model: no champion yet (AUC up {aucs[0]:.3f} / down {aucs[1]:.3f})"
    gain = champion["log_loss"] - challenger["log_loss"]
    if gain > p.min_log_loss_gain:
        return (
            True,
            f"mean log loss {challenger['log_loss']:.5f} vs champion {champion['log_loss']:.5f} (gain {gain:.5f})",
        )
    return False, (
        f"mean log loss {challenger['log_loss']:.5f} vs champion {champion['log_loss']:.5f}: "
        f"gain {gain:.5f} does not exceed {p.min_log_loss_gain:.5f}"
    )


def backtest_rule(
    cfg: AppConfig, challenger: StackedModel, champion: StackedModel, start_ns: int, end_ns: int, reason: str
) -> tuple[bool, str]:
    """The model rule passed; does the challenger also earn more net of fees in a backtest?"""
    from execution.quality import metrics
    from pipelines.backtest import simulate

    strategy = cfg.promotion.backtest_strategy
    pnl = [float(metrics(simulate(cfg, strategy, m, start_ns, end_ns, {}))["net_pnl"]) for m in (challenger, champion)]
    won = pnl[0] > pnl[1]
    verdict = f"{strategy} backtest net PnL {pnl[0]:+,.2f} vs champion {pnl[1]:+,.2f} USDT"
    return won, f"{reason}; {verdict}" if won else f"{verdict}: no backtest win (model rule: {reason})"


def run_promotion(cfg: AppConfig) -> dict[str, Any]:
    client = registry.connect(cfg)
    challenger, ch_version = registry.load(cfg, registry.CHALLENGER)
    champ_version = registry.version_for(cfg, registry.CHAMPION)
    if champ_version == ch_version:
        return {
            "promoted": False,
            "reason": f"version {ch_version} is already the champion",
            "version": ch_version,
            "champion": ch_version,
        }
    data = load(cfg, cfg.promotion.fresh, min_rows=100)
    ch_scores = evaluate(challenger, data)
    champ_scores = None
    if champ_version is not None:
        champion, _ = registry.load(cfg, registry.CHAMPION)
        champ_scores = evaluate(champion, data) if champion.feature_set == data.feature_set else None
    promoted, reason = skill_gate(cfg, challenger, ch_scores)
    if promoted:
        promoted, reason = decide(cfg, ch_scores, champ_scores)
    if promoted and champ_scores is not None and cfg.promotion.require_backtest:
        promoted, reason = backtest_rule(cfg, challenger, champion, data.start_ns, data.end_ns, reason)
    name = cfg.mlflow.model_name
    if promoted:
        client.set_registered_model_alias(name, registry.CHAMPION, ch_version)
    verdict = f"{'promoted to champion' if promoted else 'not promoted'}: {reason} ({len(data.ts):,} fresh rows)"
    client.update_model_version(name, ch_version, description=verdict)
    now = ch_version if promoted else champ_version
    return {"promoted": promoted, "reason": verdict, "version": ch_version, "scores": ch_scores, "champion": now}
