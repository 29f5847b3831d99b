"""The trained model as the live side uses it: two calibrated direction stacks and their thresholds.

Saved as a folder of plain files (LightGBM model text, XGBoost JSON, arrays, a JSON manifest)
that the MLflow pyfunc (models/pyfunc.py) carries as its artifact; loading it needs no refit and
no training code.

``predict_proba`` evaluates both stacks (four boosters, meta-learners, calibrators) in one call of
a numba kernel over their compiled forests (models/compiled.py), for one row (the live runner, a
few microseconds) or many (backtests, promotion): the same code, so the same probabilities to the
last bit. A booster that cannot be compiled leaves the model on the per-direction path, where that
booster predicts with its library.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.compiled import Arrays, CompiledForest, load_forests, pack, predict_stacks, save_forests
from models.metrics import NEVER
from models.profile import Profile
from models.stack import Boosters, DirectionStack

log = logging.getLogger(__name__)

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
    profile: Profile | None = field(default=None, compare=False)  # what it saw in training (for monitoring)
    _compiled: tuple[Arrays, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    _ready: bool = field(default=False, init=False, repr=False, compare=False)

    def compile(self) -> bool:
        """Build the compiled evaluator of both stacks (once) and run it on one row, so numba has
        compiled or loaded its kernel before the first real decision. True when every booster
        compiled (else the per-direction path serves, see ``DirectionStack.base``). The stacks must
        not change afterwards."""
        if not self._ready:
            forests = [*self.up.forests(), *self.down.forests()]
            if all(f is not None for f in forests):
                packed = pack(*(f for f in forests if f is not None))
                if packed.n_features <= len(self.feature_names):
                    self._compiled = (packed.arrays, np.stack([self.up.coefs(), self.down.coefs()]))
                else:
                    log.warning(
                        "the boosters read %d features, the model has %d", packed.n_features, len(self.feature_names)
                    )
            self._ready = True
            self.predict_proba(np.zeros(len(self.feature_names)))
        return self._compiled is not None

    def check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ModelInputError(
                f"the model takes {len(self.feature_names)} features (set {self.feature_set}), got shape {x.shape}"
            )
        return np.ascontiguousarray(x)

    def columns_for(self, names: Sequence[str]) -> np.ndarray:
        """Indices of the model's features in ``names``: ``x[..., model.columns_for(names)]`` is ``take``."""
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.feature_names if n not in index]
        if missing:
            raise ModelInputError(f"the input lacks {len(missing)} of the model's features (first: {missing[0]})")
        return np.array([index[n] for n in self.feature_names], np.intp)

    def take(self, x: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The model's columns of ``x``, whose columns are ``names`` (e.g. the whole feature catalog)."""
        return np.asarray(x, np.float64)[..., self.columns_for(names)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, 2): calibrated P(up), P(down); a single row (1-D) gives (1, 2)."""
        if not self._ready:
            self.compile()
        fast = self._compiled
        if fast is None:
            x = self.check(x)
            return np.column_stack([self.up.predict(x), self.down.predict(x)])
        if (
            type(x) is np.ndarray
            and x.ndim == 1
            and x.dtype == np.float64
            and x.shape[0] == len(self.feature_names)
            and x.flags.c_contiguous
        ):
            x = x.reshape(1, -1)  # the live runner's row: a view, no copy, no checks to repeat
        else:
            x = self.check(x)
        out: np.ndarray = predict_stacks(x, *fast)
        return out

    def signal(self, proba: np.ndarray) -> np.ndarray:
        """+1 / -1 / 0 per row: the direction whose probability is above its threshold by more.

        Strictly above: a probability equal to its threshold never fires, so a model whose output is
        one constant cannot trade on a threshold set at that constant (a quantile of it, say). On an
        exact tie of the two margins up wins."""
        up = proba[:, 0] - self.threshold_up
        down = proba[:, 1] - self.threshold_down
        out = np.zeros(proba.shape[0], np.int8)
        out[(up > 0) & (up >= down)] = 1
        out[(down > 0) & (down > up)] = -1
        return out

    @property
    def trades(self) -> bool:
        """Whether either direction can ever signal (a threshold below ``NEVER``)."""
        return min(self.threshold_up, self.threshold_down) < NEVER

    # -- files ------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """The model's files: each direction's boosters as their libraries write them, the arrays and
        thresholds in ``model.json``, and the compiled forests (checked against the libraries when
        they were compiled) in ``forests.npz``, tied to the booster files by their SHA-256."""
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
            "profile": self.profile.to_json() if self.profile is not None else None,
        }
        forests: dict[str, CompiledForest] = {}
        for name, stack in (("up", self.up), ("down", self.down)):
            (directory / f"{name}.lgb.txt").write_text(stack.boosters.lgb_text())
            (directory / f"{name}.xgb.json").write_bytes(stack.boosters.xgb_json())
            for kind, forest in zip(("lgb", "xgb"), stack.forests(), strict=True):
                if forest is not None:  # None: that booster predicts with its library
                    forests[f"{name}.{kind}"] = forest
            manifest[name] = {
                "meta_coef": stack.meta_coef.tolist(),
                "meta_intercept": stack.meta_intercept,
                "cal_coef": stack.cal_coef,
                "cal_intercept": stack.cal_intercept,
                "lgb_best_iteration": stack.boosters.lgb_best_iteration,
                "xgb_best_iteration": stack.boosters.xgb_best_iteration,
                "folds": stack.folds,
                "serves": stack.serves,
                "note": stack.note,
            }
        save_forests(directory / FORESTS, forests)
        files = [f"{n}.{k}" for n in ("up", "down") for k in ("lgb.txt", "xgb.json")] + [FORESTS]
        manifest["compiled"] = {"forests": sorted(forests), "sha256": {f: _sha256(directory / f) for f in files}}
        (directory / "model.json").write_text(json.dumps(manifest, indent=1))

    @classmethod
    def load(cls, directory: Path) -> StackedModel:
        try:
            manifest = json.loads((directory / "model.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelInputError(f"{directory}: not a saved model ({exc.__class__.__name__})") from None
        if manifest.get("format") != FORMAT:
            raise ModelInputError(f"{directory}: model format {manifest.get('format')}, this code reads {FORMAT}")

        forests = _saved_forests(directory, manifest)

        def stack(name: str) -> DirectionStack:
            m = manifest[name]
            boosters = Boosters.saved(
                (directory / f"{name}.lgb.txt").read_text(),
                int(m["lgb_best_iteration"] or 0),
                (directory / f"{name}.xgb.json").read_bytes(),
                m.get("xgb_best_iteration"),
            )
            out = DirectionStack(
                boosters,
                np.asarray(m["meta_coef"], np.float64),
                float(m["meta_intercept"]),
                float(m["cal_coef"]),
                float(m["cal_intercept"]),
                list(m["folds"]),
                serves=str(m.get("serves", "stack")),  # files before the fallback existed: the stack
                note=str(m.get("note", "")),
            )
            if forests is not None:  # else each booster is compiled (and checked) from its library on first use
                out.use_forests(forests.get(f"{name}.lgb"), forests.get(f"{name}.xgb"))
            return out

        model = cls(
            feature_names=list(manifest["feature_names"]),
            feature_set=str(manifest["feature_set"]),
            label_set=str(manifest["label_set"]),
            horizon_ns=int(manifest["horizon_ns"]),
            tau=float(manifest["tau"]),
            up=stack("up"),
            down=stack("down"),
            threshold_up=float(manifest["threshold_up"]),
            threshold_down=float(manifest["threshold_down"]),
            profile=Profile.from_json(manifest.get("profile")),
        )
        model.compile()
        return model


FORESTS = "forests.npz"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _saved_forests(directory: Path, manifest: dict[str, Any]) -> dict[str, CompiledForest] | None:
    """The compiled forests saved with the model, when they are there and the files they were
    compiled from are unchanged; else None (a model saved before they were, or a warning): the
    boosters are then compiled from their libraries and checked against them, as at training."""
    saved = manifest.get("compiled")
    if saved is None:
        return None
    try:
        if any(_sha256(directory / f) != digest for f, digest in saved["sha256"].items()):
            raise ValueError("a model file differs from the one its forests were saved with")
        forests = load_forests(directory / FORESTS)
        if sorted(forests) != sorted(saved["forests"]):
            raise ValueError(f"the forests saved are {sorted(forests)}, the manifest lists {sorted(saved['forests'])}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: compiled forests not used (%s): compiling them from the boosters", directory, exc)
        return None
    return forests
