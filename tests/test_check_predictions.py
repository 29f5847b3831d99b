"""check_predictions: the runner's journal (or the model) scored against the warehouse labels."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from core.config import AppConfig
from core.errors import UnavailableError, UserError
from core.timefmt import format_ns, parse_time_ns
from flows.check_predictions import main
from models import registry
from models.metrics import NEVER
from pipelines.check_predictions import check, table
from pipelines.dataset import load, load_features
from tests.conftest import ConfigFactory
from tests.test_cli import assert_one_line_error, cli
from warehouse.journal import Journal

pytestmark = pytest.mark.slow
S = 1_000_000_000
Trained = tuple[AppConfig, dict[str, Any]]


def with_journal_dir(cfg: AppConfig, tmp_path: Path) -> AppConfig:
    return cfg.model_copy(update={"live": cfg.live.model_copy(update={"journal_dir": tmp_path / "journal"})})


def labelled(cfg: AppConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every labelled grid time of the warehouse and its direction at the training horizon."""
    data = load(cfg, 24 * 3600 * S)
    return data.ts, data.direction


def write_journal(path: Path, decisions: list[tuple[int, float, float, str]]) -> None:
    """A journal as the runner writes it: decisions (grid time, p_up, p_down, version) among other records."""
    j = Journal(path, "test-session", sync="normal")
    j.add("start", 0, mode="paper", source="bybit")
    for grid, p_up, p_down, version in decisions:
        j.add("decision", grid + S // 5, grid_ns=grid, model_version=version, p_up=p_up, p_down=p_down)
        j.add("account", grid + S // 5, position=0.0)
    j.commit()
    j.close()


def by_hand(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Brier score and log loss of probabilities ``p`` for outcomes ``y``."""
    return float(np.mean((p - y) ** 2)), float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def hand_buckets(p_up: np.ndarray, p_down: np.ndarray, d: np.ndarray, tu: float, td: float) -> dict[str, Any]:
    """Signals row by row: the side whose probability clears its threshold by more (ties: up)."""
    out: dict[str, dict[int, list[int]]] = {"up": {}, "down": {}}
    for pu, pd, di in zip(p_up, p_down, d):
        mu, md = pu - tu, pd - td
        side, p, thr, sign = ("up", pu, tu, 1) if mu >= 0 and mu >= md else ("down", pd, td, -1)
        if p < thr:
            continue
        k = math.floor((p - thr) / 0.05)  # buckets of 0.05 above the threshold
        count_hits = out[side].setdefault(k, [0, 0])
        count_hits[0] += 1
        count_hits[1] += int(di == sign)
    return {side: sorted((k, c, h) for k, (c, h) in rows.items()) for side, rows in out.items()}


def test_the_runners_decisions_are_scored_against_the_labels_at_their_grid_times(
    trained: Trained, tmp_path: Path
) -> None:
    cfg, _ = trained
    ts, direction = labelled(cfg)
    rng = np.random.default_rng(7)
    pick = np.sort(rng.choice(len(ts), 240, replace=False))
    p = rng.uniform(0.01, 0.6, (240, 2))
    unlabelled = load_features(cfg, int(ts[-1]) + 1).ts[:5]  # the last minute: its 60 s label is not there yet
    p_new = rng.uniform(0.01, 0.6, (5, 2))
    decisions = [(int(ts[pick[0]]), 0.99, 0.99, "1")]  # decided again later (a restart): the later one counts
    decisions += [(int(t), float(a), float(b), "1") for t, (a, b) in zip(ts[pick], p)]
    decisions += [(int(t), float(a), float(b), "1") for t, (a, b) in zip(unlabelled, p_new)]
    decisions += [(int(t), 0.99, 0.99, "2") for t in ts[pick[:20]]]  # another version's: not this one's
    write_journal(tmp_path / "paper.sqlite", decisions)
    tu, td = 0.35, 0.42
    model = replace(registry.load_version(cfg, "1"), threshold_up=tu, threshold_down=td)

    s = check(cfg, model, "1", tmp_path / "paper.sqlite", None)

    assert s["source"]["kind"] == "journal" and s["source"]["fallback_reason"] is None
    assert (s["predictions"], s["labelled"]) == (245, 240)
    assert s["window"] == {"start": format_ns(int(ts[pick[0]])), "end": format_ns(int(unlabelled[-1]))}
    every = np.vstack([p, p_new])
    d = direction[pick]
    for j, (side, sign, thr) in enumerate((("up", 1, tu), ("down", -1, td))):
        dist = s["distribution"][side]
        assert dist["mean"] == pytest.approx(every[:, j].mean())
        assert dist["quantiles"]["q50"] == pytest.approx(np.median(every[:, j]))
        assert dist["share_above_threshold"] == pytest.approx(np.mean(every[:, j] >= thr))
        assert sum(dist["histogram"]["counts"]) == 245
        y = (d == sign).astype(float)
        cal = s["calibration"][side]
        assert (cal["brier"], cal["log_loss"]) == pytest.approx(by_hand(p[:, j], y))
        assert cal["base_rate"] == pytest.approx(y.mean())
        order = np.argsort(p[:, j])  # 240 distinct probabilities in deciles: 24 rows a bin
        expected = [(p[g, j].mean(), y[g].mean(), 24) for g in np.split(order, 10)]
        got = [(b["predicted"], b["observed"], b["count"]) for b in cal["bins"]]
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-12)
    hand = hand_buckets(p[:, 0], p[:, 1], d, tu, td)
    for side, thr in (("up", tu), ("down", td)):
        prec = s["precision"][side]
        assert [(b["bucket"], b["count"], b["hits"]) for b in prec["buckets"]] == hand[side]
        for b in prec["buckets"]:
            assert b["precision"] == pytest.approx(b["hits"] / b["count"])
            assert (b["low"], b["high"]) == pytest.approx((thr + 0.05 * b["bucket"], thr + 0.05 * (b["bucket"] + 1)))
        assert prec["signals"] == sum(c for _, c, _ in hand[side]) > 0
    overall = s["precision"]["overall"]
    hits = sum(h for side in hand.values() for _, _, h in side)
    assert (overall["signals"], overall["hits"]) == (
        s["precision"]["up"]["signals"] + s["precision"]["down"]["signals"],
        hits,
    )
    recent = check(cfg, model, "1", tmp_path / "paper.sqlite", int(ts[pick[120]]))
    assert (recent["predictions"], recent["labelled"]) == (125, 120)
    text = table(s)
    assert (
        f"precision up at {tu:.4f}: {s['precision']['up']['signals']:,} signals, {s['precision']['up']['hits']:,} hits"
        in text
    )
    assert "predictions from the journal: 245 decisions of version 1" in text


def test_a_model_that_abstains_is_reported_as_no_signals(trained: Trained, tmp_path: Path) -> None:
    cfg, _ = trained
    ts, direction = labelled(cfg)
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, (50, 2))
    write_journal(tmp_path / "j.sqlite", [(int(t), float(a), float(b), "1") for t, (a, b) in zip(ts[-50:], p)])
    model = replace(registry.load_version(cfg, "1"), threshold_up=NEVER, threshold_down=float("inf"))
    s = check(cfg, model, "1", tmp_path / "j.sqlite", None)
    assert s["precision"]["overall"] == {"signals": 0, "hits": 0, "precision": None}
    assert s["distribution"]["down"]["threshold"] is None and s["distribution"]["up"]["threshold"] == NEVER
    assert s["distribution"]["up"]["share_above_threshold"] == 0.0
    json.dumps(s, allow_nan=False)  # summary.json stays standard JSON
    y = (direction[-50:] == 1).astype(float)
    assert s["calibration"]["up"]["brier"] == pytest.approx(by_hand(p[:, 0], y)[0])
    text = table(s)
    assert "precision up: no signals at threshold never (the model abstains)" in text
    assert "precision down: no signals at threshold never" in text
    assert text.endswith("overall at the operating point: no signals")


def test_the_thresholds_the_runner_traded_with_are_the_operating_point(trained: Trained, tmp_path: Path) -> None:
    cfg, _ = trained
    ts, direction = labelled(cfg)
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.95, (60, 2))
    path = tmp_path / "j.sqlite"
    write_journal(path, [(int(t), float(a), float(b), "1") for t, (a, b) in zip(ts[-60:], p)])
    j = Journal(path, "study", sync="normal")  # a later session ran version 1 at a study's thresholds
    j.add("start", 1, mode="paper", model="1", thresholds={"up": 0.5, "down": 0.6})
    j.commit()
    j.close()
    model = replace(registry.load_version(cfg, "1"), threshold_up=NEVER, threshold_down=NEVER)
    s = check(cfg, model, "1", path, None)
    assert s["distribution"]["up"]["threshold"] == 0.5 and s["distribution"]["down"]["threshold"] == 0.6
    assert "the runner's thresholds up 0.5000 / down 0.6000" in s["source"]["detail"]
    expected = hand_buckets(p[:, 0], p[:, 1], direction[-60:], 0.5, 0.6)
    for side in ("up", "down"):
        got = [(b["bucket"], b["count"], b["hits"]) for b in s["precision"][side]["buckets"]]
        assert got == expected[side] and sum(c for _, c, _ in got) > 0


def test_without_a_journal_the_model_is_applied_after_its_training_window(trained: Trained, tmp_path: Path) -> None:
    cfg, result = trained
    cfg = with_journal_dir(cfg, tmp_path)
    model = registry.load_version(cfg, "1")
    end = parse_time_ns(registry.connect(cfg).get_run(result["run_id"]).data.params["window_end"])
    rows = load_features(cfg)
    after = int((rows.ts > end).sum())
    assert after > 0
    since = parse_time_ns(result["test_start"])
    with pytest.raises(
        UserError, match=f"no labelled rows: none of the {after:,} predictions from {format_ns(end + 1)}"
    ):
        check(cfg, model, "1", None, end + 1)  # the training window took every label there is
    # so by default the held-out block of its training run, which nothing was fitted on
    s = check(cfg, model, "1", None, None)
    assert s == check(cfg, model, "1", None, since) | {"source": s["source"]}
    assert "held-out block" in s["source"]["detail"] and s["window"]["start"] == format_ns(since)
    s = check(cfg, model, "1", None, since)
    assert s["source"]["kind"] == "model" and "no journal at" in s["source"]["fallback_reason"]
    keep = rows.ts >= since
    proba = model.predict_proba(model.take(rows.x[keep], rows.feature_names))
    ts, direction = labelled(cfg)
    has = np.isin(rows.ts[keep], ts)
    assert (s["predictions"], s["labelled"]) == (int(keep.sum()), int(has.sum()))
    assert s["distribution"]["up"]["mean"] == pytest.approx(proba[:, 0].mean())
    d = direction[np.isin(ts, rows.ts[keep])]
    for j, sign in enumerate((1, -1)):
        side = s["calibration"]["up" if sign == 1 else "down"]
        assert side["brier"] == pytest.approx(by_hand(proba[has, j], (d == sign).astype(float))[0])
        assert sum(b["count"] for b in side["bins"]) == int(has.sum())


def test_a_journal_without_labelled_decisions_of_the_version_falls_back_to_the_model(
    trained: Trained, tmp_path: Path
) -> None:
    cfg, result = trained
    cfg = with_journal_dir(cfg, tmp_path)
    model = registry.load_version(cfg, "1")
    since = parse_time_ns(result["test_start"])
    ts, _ = labelled(cfg)
    late = load_features(cfg, int(ts[-1]) + 1).ts[:3]
    write_journal(tmp_path / "journal" / "paper-bybit.sqlite", [(int(t), 0.2, 0.1, "1") for t in late])
    s = check(cfg, model, "1", None, since)
    assert s["source"]["kind"] == "model"
    assert s["source"]["fallback_reason"].startswith("none of the 3 decisions of version 1")
    write_journal(tmp_path / "other.sqlite", [(int(t), 0.2, 0.1, "7") for t in ts[-10:]])
    s = check(cfg, model, "1", tmp_path / "other.sqlite", since)
    assert s["source"]["kind"] == "model" and "holds no decisions of version 1" in s["source"]["fallback_reason"]


def config_file(cfg: AppConfig, tmp_path: Path) -> Path:
    """The trained config with absolute warehouse and registry paths, its journal and reports in tmp_path."""
    assert cfg.source_path is not None
    data = yaml.safe_load(cfg.source_path.read_text())
    data["warehouse"]["path"] = str(cfg.resolve(cfg.warehouse.path))
    data["mlflow"] = {"store": str(cfg.resolve(cfg.mlflow.store)), "artifacts": str(cfg.resolve(cfg.mlflow.artifacts))}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "config.yaml"


def test_the_flow_and_the_command_line_write_the_report(
    trained: Trained, prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.check_predictions import check_predictions_flow

    cfg, result = trained
    config = config_file(cfg, tmp_path)
    ts, _ = labelled(cfg)
    write_journal(tmp_path / "j.sqlite", [(int(t), 0.3, 0.2, "1") for t in ts[-30:]])
    state = check_predictions_flow(
        config=str(config), model="1", journal=str(tmp_path / "j.sqlite"), out=str(tmp_path / "a"), return_state=True
    )
    assert state.is_completed(), state.message
    out = state.result()
    assert out["summary"]["labelled"] == 30 and out["summary"]["source"]["kind"] == "journal"
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == json.loads(json.dumps(out["summary"]))
    for name in ("prediction_histograms", "reliability", "precision_by_bucket"):
        assert (tmp_path / "a" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["--config", str(config), "--model", "models:/btc-l2/1", "--since", result["test_start"]]) == 0
    printed = capsys.readouterr().out
    (folder,) = (tmp_path / "reports" / "check_predictions").glob("*-v1")  # the default report folder
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["source"]["kind"] == "model" and f"{summary['labelled']:,} with a label" in printed
    assert "predictions from the model" in printed and str(folder / "reliability.png") in printed

    (tmp_path / "notes.txt").write_text("not a journal\n")
    with pytest.raises(UserError, match="not a journal") as failed:
        main(["--config", str(config), "--model", "1", "--journal", str(tmp_path / "notes.txt")])
    assert failed.value.exit_code == UserError.exit_code  # the task's own code survives the flow run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "models:/other@champion"], "no such model"),
        (["--since", "yesterday-ish"], "--since: 'yesterday-ish' is not a time"),
    ],
)
def test_bad_arguments_are_one_line_before_prefect_starts(trained: Trained, args: list[str], message: str) -> None:
    cfg, _ = trained
    with pytest.raises(UserError, match=message):
        main([*args, "--config", str(cfg.source_path)])


def test_bad_journals_and_an_empty_window_are_one_line(trained: Trained, tmp_path: Path) -> None:
    import sqlite3

    cfg, _ = trained
    model = registry.load_version(cfg, "1")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(UserError, match="notes.txt: not a journal"):
        check(cfg, model, "1", tmp_path / "notes.txt", None)
    sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UserError, match="other.sqlite: cannot read the journal"):
        check(cfg, model, "1", tmp_path / "other.sqlite", None)
    with pytest.raises(UserError, match="none.sqlite: no journal"):
        check(cfg, model, "1", tmp_path / "none.sqlite", None)
    j = Journal(tmp_path / "odd.sqlite", "s")
    j.add("decision", 1, model_version="1", p_up=0.2)
    j.close()
    with pytest.raises(UserError, match="record 1 is not a runner's decision"):
        check(cfg, model, "1", tmp_path / "odd.sqlite", None)
    later = load_features(cfg).ts[-1] + 3600 * S
    with pytest.raises(UserError, match=f"no feature rows .* \\(from {format_ns(int(later))}, no journal at"):
        check(with_journal_dir(cfg, tmp_path), model, "1", None, int(later))


@pytest.mark.untraced
def test_no_registry_is_one_line_and_a_non_zero_exit(make_config: ConfigFactory, tmp_path: Path) -> None:
    make_config(mlflow={"store": "nowhere/mlflow.db"})
    with pytest.raises(UnavailableError, match="no model registry at .*nowhere"):
        main(["--config", str(tmp_path / "config.yaml")])
    p = cli("-m", "flows.check_predictions", "--config", str(tmp_path / "config.yaml"))
    assert_one_line_error(p, "no model registry")
    assert p.returncode == UnavailableError.exit_code
