"""The backtest flow: a registered model, warehouse data, both strategies, the report, MLflow."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import parse_time_ns
from execution.quality import metrics
from flows.backtest import main
from models import registry
from pipelines.backtest import compare_reports, run_backtest, simulate

pytestmark = pytest.mark.slow


def eager(cfg: AppConfig) -> Any:
    """Version 1 with its thresholds lowered so that it trades (the small test model rarely would)."""
    model = registry.load_version(cfg, "1")
    return replace(model, threshold_up=0.0, threshold_down=0.0)


def confidence(cfg: AppConfig, before_ns: int | None = None) -> np.ndarray:
    """Version 1's confidence (the larger of P(up), P(down)) on the stored feature rows (before ``before_ns``)."""
    from pipelines.dataset import load_features

    model = registry.load_version(cfg, "1")
    rows = load_features(cfg, None, None if before_ns is None else before_ns - 1)
    return np.asarray(model.predict_proba(model.take(rows.x, rows.feature_names)).max(axis=1))


def signalling(conf: np.ndarray, share: float) -> float:
    """The highest threshold from which at least ``share`` of the rows signal (``signal()`` is strict).

    The test model has no skill: its confidence takes a handful of values, so a quantile can land on
    the top one and leave nothing above it; these tests are about the backtest's plumbing, not the
    model, and need a threshold that trades whatever the model's values are."""
    values = np.unique(conf)  # ascending
    above = 1.0 - np.searchsorted(np.sort(conf), values, side="right") / conf.size
    return float(values[above >= share].max())


def studied(cfg: AppConfig, share: float = 0.1) -> Any:
    """Version 1 acting from a confidence that at least ``share`` of the rows clear: an execution study's model."""
    q = signalling(confidence(cfg), share)
    return replace(registry.load_version(cfg, "1"), threshold_up=q, threshold_down=q)


def free(cfg: AppConfig) -> AppConfig:
    """The config in a market without fees: the passive strategy's Kelly bet then has an edge to size."""
    return cfg.model_copy(update={"instrument": cfg.instrument.model_copy(update={"maker_fee": 0.0, "taker_fee": 0.0})})


def test_both_strategies_trade_the_same_signals_and_the_books_balance(trained: tuple[AppConfig, Any]) -> None:
    cfg, _ = trained
    model = studied(cfg)
    runs = {s: simulate(cfg, s, model, None, None, {"model_version": "1"}, study=True) for s in ("baseline", "passive")}
    entries = [r.parents[~np.isnan(r.parents["confidence"])] for r in runs.values()]
    assert len(entries[0]) > 3 and entries[0]["target_qty"][0] == entries[1]["target_qty"][0]  # the same size
    for name, run in runs.items():
        m = metrics(run)
        assert m["fills"] > 0, name
        assert run.fees == pytest.approx(float(run.fills["fee"].sum()))
        eq = run.equity["equity"]
        assert m["net_pnl_marked"] == pytest.approx(float(eq[-1] - eq[0]))
        assert m["net_pnl"] == pytest.approx(m["net_pnl_marked"] - run.closeout_cost)  # what is left, closed out
        assert (run.closeout_cost > 0) == (abs(m["position_end"]) > 1e-9)
        assert run.meta["signals"] == runs["baseline"].meta["signals"]  # the same model output
    assert metrics(runs["baseline"])["maker_ratio"] == 0.0
    assert metrics(runs["passive"])["maker_ratio"] > 0.5
    assert runs["passive"].orders["post_only"].any() and not runs["baseline"].orders["post_only"].any()


def test_a_feature_set_mismatch_is_one_line(trained: tuple[AppConfig, Any]) -> None:
    cfg, _ = trained
    model = replace(eager(cfg), feature_set="other")
    with pytest.raises(UserError, match="feature-set mismatch: the model was trained on other"):
        simulate(cfg, "passive", model, None, None, {})


def test_the_flow_writes_a_report_logs_it_and_compares(
    trained: tuple[AppConfig, Any], prefect_harness: None, tmp_path: Path
) -> None:
    import mlflow

    from flows.backtest import backtest_flow

    cfg, _ = trained
    state = backtest_flow(
        config=str(cfg.source_path), strategy="baseline", model="1", out=str(tmp_path / "a"), return_state=True
    )
    assert state.is_completed(), state.message
    q = signalling(confidence(cfg), 0.1)
    b = run_backtest(cfg, "passive", "models:/btc-l2/1", None, None, tmp_path / "b", threshold=q)
    for folder in (tmp_path / "a", tmp_path / "b"):
        doc = json.loads((folder / "metrics.json").read_text())
        assert doc["meta"]["model_version"] == "1" and "net_pnl" in doc["metrics"]
        assert doc["meta"].get("threshold_override") == (q if folder.name == "b" else None)
        assert (folder / "report.html").stat().st_size > 10_000
    client = registry.connect(cfg)
    run = mlflow.get_run(b["run_id"])
    assert run.data.tags["model_version"] == "1" and run.data.params["strategy"] == "passive"
    assert run.info.artifact_uri.startswith(registry.store(cfg).artifacts_uri)  # the configured store, not ./mlruns
    # named by version, strategy and window; linked to the version and its training run
    window = f"{run.data.params['window_start'][:16]}..{run.data.params['window_end'][:16]}"
    assert run.info.run_name == f"v1 passive {window} study p>={q:.4f}"  # a fixed threshold: an execution study
    training = client.get_model_version(cfg.mlflow.model_name, "1").run_id
    assert (
        run.data.tags["training_run_id"] == training
        and run.data.tags["window_start"] == run.data.params["window_start"]
    )
    note = run.data.tags["mlflow.note.content"]
    assert "(#/models/btc-l2/versions/1)" in note and f"/runs/{training})" in note and "execution study" in note
    baseline = mlflow.get_run(state.result()["run_id"])
    assert baseline.info.run_name.startswith("v1 baseline 20") and "study" not in baseline.info.run_name
    # and the version links back: its latest backtest per strategy as plain numbers and the run id
    tags = client.get_model_version(cfg.mlflow.model_name, "1").tags
    assert tags["backtest_baseline/run_id"] == baseline.info.run_id and tags["study_passive/run_id"] == b["run_id"]
    assert float(tags["study_passive/net_pnl"]) == pytest.approx(b["metrics"]["net_pnl"], abs=0.01)
    assert (
        int(tags["backtest_baseline/fills"]) == baseline.data.metrics["fills"]
        and tags["study_passive/threshold"] == f"{q:.4f}"
    )
    assert tags["backtest_baseline/window"] == window
    text = compare_reports(str(tmp_path / "a"), str(tmp_path / "b"))
    assert "arrival_slippage_mean_bps" in text and "slippage (implementation shortfall per parent order" in text
    # one run of a few minutes: fewer than 30 parent orders, so no target is claimed either way
    n = int(json.loads((tmp_path / "b" / "metrics.json").read_text())["metrics"]["parents"])
    if n < 30:
        assert text.count("not enough evidence") == 3 and "targets: slippage not decidable" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "nowhere", "nothere"], "no metrics.json"),
        (["--start", "yesterday-ish"], "--start"),
        (["--model", "models:/other@champion"], "no such model"),
        (["--threshold", "1.5"], "not a probability"),
    ],
)
def test_bad_input_is_one_line(
    trained: tuple[AppConfig, Any], args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = trained
    with pytest.raises(UserError, match=message):
        main([*args, "--config", str(cfg.source_path)])


def test_signals_use_the_model_thresholds(trained: tuple[AppConfig, Any]) -> None:
    from pipelines.backtest import signals
    from pipelines.dataset import load_features

    cfg, _ = trained
    model = registry.load_version(cfg, "1")
    rows = load_features(cfg)
    s = signals(model, rows.ts, rows.x)
    proba = model.predict_proba(model.take(rows.x, rows.feature_names))
    np.testing.assert_array_equal(s.direction, model.signal(proba))
    assert np.all(s.sigma_1s >= 0) and len(s) == len(rows.ts)


def test_promotion_can_require_a_net_of_fee_backtest_win(trained: tuple[AppConfig, Any]) -> None:
    from pipelines.dataset import load_features
    from pipelines.promote import backtest_rule

    cfg = free(trained[0])  # without fees the eager model's Kelly bets are sized; with them it has no edge
    rows = load_features(cfg)
    lo, hi = int(rows.ts[0]), int(rows.ts[-1])
    eager_model, plain = eager(cfg), registry.load_version(cfg, "1")
    pnl = {
        name: float(metrics(simulate(cfg, "passive", m, lo, hi, {}))["net_pnl"])
        for name, m in (("eager", eager_model), ("plain", plain))
    }
    assert pnl["eager"] != pnl["plain"]  # one trades, the other hardly does
    won, why = backtest_rule(cfg, eager_model, plain, lo, hi, "model rule passed")
    assert won == (pnl["eager"] > pnl["plain"])
    assert "passive backtest net PnL" in why
    lost, _ = backtest_rule(cfg, plain, eager_model, lo, hi, "model rule passed")
    assert lost != won


def test_an_execution_study_takes_its_threshold_from_the_data_before_the_window(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    from features import NAMES
    from pipelines.backtest import study_threshold
    from pipelines.dataset import load_features

    cfg, _ = trained
    rows = load_features(cfg)
    start = int(rows.ts[len(rows.ts) // 2])
    model = registry.load_version(cfg, "1")
    before = rows.x[rows.ts < start]
    conf = model.predict_proba(model.take(before, NAMES)).max(axis=1)
    after = model.predict_proba(model.take(rows.x[rows.ts >= start], NAMES)).max(axis=1)

    def usable(t: float) -> bool:  # some rows above it before the start, and some signals after, not all
        return bool(conf.min() < t < conf.max() and 0 < (after > t).sum() < after.size)

    quantile = 0.9
    if not usable(float(np.quantile(conf, quantile))):
        # the test model has no skill: a handful of values, which the halves of the data hold in
        # different shares; take the quantile in the middle of the highest value that is usable
        v = max(float(v) for v in np.unique(conf) if usable(float(v)))
        quantile = ((conf < v).sum() + (conf <= v).sum() - 1) / 2 / (conf.size - 1)
    expected = float(np.quantile(conf, quantile))
    assert usable(expected)
    assert study_threshold(cfg, model, start, quantile) == pytest.approx(expected)
    run_backtest(cfg, "baseline", "1", start, None, tmp_path / "study", quantile=quantile)
    meta = json.loads((tmp_path / "study" / "metrics.json").read_text())["meta"]
    assert meta["threshold_quantile"] == quantile and meta["threshold_override"] == pytest.approx(expected)
    assert parse_time_ns(meta["window"]["start"]) == start  # the study runs on the rows from --start on


@pytest.mark.parametrize(("threshold", "what"), [(1e-9, "every decision signals"), (0.999999, "no decision signals")])
def test_a_study_at_a_threshold_that_selects_nothing_is_refused(
    trained: tuple[AppConfig, Any], tmp_path: Path, threshold: float, what: str
) -> None:
    cfg, _ = trained
    with pytest.raises(UserError, match=f"not enough evidence: degenerate signal at threshold .*: {what}"):
        run_backtest(cfg, "passive", "1", None, None, tmp_path / "study", threshold=threshold)
    assert not (tmp_path / "study").exists()


def test_the_degenerate_study_check_by_hand() -> None:
    from pipelines.backtest import check_study_signal

    for constant in (np.zeros(50, np.int8), np.full(50, -1, np.int8), np.array([1, -1] * 25, np.int8)):
        with pytest.raises(UserError, match="degenerate signal"):
            check_study_signal(constant, 0.2)
    check_study_signal(np.array([0, 1, 0, -1, 0], np.int8), 0.2)  # some decisions signal: a study
