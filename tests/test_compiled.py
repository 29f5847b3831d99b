"""Compiled forests (models/compiled.py) predict what LightGBM and XGBoost predict.

Real boosters are trained on random rows with NaNs and exact zeros sprinkled in, then compared
with their libraries on rows that hit every split threshold exactly, one step either side, and
NaN / zero / tiny values: LightGBM to 1e-9 (in practice bit for bit), XGBoost to 1e-6 (XGBoost
adds its trees in float32, the compiled forest in float64).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from models import compiled
from models.compiled import KZERO, from_lightgbm, from_xgboost, pack, predict_stacks, probe_rows
from models.learners import predict_lgb, predict_xgb
from models.model import ModelInputError, StackedModel
from models.stack import Boosters, DirectionStack, _compile

N_FEATURES = 6


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows with ~10% NaN and ~25% exact zeros in some columns; the label leans on sign and NaN-ness."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    x[rng.random(x.shape) < 0.25] = 0.0
    x[:, 1:4][rng.random((n, 3)) < 0.1] = np.nan
    z = 1.5 * (x[:, 0] > 0) + np.nan_to_num(x[:, 1], nan=1.0) - 0.7 * np.isnan(x[:, 2]) + 0.5 * x[:, 4]
    y = (rng.random(n) < 1 / (1 + np.exp(-(z - 0.5)))).astype(np.float64)
    return x, y


def _rows(forest: compiled.CompiledForest, x: np.ndarray) -> np.ndarray:
    """Probe rows (thresholds exactly, one step off, NaN, 0), tiny values around LightGBM's zero
    threshold, float32 neighbours of the thresholds, and training rows."""
    split = forest.nodes[:, 0] >= 0
    t32 = forest.values[split].astype(np.float32)
    gap = np.spacing(np.abs(t32)).astype(np.float64)
    tiny = np.array([0.0, -0.0, 1e-36, -1e-36, KZERO, -KZERO, np.nextafter(KZERO, 1), -np.nextafter(KZERO, 1), 1e-30])
    rng = np.random.default_rng(1)
    extra = np.zeros((4 * tiny.size, forest.n_features))
    extra[:] = rng.choice(tiny, size=extra.shape)
    near = probe_rows(forest, 200, seed=2)
    for frac in (0.25, 0.75, -0.25, -0.75):  # between float32 neighbours: rounds onto the threshold, or past it
        near[rng.integers(0, 200, t32.size), forest.nodes[split, 0]] = t32 - frac * gap
    return np.vstack([probe_rows(forest, 300), extra, near, x[:500]])


def _lgb(x: np.ndarray, y: np.ndarray, rounds: int = 40, **params: Any) -> lgb.Booster:
    base = {"objective": "binary", "num_leaves": 7, "max_depth": 3, "min_child_samples": 20, "verbosity": -1}
    return lgb.train({**base, **params}, lgb.Dataset(x, y), num_boost_round=rounds)


def _xgb(x: np.ndarray, y: np.ndarray, rounds: int = 30, **params: Any) -> xgb.Booster:
    base = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "tree_method": "hist", "nthread": 1}
    return xgb.train({**base, **params}, xgb.DMatrix(x, label=y), num_boost_round=rounds)


def _missing_types(booster: lgb.Booster) -> set[str]:
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            found.add(node["missing_type"])
            walk(node["left_child"])
            walk(node["right_child"])

    for t in booster.dump_model()["tree_info"]:
        walk(t["tree_structure"])
    return found


@pytest.mark.kernels
@pytest.mark.parametrize(
    ("params", "missing"),
    [
        ({}, {"None", "NaN"}),  # NaN seen in training: missing_type NaN on those columns
        ({"zero_as_missing": True}, {"Zero"}),  # zeros and NaN are missing
        ({"use_missing": False}, {"None"}),  # NaN is 0.0
        ({"objective": "cross_entropy"}, {"None", "NaN"}),
        ({"sigmoid": 0.7, "boost_from_average": False}, {"None", "NaN"}),
    ],
)
def test_lightgbm_forests_equal_the_library(params: dict[str, Any], missing: set[str]) -> None:
    x, y = _data()
    booster = _lgb(x, y, **params)
    assert missing <= _missing_types(booster)
    if params.get("objective") == "cross_entropy":
        with pytest.raises(ValueError, match="only the binary objective"):
            from_lightgbm(booster, None)
        return
    forest = from_lightgbm(booster, None)
    thresholds = forest.values[forest.nodes[:, 0] >= 0]
    assert np.any(np.abs(thresholds) == KZERO)  # a split at zero, where LightGBM's zero threshold matters
    rows = _rows(forest, x)
    got = forest.predict(rows)[:, 0]
    want = booster.predict(rows)
    assert got.dtype == np.float64 and np.max(np.abs(got - want)) <= 1e-9
    for k in (1, 7):  # the iteration range, as predict(num_iteration=k)
        part = from_lightgbm(booster, k)
        assert part.n_trees == k
        np.testing.assert_allclose(part.predict(rows)[:, 0], booster.predict(rows, num_iteration=k), rtol=0, atol=1e-9)


@pytest.mark.kernels
def test_lightgbm_best_iteration_is_honoured_like_predict_lgb() -> None:
    x, y = _data(seed=3)
    booster = _lgb(x, y, rounds=30)
    booster.best_iteration = 12
    forest = from_lightgbm(booster, booster.best_iteration)
    assert forest.n_trees == 12
    rows = _rows(forest, x)
    assert np.max(np.abs(forest.predict(rows)[:, 0] - predict_lgb(booster, rows))) <= 1e-9


@pytest.mark.kernels
@pytest.mark.parametrize("params", [{}, {"num_parallel_tree": 2, "subsample": 0.8}, {"base_score": 0.3}])
def test_xgboost_forests_equal_the_library(params: dict[str, Any]) -> None:
    x, y = _data(seed=4)
    booster = _xgb(x, y, **params)
    with pytest.raises(ValueError, match="out of range"):  # as the library's own check
        from_xgboost(booster, 30)
    for best in (None, 0, 9, 29):
        forest = from_xgboost(booster, best)
        rng = (0, 0) if best is None else (0, best + 1)
        rows = _rows(forest, x)
        got = forest.predict(rows)[:, 0]
        want = booster.inplace_predict(rows, iteration_range=rng)
        assert np.max(np.abs(got - want)) <= 1e-6, (best, np.max(np.abs(got - want)))
    per = params.get("num_parallel_tree", 1)
    assert from_xgboost(booster, 9).n_trees == 10 * per and from_xgboost(booster, None).n_trees == 30 * per


@pytest.mark.kernels
def test_xgboost_early_stopping_is_honoured_like_predict_xgb() -> None:
    x, y = _data(seed=5)
    train, valid = xgb.DMatrix(x[:2000], label=y[:2000]), xgb.DMatrix(x[2000:], label=y[2000:])
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1}
    booster = xgb.train(params, train, 200, evals=[(valid, "v")], early_stopping_rounds=5, verbose_eval=False)
    assert booster.best_iteration + 1 < booster.num_boosted_rounds()
    forest = from_xgboost(booster, booster.best_iteration)
    rows = _rows(forest, x)
    assert np.max(np.abs(forest.predict(rows)[:, 0] - predict_xgb(booster, rows))) <= 1e-6


def test_unsupported_boosters_are_clear_errors() -> None:
    x, y = _data(n=600)
    x[:, 0] = np.floor(np.abs(x[:, 0]) * 3)
    with pytest.raises(ValueError, match="categorical"):
        from_lightgbm(
            lgb.train({"verbosity": -1, "objective": "binary"}, lgb.Dataset(x, y, categorical_feature=[0])), None
        )
    with pytest.raises(ValueError, match="only the binary objective"):
        from_lightgbm(lgb.train({"verbosity": -1, "objective": "regression"}, lgb.Dataset(x, y), 3), None)
    with pytest.raises(ValueError, match="binary:logistic"):
        from_xgboost(xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(x, label=y), 3), None)
    cat = xgb.DMatrix(x, label=y, feature_types=["c"] + ["q"] * (N_FEATURES - 1), enable_categorical=True)
    with pytest.raises(ValueError, match="categorical"):
        from_xgboost(xgb.train({"objective": "binary:logistic", "tree_method": "hist"}, cat, 3), None)
    with pytest.raises(ValueError, match="reads 6 features"):
        from_xgboost(_xgb(x, y, rounds=2), None).predict(x[:, :3])


@pytest.mark.kernels
def test_a_booster_that_does_not_compile_or_match_falls_back_to_its_library(caplog: pytest.LogCaptureFixture) -> None:
    x, y = _data(n=800)
    cat_x = x.copy()
    cat_x[:, 0] = np.floor(np.abs(x[:, 0]) * 3)
    cat = lgb.train({"verbosity": -1, "objective": "binary"}, lgb.Dataset(cat_x, y, categorical_feature=[0]), 5)
    stack = DirectionStack(Boosters(cat, _xgb(cat_x, y, rounds=5)), np.array([1.0, 1.0]), 0.0, 1.0, 0.0)
    with caplog.at_level(logging.WARNING):
        f_lgb, f_xgb = stack.forests()
        p_lgb, p_xgb = stack.base(cat_x[:50])
    assert f_lgb is None and f_xgb is not None and "LightGBM booster not compiled" in caplog.text
    np.testing.assert_array_equal(p_lgb, predict_lgb(cat, cat_x[:50]))
    assert np.max(np.abs(p_xgb - predict_xgb(stack.xgb_model, cat_x[:50]))) <= 1e-6
    wrong = _compile("XGBoost", from_xgboost, lambda b, r: np.zeros(len(r)), stack.xgb_model, None, 1e-6)
    assert wrong is None and "off the library" in caplog.text


@pytest.mark.kernels
def test_packed_stacks_give_the_per_direction_path_bit_for_bit() -> None:
    x, y = _data(n=1500, seed=6)
    stacks = [
        DirectionStack(Boosters(_lgb(x, y, 15), _xgb(x, y, 12)), np.array([0.6, 0.5]), -0.1, 1.2, 0.05),
        DirectionStack(Boosters(_lgb(x, 1 - y, 10), _xgb(x, 1 - y, 8)), np.array([0.0, 0.9]), 0.2, 0.8, -0.3),
    ]
    forests = [f for s in stacks for f in s.forests() if f is not None]
    packed = pack(*forests)
    coefs = np.stack([s.coefs() for s in stacks])
    rows = np.ascontiguousarray(x[:300])
    fused = predict_stacks(rows, packed.arrays, coefs)
    np.testing.assert_array_equal(fused, np.column_stack([s.predict(rows) for s in stacks]))
    np.testing.assert_array_equal(packed.predict(rows), np.column_stack([f.predict(rows)[:, 0] for f in forests]))
    one = np.vstack([predict_stacks(r[None, :], packed.arrays, coefs) for r in rows[:50]])
    np.testing.assert_array_equal(one, fused[:50])
    for s, p in zip(stacks, fused.T):  # the library path: the boosters' own predictions, the same meta math
        lib = s.calibrate(s.meta(predict_lgb(s.lgb_model, rows), predict_xgb(s.xgb_model, rows)))
        assert np.max(np.abs(lib - p)) <= 1e-6


def test_a_trained_model_predicts_through_the_compiled_path_after_a_round_trip(tmp_path: Path) -> None:
    from tests.test_models import _data as model_data
    from tests.test_models import _fit

    x, ts, ret, direction, tau = model_data(n=6000)
    x[::7, 3] = np.nan
    x[::5, 5] = 0.0
    model = _fit(x, ts, ret, direction, tau).model
    model.save(tmp_path / "m")
    again = StackedModel.load(tmp_path / "m")
    assert again.compile() and model.compile()
    batch = again.predict_proba(x[:1000])
    np.testing.assert_array_equal(batch, model.predict_proba(x[:1000]))
    rows = np.vstack([again.predict_proba(r) for r in x[:200]])
    np.testing.assert_array_equal(rows, batch[:200])  # the live runner's row = the backtest's batch, bit for bit
    lib = np.column_stack(
        [
            s.calibrate(s.meta(predict_lgb(s.lgb_model, x[:1000]), predict_xgb(s.xgb_model, x[:1000])))
            for s in (again.up, again.down)
        ]
    )
    assert np.max(np.abs(lib - batch)) <= 1e-6
    names = [*(f"f{i}" for i in reversed(range(x.shape[1]))), "other"]
    wide = np.column_stack([x[:10, ::-1], np.ones(10)])
    cols = again.columns_for(names)
    np.testing.assert_array_equal(wide[:, cols], x[:10])
    np.testing.assert_array_equal(again.take(wide, names), x[:10])
    np.testing.assert_array_equal(again.predict_proba(wide[0, cols]), batch[:1])
    with pytest.raises(ModelInputError, match="lacks 1 of the model's features"):
        again.columns_for(names[1:])
    with pytest.raises(ModelInputError, match="takes 8 features"):
        again.predict_proba(x[0, :5])


LOAD_IN_A_FRESH_PROCESS = """
import sys
import numpy as np
from pathlib import Path
from models.model import StackedModel

model = StackedModel.load(Path(sys.argv[1]))
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.vstack([model.predict_proba(np.ascontiguousarray(r)) for r in x]))
print(" ".join(m for m in ("lightgbm", "xgboost", "sklearn") if m in sys.modules) or "none")
"""


def test_a_saved_model_predicts_from_its_saved_forests_without_importing_the_libraries(tmp_path: Path) -> None:
    """The runner's start: a model loaded with the forests compiled (and checked) at training
    imports neither LightGBM, XGBoost nor scikit-learn, and predicts what the trained model did."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.test_models import _data as model_data
    from tests.test_models import _fit

    x, ts, ret, direction, tau = model_data(n=6000)
    x[::7, 3] = np.nan
    model = _fit(x, ts, ret, direction, tau).model
    model.save(tmp_path / "m")
    np.save(tmp_path / "x.npy", x[:300])
    p = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(tmp_path / "m"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split() == ["none"], p.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), model.predict_proba(x[:300]))
    again = StackedModel.load(tmp_path / "m")
    assert again.up.boosters.built == again.down.boosters.built == (False, False)
    # the libraries are there when asked for: the same boosters, the same library predictions
    assert again.up.lgb_model.model_to_string() == model.up.lgb_model.model_to_string()
    assert bytes(again.down.xgb_model.save_raw("json")) == bytes(model.down.xgb_model.save_raw("json"))
    np.testing.assert_array_equal(predict_xgb(again.down.xgb_model, x[:50]), predict_xgb(model.down.xgb_model, x[:50]))


def test_saved_forests_that_do_not_match_their_files_are_compiled_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A booster file changed after the save, a forest file with an index outside its arrays, or a
    model saved before forests were: the boosters are compiled from their libraries (and checked),
    never walked from arrays that may not be theirs."""
    import json
    import shutil

    from tests.test_models import _data as model_data
    from tests.test_models import _fit

    x, ts, ret, direction, tau = model_data(n=6000)
    model = _fit(x, ts, ret, direction, tau).model
    model.save(tmp_path / "m")
    expected = model.predict_proba(x[:200])

    def reload(folder: Path) -> StackedModel:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = StackedModel.load(folder)
        np.testing.assert_array_equal(again.predict_proba(x[:200]), expected)
        return again

    assert reload(tmp_path / "m").up.boosters.built == (False, False) and not caplog.text
    # a booster file re-written (the same trees, other bytes): its digest no longer matches
    changed = shutil.copytree(tmp_path / "m", tmp_path / "changed")
    (changed / "up.lgb.txt").write_text((changed / "up.lgb.txt").read_text() + "\n")
    assert reload(changed).up.boosters.built == (True, True)
    assert "compiled forests not used (a model file differs" in caplog.text
    # a forest whose child points outside its nodes, with the manifest's digest made to match
    broken = shutil.copytree(tmp_path / "m", tmp_path / "broken")
    forests = compiled.load_forests(broken / "forests.npz")
    bad = forests["up.lgb"]
    nodes = bad.nodes.copy()
    nodes[np.flatnonzero(nodes[:, 0] >= 0)[0], 2] = len(nodes)
    forests["up.lgb"] = compiled.CompiledForest(nodes, bad.values, bad.roots, bad.bounds, bad.params, bad.n_features)
    compiled.save_forests(broken / "forests.npz", forests)
    manifest = json.loads((broken / "model.json").read_text())
    manifest["compiled"]["sha256"]["forests.npz"] = hashlib.sha256((broken / "forests.npz").read_bytes()).hexdigest()
    (broken / "model.json").write_text(json.dumps(manifest))
    reload(broken)
    assert "compiled forest up.lgb: an index outside its arrays" in caplog.text
    # a model saved before its forests were: no "compiled" entry, no forests file
    old = shutil.copytree(tmp_path / "m", tmp_path / "old")
    manifest = json.loads((old / "model.json").read_text())
    del manifest["compiled"]
    (old / "model.json").write_text(json.dumps(manifest))
    (old / "forests.npz").unlink()
    assert reload(old).up.boosters.built == (True, True) and not caplog.text
    # a re-save of a model loaded from its forests writes the same files without building a booster
    again = StackedModel.load(tmp_path / "m")
    again.save(tmp_path / "resaved")
    assert again.up.boosters.built == again.down.boosters.built == (False, False)
    for f in ("model.json", "up.lgb.txt", "down.xgb.json", "forests.npz"):
        assert (tmp_path / "resaved" / f).read_bytes() == (tmp_path / "m" / f).read_bytes(), f
