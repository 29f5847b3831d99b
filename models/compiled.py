"""Compiled tree ensembles: LightGBM and XGBoost boosters as flat arrays walked by one numba kernel.

The libraries spend ~20 us (LightGBM) and ~140 us (XGBoost) per call on one row, almost all of it
call overhead; the trees here are small, so walking them takes a few microseconds. The same
kernels serve one row (the live runner) and many rows (training's scores, backtests, promotion),
so the two cannot disagree. The exactness rules, read from the libraries' sources and checked
against them in tests/test_compiled.py:

LightGBM (``Tree::NumericalDecision`` in double precision, from ``Booster.dump_model()``, whose
thresholds and leaf values are printed with 17 digits, i.e. exactly, except that an infinite
threshold (all non-missing values left, e.g. a NaN-or-not split) is printed as +-1e300: read back as
+-inf, as in the model text, so an input of +inf still goes left):
  * the C API drops values with |x| <= kZeroThreshold (float32(1e-35)) from a dense row, so they
    are 0.0; a NaN becomes 0.0 unless the split's missing_type is "NaN";
  * missing_type "Zero": a 0.0 goes to the default side; "NaN": a NaN goes to the default side;
  * otherwise ``x <= threshold`` goes left;
  * raw score = sum of the leaves in tree order from 0.0 (boost_from_average is in the first
    tree), probability = 1 / (1 + exp(-sigmoid * raw)): equal to ``predict`` to ~1e-16.
XGBoost (``GetNextNode``, from the booster's JSON model):
  * x is cast to float32; a NaN goes to the default side; ``float32(x) < split_condition`` goes
    left (split conditions and leaf values are float32);
  * margin = logit(base_score) + the leaves of the trees of iterations [0, best_iteration + 1).
    XGBoost adds them and applies the sigmoid in float32; here it is float64, so the probability
    differs from ``inplace_predict`` by up to ~1e-7 (float32 rounding), while every split goes
    the same way.
Categorical splits, linear trees, multi-class and other objectives raise ValueError: the caller
(models/stack.py) then falls back to the library.

The meta-learner and the calibrator (models/stack.py) are evaluated here as well, by scalar
functions shared by the per-row and the batch kernels: numpy's SIMD exp / log differ from libm's
in the last bit, so keeping one implementation keeps single-row and batch probabilities bitwise
equal. (This relies on numba not vectorising exp / log, i.e. on SVML being absent.)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)

KZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: a float literal in a double
EPS = 1e-6  # probability clip before a logit (as models.stack._logit)
MISSING = {"None": 0, "Zero": 1, "NaN": 2}  # LightGBM's missing_type
RULE_LGB, RULE_XGB = 0.0, 1.0
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # nodes, values, roots, bounds, params


@dataclass(frozen=True)
class CompiledForest:
    """One or more boosters (``pack``) as flat arrays; ``predict`` gives (n, forests) probabilities."""

    nodes: np.ndarray  # (nodes, 4) int32: feature (-1: leaf), left, right, flags (bit 0: default left; 1-2: missing)
    values: np.ndarray  # (nodes,) float64: the split threshold, or the leaf value
    roots: np.ndarray  # (trees,) int32
    bounds: np.ndarray  # (forests + 1,) int64: forest k is trees bounds[k]:bounds[k + 1]
    params: np.ndarray  # (forests, 3) float64: base margin, sigmoid scale, rule (0 LightGBM, 1 XGBoost)
    n_features: int  # the inputs' width (at least)

    @property
    def n_trees(self) -> int:
        return int(self.roots.size)

    @property
    def arrays(self) -> Arrays:
        """What the kernels take."""
        return self.nodes, self.values, self.roots, self.bounds, self.params

    def rows(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] < self.n_features:
            raise ValueError(f"the compiled model reads {self.n_features} features, got shape {x.shape}")
        return x

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, forests) probabilities."""
        out: np.ndarray = predict_forests(self.rows(x), self.arrays)
        return out


def _forest(
    nodes: list[tuple[int, int, int, int]],
    values: list[float],
    roots: list[int],
    base: float,
    scale: float,
    rule: float,
    n_features: int,
) -> CompiledForest:
    if any(f >= n_features for f, *_ in nodes):  # the kernels do not check bounds
        raise ValueError(f"a split reads a feature beyond the model's {n_features}")
    return CompiledForest(
        np.asarray(nodes, np.int32).reshape(-1, 4),
        np.asarray(values, np.float64),
        np.asarray(roots, np.int32),
        np.array([0, len(roots)], np.int64),
        np.array([[base, scale, rule]], np.float64),
        n_features,
    )


def pack(*forests: CompiledForest) -> CompiledForest:
    """Several forests in one set of arrays: one kernel call evaluates them all."""
    nodes, roots, bounds = [], [], [np.zeros(1, np.int64)]
    n_nodes = n_trees = 0
    for f in forests:
        shifted = f.nodes.copy()
        split = shifted[:, 0] >= 0
        shifted[split, 1:3] += n_nodes
        nodes.append(shifted)
        roots.append(f.roots + n_nodes)
        bounds.append(f.bounds[1:] + n_trees)
        n_nodes += len(f.values)
        n_trees += f.n_trees
    return CompiledForest(
        np.concatenate(nodes).astype(np.int32),
        np.concatenate([f.values for f in forests]),
        np.concatenate(roots).astype(np.int32),
        np.concatenate(bounds),
        np.concatenate([f.params for f in forests]),
        max(f.n_features for f in forests),
    )


FIELDS = ("nodes", "values", "roots", "bounds", "params")


def save_forests(path: Path, forests: dict[str, CompiledForest]) -> None:
    """Forests by name in one ``.npz`` file (plain arrays, no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    for name, f in forests.items():
        arrays |= {f"{name}.{k}": getattr(f, k) for k in FIELDS}
        arrays[f"{name}.n_features"] = np.array(f.n_features, np.int64)
    with path.open("wb") as out:
        np.savez(out, allow_pickle=False, **arrays)


def load_forests(path: Path) -> dict[str, CompiledForest]:
    """What ``save_forests`` wrote; ValueError (or OSError) when the file is not that."""
    with np.load(path, allow_pickle=False) as z:
        names = {k.rsplit(".", 1)[0] for k in z.files}
        out = {}
        for name in sorted(names):
            nodes, values, roots, bounds, params = (z[f"{name}.{k}"] for k in FIELDS)
            if nodes.ndim != 2 or nodes.shape[1] != 4 or len(values) != len(nodes) or params.shape[1:] != (3,):
                raise ValueError(f"compiled forest {name}: arrays of the wrong shape")
            n_features = int(z[f"{name}.n_features"])
            _check_walk(name, nodes, roots, bounds, len(params), n_features)
            out[name] = CompiledForest(
                nodes.astype(np.int32),
                values.astype(np.float64),
                roots.astype(np.int32),
                bounds.astype(np.int64),
                params.astype(np.float64),
                n_features,
            )
    return out


def _check_walk(name: str, nodes: np.ndarray, roots: np.ndarray, bounds: np.ndarray, forests: int, width: int) -> None:
    """The kernels check no index: a forest read from a file must lead every walk to a leaf inside
    its arrays (children after their parent, so no walk can loop) and read features inside the row."""
    n = len(nodes)
    split = nodes[:, 0] >= 0
    at = np.flatnonzero(split)
    children = nodes[split, 1:3]
    ok = (
        (nodes[:, 0] < width).all()
        and ((children > at[:, None]) & (children < n)).all()
        and ((roots >= 0) & (roots < n)).all()
        and len(bounds) == forests + 1
        and bounds[0] == 0
        and bounds[-1] == len(roots)
        and (np.diff(bounds) >= 0).all()
    )
    if not ok:
        raise ValueError(f"compiled forest {name}: an index outside its arrays")


def _lgb_node(node: dict[str, Any], nodes: list[tuple[int, int, int, int]], values: list[float]) -> int:
    """Append a LightGBM (sub)tree in depth-first order (a left child follows its parent); its index."""
    i = len(values)
    if "leaf_value" in node:
        nodes.append((-1, -1, -1, 0))
        values.append(float(node["leaf_value"]))
        return i
    if node.get("decision_type") != "<=" or node.get("missing_type") not in MISSING:
        raise ValueError(
            f"LightGBM split {node.get('decision_type')!r} (missing {node.get('missing_type')!r}): "
            "categorical splits are not compiled"
        )
    nodes.append((0, 0, 0, 0))
    threshold = float(node["threshold"])
    values.append(threshold if abs(threshold) < 1e300 else math.copysign(math.inf, threshold))  # see the docstring
    left = _lgb_node(node["left_child"], nodes, values)
    right = _lgb_node(node["right_child"], nodes, values)
    flags = int(bool(node["default_left"])) | MISSING[node["missing_type"]] << 1
    nodes[i] = (int(node["split_feature"]), left, right, flags)
    return i


def from_lightgbm(booster: Any, num_iteration: int | None = None) -> CompiledForest:
    """The trees ``predict(x, num_iteration=num_iteration)`` uses (None or <= 0: all of them)."""
    n = num_iteration if num_iteration is not None and num_iteration > 0 else -1
    d = booster.dump_model(num_iteration=n)
    objective = str(d.get("objective", "")).split()
    if not objective or objective[0] != "binary" or d.get("num_tree_per_iteration", 1) != 1 or d.get("average_output"):
        raise ValueError(f"LightGBM objective {d.get('objective')!r}: only the binary objective is compiled")
    scale = next((float(o.split(":", 1)[1]) for o in objective[1:] if o.startswith("sigmoid:")), 1.0)
    trees = d["tree_info"] if n <= 0 else d["tree_info"][:n]
    nodes: list[tuple[int, int, int, int]] = []
    values: list[float] = []
    roots = []
    for t in trees:
        if t.get("num_cat", 0) or t.get("is_linear"):
            raise ValueError("LightGBM tree with categorical splits or linear leaves: not compiled")
        roots.append(_lgb_node(t["tree_structure"], nodes, values))
    return _forest(nodes, values, roots, 0.0, scale, RULE_LGB, int(d["max_feature_idx"]) + 1)


def from_xgboost(booster: Any, best_iteration: int | None = None) -> CompiledForest:
    """The trees ``inplace_predict(x, iteration_range=(0, best_iteration + 1))`` uses (None: all)."""
    learner = json.loads(bytes(booster.save_raw("json")))["learner"]
    objective = learner["objective"]["name"]
    booster_kind = learner["gradient_booster"].get("name")
    if objective != "binary:logistic" or booster_kind != "gbtree":
        raise ValueError(f"XGBoost {booster_kind} with objective {objective!r}: only binary:logistic gbtree compiles")
    if "c" in (learner.get("feature_types") or []):
        raise ValueError("XGBoost model with categorical features: not compiled")
    model = learner["gradient_booster"]["model"]
    trees = model["trees"]
    per = int(model["gbtree_model_param"].get("num_parallel_tree", 1))
    indptr = model.get("iteration_indptr") or list(range(0, len(trees) + 1, per))
    if best_iteration is not None and not 0 <= best_iteration < len(indptr) - 1:
        raise ValueError(f"XGBoost best_iteration {best_iteration} is out of range ({len(indptr) - 1} iterations)")
    end = len(trees) if best_iteration is None else int(indptr[best_iteration + 1])
    score = str(learner["learner_model_param"]["base_score"]).strip("[]").split(",")
    if len(score) != 1:
        raise ValueError(f"XGBoost base_score {score}: one target expected")
    p0 = float(np.float32(score[0]))
    nodes: list[tuple[int, int, int, int]] = []
    values: list[float] = []
    roots = []
    for t in trees[:end]:
        if any(t.get("split_type") or []) or t.get("categories") or int(t["tree_param"]["size_leaf_vector"]) > 1:
            raise ValueError("XGBoost tree with categorical splits or vector leaves: not compiled")
        off = len(values)
        roots.append(off)
        cond = np.asarray(t["split_conditions"], np.float32).astype(np.float64)  # float32, as XGBoost holds them
        for j, (lo, hi) in enumerate(zip(t["left_children"], t["right_children"], strict=True)):
            leaf = lo == -1
            feature = -1 if leaf else int(t["split_indices"][j])
            nodes.append((feature, -1 if leaf else off + lo, -1 if leaf else off + hi, int(t["default_left"][j])))
        values.extend(cond.tolist())
    n_features = int(learner["learner_model_param"]["num_feature"])
    return _forest(nodes, values, roots, math.log(p0 / (1.0 - p0)), 1.0, RULE_XGB, n_features)


def probe_rows(forest: CompiledForest, n: int = 64, seed: int = 0) -> np.ndarray:
    """Rows for checking a forest against its library: split thresholds exactly and one step either
    side, zeros and NaNs (the first two rows are all-NaN and all-zero)."""
    rng = np.random.default_rng(seed)
    split = forest.nodes[:, 0] >= 0
    feature, threshold = forest.nodes[split, 0], forest.values[split]
    x = rng.normal(size=(n, forest.n_features))
    for shift in (0.0, -np.inf, np.inf):
        at = threshold if shift == 0.0 else np.nextafter(threshold, shift)
        x[rng.integers(0, n, feature.size), feature] = at
    x[rng.random(x.shape) < 0.1] = 0.0
    x[rng.random(x.shape) < 0.1] = np.nan
    x[0], x[1] = np.nan, 0.0
    return x


# -- kernels: parameterised by the arrays, the same code for both libraries ----------------------


@nb.njit(cache=True)
def _proba(x: np.ndarray, r: int, k: int, forest: Arrays) -> float:
    """Forest k's probability for row r: walk its trees, add the leaves to the base margin, sigmoid."""
    nodes, values, roots, bounds, params = forest
    xgb = params[k, 2] == RULE_XGB
    acc = params[k, 0]
    for t in range(bounds[k], bounds[k + 1]):
        i = roots[t]
        while nodes[i, 0] >= 0:
            v = x[r, nodes[i, 0]]
            flags = nodes[i, 3]
            if xgb:
                go_left = (flags & 1) == 1 if math.isnan(v) else np.float32(v) < values[i]
            else:
                if abs(v) <= KZERO:
                    v = 0.0
                missing = flags >> 1
                if math.isnan(v) and missing != 2:
                    v = 0.0
                if (missing == 1 and v == 0.0) or (missing == 2 and math.isnan(v)):
                    go_left = (flags & 1) == 1
                else:
                    go_left = v <= values[i]
            i = nodes[i, 1] if go_left else nodes[i, 2]
        acc += values[i]
    return 1.0 / (1.0 + math.exp(-params[k, 1] * acc))


@nb.njit(cache=True)
def predict_forests(x: np.ndarray, forest: Arrays) -> np.ndarray:
    """(n, forests) probabilities of rows ``x`` (C-contiguous float64, validated by the caller)."""
    out = np.empty((x.shape[0], forest[3].shape[0] - 1))
    for r in range(x.shape[0]):
        for k in range(out.shape[1]):
            out[r, k] = _proba(x, r, k, forest)
    return out


@nb.njit(cache=True)
def _logit(p: float) -> float:
    p = min(max(p, EPS), 1.0 - EPS)
    return math.log(p / (1.0 - p))


@nb.njit(cache=True)
def _meta(p_lgb: float, p_xgb: float, c: np.ndarray) -> float:
    """The meta-learner; c = [meta intercept, w_lgb, w_xgb, calibrator slope, calibrator intercept]."""
    z = c[0] + c[1] * _logit(p_lgb) + c[2] * _logit(p_xgb)
    return 1.0 / (1.0 + math.exp(-z))


@nb.njit(cache=True)
def _calibrate(p: float, c: np.ndarray) -> float:
    return 1.0 / (1.0 + math.exp(-(c[3] * _logit(p) + c[4])))


@nb.njit(cache=True)
def meta_kernel(p_lgb: np.ndarray, p_xgb: np.ndarray, c: np.ndarray) -> np.ndarray:
    out = np.empty(p_lgb.shape[0])
    for r in range(p_lgb.shape[0]):
        out[r] = _meta(p_lgb[r], p_xgb[r], c)
    return out


@nb.njit(cache=True)
def calibrate_kernel(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    out = np.empty(p.shape[0])
    for r in range(p.shape[0]):
        out[r] = _calibrate(p[r], c)
    return out


@nb.njit(cache=True)
def predict_stacks(x: np.ndarray, forest: Arrays, coefs: np.ndarray) -> np.ndarray:
    """(n, directions) calibrated probabilities: forests 2d, 2d + 1 are direction d's LightGBM and
    XGBoost, coefs[d] its meta-learner and calibrator (see ``_meta``)."""
    out = np.empty((x.shape[0], coefs.shape[0]))
    for r in range(x.shape[0]):
        for d in range(coefs.shape[0]):
            p_lgb = _proba(x, r, 2 * d, forest)
            p_xgb = _proba(x, r, 2 * d + 1, forest)
            out[r, d] = _calibrate(_meta(p_lgb, p_xgb, coefs[d]), coefs[d])
    return out
