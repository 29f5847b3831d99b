"""Check the runner's live predictions against what happened: the job ``python -m flows.check_predictions`` runs."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.clock import Clock, SystemClock
from core.config import AppConfig
from core.errors import UserError
from core.timefmt import format_ns, parse_time_ns
from features import NAMES
from models import registry
from models.metrics import reliability, score
from models.model import StackedModel
from pipelines.dataset import load_features
from pipelines.progress import StepProgress
from warehouse import journal as jr
from warehouse.db import reading
from warehouse.feature_tables import horizon_name, table_exists

STEP = 0.05  # width of a confidence bucket above the threshold
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
SIDES = (("up", 1), ("down", -1))
CHUNK = 50_000


Predictions = tuple[np.ndarray, np.ndarray, str]  # grid times (ns, increasing), (n, 2) P(up), P(down), their source


def journal_predictions(path: Path, version: str, since_ns: int | None) -> tuple[Predictions | None, str]:
    """The decisions of ``version`` in the journal at ``path`` (the last one per grid time), or why none."""
    ts, proba = [], []
    for r in jr.read(path, ["decision"]):
        try:
            if str(r.data["model_version"]) == version:
                ts.append(int(r.data["grid_ns"]))
                proba.append((float(r.data["p_up"]), float(r.data["p_down"])))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: record {r.seq} is not a runner's decision (grid_ns, p_up, p_down)") from None
    t, p = np.asarray(ts, np.int64), np.asarray(proba, np.float64).reshape(-1, 2)
    if since_ns is not None:
        keep = t >= since_ns
        t, p = t[keep], p[keep]
    if not len(t):
        return None, f"{path} holds no decisions of version {version}" + (
            f" since {format_ns(since_ns)}" if since_ns else ""
        )
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    last = np.r_[t[1:] != t[:-1], True]  # a grid time decided twice (a restart): the later decision
    return (t[last], p[last], f"{int(last.sum()):,} decisions of version {version} in {path}"), ""


def runner_thresholds(path: Path, version: str) -> dict[str, float] | None:
    """The thresholds the runner traded ``version`` with (its start and model-swap records), if journalled:
    an execution study's threshold differs from the registered one."""
    found = None
    for r in jr.read(path, ["start", "model"]):
        v = r.data.get("model") if r.kind == "start" else r.data.get("version")
        thr = r.data.get("thresholds")
        if str(v) == version and isinstance(thr, dict) and {"up", "down"} <= set(thr):
            found = {"up": float(thr["up"]), "down": float(thr["down"])}
    return found


def training_window_ns(cfg: AppConfig, version: str) -> tuple[int, int | None]:
    """The end of the version's training window and the start of its held-out block, as logged on its run."""
    client = registry.connect(cfg)
    params = client.get_run(client.get_model_version(cfg.mlflow.model_name, version).run_id).data.params
    end, test = params.get("window_end"), params.get("window_test_start")
    if end is None:
        raise UserError(f"version {version}'s training run logs no window_end: pass --since")
    return parse_time_ns(end), parse_time_ns(test) if test else None


def _model_rows(
    cfg: AppConfig, model: StackedModel, start: int, reason: str, progress: StepProgress | None
) -> tuple[Predictions, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The model's predictions from ``start`` and their labels; none labelled is one line."""
    pred = model_predictions(cfg, model, start, reason, progress)
    labels = labels_at(cfg, model, pred[0])
    if not labels[0].any():
        h = horizon_name(model.horizon_ns)
        raise UserError(
            f"no labelled rows: none of the {len(pred[0]):,} predictions from {format_ns(start)} has a {h} label "
            f"yet ({reason}); pass --since to look further back"
        )
    return pred, labels


def model_predictions(
    cfg: AppConfig, model: StackedModel, since_ns: int, why: str, progress: StepProgress | None = None
) -> Predictions:
    """The model applied to the stored feature rows from ``since_ns`` on."""
    try:
        rows = load_features(cfg, since_ns, None)
    except UserError as exc:
        raise UserError(f"{exc} (from {format_ns(since_ns)}, {why}); pass --since to look further back") from None
    if model.feature_set != rows.feature_set:
        raise UserError(f"feature-set mismatch: the model has {model.feature_set}, the warehouse {rows.feature_set}")
    cols = model.columns_for(NAMES)
    parts = []
    for i in range(0, len(rows.ts), CHUNK):
        parts.append(model.predict_proba(rows.x[i : i + CHUNK, cols]))
        if progress is not None:
            progress(0.2 + 0.6 * min(i + CHUNK, len(rows.ts)) / len(rows.ts), f"{i + CHUNK:,} rows predicted")
    return rows.ts, np.concatenate(parts), f"{len(rows.ts):,} feature rows from {format_ns(since_ns)} ({why})"


def labels_at(cfg: AppConfig, model: StackedModel, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labelled mask, direction, forward return) of the model's label set and horizon at grid times ``ts``."""
    h = horizon_name(model.horizon_ns)
    path = cfg.resolve(cfg.warehouse.path)
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        sql = "SELECT column_name FROM information_schema.columns WHERE table_name = 'labels'"
        if not table_exists(con, "labels") or f"dir_{h}" not in {r[0] for r in con.execute(sql).fetchall()}:
            raise UserError(f"{path}: no labels at the model's horizon {h} (run python -m flows.feature_build)")
        data = con.execute(
            f"SELECT ts_ns, dir_{h} AS dir, ret_{h} AS ret FROM labels WHERE venue = ? AND symbol = ? "
            f"AND label_set = ? AND dir_{h} IS NOT NULL AND ts_ns >= ? AND ts_ns <= ? ORDER BY ts_ns",
            [cfg.instrument.venue, cfg.instrument.venue_symbol, model.label_set, int(ts[0]), int(ts[-1])],
        ).fetchnumpy()
    lts = np.asarray(data["ts_ns"], np.int64)
    at = np.clip(np.searchsorted(lts, ts), 0, max(len(lts) - 1, 0))
    has = (lts[at] == ts) if len(lts) else np.zeros(len(ts), bool)
    return has, np.asarray(data["dir"], np.int8)[at[has]], np.asarray(data["ret"], np.float64)[at[has]]


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def buckets(p: np.ndarray, hit: np.ndarray, threshold: float) -> dict[str, Any]:
    """Signals, hits and precision overall and per STEP of probability above ``threshold``."""
    k = np.floor((p - threshold) / STEP).astype(np.int64)
    count, hits = np.bincount(k, minlength=1), np.bincount(k, hit.astype(float), minlength=1).astype(np.int64)
    rows = [
        {"bucket": i, "low": threshold + i * STEP, "high": threshold + (i + 1) * STEP, "count": int(c)}
        | {"hits": int(h), "precision": float(h / c)}
        for i, (c, h) in enumerate(zip(count, hits, strict=True))
        if c > 0
    ]
    n = len(p)
    return {"signals": n, "hits": int(hit.sum()), "precision": float(hit.mean()) if n else None, "buckets": rows}


def evaluate(
    model: StackedModel, proba: np.ndarray, has: np.ndarray, direction: np.ndarray, ret: np.ndarray
) -> dict[str, Any]:
    """The report's figures: distribution of all predictions, calibration and precision on the labelled ones."""
    p_lab = proba[has]
    signal = model.signal(p_lab)
    dist: dict[str, Any] = {}
    cal: dict[str, Any] = {}
    prec: dict[str, Any] = {}
    for j, (side, sign) in enumerate(SIDES):
        p, thr = proba[:, j], (model.threshold_up, model.threshold_down)[j]
        pad = max(float(np.ptp(p)) * 0.05, 0.005)
        counts, edges = np.histogram(p, bins=20, range=(max(p.min() - pad, 0.0), min(p.max() + pad, 1.0)))
        dist[side] = {
            "mean": float(p.mean()),
            "quantiles": {f"q{round(100 * q):02d}": float(np.quantile(p, q)) for q in QUANTILES},
            "threshold": _num(thr),
            "share_above_threshold": float(np.mean(p >= thr)),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        }
        y = (direction == sign).astype(float)
        s = score(p_lab[:, j], y, sign * ret, thr)  # the training metrics: Brier, log loss, AUC
        cal[side] = {"base_rate": float(y.mean()), "brier": s.brier, "log_loss": s.log_loss, "auc": _num(s.auc)}
        cal[side]["bins"] = reliability(p_lab[:, j], y)
        prec[side] = buckets(p_lab[signal == sign, j], direction[signal == sign] == sign, thr)
    n, hits = prec["up"]["signals"] + prec["down"]["signals"], prec["up"]["hits"] + prec["down"]["hits"]
    prec["overall"] = {"signals": n, "hits": hits, "precision": hits / n if n else None}
    out = {"predictions": len(proba), "labelled": int(has.sum()), "distribution": dist, "calibration": cal}
    return out | {"precision": prec}


def check(
    cfg: AppConfig,
    model: StackedModel,
    version: str,
    journal: Path | None,
    since_ns: int | None,
    progress: StepProgress | None = None,
) -> dict[str, Any]:
    """The summary for one model version: the journal's predictions if any are labelled, else the model's."""
    path = journal or jr.default_path(cfg.resolve(cfg.live.journal_dir), "paper", "bybit")  # the runner's default
    pred, why = (
        journal_predictions(path, version, since_ns)
        if journal is not None or path.exists()
        else (None, f"no journal at {path}")
    )
    kind = "journal"
    if pred is not None:
        has, direction, ret = labels_at(cfg, model, pred[0])
        if not has.any():
            why = f"none of the {len(pred[0]):,} decisions of version {version} in {path} has a label yet"
            pred = None
    if pred is None:
        kind = "model"
        if since_ns is not None:
            pred, (has, direction, ret) = _model_rows(cfg, model, since_ns, why, progress)
        else:
            end, test_start = training_window_ns(cfg, version)
            try:
                pred, (has, direction, ret) = _model_rows(
                    cfg, model, end + 1, why + "; after the training window", progress
                )
            except UserError:
                if test_start is None:
                    raise
                held_out = (
                    "; nothing labelled after the training window yet: its held-out block, which nothing was fitted on"
                )
                pred, (has, direction, ret) = _model_rows(cfg, model, test_start, why + held_out, progress)
    if progress is not None:
        progress(0.85, f"{int(has.sum()):,} labelled rows")
    ts, proba, detail = pred
    if kind == "journal" and (thr := runner_thresholds(path, version)) is not None:
        model = replace(model, threshold_up=thr["up"], threshold_down=thr["down"])
        detail += f"; at the runner's thresholds up {_thr(thr['up'])} / down {_thr(thr['down'])}"
    out = evaluate(model, proba, has, direction, ret)
    out["source"] = {"kind": kind, "detail": detail, "fallback_reason": why or None}
    out["window"] = {"start": format_ns(int(ts[0])), "end": format_ns(int(ts[-1]))}
    out["model"] = {
        "uri": f"models:/{cfg.mlflow.model_name}/{version}",
        "version": version,
        "feature_set": model.feature_set,
        "label_set": model.label_set,
        "horizon_s": model.horizon_ns / 1e9,
    }
    return out


def _thr(x: float | None) -> str:
    return "never" if x is None or x >= 1 else f"{x:.4f}"


def table(s: dict[str, Any]) -> str:
    """The summary as plain text: distribution, calibration bins, precision by confidence bucket."""
    m, src, w = s["model"], s["source"], s["window"]
    out = [f"{m['uri']} (horizon {m['horizon_s']:g}s), predictions from the {src['kind']}: {src['detail']}"]
    out += [f"{s['predictions']:,} predictions {w['start']} .. {w['end']}, {s['labelled']:,} with a label", ""]
    out.append(
        f"{'':8}{'mean':>7}" + "".join(f"{q:>7}" for q in s["distribution"]["up"]["quantiles"]) + "  threshold  >= thr"
    )
    for side, d in s["distribution"].items():
        q = "".join(f"{v:7.4f}" for v in d["quantiles"].values())
        out.append(f"p_{side:<6}{d['mean']:7.4f}{q}{_thr(d['threshold']):>11}{d['share_above_threshold']:8.2%}")
    for side, c in s["calibration"].items():
        auc = "-" if c["auc"] is None else f"{c['auc']:.3f}"
        head = f"calibration {side}: Brier {c['brier']:.5f}, log loss {c['log_loss']:.5f}, AUC {auc}"
        out += ["", f"{head}, base rate {c['base_rate']:.4f}", f"{'predicted':>12}{'observed':>10}{'count':>8}"]
        out += [f"{b['predicted']:>12.4f}{b['observed']:>10.4f}{b['count']:>8,}" for b in c["bins"]]
    out.append("")
    for side in ("up", "down"):
        p, thr = s["precision"][side], _thr(s["distribution"][side]["threshold"])
        if not p["signals"]:
            out.append(f"precision {side}: no signals at threshold {thr} (the model abstains)")
            continue
        out.append(f"precision {side} at {thr}: {p['signals']:,} signals, {p['hits']:,} hits, {p['precision']:.3f}")
        out.append(f"{'confidence':>17}{'count':>8}{'hits':>7}{'precision':>10}")
        out += [
            f"{b['low']:>11.3f}-{b['high']:.3f}{b['count']:>8,}{b['hits']:>7,}{b['precision']:>10.3f}"
            for b in p["buckets"]
        ]
    o = s["precision"]["overall"]
    summary = (
        f"{o['signals']:,} signals, {o['hits']:,} hits, precision {o['precision']:.3f}"
        if o["signals"]
        else "no signals"
    )
    return "\n".join([*out, f"overall at the operating point: {summary}"])


def plot(s: dict[str, Any], folder: Path) -> list[Path]:
    """prediction_histograms.png, reliability.png, precision_by_bucket.png in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [folder / f"{n}.png" for n in ("prediction_histograms", "reliability", "precision_by_bucket")]
    figs = [plt.subplots(1, 2, figsize=(11, 4)), plt.subplots(figsize=(6, 6)), plt.subplots(figsize=(7, 4))]
    for ax, (side, d) in zip(figs[0][1], s["distribution"].items(), strict=True):
        ax.stairs(d["histogram"]["counts"], d["histogram"]["edges"], fill=True)
        if d["threshold"] is not None and d["threshold"] < 1:
            ax.axvline(d["threshold"], color="r", ls="--")
        ax.set(title=f"p_{side}: mean {d['mean']:.4f}, threshold {_thr(d['threshold'])}", xlabel="probability")
    ax = figs[1][1]
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    for side, c in s["calibration"].items():
        xy = np.array([(b["predicted"], b["observed"]) for b in c["bins"]])
        ax.plot(xy[:, 0], xy[:, 1], "o-", label=f"{side} (Brier {c['brier']:.4f})")
    ax.set(xlabel="mean predicted", ylabel="observed frequency", title=f"Reliability, {s['labelled']:,} labelled rows")
    ax = figs[2][1]
    for k, side in enumerate(("up", "down")):
        rows = s["precision"][side]["buckets"]
        bars = ax.bar([b["bucket"] + 0.4 * k for b in rows], [b["precision"] for b in rows], 0.4, label=side)
        ax.bar_label(bars, [f"{b['count']:,}" for b in rows], fontsize=7)
    if not s["precision"]["overall"]["signals"]:
        ax.text(0.5, 0.5, "no signals: the model abstains", ha="center", transform=ax.transAxes)
    ax.set(xlabel=f"bucket k: p in threshold + [{STEP:g}k, {STEP:g}(k + 1))", ylabel="precision (bar labels: signals)")
    ax.set_ylim(0, 1.05)
    for i, (fig, ax) in enumerate(figs):
        if i:
            ax.legend()
        fig.savefig(paths[i], dpi=80)
        plt.close(fig)
    return paths


def run_check(
    cfg: AppConfig,
    model_uri: str | None,
    journal: Path | None,
    since_ns: int | None,
    out: Path | None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    version, uri = registry.resolve(cfg, model_uri)
    with StepProgress("check predictions") as progress:
        progress(0.05, f"loading {uri}")
        summary = check(cfg, registry.load_version(cfg, version), version, journal, since_ns, progress)
        stamp = datetime.fromtimestamp((clock or SystemClock()).now_ns() / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = out or cfg.resolve(Path("reports/check_predictions")) / f"{stamp}-v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        files = [*plot(summary, folder), folder / "summary.json"]
        files[-1].write_text(json.dumps(summary, indent=1))
        progress(1.0, f"report in {folder}")
    result = {"status": "completed", "summary": summary, "table": table(summary), "report": str(folder)}
    return result | {"files": [str(f) for f in files]}
