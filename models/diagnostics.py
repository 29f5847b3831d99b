"""Training diagnostics written next to each MLflow run: importance, reliability, confusion, folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.metrics import reliability
from models.train import TrainResult


def importance(result: TrainResult, x: np.ndarray) -> pd.DataFrame:
    """Gain importance and mean |SHAP| per feature, per learner and direction (LightGBM
    ``pred_contrib``, XGBoost ``pred_contribs``), on up to 2,000 held-out rows."""
    import xgboost as xgb

    model = result.model
    sample = x[: min(len(x), 2000)]
    cols: dict[str, np.ndarray] = {}
    for d, stack in (("up", model.up), ("down", model.down)):
        gain = stack.lgb_model.feature_importance("gain", iteration=stack.lgb_model.best_iteration or None)
        cols[f"{d}_lgb_gain"] = np.asarray(gain, float)
        score = stack.xgb_model.get_score(importance_type="total_gain")
        cols[f"{d}_xgb_gain"] = np.array([score.get(f"f{i}", 0.0) for i in range(x.shape[1])])
        contrib = stack.lgb_model.predict(
            sample, pred_contrib=True, num_iteration=stack.lgb_model.best_iteration or None
        )
        cols[f"{d}_lgb_shap"] = np.abs(np.asarray(contrib)[:, :-1]).mean(axis=0)
        best = getattr(stack.xgb_model, "best_iteration", None)
        rng = (0, best + 1) if best is not None else (0, 0)
        xc = stack.xgb_model.predict(xgb.DMatrix(sample), pred_contribs=True, iteration_range=rng)
        cols[f"{d}_xgb_shap"] = np.abs(np.asarray(xc)[:, :-1]).mean(axis=0)
    frame = pd.DataFrame(cols, index=pd.Index(model.feature_names, name="feature"))
    return frame.sort_values("up_lgb_shap", ascending=False)


def write_all(result: TrainResult, x_test: np.ndarray, y_test: dict[str, np.ndarray], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    imp = importance(result, x_test)
    paths.append(out / "feature_importance.csv")
    imp.to_csv(paths[-1])
    top = imp.head(20)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), sharey=True)
    for ax, kind in zip(axes, ("gain", "shap"), strict=True):
        cols = [c for c in top.columns if c.endswith(kind)]
        (top[cols] / top[cols].max()).iloc[::-1].plot.barh(ax=ax)
        ax.set_title(f"{'gain' if kind == 'gain' else 'mean |SHAP|'} (scaled to the largest)")
    fig.suptitle("Feature importance, top 20 by LightGBM SHAP (up)")
    fig.tight_layout()
    paths.append(out / "feature_importance.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)

    proba = result.model.predict_proba(x_test)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    for j, d in enumerate(("up", "down")):
        rows = reliability(proba[:, j], y_test[d])
        ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], "o-", label=f"{d} (deciles)")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Reliability on the held-out block")
    ax.legend()
    paths.append(out / "reliability.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)

    signal = result.model.signal(proba)
    conf = pd.crosstab(
        pd.Series(y_test["direction"], name="actual"), pd.Series(signal, name="signal"), dropna=False
    ).reindex(index=[-1, 0, 1], columns=[-1, 0, 1], fill_value=0)
    paths.append(out / "confusion_matrix.csv")
    conf.to_csv(paths[-1])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(conf.to_numpy(), cmap="Blues")
    for i in range(3):
        for k in range(3):
            ax.text(k, i, f"{conf.to_numpy()[i, k]:,}", ha="center", va="center")
    ax.set_xticks(range(3), ["sell", "none", "buy"])
    ax.set_yticks(range(3), ["down", "flat", "up"])
    ax.set_xlabel("signal at the operating thresholds")
    ax.set_ylabel("actual direction")
    fig.tight_layout()
    paths.append(out / "confusion_matrix.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)

    folds = [{"direction": d, **f} for d, s in (("up", result.model.up), ("down", result.model.down)) for f in s.folds]
    paths.append(out / "cv_folds.csv")
    pd.DataFrame(folds).to_csv(paths[-1], index=False)
    return paths
