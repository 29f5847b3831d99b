"""The stacked direction model: LightGBM + XGBoost -> logistic meta-learner -> Platt calibration.

One binary stack per direction (``up``: the forward return beats +tau, ``down``: it beats -tau),
so the model gives a calibrated confidence in [0, 1] for each direction. Fitting follows
REFERENCE section 5:

1. the base learners' out-of-fold predictions come from purged walk-forward folds of the fit
   block (each fold early-stops on the last part of its own training rows, after an embargo); the
   folds are independent (``fit_fold``): a ``FoldRunner`` fits them here or on a Dask cluster;
2. the meta-learner (a logistic regression with non-negative weights on the base learners'
   logits, centred within each fold) is fitted only on rows that have out-of-fold predictions;
   when it puts no weight on either, the base learner with the better out-of-fold AUC serves alone
   (``serves``, ``note``: training says so);
3. the final base learners are fitted on the whole fit block;
4. a Platt calibrator (a logistic regression on the stack's logit) is fitted on a later,
   embargoed block. Isotonic regression was tried first: with rare positives its empty bins map
   to probabilities of exactly 0 or 1, which a calibrated confidence must never be.

Everything fitted lives in ``DirectionStack`` / ``StackedModel`` as plain arrays and model
strings, so the live side loads it and never refits anything.

Training fits the boosters, and scores the folds' out-of-fold rows, with the libraries
(models/learners.py). A fitted ``DirectionStack`` predicts through its compiled forests
(models/compiled.py): the calibrator, the thresholds, the held-out scores and every later
prediction (backtests, promotion, the live runner) see the very same numbers. LightGBM's compiled
probabilities equal the library's; XGBoost's differ by up to ~1e-7 (the library adds its trees in
float32, the compiled forest in float64).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from models import compiled
from models.compiled import CompiledForest
from models.cv import walk_forward
from models.learners import BoostParams, TooShortError, fit_lgb, fit_xgb, inference_threads, predict_lgb, predict_xgb

if TYPE_CHECKING:
    import lightgbm as lgb
    import xgboost as xgb

log = logging.getLogger(__name__)

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def _compile(
    kind: str,
    build: Callable[[Any, int | None], CompiledForest],
    library: Callable[[Any, np.ndarray], np.ndarray],
    booster: Any,
    iteration: int | None,
    tolerance: float,
) -> CompiledForest | None:
    """A booster's compiled forest, checked against its library on probe rows; None (and a
    warning) when it cannot be compiled or does not match: that booster then uses the library."""
    try:
        forest = build(booster, iteration)
        probe = compiled.probe_rows(forest)
        gap = float(np.max(np.abs(forest.predict(probe)[:, 0] - library(booster, probe))))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("%s booster not compiled (%s): it predicts with the library", kind, exc)
        return None
    if not gap <= tolerance:
        log.warning(
            "compiled %s booster is %.3g off the library (> %g): it predicts with the library", kind, gap, tolerance
        )
        return None
    return forest


class Boosters:
    """A direction's LightGBM and XGBoost boosters: as trained, or as saved, in which case each is
    built from its model text only when something first asks for it (its library's import
    included). A model loaded with its compiled forests (models/model.py) predicts without either
    library, so a runner's start does not import them."""

    def __init__(self, lgb_model: lgb.Booster | None = None, xgb_model: xgb.Booster | None = None) -> None:
        self._lgb, self._xgb = lgb_model, xgb_model
        self._lgb_text: str | None = None
        self._lgb_best = 0
        self._xgb_json: bytes | None = None
        self._xgb_best: int | None = None

    @classmethod
    def saved(cls, lgb_text: str, lgb_best_iteration: int, xgb_json: bytes, xgb_best_iteration: int | None) -> Boosters:
        """Boosters from their saved files' contents (LightGBM model text, XGBoost JSON) and the
        best iterations the manifest records."""
        out = cls()
        out._lgb_text, out._lgb_best, out._xgb_json = lgb_text, lgb_best_iteration, xgb_json
        out._xgb_best = xgb_best_iteration
        return out

    @property
    def lgb_best_iteration(self) -> int:
        return int(self._lgb.best_iteration or 0) if self._lgb is not None else self._lgb_best

    @property
    def xgb_best_iteration(self) -> int | None:
        if self._xgb is None:
            return self._xgb_best
        best = getattr(self._xgb, "best_iteration", None)
        return None if best is None else int(best)

    @property
    def built(self) -> tuple[bool, bool]:
        """Whether each booster exists as a library object yet (LightGBM, XGBoost)."""
        return self._lgb is not None, self._xgb is not None

    @property
    def lgb(self) -> lgb.Booster:
        if self._lgb is None:
            import lightgbm

            booster = lightgbm.Booster(model_str=self._lgb_text)
            booster.best_iteration = self._lgb_best
            self._lgb = booster
        return self._lgb

    @property
    def xgb(self) -> xgb.Booster:
        if self._xgb is None:
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(bytearray(self._xgb_json or b""))
            self._xgb = inference_threads(booster)
        return self._xgb

    def lgb_text(self) -> str:
        """LightGBM's model text: as saved, or from the booster."""
        return self._lgb_text if self._lgb_text is not None else str(self.lgb.model_to_string())

    def xgb_json(self) -> bytes:
        """XGBoost's JSON model: as saved, or from the booster."""
        return self._xgb_json if self._xgb_json is not None else bytes(self.xgb.save_raw("json"))


@dataclass
class DirectionStack:
    """One direction's fitted stack; ``predict`` gives the calibrated probability.

    The boosters must not change once it has predicted: their compiled forests are built on first
    use (``forests``), or given with a saved model (``use_forests``)."""

    boosters: Boosters
    meta_coef: np.ndarray  # [w_lgb, w_xgb]
    meta_intercept: float
    cal_coef: float  # Platt calibrator: p = sigmoid(cal_coef * logit(p_meta) + cal_intercept)
    cal_intercept: float
    folds: list[dict[str, float]] = field(default_factory=list)
    serves: str = "stack"  # "lgb" / "xgb": the stack was degenerate, one calibrated base learner serves
    note: str = ""  # why, in one sentence (empty when the stack serves)
    _forests: tuple[CompiledForest | None, CompiledForest | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def lgb_model(self) -> lgb.Booster:
        return self.boosters.lgb

    @property
    def xgb_model(self) -> xgb.Booster:
        return self.boosters.xgb

    def use_forests(self, lgb_forest: CompiledForest | None, xgb_forest: CompiledForest | None) -> None:
        """Take the compiled forests saved with the model (checked against the libraries when they
        were compiled, at training): the boosters are then not needed to predict."""
        self._forests = (lgb_forest, xgb_forest)

    def forests(self) -> tuple[CompiledForest | None, CompiledForest | None]:
        """(LightGBM, XGBoost) compiled forests, built once; None for a booster left to its library."""
        if self._forests is None:
            lgb_iteration = self.lgb_model.best_iteration or None  # as predict_lgb / predict_xgb
            xgb_iteration = getattr(self.xgb_model, "best_iteration", None)
            self._forests = (
                _compile("LightGBM", compiled.from_lightgbm, predict_lgb, self.lgb_model, lgb_iteration, 1e-9),
                _compile("XGBoost", compiled.from_xgboost, predict_xgb, self.xgb_model, xgb_iteration, 1e-6),
            )
        return self._forests

    def coefs(self) -> np.ndarray:
        """[meta intercept, w_lgb, w_xgb, calibrator slope, calibrator intercept] for the kernels."""
        c = [self.meta_intercept, self.meta_coef[0], self.meta_coef[1], self.cal_coef, self.cal_intercept]
        return np.array(c, np.float64)

    def base(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, np.float64)
        f_lgb, f_xgb = self.forests()
        p_lgb = predict_lgb(self.lgb_model, x) if f_lgb is None else f_lgb.predict(x).ravel()
        p_xgb = predict_xgb(self.xgb_model, x) if f_xgb is None else f_xgb.predict(x).ravel()
        return p_lgb, p_xgb

    def meta(self, p_lgb: np.ndarray, p_xgb: np.ndarray) -> np.ndarray:
        a, b = np.ascontiguousarray(p_lgb, np.float64), np.ascontiguousarray(p_xgb, np.float64)
        out: np.ndarray = compiled.meta_kernel(a.ravel(), b.ravel(), self.coefs()).reshape(a.shape)
        return out

    def calibrate(self, p: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(p, np.float64)
        out: np.ndarray = compiled.calibrate_kernel(a.ravel(), self.coefs()).reshape(a.shape)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.calibrate(self.meta(*self.base(x)))


def fold_scores(oof: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUC and log loss of the base learners' out-of-fold probabilities (columns lgb, xgb) on one fold."""
    from sklearn.metrics import log_loss, roc_auc_score

    out = {}
    both = len(np.unique(y)) == 2
    for j, name in enumerate(("lgb", "xgb")):
        p = np.clip(oof[:, j], _EPS, 1.0 - _EPS)
        out[f"{name}_auc"] = float(roc_auc_score(y, p)) if both else float("nan")
        out[f"{name}_log_loss"] = float(log_loss(y, p, labels=[0, 1]))
    return out


class FoldData(NamedTuple):
    """One walk-forward fold of a direction's fit block: all its out-of-fold fit needs, so that a
    runner can send it to another process."""

    x_train: np.ndarray
    y_train: np.ndarray
    ts_train: np.ndarray
    x_test: np.ndarray
    params: BoostParams
    embargo_ns: int


class FoldFit(NamedTuple):
    """One fold's out-of-fold probabilities (columns LightGBM, XGBoost) and its boosters' rounds."""

    oof: np.ndarray
    lgb_rounds: int
    xgb_rounds: int


def fit_fold(fold: FoldData) -> FoldFit | None:
    """Fit one fold's two boosters on its training rows and predict its test rows; None for an early
    fold with too little history (its rows get no out-of-fold prediction)."""
    x, y, ts, x_test, params, embargo_ns = fold
    try:
        m1 = fit_lgb(x, y, ts, params, embargo_ns)
        m2 = fit_xgb(x, y, ts, params, embargo_ns)
    except TooShortError:
        return None
    oof = np.column_stack([predict_lgb(m1, x_test), predict_xgb(m2, x_test)])
    return FoldFit(oof, m1.best_iteration or m1.current_iteration(), getattr(m2, "best_iteration", 0) + 1)


FoldRunner = Callable[[Iterable[FoldData]], list[FoldFit | None]]
"""Fits independent folds with ``fit_fold`` and returns their results in the folds' order: ``serial``,
or a flow's tasks on a Dask cluster (flows/train.py). The folds come lazily: each one's rows are a
copy of its share of the fit block."""


def serial(folds: Iterable[FoldData]) -> list[FoldFit | None]:
    """The folds fitted here, one after another, each fold's rows made when it is fitted (the
    expanding folds together hold about n / 2 copies of the fit block)."""
    return [fit_fold(f) for f in folds]


def fit_direction(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    ts_fit: np.ndarray,
    x_cal: np.ndarray,
    y_cal: np.ndarray,
    params: BoostParams,
    embargo_ns: int,
    n_folds: int,
    runner: FoldRunner = serial,
) -> DirectionStack:
    """Fit one direction's stack: OOF base predictions -> meta -> final bases -> calibrator. The
    folds' fits are independent: ``runner`` does them, wherever it does."""
    oof = np.full((len(y_fit), 2), np.nan)
    fold_of = np.full(len(y_fit), -1)
    fold_rows: list[dict[str, float]] = []
    folds = walk_forward(ts_fit, n_folds, embargo_ns)
    work = (FoldData(x_fit[f.train], y_fit[f.train], ts_fit[f.train], x_fit[f.test], params, embargo_ns) for f in folds)
    for k, (f, fitted) in enumerate(zip(folds, runner(work), strict=True)):
        if fitted is None:
            continue
        oof[f.test] = fitted.oof
        fold_of[f.test] = k
        fold_rows.append(
            {
                "fold": k,
                "train_rows": float(f.train.size),
                "test_rows": float(f.test.size),
                "test_start_ns": float(f.test_start_ns),
                "lgb_rounds": float(fitted.lgb_rounds),
                "xgb_rounds": float(fitted.xgb_rounds),
                "positive_share": float(y_fit[f.test].mean()),
                **fold_scores(oof[f.test], y_fit[f.test]),
            }
        )
    have = np.isfinite(oof).all(axis=1)
    if have.sum() < 50 or len(np.unique(y_fit[have])) < 2:
        raise ValueError("too few out-of-fold predictions to fit the meta-learner (more data needed)")
    meta_w, meta_b = fit_logistic(fold_centred(_logit(oof[have]), fold_of[have]), y_fit[have])
    final_lgb = fit_lgb(x_fit, y_fit, ts_fit, params, embargo_ns)
    final_xgb = fit_xgb(x_fit, y_fit, ts_fit, params, embargo_ns)
    stack = DirectionStack(Boosters(final_lgb, final_xgb), meta_w, meta_b, 1.0, 0.0, fold_rows)
    if len(np.unique(y_cal)) < 2:
        raise ValueError("the calibration block has a single class: a longer window is needed")
    if not np.any(meta_w > 0):  # every weight at 0: one probability for every row
        best = best_by_folds(fold_rows)
        stack.note = (
            f"the meta-learner put no weight on either base learner (their out-of-fold logits did not rank "
            f"within the folds): the calibrated {NAMES[best]} serves instead"
        )
        serve_base(stack, best)
    calibrate(stack, x_cal, y_cal)
    return stack


NAMES = {"lgb": "LightGBM", "xgb": "XGBoost"}


def fold_centred(z: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each fold's logits minus their mean in that fold.

    A fold's base learners are fitted on its own history, so their level differs from fold to fold
    (an early fold that stopped after one round predicts its training base rate on every row). The
    meta-learner is to learn how to combine the base learners' rankings, not those levels: the
    calibrator fits the final level and scale on a later block anyway."""
    out = z.copy()
    for f in np.unique(fold):
        rows = fold == f
        out[rows] -= out[rows].mean(axis=0)
    return out


def best_by_folds(folds: list[dict[str, float]]) -> str:
    """The base learner with the higher mean out-of-fold AUC (LightGBM on a tie or without folds)."""
    mean = {k: float(np.nanmean([f.get(f"{k}_auc", np.nan) for f in folds] or [np.nan])) for k in ("lgb", "xgb")}
    return "xgb" if np.isfinite(mean["xgb"]) and not mean["xgb"] <= mean["lgb"] else "lgb"


def serve_base(stack: DirectionStack, which: str) -> None:
    """Make ``stack`` pass one base learner's probability through (meta weight 1 on it, 0 on the other)."""
    if which not in NAMES:
        raise ValueError(f"unknown base learner {which!r}")
    stack.meta_coef = np.array([1.0, 0.0] if which == "lgb" else [0.0, 1.0])
    stack.meta_intercept = 0.0
    stack.serves = which


def calibrate(stack: DirectionStack, x_cal: np.ndarray, y_cal: np.ndarray) -> None:
    """Fit the Platt calibrator of ``stack`` on the calibration block."""
    stack.cal_coef, stack.cal_intercept = 1.0, 0.0
    cal_w, cal_b = fit_logistic(_logit(stack.meta(*stack.base(x_cal)))[:, None], y_cal)
    stack.cal_coef, stack.cal_intercept = float(cal_w[0]), cal_b


def fit_logistic(z: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Logistic regression with non-negative slopes: (weights, intercept).

    Used for the meta-learner (a stack combines its base learners, it never bets against one) and
    for the Platt calibrator (a calibrator must keep the order of the scores). A slope that would
    want to be negative stops at 0: with no usable signal the probability falls back to the base
    rate. Unconstrained fits on small, noisy blocks flipped signs between the meta-learner and the
    calibrator.

    The columns are standardised before the fit and the weights mapped back after it, so the ridge
    penalty ``l2`` acts on the slope per standard deviation of the input. On the raw logits it did
    not: a base learner's logits span a few hundredths around the base rate's logit, a slope of 20
    is what such a score needs, and a penalty of 0.5 * l2 * 20^2 outweighed its whole gain in log
    loss, so the slopes stopped at about 0 and the stack gave one probability on every row (the
    demo's down model: P = 0.0665 everywhere, its LightGBM alone ranked with AUC 0.563). A column
    without spread gets weight 0.
    """
    from scipy.optimize import minimize

    n, k = z.shape
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    mu = z.mean(axis=0)
    sd = z.std(axis=0)
    spread = sd > 1e-12 * np.maximum(1.0, np.abs(mu))
    zs = np.where(spread, (z - mu) / np.where(spread, sd, 1.0), 0.0)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:k], theta[k]
        u = zs @ w + b
        p = 1.0 / (1.0 + np.exp(-u))
        value = float(np.mean(np.logaddexp(0.0, u) - y * u) + 0.5 * l2 * w @ w)
        g = p - y
        return value, np.concatenate([zs.T @ g / n + l2 * w, [g.mean()]])

    start = np.concatenate([np.zeros(k), [np.log(rate / (1 - rate))]])
    bounds = [(0.0, None if ok else 0.0) for ok in spread] + [(None, None)]
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    w = np.where(spread, res.x[:k] / np.where(spread, sd, 1.0), 0.0)
    return np.asarray(w, np.float64), float(res.x[k] - w @ mu)
