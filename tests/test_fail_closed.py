"""Models fail closed: no constant stacks, no skill without an interval above 0.5, no threshold
from a standard error that ignores overlapping labels or from the luck of picking the best one."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from core.config import TrainingConfig
from models.learners import BoostParams
from models.metrics import NEVER, Scores, choose_threshold, mean_se
from models.model import StackedModel
from models.result import Evidence
from models.stack import fit_logistic
from pipelines.training import HANDFUL, operating_points, train

S = 1_000_000_000
H = 30  # label horizon in rows (1 s grid)

NEED = Evidence.of(TrainingConfig())


def overlapping(n: int, rng: np.random.Generator, signal: np.ndarray | None = None) -> np.ndarray:
    """Forward returns over H rows of a random walk: neighbours share H - 1 of their H steps."""
    steps = rng.normal(size=n + H)
    ret = np.convolve(steps, np.ones(H), mode="valid")[:n] / np.sqrt(H)
    return ret if signal is None else ret + signal


def test_the_platt_fit_keeps_the_slope_of_a_score_with_little_spread() -> None:
    # a base learner's logits span a few hundredths around the base rate's: the calibrator needs a
    # slope of ~30; the ridge penalty on the raw logit used to stop it near 0 (one output everywhere)
    rng = np.random.default_rng(0)
    s = rng.normal(size=20_000)
    y = (rng.uniform(size=s.size) < 1 / (1 + np.exp(-(-2.6 + 0.3 * s)))).astype(float)
    w, b = fit_logistic((-2.6 + 0.01 * s)[:, None], y)
    assert w[0] == pytest.approx(30.0, rel=0.2)
    assert b + w[0] * -2.6 == pytest.approx(-2.6, abs=0.1)


def _weak(seed: int, n: int = 20_000, tau: float = 2.2e-4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    x[:, 0] = np.convolve(rng.normal(size=n + 29), np.ones(30) / np.sqrt(30), mode="valid")
    noise = np.convolve(rng.normal(size=n + 29), np.ones(30), mode="valid") / np.sqrt(30)
    ret = 1e-4 * (0.3 * x[:, 0] + noise)
    direction = np.where(ret > tau, 1, np.where(ret < -tau, -1, 0)).astype(np.int8)
    return x, np.arange(n, dtype=np.int64) * S, ret, direction, np.array(tau)


def test_a_stack_that_used_to_give_one_probability_everywhere_ranks_or_says_who_serves() -> None:
    # rare positives, shallow trees that stop after a round or two in the early folds: here the
    # down stack's meta-learner and calibrator both ended at slope 0, one probability on every row
    # of the test block, while its LightGBM ranked (AUC 0.635)
    x, ts, ret, direction, tau = _weak(seed=2)
    params = replace(
        BoostParams.of(TrainingConfig()),
        rounds=400,
        early_stopping=30,
        min_child_samples=2000,
        num_leaves=7,
        max_depth=3,
    )
    names = [f"f{i}" for i in range(8)]
    r = train(x, ts, ret, direction, names, "fs", "ls", 30 * S, float(tau), params, 4, (0.6, 0.2, 0.2), 90 * S, NEED)
    for d in ("up", "down"):
        stack = r.model.up if d == "up" else r.model.down
        base_auc = max(r.scores[d]["lgb"].auc, r.scores[d]["xgb"].auc)
        if r.distinct[d] < HANDFUL:  # a collapse is only allowed with the fallback recorded
            assert stack.serves != "stack" and any(line.startswith(f"{d}: ") and "serves" in line for line in r.verdict)
        assert r.scores[d]["stack"].auc == pytest.approx(base_auc, abs=0.03)  # the ranking survives
        assert r.tags()[f"{d}_serves"] == stack.serves
    assert r.distinct["down"] >= HANDFUL and r.model.down.serves == "lgb"


def test_a_probability_equal_to_its_threshold_never_signals() -> None:
    model = cast(StackedModel, SimpleNamespace(threshold_up=0.0665, threshold_down=0.0665))
    constant = np.full((8, 2), 0.0665)  # a collapsed model and a quantile of its output as the threshold
    assert not StackedModel.signal(model, constant).any()
    proba = np.array([[0.07, 0.0665], [0.0665, 0.07], [0.08, 0.08], [0.0664, 0.0664]])
    assert StackedModel.signal(model, proba).tolist() == [1, -1, 1, 0]


def _scores(lo: float, hi: float) -> Scores:
    return Scores(0.3, 0.1, (lo + hi) / 2, lo, hi, float("nan"), 0.0, 0, 0.0, NEVER)


def _model() -> StackedModel:
    from dataclasses import fields

    # operating_points reads only the thresholds (through replace and signal)
    model = object.__new__(StackedModel)
    for f in fields(StackedModel):
        object.__setattr__(model, f.name, None)
    model.threshold_up = model.threshold_down = NEVER
    return model


def _probability(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A probability that moves slowly, as one from book features does, and its standardised value."""
    p = 0.1 + 0.05 * np.convolve(rng.normal(size=n + 2 * H - 1), np.ones(2 * H) / np.sqrt(2 * H), mode="valid")
    return p, (p - p.mean()) / p.std()


def _calibration(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A calibration block where the up probability ranks the (overlapping) forward returns."""
    p, z = _probability(n, rng)
    return p, overlapping(n, rng, signal=0.5 * z)


@pytest.mark.parametrize(("lo", "hi", "trades"), [(0.48, 0.56, False), (0.53, 0.61, True)])
def test_a_direction_whose_auc_interval_includes_one_half_never_trades(lo: float, hi: float, trades: bool) -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    p, ret = _calibration(n, rng)
    ts = np.arange(n, dtype=np.int64) * S
    scores = {"up": {"stack": _scores(lo, hi)}, "down": {"stack": _scores(0.4, 0.5)}}
    on_cal = {"up": p, "down": np.full(n, 0.1)}
    out = operating_points(_model(), scores, on_cal, ts, ret, np.arange(n), (H * S, 0.0), NEED, None)
    assert (out["up"].threshold < NEVER) is trades  # the same ranking: only the interval differs
    assert out["down"].threshold == NEVER and "no skill" in out["down"].why
    if not trades:
        assert "no skill" in out["up"].why and out["up"].choice is None


def test_newey_west_is_wider_than_the_naive_error_on_overlapping_labels() -> None:
    rng = np.random.default_rng(5)
    ret = overlapping(5000, rng)
    naive, nw = mean_se(ret, 0), mean_se(ret, H)
    assert nw > 3.0 * naive  # ~sqrt(H) for fully overlapping windows (Bartlett's weights lose a little)
    p, _ = _probability(ret.size, rng)
    c = choose_threshold(p, ret, -100.0, lag=H, min_signals=1, z=0.0, demean=False)  # every row pays
    # the search counts one bet per horizon (windows that do not overlap, every H-th row when every
    # row signals), so its plain error over the bets is of Newey-West's size, not the naive one's
    assert c.bets == pytest.approx(ret.size / H, abs=1) and c.signals >= ret.size - ret.size // 100
    assert c.se > 3.0 * naive and c.se == pytest.approx(nw, rel=0.3)


def test_pure_noise_with_overlapping_labels_gives_no_threshold() -> None:
    naive = newey_west = procedure = 0
    scores = {"up": {"stack": _scores(0.53, 0.61)}, "down": {"stack": _scores(0.4, 0.5)}}  # skill assumed
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        n = 8000
        ret = overlapping(n, rng)
        p, _ = _probability(n, rng)
        half = slice(0, n // 2)
        naive += choose_threshold(p[half], ret[half], 0.0, lag=0, min_signals=5, z=NEED.z).threshold < NEVER
        newey_west += choose_threshold(p[half], ret[half], 0.0, lag=H, min_signals=5, z=NEED.z).threshold < NEVER
        on_cal = {"up": p, "down": np.full(n, 0.1)}
        out = operating_points(_model(), scores, on_cal, np.arange(n) * S, ret, np.arange(n), (H * S, 0.0), NEED, None)
        procedure += out["up"].threshold < NEVER
    # the naive error finds an "edge" in noise in most blocks; Newey-West in fewer, but the best of
    # many candidates still passes sometimes; choosing on one part and confirming on the later one
    # (what training does) lets through at most the test's own 2.5 % or so
    assert naive >= 20 and newey_west < naive / 2 and procedure <= 2


def test_the_confirmation_rejects_a_threshold_that_was_only_lucky_on_the_first_part() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    p, z = _probability(n, rng)
    ret = overlapping(n, rng)
    first = np.arange(n) < n // 2
    ret[first] += 0.5 * z[first]  # the ranking paid on the first half only
    ts = np.arange(n, dtype=np.int64) * S
    scores = {"up": {"stack": _scores(0.53, 0.61)}, "down": {"stack": _scores(0.4, 0.5)}}
    out = operating_points(
        _model(), scores, {"up": p, "down": np.full(n, 0.1)}, ts, ret, np.arange(n), (H * S, 0.0), NEED, None
    )
    up = out["up"]
    assert up.candidate < NEVER and up.confirmation is not None  # chosen on the first part ...
    assert not up.confirmation.ok and up.threshold == NEVER  # ... and rejected on the later one
    assert "NOT confirmed" in up.why
    paid = ret.copy()
    paid[~first] += 0.5 * z[~first]  # the same ranking paying on both parts: confirmed
    out = operating_points(
        _model(), scores, {"up": p, "down": np.full(n, 0.1)}, ts, paid, np.arange(n), (H * S, 0.0), NEED, None
    )
    assert out["up"].threshold == out["up"].candidate < NEVER and out["up"].confirmation.ok
