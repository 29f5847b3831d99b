"""The trained model as the live side uses it: two calibrated direction stacks and their thresholds.

Saved as a folder of plain files (LightGBM model text, XGBoost JSON, arrays, a JSON manifest)
that the MLflow pyfunc (models/pyfunc.py) carries as its artifact; loading it needs no refit and
no training code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import xgboost as xgb

from models.stack import DirectionStack, inference_threads

FORMAT = 1


class ModelInputError(ValueError):
    """The feature input does not match what the model was trained on (one line)."""


@dataclass
class StackedModel:
    feature_names: list[str]
    feature_set: str
    label_set: str
    horizon_ns: int
    tau: float  # dead zone of the labels (log return)
    up: DirectionStack
    down: DirectionStack
    threshold_up: float
    threshold_down: float

    def check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ModelInputError(
                f"the model takes {len(self.feature_names)} features (set {self.feature_set}), got shape {x.shape}"
            )
        return x

    def take(self, x: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The model's columns of ``x``, whose columns are ``names`` (e.g. the whole feature catalog)."""
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.feature_names if n not in index]
        if missing:
            raise ModelInputError(f"the input lacks {len(missing)} of the model's features (first: {missing[0]})")
        return np.asarray(x, np.float64)[..., [index[n] for n in self.feature_names]]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, 2): calibrated P(up), P(down)."""
        x = self.check(x)
        return np.column_stack([self.up.predict(x), self.down.predict(x)])

    def signal(self, proba: np.ndarray) -> np.ndarray:
        """+1 / -1 / 0 per row: the direction whose probability clears its threshold by more."""
        up = proba[:, 0] - self.threshold_up
        down = proba[:, 1] - self.threshold_down
        out = np.zeros(proba.shape[0], np.int8)
        out[(up >= 0) & (up >= down)] = 1
        out[(down >= 0) & (down > up)] = -1
        return out

    # -- files ------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "feature_names": self.feature_names,
            "feature_set": self.feature_set,
            "label_set": self.label_set,
            "horizon_ns": self.horizon_ns,
            "tau": self.tau,
            "threshold_up": self.threshold_up,
            "threshold_down": self.threshold_down,
        }
        for name, stack in (("up", self.up), ("down", self.down)):
            (directory / f"{name}.lgb.txt").write_text(stack.lgb_model.model_to_string())
            stack.xgb_model.save_model(str(directory / f"{name}.xgb.json"))
            manifest[name] = {
                "meta_coef": stack.meta_coef.tolist(),
                "meta_intercept": stack.meta_intercept,
                "cal_coef": stack.cal_coef,
                "cal_intercept": stack.cal_intercept,
                "lgb_best_iteration": stack.lgb_model.best_iteration,
                "xgb_best_iteration": getattr(stack.xgb_model, "best_iteration", None),
                "folds": stack.folds,
            }
        (directory / "model.json").write_text(json.dumps(manifest, indent=1))

    @classmethod
    def load(cls, directory: Path) -> StackedModel:
        try:
            manifest = json.loads((directory / "model.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelInputError(f"{directory}: not a saved model ({exc.__class__.__name__})") from None
        if manifest.get("format") != FORMAT:
            raise ModelInputError(f"{directory}: model format {manifest.get('format')}, this code reads {FORMAT}")

        def stack(name: str) -> DirectionStack:
            m = manifest[name]
            booster = lgb.Booster(model_str=(directory / f"{name}.lgb.txt").read_text())
            booster.best_iteration = int(m["lgb_best_iteration"] or 0)
            xgbm = xgb.Booster()
            xgbm.load_model(str(directory / f"{name}.xgb.json"))
            inference_threads(xgbm)
            return DirectionStack(
                booster,
                xgbm,
                np.asarray(m["meta_coef"], np.float64),
                float(m["meta_intercept"]),
                float(m["cal_coef"]),
                float(m["cal_intercept"]),
                list(m["folds"]),
            )

        return cls(
            feature_names=list(manifest["feature_names"]),
            feature_set=str(manifest["feature_set"]),
            label_set=str(manifest["label_set"]),
            horizon_ns=int(manifest["horizon_ns"]),
            tau=float(manifest["tau"]),
            up=stack("up"),
            down=stack("down"),
            threshold_up=float(manifest["threshold_up"]),
            threshold_down=float(manifest["threshold_down"]),
        )
