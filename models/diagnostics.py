"""Training diagnostics written next to each MLflow run: importance, reliability, confusion, folds.

Every plot is drawn for reading, not for the record: the reliability plot is zoomed to the range
the probabilities actually take (a few percent here, so a 0..1 square squeezes every point into
one corner), with the rows behind each point and the histogram of the probabilities under it; the
importance plot shows the top features by name; the fold plot shows each walk-forward fold's
out-of-fold AUC and log loss per learner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import reliability
from models.result import TrainResult

TOP = 20  # features on the importance plot
DIRECTIONS = ("up", "down")
COLORS = {"lgb": "#1f77b4", "xgb": "#ff7f0e", "up": "#2ca02c", "down": "#d62728"}


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
    shap = [c for c in frame.columns if c.endswith("_shap")]
    return frame.assign(shap_total=frame[shap].sum(axis=1)).sort_values("shap_total", ascending=False)


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG and free it."""
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def importance_figure(imp: pd.DataFrame, top: int = TOP) -> Any:
    """The ``top`` features by total mean |SHAP|: one panel per direction, LightGBM and XGBoost side by side."""
    plt = _plt()
    head = imp.head(top).iloc[::-1]  # largest at the top
    y = np.arange(len(head))
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.32 * len(head) + 1.8), sharey=True)
    for ax, d in zip(axes, DIRECTIONS, strict=True):
        for k, learner in enumerate(("lgb", "xgb")):
            ax.barh(
                y + (0.2 if k == 0 else -0.2),
                head[f"{d}_{learner}_shap"],
                height=0.4,
                label=learner,
                color=COLORS[learner],
            )
        ax.set_title(f"{d}: mean |SHAP| on the held-out block")
        ax.set_xlabel("mean |SHAP| (log-odds)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_yticks(y, head.index)
    fig.suptitle(
        f"Feature importance: the top {len(head)} of {len(imp)} features (all figures in feature_importance.csv)"
    )
    fig.tight_layout()
    return fig


def reliability_figure(proba: np.ndarray, y: dict[str, np.ndarray], thresholds: tuple[float, float]) -> Any:
    """Observed frequency against predicted probability in deciles of the prediction, per direction,
    on the range the probabilities take (1 % to 99 % quantiles), each point with its rows and a
    two-standard-error bar; the histogram of the probabilities and the operating threshold below."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for j, d in enumerate(DIRECTIONS):
        p, obs = proba[:, j], np.asarray(y[d], float)
        rows = reliability(p, obs)
        pred = np.array([r["predicted"] for r in rows])
        freq = np.array([r["observed"] for r in rows])
        count = np.array([r["count"] for r in rows])
        se = np.sqrt(np.clip(freq * (1 - freq), 1e-12, None) / count)
        x0, x1 = min(float(np.quantile(p, 0.01)), pred.min()), max(float(np.quantile(p, 0.99)), pred.max())
        pad = 0.08 * (x1 - x0) if x1 > x0 else max(0.1 * x0, 0.002)
        x0, x1 = max(x0 - pad, 0.0), min(x1 + pad, 1.0)
        y0, y1 = min(x0, float((freq - 2 * se).min())), max(x1, float((freq + 2 * se).max()))
        ypad = 0.05 * (y1 - y0)
        ax = axes[0, j]
        ax.plot([x0, x1], [x0, x1], "k:", label="perfectly calibrated (y = x)")
        ax.errorbar(pred, freq, yerr=2 * se, fmt="o-", color=COLORS[d], capsize=3, label="deciles of P, +/- 2 SE")
        for i, (a, b, n) in enumerate(zip(pred, freq, count, strict=True)):
            ax.annotate(f"{n:,}", (a, b), textcoords="offset points", xytext=(5, 6 if i % 2 else -13), fontsize=8,
                        color="0.3")  # fmt: skip
        ax.axhline(obs.mean(), color="0.6", lw=0.8, ls="--", label=f"base rate {obs.mean():.3f}")
        ax.set_xlim(x0, x1)
        ax.set_ylim(max(y0 - ypad, 0.0), min(y1 + ypad, 1.0))
        ax.set_ylabel("observed frequency")
        ax.set_title(f"{d}: held-out reliability ({len(p):,} rows)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        hx = axes[1, j]
        hx.hist(p, bins=np.linspace(x0, x1, 41), color=COLORS[d], alpha=0.6)
        if x0 <= thresholds[j] <= x1:
            hx.axvline(thresholds[j], color="k", lw=1, label=f"threshold {thresholds[j]:.3f}")
            hx.legend(fontsize=8)
        hx.set_xlabel(f"predicted P({d})")
        hx.set_ylabel("rows")
        hx.grid(alpha=0.3)
    fig.suptitle("Reliability on the held-out block, zoomed to the predictions' range (numbers: rows per point)")
    fig.tight_layout()
    return fig


def folds_figure(folds: pd.DataFrame, held_out: dict[str, float]) -> Any:
    """Out-of-fold AUC and log loss of each base learner per walk-forward fold and direction."""
    plt = _plt()
    if folds.empty:  # no fold had enough history: an empty plot that says so
        folds = pd.DataFrame({"direction": pd.Series(dtype=str), "fold": pd.Series(dtype=int)})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, figure, label in ((axes[0], "auc", "AUC"), (axes[1], "log_loss", "log loss")):
        for d in DIRECTIONS:
            part = folds[folds["direction"] == d]
            for learner, style in (("lgb", "o-"), ("xgb", "s--")):
                col = f"{learner}_{figure}"
                if col in part:
                    ax.plot(part["fold"], part[col], style, color=COLORS[d], label=f"{d} {learner}")
            if figure == "auc" and np.isfinite(held_out.get(d, np.nan)):
                ax.axhline(held_out[d], color=COLORS[d], lw=0.8, ls=":", label=f"{d} stack, held out")
        if figure == "auc":
            ax.axhline(0.5, color="k", lw=0.8, label="no skill")
        ax.set_xticks(sorted(folds["fold"].unique()) if len(folds) else [])
        ax.set_xlabel("walk-forward fold (its out-of-fold rows)")
        ax.set_title(f"{label} per fold")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(conf: pd.DataFrame) -> Any:
    plt = _plt()
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
    return fig


def write_all(result: TrainResult, x_test: np.ndarray, y_test: dict[str, np.ndarray], out: Path) -> list[Path]:
    """Write every diagnostic (CSV and PNG) into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    model = result.model
    paths = [out / "feature_importance.csv"]
    imp = importance(result, x_test)
    imp.to_csv(paths[-1])
    paths.append(save(importance_figure(imp), out / "feature_importance.png"))

    proba = model.predict_proba(x_test)
    paths.append(
        save(reliability_figure(proba, y_test, (model.threshold_up, model.threshold_down)), out / "reliability.png")
    )

    conf = pd.crosstab(
        pd.Series(y_test["direction"], name="actual"), pd.Series(model.signal(proba), name="signal"), dropna=False
    ).reindex(index=[-1, 0, 1], columns=[-1, 0, 1], fill_value=0)
    paths.append(out / "confusion_matrix.csv")
    conf.to_csv(paths[-1])
    paths.append(save(confusion_figure(conf), out / "confusion_matrix.png"))

    folds = pd.DataFrame([{"direction": d, **f} for d, s in (("up", model.up), ("down", model.down)) for f in s.folds])
    paths.append(out / "cv_folds.csv")
    folds.to_csv(paths[-1], index=False)
    held_out = {d: result.scores[d]["stack"].auc for d in DIRECTIONS}
    paths.append(save(folds_figure(folds, held_out), out / "cv_folds.png"))
    return paths
