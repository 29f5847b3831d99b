"""The training diagnostics' plots show something: the data's range, the rows behind a point, names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.diagnostics import folds_figure, importance_figure, reliability_figure, save
from models.metrics import reliability


def _probabilities(n: int = 20_000) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Calibrated probabilities between ~0.02 and ~0.2, as the stacks give them, and outcomes drawn from them."""
    rng = np.random.default_rng(5)
    proba = np.column_stack([0.02 + 0.18 * rng.beta(2, 5, n), 0.03 + 0.15 * rng.beta(2, 6, n)])
    y = {d: (rng.uniform(size=n) < proba[:, j]).astype(float) for j, d in enumerate(("up", "down"))}
    return proba, y


def test_the_reliability_plot_is_zoomed_to_the_predictions_with_the_rows_behind_each_point(tmp_path) -> None:
    proba, y = _probabilities()
    fig = reliability_figure(proba, y, (0.15, 1.01))
    up, down, up_hist, down_hist = fig.axes
    for j, (ax, hist) in enumerate(((up, up_hist), (down, down_hist))):
        lo, hi = ax.get_xlim()
        p = proba[:, j]
        assert lo <= np.quantile(p, 0.01) and hi >= np.quantile(p, 0.99)
        assert lo > 0.0 or p.min() < 0.03
        assert hi < 0.3  # not the 0..1 square that squeezes every point into a corner
        counts = {f"{r['count']:,}" for r in reliability(p, y[("up", "down")[j]])}
        assert counts <= {t.get_text() for t in ax.texts}  # every point says how many rows it stands on
        assert any(np.allclose(line.get_xdata(), line.get_ydata()) for line in ax.get_lines())  # the diagonal
        assert len(hist.patches) == 40 and sum(b.get_height() for b in hist.patches) > 0.97 * len(p)
    assert [line.get_xdata()[0] for line in up_hist.get_lines()] == [0.15]  # the threshold, where it falls
    assert down_hist.get_lines() == []  # 1.01: never trades, not drawn
    assert save(fig, tmp_path / "r.png").stat().st_size > 20_000


def test_the_importance_plot_names_the_top_features_largest_first() -> None:
    rng = np.random.default_rng(6)
    names = [f"feature_{i:02d}" for i in range(40)]
    imp = pd.DataFrame(
        {f"{d}_{m}_shap": rng.exponential(size=40) for d in ("up", "down") for m in ("lgb", "xgb")},
        index=pd.Index(names, name="feature"),
    )
    imp["shap_total"] = imp.sum(axis=1)
    imp = imp.sort_values("shap_total", ascending=False)
    fig = importance_figure(imp, top=12)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(imp.index[:12][::-1])  # the largest at the top of the chart
    assert "top 12 of 40" in fig._suptitle.get_text()


def test_the_fold_plot_has_a_point_per_fold_learner_and_direction() -> None:
    rows = [
        {
            "direction": d,
            "fold": k,
            "lgb_auc": 0.55 + 0.01 * k,
            "xgb_auc": 0.56,
            "lgb_log_loss": 0.3,
            "xgb_log_loss": 0.31,
        }
        for d in ("up", "down")
        for k in (1, 2, 3)
    ]
    fig = folds_figure(pd.DataFrame(rows), {"up": 0.58, "down": float("nan")})
    auc, loss = fig.axes
    series = {line.get_label(): list(line.get_ydata()) for line in auc.get_lines()}
    assert series["up lgb"] == pytest.approx([0.56, 0.57, 0.58]) and series["down xgb"] == [0.56] * 3
    assert "up stack, held out" in series and "down stack, held out" not in series and "no skill" in series
    assert {line.get_label() for line in loss.get_lines()} == {"up lgb", "up xgb", "down lgb", "down xgb"}
    empty = folds_figure(pd.DataFrame(), {"up": 0.5, "down": 0.5})  # no fold had enough history
    assert {line.get_label() for line in empty.axes[0].get_lines()} == {
        "up stack, held out",
        "down stack, held out",
        "no skill",
    }
