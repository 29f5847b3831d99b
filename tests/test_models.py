"""The stacked model: it learns a planted signal, shuffled labels teach it nothing, it reloads exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.config import TrainingConfig
from models.learners import BoostParams
from models.metrics import NEVER, choose_threshold, score
from models.model import ModelInputError, StackedModel
from models.result import Evidence, TrainResult
from pipelines.training import train

S = 1_000_000_000
FAST = replace(
    BoostParams.of(TrainingConfig()), rounds=60, early_stopping=10, min_child_samples=50, num_leaves=31, max_depth=6
)

NEED = Evidence.of(TrainingConfig())


def _data(
    n: int = 12_000, signal: float = 1.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Rows one second apart; the forward return depends on feature 0 (and noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    ret = 1e-4 * (signal * x[:, 0] + rng.normal(size=n))
    tau = 1e-4
    direction = np.where(ret > tau, 1, np.where(ret < -tau, -1, 0)).astype(np.int8)
    return x, np.arange(n, dtype=np.int64) * S, ret, direction, tau


def _fit(x: np.ndarray, ts: np.ndarray, ret: np.ndarray, direction: np.ndarray, tau: float) -> TrainResult:
    names = [f"f{i}" for i in range(x.shape[1])]
    # the rows' returns are independent: a 1 s label horizon (no overlap between neighbouring labels)
    return train(x, ts, ret, direction, names, "fs1", "ls1", 1 * S, tau, FAST, 3, (0.6, 0.2, 0.2), 60 * S, NEED)


def test_the_stack_learns_a_planted_signal_and_trades_it_profitably() -> None:
    x, ts, ret, direction, tau = _data()
    result = _fit(x, ts, ret, direction, tau)
    for d in ("up", "down"):
        st = result.scores[d]["stack"]
        assert st.auc > 0.75 and st.ic > 0.3
        assert st.signals > 0 and st.precision > 0.6 and st.threshold < NEVER
    assert len(result.verdict) == 8 and all(line.startswith(("up:", "down:")) for line in result.verdict)
    assert result.trades and all(result.operating[d].confirmation.ok for d in ("up", "down"))
    assert all("confirmed on the later" in result.operating[d].why for d in ("up", "down"))
    m = result.metrics()
    assert result.rows["test"] > 2000 and m["up_stack/auc"] == result.scores["up"]["stack"].auc
    for d in ("up", "down"):  # every held-out AUC carries its block-bootstrap interval
        assert m[f"{d}_stack/auc_lo"] < m[f"{d}_stack/auc"] < m[f"{d}_stack/auc_hi"]
        assert m[f"{d}_stack/auc_lo"] > 0.5  # a planted signal: the interval excludes no skill
    assert m["rows/test"] == result.rows["test"]


def test_shuffled_labels_give_an_auc_near_one_half() -> None:
    x, ts, ret, direction, tau = _data(seed=1)
    perm = np.random.default_rng(2).permutation(len(ret))
    result = _fit(x, ts, ret[perm], direction[perm], tau)
    for d in ("up", "down"):
        assert abs(result.scores[d]["stack"].auc - 0.5) < 0.05


def test_a_saved_model_reloads_with_identical_predictions(tmp_path: Path) -> None:
    x, ts, ret, direction, tau = _data(n=6000)
    model = _fit(x, ts, ret, direction, tau).model
    model.save(tmp_path / "m")
    again = StackedModel.load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict_proba(x[:500]), model.predict_proba(x[:500]))
    assert again.threshold_up == model.threshold_up and again.feature_names == model.feature_names
    with pytest.raises(ModelInputError, match="takes 8 features"):
        again.predict_proba(x[:5, :3])
    with pytest.raises(ModelInputError, match="not a saved model"):
        StackedModel.load(tmp_path)


def test_the_threshold_maximises_net_profit_and_refuses_to_trade_a_losing_signal() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    ret = np.array([3.0, 2.0, 0.5, -1.0, -0.5])
    # cost 1: trading the top 1, 2, 3, 4, 5 rows earns 2, 3, 2.5, 0.5, -1 in total: the top 2 are best
    c = choose_threshold(p, ret, cost=1.0, min_signals=1, z=0.0, demean=False)
    assert 0.7 < c.threshold < 0.8 and c.per_signal == pytest.approx(1.5) and c.signals == 2
    assert choose_threshold(p, -ret, cost=1.0, min_signals=1, z=0.0, demean=False).threshold == NEVER
    # at least 3 signals: the top 3
    assert 0.6 < choose_threshold(p, ret, cost=1.0, min_signals=3, z=0.0, demean=False).threshold < 0.7
    # with the standard-error guard: the top 2 earn 2 and 1 (mean 1.5, standard error 0.5): 3 SE is too many
    assert choose_threshold(p, ret, cost=1.0, min_signals=1, z=2.0, demean=False).se == pytest.approx(0.5)
    assert choose_threshold(p, ret, cost=1.0, min_signals=1, z=2.0, demean=False).threshold < 0.8
    assert choose_threshold(p, ret, cost=1.0, min_signals=1, z=3.0, demean=False).threshold == NEVER
    s = score(p, np.array([1, 1, 0, 0, 1]), ret, c.threshold)
    assert s.signals == 2 and s.precision == 1.0 and s.fpr == 0.0


def test_a_trending_block_does_not_set_a_threshold_near_the_base_rate() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.1, 0.3, 5000)  # no information at all
    ret = rng.normal(0.0, 3.0, 5000) + 0.2  # a block that drifted up by chance
    assert (
        choose_threshold(p, ret, cost=0.0, min_signals=NEED.min_orders, z=0.0, demean=False).threshold < 0.2
    )  # unguarded: trade nearly all
    assert (
        choose_threshold(p, ret, cost=0.0, min_signals=NEED.min_orders, z=NEED.z).threshold == NEVER
    )  # the drift is taken out, the ranking is noise
    informative = rng.uniform(0.0, 1.0, 5000)
    ret = rng.normal(0.0, 3.0, 5000) + 2.0 * (informative - 0.5) + 0.2
    c = choose_threshold(informative, ret, cost=0.5, min_signals=NEED.min_orders, z=NEED.z)
    assert 0.5 < c.threshold < 1.0 and c.per_signal > 0  # a ranking that pays the cost still trades its top


def test_too_few_rows_is_a_clear_error() -> None:
    x, ts, ret, direction, tau = _data(n=300)
    with pytest.raises(ValueError, match="too few rows"):
        _fit(x, ts, ret, direction, tau)


def test_meta_and_calibrator_slopes_never_turn_negative() -> None:
    from models.stack import fit_logistic

    rng = np.random.default_rng(3)
    z = rng.normal(size=(4000, 1))
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-(1.5 * z[:, 0] - 1)))).astype(float)
    w, b = fit_logistic(z, y)
    assert w[0] == pytest.approx(1.5, abs=0.15) and b == pytest.approx(-1.0, abs=0.15)
    w, b = fit_logistic(-z, y)  # an inverted score: no slope, the base rate
    assert w[0] == 0.0 and 1 / (1 + np.exp(-b)) == pytest.approx(y.mean(), abs=1e-4)


def _rare(n: int, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows one second apart; the positives are the top ``rate`` of feature 0 plus as much noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    z = x[:, 0] + rng.normal(size=n)
    return x, (z > np.quantile(z, 1.0 - rate)).astype(np.float64), np.arange(n, dtype=np.int64) * S


@pytest.mark.parametrize(
    ("rate", "rows", "ranks"),
    [
        (0.02, 8000, True),  # rare positives, enough rows: both rank (a fixed 0.05 per row grew no tree)
        (0.3, 6000, False),  # too few rows for min_child_samples: LightGBM grows no tree, nor may XGBoost
    ],
)
def test_both_learners_grow_trees_on_the_same_data_whatever_the_base_rate(rate: float, rows: int, ranks: bool) -> None:
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from models.learners import _split_inner, fit_lgb, fit_xgb, predict_lgb, predict_xgb

    p = replace(
        BoostParams.of(TrainingConfig()),
        rounds=200,
        num_leaves=7,
        max_depth=3,
        min_child_samples=2000,
        early_stopping=30,
    )
    x, y, ts = _rare(rows, rate, 0)
    x_test, y_test, _ = _rare(20_000, rate, 1)
    auc = {
        "lgb": roc_auc_score(y_test, predict_lgb(fit_lgb(x, y, ts, p, 60 * S), x_test)),
        "xgb": roc_auc_score(y_test, predict_xgb(fit_xgb(x, y, ts, p, 60 * S), x_test)),
    }
    if ranks:
        assert auc["lgb"] > 0.85 and auc["xgb"] > 0.85 and abs(auc["lgb"] - auc["xgb"]) < 0.03
        # the old floor, 0.05 of hessian per row, on the same rows: one probability for every row
        fit, valid = _split_inner(ts, p.inner_valid, 60 * S)
        old = {**p.xgb(float(y[fit].mean())), "min_child_weight": 0.05 * p.min_child_samples}
        dfit, dvalid = xgb.DMatrix(x[fit], label=y[fit]), xgb.DMatrix(x[valid], label=y[valid])
        booster = xgb.train(
            old, dfit, p.rounds, evals=[(dvalid, "v")], early_stopping_rounds=p.early_stopping, verbose_eval=False
        )
        assert np.unique(predict_xgb(booster, x_test)).size == 1
    else:
        assert auc == {"lgb": 0.5, "xgb": 0.5}  # a constant each: no split has min_child_samples rows a side
