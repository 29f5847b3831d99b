"""Fit the stacked model on time-ordered rows and score it, with its base learners, on held-out data.

The rows are cut by time into fit / calibrate / test blocks with an embargo between them (at least
the label horizon plus the longest feature look-back). The stacks are fitted on the fit block,
calibrated and given their operating thresholds on the calibration block, and every learner is
scored on the test block, which nothing was fitted or chosen on, its AUC with a moving-block
bootstrap interval whose blocks span one label horizon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import numpy as np
from sklearn.metrics import log_loss

from models.cv import blocks
from models.learners import BoostParams
from models.metrics import NEVER, Scores, choose_threshold, score
from models.model import StackedModel
from models.profile import Profile
from models.result import Evidence, Operating, TrainResult, verdict
from models.stack import DirectionStack, FoldRunner, calibrate, fit_direction, serial, serve_base
from pipelines.operating import PERMISSIVE, Execution, confirm_labels, confirm_run, measure_cost

DIRECTIONS = (("up", 1), ("down", -1))
HANDFUL = 5  # fewer distinct outputs on the test block than this (and than its base learner): collapsed
CHOICE_SHARE = 0.5  # of the calibration block's span: thresholds are chosen here, confirmed after it
LEARNER_NAMES = {"lgb": "LightGBM", "xgb": "XGBoost", "stack": "stack"}


def block_rows(ts: np.ndarray, horizon_ns: int) -> int:
    """Rows one label horizon spans on the grid of ``ts``: the AUC bootstrap's block length, the
    Newey-West lag."""
    step = float(np.median(np.diff(ts))) if ts.size > 1 else float(horizon_ns)
    return max(1, math.ceil(horizon_ns / max(step, 1.0)))


def train(
    x: np.ndarray,
    ts: np.ndarray,
    ret: np.ndarray,
    direction: np.ndarray,
    feature_names: list[str],
    feature_set: str,
    label_set: str,
    horizon_ns: int,
    tau: float,
    params: BoostParams,
    n_folds: int,
    shares: tuple[float, float, float],
    embargo_ns: int,
    need: Evidence,
    progress: Callable[[float, str], None] | None = None,
    cost: float | None = None,
    execution: Execution | None = None,
    runner: FoldRunner = serial,
) -> TrainResult:
    """Fit both direction stacks, score lgb, xgb and the stack on the held-out block, and set the
    operating thresholds (pipelines/operating.py).

    ``cost`` is the round trip charged per signal when no engine measures it (default ``tau``, the
    labels' dead zone); with ``execution`` the strategy's cost is measured and the thresholds are
    confirmed by the engine. ``runner`` fits each stack's walk-forward folds (models/stack.py)."""
    fit, cal, test = blocks(ts, shares, embargo_ns)
    if min(fit.size, cal.size, test.size) < 100:
        raise ValueError(
            f"too few rows for fit / calibration / test ({fit.size} / {cal.size} / {test.size}): "
            "a longer training window is needed"
        )
    nominal = tau if cost is None else cost
    cut = Blocks(fit, cal, test, block_rows(ts[test], horizon_ns), block_rows(ts[cal], horizon_ns))
    fitted: dict[str, Fitted] = {}
    for k, (name, sign) in enumerate(DIRECTIONS):
        if progress is not None:
            progress(k / 3, f"fitting the {name} stack")
        fitted[name] = _fit_direction(
            name, sign, x, ts, ret, direction, cut, params, (embargo_ns, n_folds, runner), nominal, need
        )
    stacks = {name: f.stack for name, f in fitted.items()}
    scores = {name: f.scores for name, f in fitted.items()}
    on_cal = {name: f.on_cal for name, f in fitted.items()}
    held_out = [fitted[name].held_out for name, _ in DIRECTIONS]  # the served probabilities on the test block
    notes = [note for f in fitted.values() for note in f.notes]
    distinct = {name: f.distinct for name, f in fitted.items()}
    block = cut.block
    model = StackedModel(
        feature_names=list(feature_names),
        feature_set=feature_set,
        label_set=label_set,
        horizon_ns=horizon_ns,
        tau=tau,
        up=stacks["up"],
        down=stacks["down"],
        threshold_up=NEVER,
        threshold_down=NEVER,
        profile=Profile.of(x[fit], np.column_stack(held_out)),
    )
    if progress is not None:
        progress(2 / 3, "operating thresholds")
    operating = operating_points(model, scores, on_cal, ts, ret, cal, (horizon_ns, nominal), need, execution, progress)
    model.threshold_up, model.threshold_down = operating["up"].threshold, operating["down"].threshold
    for k, (name, sign) in enumerate(DIRECTIONS):  # the stack scored again at its operating threshold
        y = (direction[test] == sign).astype(np.float64)
        th = operating[name].threshold
        scores[name]["stack"] = score(held_out[k], y, sign * ret[test], th, block=block, seed=params.seed)
    if progress is not None:
        progress(1.0, "fitted")
    result = TrainResult(
        model,
        scores,
        {"fit": int(fit.size), "calibrate": int(cal.size), "test": int(test.size)},
        operating=operating,
        distinct=distinct,
    )
    result.verdict = [*notes, *verdict(scores), *(operating[d].why for d, _ in DIRECTIONS)]
    return result


class Blocks(NamedTuple):
    """The time blocks of one training run and the bootstrap / autocorrelation lags they imply."""

    fit: np.ndarray
    cal: np.ndarray
    test: np.ndarray
    block: int  # rows per label horizon on the test block (the bootstrap's block length)
    lag: int  # rows per label horizon on the calibration block (threshold choice's lag)


class Fitted(NamedTuple):
    """One direction's stack, its held-out scores and what training says about it."""

    stack: DirectionStack
    scores: dict[str, Scores]
    held_out: np.ndarray  # the served probabilities on the test block
    on_cal: np.ndarray  # the served probabilities on the calibration block
    distinct: int  # distinct outputs on the test block
    notes: list[str]


def _fit_direction(
    name: str,
    sign: int,
    x: np.ndarray,
    ts: np.ndarray,
    ret: np.ndarray,
    direction: np.ndarray,
    cut: Blocks,
    params: BoostParams,
    folds: tuple[int, int, FoldRunner],
    nominal: float,
    need: Evidence,
) -> Fitted:
    """Fit one direction's stack and score it and its base learners on the held-out block."""
    fit, cal, test, block, lag = cut
    embargo_ns, n_folds, runner = folds
    notes: list[str] = []
    y = (direction == sign).astype(np.float64)
    signed = sign * ret
    stack = fit_direction(x[fit], y[fit], ts[fit], x[cal], y[cal], params, embargo_ns, n_folds, runner)
    if stack.note:
        notes.append(f"{name}: {stack.note}")
    cal_lgb, cal_xgb = stack.base(x[cal])
    t_lgb, t_xgb = stack.base(x[test])
    th = {
        learner: choose_threshold(p, signed[cal], nominal, lag=lag, min_signals=need.min_orders, z=need.z).threshold
        for learner, p in (("lgb", cal_lgb), ("xgb", cal_xgb))
    }
    base = {
        learner: score(p, y[test], signed[test], th[learner], block=block, seed=params.seed)
        for learner, p in (("lgb", t_lgb), ("xgb", t_xgb))
    }
    t_stack = stack.calibrate(stack.meta(t_lgb, t_xgb))
    fell_back = _degenerate(stack, t_stack, {"lgb": t_lgb, "xgb": t_xgb}, base, y[test])
    if fell_back:
        notes.append(f"{name}: {fell_back}")
        calibrate(stack, x[cal], y[cal])
        t_stack = stack.calibrate(stack.meta(t_lgb, t_xgb))
    distinct = int(np.unique(t_stack).size)
    if distinct < HANDFUL and (stack.serves != "stack" or fell_back):
        notes.append(
            f"{name}: the calibrated {LEARNER_NAMES[stack.serves]} gives {_outputs(distinct)} on the "
            "test block too (its calibrator found no ranking on the calibration block)"
        )
    on_cal = stack.calibrate(stack.meta(cal_lgb, cal_xgb))
    scores = {**base, "stack": score(t_stack, y[test], signed[test], NEVER, block=block, seed=params.seed)}
    return Fitted(stack, scores, t_stack, on_cal, distinct, notes)


def _outputs(n: int) -> str:
    return f"{n} distinct output{'' if n == 1 else 's'}"


def _degenerate(
    stack: DirectionStack,
    p_stack: np.ndarray,
    p_base: dict[str, np.ndarray],
    base: dict[str, Scores],
    y: np.ndarray,
) -> str:
    """When the stack is degenerate on the test block, make its best base learner serve; why, or ''.

    Degenerate: fewer than ``HANDFUL`` distinct outputs (and fewer than its best base learner
    gives: a coarse base learner is no collapse), or a held-out log loss worse than its best base
    learner's. Best: the lower held-out log loss. The caller re-fits the calibrator."""
    if stack.serves != "stack":
        return ""
    best = min(("lgb", "xgb"), key=lambda k: (base[k].log_loss, k != "lgb"))
    n, n_base = int(np.unique(p_stack).size), int(np.unique(p_base[best]).size)
    ll = float(log_loss(y, np.clip(p_stack, 1e-6, 1 - 1e-6), labels=[0, 1]))
    if n < HANDFUL and n < n_base:
        why = f"the stack collapsed to {_outputs(n)} on the test block ({LEARNER_NAMES[best]}: {n_base})"
    elif ll > base[best].log_loss:
        why = f"the stack's held-out log loss {ll:.4f} is worse than {LEARNER_NAMES[best]}'s {base[best].log_loss:.4f}"
    else:
        return ""
    serve_base(stack, best)
    stack.note = f"{why}: the calibrated {LEARNER_NAMES[best]} serves instead"
    return stack.note


def operating_points(
    model: StackedModel,
    scores: dict[str, dict[str, Scores]],
    on_cal: dict[str, np.ndarray],
    ts: np.ndarray,
    ret: np.ndarray,
    cal: np.ndarray,
    horizon_cost: tuple[int, float],
    need: Evidence,
    execution: Execution | None,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Operating]:
    """Each direction's threshold: NEVER without skill; else chosen on the first part of the
    calibration block at the strategy's cost and confirmed on the later part (pipelines/operating.py).
    ``horizon_cost``: the label horizon (ns) and the nominal round trip charged without an engine."""
    horizon_ns, nominal = horizon_cost
    out = _skill(scores, nominal)
    skilled = [d for d, o in out.items() if o.skill]
    if not skilled:
        return out
    t_cal = ts[cal]
    cut = int(t_cal[0] + (t_cal[-1] - t_cal[0]) * CHOICE_SHARE)
    in_a, in_b = t_cal < cut, t_cal >= cut + horizon_ns
    parts = Parts(
        cal[in_a],
        cal[in_b],
        np.column_stack([on_cal["up"][in_a], on_cal["down"][in_a]]),
        np.column_stack([on_cal["up"][in_b], on_cal["down"][in_b]]),
        {s: s * ret for _, s in DIRECTIONS},
        block_rows(t_cal, horizon_ns),
    )
    cost = nominal
    if execution is not None:  # the strategy's own round trip, at a permissive threshold
        if progress is not None:
            progress(0.7, f"measuring the {execution.strategy} strategy's cost on the calibration block")
        measured = _measure(model, execution, out, skilled, parts, ts, need)
        if measured is None:
            return out
        cost = max(measured, nominal)  # below the fees alone is luck (or passive spread capture): not relied on
    what = f"the {execution.strategy} round trip" if execution is not None else "the nominal round trip"
    chosen = _choose(out, skilled, parts, (cost, nominal), need, what)
    if not chosen:
        return out
    if execution is not None:
        if progress is not None:
            progress(0.85, "confirming the thresholds on the later part of the calibration block")
        trial = replace(model, threshold_up=chosen.get("up", NEVER), threshold_down=chosen.get("down", NEVER))
        run = execution(parts.b, parts.proba_b[:, 0], parts.proba_b[:, 1], trial.signal(parts.proba_b))
        confirmations = {d: confirm_run(run, SIGN[d], need) for d in chosen}
    else:
        confirmations = {
            d: confirm_labels(
                parts.proba_b[:, _COL[d]], parts.signed[SIGN[d]][parts.b], chosen[d], cost, parts.lag, need
            )
            for d in chosen
        }
    for d, conf in confirmations.items():
        o = out[d]
        assert o.choice is not None
        o.confirmation = conf
        found = (
            f"threshold {o.candidate:.4f} chosen on {parts.a.size:,} rows at {what} {cost * 1e4:.2f} bps "
            f"({o.choice.signals:,} signals, {o.choice.bets} bets, {o.choice.per_bet * 1e4:+.2f} bps "
            f"per bet, se {o.choice.se * 1e4:.2f})"
        )
        if conf.ok:
            o.threshold = o.candidate
            o.why += f"; {found}, confirmed on the later {parts.b.size:,} rows: {conf.why}"
        else:
            o.why += f"; {found}, NOT confirmed on the later {parts.b.size:,} rows: {conf.why}: never trades"
    return out


SIGN = dict(DIRECTIONS)
_COL = {"up": 0, "down": 1}


class Parts(NamedTuple):
    """The calibration block cut for the operating point: choose on ``a``, confirm on the later ``b``."""

    a: np.ndarray  # rows
    b: np.ndarray
    proba_a: np.ndarray  # the served probabilities, columns up and down
    proba_b: np.ndarray
    signed: dict[int, np.ndarray]  # sign -> the signed forward returns of every row
    lag: int  # rows per label horizon


def _skill(scores: dict[str, dict[str, Scores]], nominal: float) -> dict[str, Operating]:
    """Each direction's skill: its held-out AUC interval lies above 0.5, or it never trades."""
    out: dict[str, Operating] = {}
    for name, _ in DIRECTIONS:
        s = scores[name]["stack"]
        has = bool(np.isfinite(s.auc_lo) and s.auc_lo > 0.5)
        interval = f"held-out AUC {s.auc:.3f} [{s.auc_lo:.3f}, {s.auc_hi:.3f}]"
        why = (
            f"{name}: skill: {interval} lies above 0.5"
            if has
            else (f"{name}: no skill: {interval} includes 0.5 (or has none): never trades")
        )
        out[name] = Operating(has, NEVER, nominal_cost=nominal, why=why)
    return out


def _measure(
    model: StackedModel,
    execution: Execution,
    out: dict[str, Operating],
    skilled: list[str],
    parts: Parts,
    ts: np.ndarray,
    need: Evidence,
) -> float | None:
    """The strategy's round trip measured by the engine on part a at a permissive threshold; None
    (and every skilled direction told why it never trades) when too few round trips filled."""
    loose = {
        d: float(np.quantile(parts.proba_a[:, j], PERMISSIVE)) if d in skilled else NEVER
        for j, d in enumerate(("up", "down"))
    }
    probe = replace(model, threshold_up=loose["up"], threshold_down=loose["down"])
    run = execution(parts.a, parts.proba_a[:, 0], parts.proba_a[:, 1], probe.signal(parts.proba_a))
    measured = measure_cost(run, ts[parts.a], {s: v[parts.a] for s, v in parts.signed.items()}, need)
    for d in skilled:
        out[d].cost = measured
    if measured.measured:
        return float(measured.cost)
    for d in skilled:
        out[d].why += (
            f"; the {execution.strategy} strategy's cost could not be measured on the calibration block "
            f"({measured.filled} filled round trips of {measured.entries} entries, {need.min_orders} needed): "
            "never trades"
        )
    return None


def _choose(
    out: dict[str, Operating],
    skilled: list[str],
    parts: Parts,
    costs: tuple[float, float],
    need: Evidence,
    what: str,
) -> dict[str, float]:
    """Each skilled direction's candidate threshold on part a at ``costs`` (the round trip charged,
    the fees alone); the ones found."""
    cost, nominal = costs
    for d in skilled:
        ret = parts.signed[SIGN[d]][parts.a]
        c = choose_threshold(parts.proba_a[:, _COL[d]], ret, cost, lag=parts.lag, min_signals=need.min_orders, z=need.z)
        out[d].choice, out[d].candidate = c, c.threshold
        m = out[d].cost
        evidence = f"{what} {cost * 1e4:.2f} bps" + (
            f" (measured {m.cost * 1e4:+.2f} bps, se {m.se * 1e4:.2f}, on {m.filled} filled round trips of "
            f"{m.entries} entries; the fees alone {nominal * 1e4:.2f})"
            if m is not None
            else ""
        )
        if c.threshold >= NEVER:
            out[d].why += (
                f"; at {evidence} no threshold earns by {need.z:g} se over >= {need.min_orders} bets "
                f"on {parts.a.size:,} rows: never trades"
            )
    return {d: out[d].candidate for d in skilled if out[d].candidate < NEVER}
