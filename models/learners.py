"""The two base learners, LightGBM and XGBoost: their settings, fitting with early stopping, prediction.

Settings come from the config (``BoostParams.of(cfg.training)``); each fit early-stops on the
latest share of its own rows after an embargo. models/stack.py stacks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import TrainingConfig

if TYPE_CHECKING:  # the boosters are imported where a model is fitted or loaded, not with every command
    import lightgbm as lgb
    import xgboost as xgb


@dataclass(frozen=True)
class BoostParams:
    """Shared settings of the two base learners (early stopping decides the number of rounds).

    No defaults of its own: ``BoostParams.of(cfg.training)``, the config section is the one truth."""

    rounds: int
    learning_rate: float
    num_leaves: int
    max_depth: int
    min_child_samples: int
    subsample: float
    colsample: float
    early_stopping: int
    inner_valid: float  # share of each training set (its latest rows) used for early stopping
    threads: int
    seed: int

    @classmethod
    def of(cls, t: TrainingConfig) -> BoostParams:
        return cls(
            rounds=t.rounds,
            learning_rate=t.learning_rate,
            num_leaves=t.num_leaves,
            max_depth=t.max_depth,
            min_child_samples=t.min_child_samples,
            subsample=t.subsample,
            colsample=t.colsample,
            early_stopping=t.early_stopping,
            inner_valid=t.inner_valid,
            threads=t.threads,
            seed=t.seed,
        )

    def lgb(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_child_samples": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1,
            "feature_fraction": self.colsample,
            "num_threads": self.threads,
            "seed": self.seed,
            "deterministic": True,
            # with deterministic, as LightGBM's parameter documentation asks: otherwise it times both
            # histogram layouts at the start of every fit and takes the faster (they add up the
            # histograms in different orders), a choice another job on the machine or a busy Dask
            # worker tips either way
            "force_col_wise": True,
            "verbosity": -1,
        }

    def xgb(self, base_rate: float) -> dict[str, Any]:
        """XGBoost's settings for labels whose positive share is ``base_rate``.

        LightGBM's ``min_child_samples`` counts rows; XGBoost's ``min_child_weight`` counts the
        logistic loss's hessian, p (1 - p) per row. XGBoost starts from the base rate (its
        base_score is estimated from the labels) and a weak signal keeps it near there, so a row
        weighs about base_rate (1 - base_rate): ``min_child_samples`` such rows make the same
        floor. (A fixed 0.05 per row was too strict below a 5 % base rate, where XGBoost grew no
        tree while LightGBM ranked, and up to 5x looser near balanced labels.)"""
        weight = self.min_child_samples * base_rate * (1.0 - base_rate)
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": max(weight, 1e-3),  # 1e-3: LightGBM's min_sum_hessian_in_leaf
            "subsample": self.subsample,
            "colsample_bytree": self.colsample,
            "nthread": self.threads,
            "seed": self.seed,
            "tree_method": "hist",
        }


class TooShortError(ValueError):
    """A training set too short to hold out an embargoed early-stopping block."""


def _split_inner(ts: np.ndarray, share: float, embargo_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, early-stopping) rows: the latest ``share`` of the span, after an embargo."""
    cut = int(ts[0] + (ts[-1] - ts[0]) * (1.0 - share))
    fit = np.flatnonzero(ts < cut - embargo_ns)
    valid = np.flatnonzero(ts >= cut)
    if fit.size < 100 or valid.size < 30:
        raise TooShortError(
            f"{ts.size} training rows leave {fit.size} to fit and {valid.size} to early-stop after the embargo"
        )
    return fit, valid


def fit_lgb(x: np.ndarray, y: np.ndarray, ts: np.ndarray, p: BoostParams, embargo_ns: int) -> lgb.Booster:
    import lightgbm as lgb

    fit, valid = _split_inner(ts, p.inner_valid, embargo_ns)
    train = lgb.Dataset(x[fit], y[fit], free_raw_data=True)
    val = lgb.Dataset(x[valid], y[valid], reference=train)
    return lgb.train(
        p.lgb(),
        train,
        num_boost_round=p.rounds,
        valid_sets=[val],
        callbacks=[lgb.early_stopping(p.early_stopping, verbose=False)],
    )


def fit_xgb(x: np.ndarray, y: np.ndarray, ts: np.ndarray, p: BoostParams, embargo_ns: int) -> xgb.Booster:
    import xgboost as xgb

    fit, valid = _split_inner(ts, p.inner_valid, embargo_ns)
    train = xgb.DMatrix(x[fit], label=y[fit])
    val = xgb.DMatrix(x[valid], label=y[valid])
    booster = xgb.train(
        p.xgb(float(y[fit].mean())),
        train,
        num_boost_round=p.rounds,
        evals=[(val, "valid")],
        early_stopping_rounds=p.early_stopping,
        verbose_eval=False,
    )
    return inference_threads(booster)


def predict_lgb(model: lgb.Booster, x: np.ndarray) -> np.ndarray:
    threads = 1 if x.shape[0] < 1000 else 0  # a few rows: no thread start-up (0: LightGBM's default)
    return np.asarray(model.predict(x, num_iteration=model.best_iteration or None, num_threads=threads), np.float64)


def inference_threads(model: xgb.Booster) -> xgb.Booster:
    """Predict on one thread: after LightGBM's OpenMP threads, XGBoost's would fight them for the
    cores (a single row then takes ~9 ms instead of ~0.2 ms on 2 cores)."""
    model.set_param({"nthread": 1})
    return model


def predict_xgb(model: xgb.Booster, x: np.ndarray) -> np.ndarray:
    best = getattr(model, "best_iteration", None)
    rng = (0, best + 1) if best is not None else (0, 0)
    return np.asarray(model.inplace_predict(x, iteration_range=rng), np.float64)
