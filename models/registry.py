"""MLflow: the SQLite registry and artifact folder under mlruns/, training runs, aliases, loading.

A training run logs the config, the feature-set id, the data window, the git commit, the held-out
metrics and verdict, the diagnostics (feature importance by gain and by SHAP values, reliability
plot, confusion matrix, CV fold scores) and the model as one pyfunc with a signature and an input
example, registered under ``mlflow.model_name`` with the alias ``challenger``.

What a run is can be read off it: the run is named ``v7 train 2026-01-05T00:00..2026-01-05T12:00
001e3feb`` (version, window, feature set) and tagged with model_version, window_start / window_end,
feature_set, label_set, data_source and git_commit. Held-out figures are metrics named
``<direction>_<learner>/<figure>`` (``up_stack/auc``, ``up_stack/auc_lo``, ``down_xgb/log_loss``,
``rows/test``; the UI draws one chart section per direction and learner), the walk-forward folds'
scores ``cv/<direction>_<learner>_<auc|log_loss>`` with the fold as the step. The model version
carries the same window and data tags and the stack's key figures under the same names, as plain
numbers (``up_stack/auc`` = ``0.5873``); backtests add theirs (flows/backtest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import AppConfig
from core.errors import UserError
from models import store as _store
from models.metrics import metric_key
from models.model import StackedModel
from models.result import TrainResult

Store = _store.Store  # where the store lives (models/store.py), as registry.Store / registry.store before
store = _store.store
CHAMPION = "champion"
CHALLENGER = "challenger"
HEADLINE = (
    "auc",
    "auc_lo",
    "auc_hi",
    "log_loss",
    "brier",
    "precision",
    "signals",
    "threshold",
    "skill",
    "cost_bps",
    "confirm_n",
    "confirm_ev_bps",
    "confirm_se_bps",
)  # on the version


NO_CHAMPION = (
    "no champion with skill in {name}: nothing to trade (python -m flows.train; python -m flows.promote; "
    "python -m models list shows why each version was not promoted)"
)


def connect(cfg: AppConfig, create: bool = False) -> Any:
    """Point MLflow at the project's store (rebased first if the project moved) and return a client."""
    import mlflow
    from mlflow import MlflowClient

    s = _store.locate(cfg, create)
    mlflow.set_tracking_uri(s.tracking_uri)
    mlflow.set_registry_uri(s.tracking_uri)
    return MlflowClient(s.tracking_uri, s.tracking_uri)


def _experiment(cfg: AppConfig, client: Any) -> str:
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is not None:
        return str(exp.experiment_id)
    return str(client.create_experiment(cfg.mlflow.experiment, artifact_location=store(cfg).artifacts_uri))


def git_commit() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        out = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)  # noqa: S603  (fixed arguments)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _requirements() -> list[str]:
    out = []
    for pkg in ("numpy", "pandas", "lightgbm", "xgboost-cpu", "scikit-learn", "mlflow"):
        try:
            out.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def minute(iso: str) -> str:
    """``2026-01-05T00:00:00.000Z`` -> ``2026-01-05T00:00``: window ends in run names."""
    return iso[:16] if len(iso) >= 16 and iso[10] == "T" else iso


def log_training(
    cfg: AppConfig, result: TrainResult, x_test: np.ndarray, y_test: dict[str, np.ndarray], window: dict[str, Any]
) -> tuple[str, str]:
    """Log one training run and register its model as the challenger; (run id, model version).

    ``window`` holds the data's ``start`` / ``end`` (ISO), ``rows``, ``test_start`` and
    ``data_source`` (sim, bybit, file: where the warehouse's market data came from)."""
    import mlflow

    from models import diagnostics
    from models.pyfunc import StackPyfunc, predict_frame

    client = connect(cfg, create=True)
    exp_id = _experiment(cfg, client)
    model = result.model
    name = cfg.mlflow.model_name
    described = {
        "window_start": str(window["start"]),
        "window_end": str(window["end"]),
        "feature_set": model.feature_set,
        "label_set": model.label_set,
        "data_source": str(window.get("data_source", "unknown")),
    }
    title = f"train {minute(described['window_start'])}..{minute(described['window_end'])} {model.feature_set[:8]}"
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=exp_id, run_name=title) as run:
        mlflow.set_tags({**described, **result.tags(), "git_commit": git_commit()})
        mlflow.log_params(
            {
                "feature_set": model.feature_set,
                "label_set": model.label_set,
                "horizon_s": model.horizon_ns / 1e9,
                "tau": model.tau,
                "threshold_up": model.threshold_up,
                "threshold_down": model.threshold_down,
                **{f"window_{k}": v for k, v in window.items()},
                **{f"training.{k}": v for k, v in cfg.training.model_dump(mode="json").items()},
            }
        )
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.log_metrics({k: v for k, v in result.metrics().items() if np.isfinite(v)})
        for fold, values in fold_metrics(model).items():
            mlflow.log_metrics(values, step=fold)
        mlflow.log_text("\n".join(result.verdict) + "\n", "verdict.txt")
        out = Path(tmp)
        for path in diagnostics.write_all(result, x_test, y_test, out / "diagnostics"):
            mlflow.log_artifact(str(path), "diagnostics")
        model_dir = out / "model"
        model.save(model_dir)
        example = pd.DataFrame(x_test[:5], columns=model.feature_names)
        signature = mlflow.models.infer_signature(example, predict_frame(model, example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=StackPyfunc(),
            artifacts={"model": str(model_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    client.update_run(run_id, name=f"v{version} {title}")  # the version is known only now
    client.set_tag(run_id, "model_version", version)
    client.set_tag(run_id, "mlflow.note.content", _note(cfg, result, version, described, window))
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in {**described, **headline(result)}.items():
        client.set_model_version_tag(name, version, key, value)
    return run_id, version


def fold_metrics(model: StackedModel) -> dict[int, dict[str, float]]:
    """The walk-forward folds' out-of-fold scores per fold: ``cv/up_lgb_auc`` etc., logged with the fold as step."""
    out: dict[int, dict[str, float]] = {}
    for d, stack in (("up", model.up), ("down", model.down)):
        for f in stack.folds:
            for learner in ("lgb", "xgb"):
                for figure in ("auc", "log_loss"):
                    v = float(f.get(f"{learner}_{figure}", float("nan")))
                    if np.isfinite(v):
                        out.setdefault(int(f["fold"]), {})[f"cv/{d}_{learner}_{figure}"] = v
    return out


def headline(result: TrainResult) -> dict[str, str]:
    """The stack's key held-out figures per direction as model-version tags that read as numbers."""
    m = result.metrics()
    out = {}
    for d in ("up", "down"):
        for figure in HEADLINE:
            key = metric_key(d, "stack", figure)
            v = m.get(key, float("nan"))
            if np.isfinite(v):
                out[key] = str(int(v)) if figure == "signals" else f"{v:.4f}"
    return out


def _note(cfg: AppConfig, result: TrainResult, version: str, described: dict[str, str], window: dict[str, Any]) -> str:
    """The training run's description (Markdown, shown on its page in the UI)."""
    name = cfg.mlflow.model_name
    lines = [
        f"**{name} version {version}** ([registry page](#/models/{name}/versions/{version})): trained on "
        f"{described['window_start']} .. {described['window_end']} ({int(window.get('rows', 0)):,} rows, data "
        f"source {described['data_source']}), feature set `{described['feature_set']}`.",
        "",
        f"Held out from {window.get('test_start', '?')} ({result.rows['test']:,} rows, nothing fitted or chosen on "
        "them); AUC with its 95 % moving-block bootstrap interval:",
        "",
    ]
    for d in ("up", "down"):
        s = result.scores[d]["stack"]
        lines.append(
            f"- {d}: AUC {s.auc:.3f} [{s.auc_lo:.3f}, {s.auc_hi:.3f}], log loss {s.log_loss:.4f}, "
            f"Brier {s.brier:.4f}, {s.signals:,} signals at threshold {s.threshold:.4f}"
        )
    return "\n".join([*lines, "", *(f"- {v}" for v in result.verdict)])


def version_for(cfg: AppConfig, alias: str) -> str | None:
    """The model version holding ``alias``, or None."""
    from mlflow.exceptions import MlflowException

    client = connect(cfg)
    try:
        return str(client.get_model_version_by_alias(cfg.mlflow.model_name, alias).version)
    except MlflowException:
        return None


def load(cfg: AppConfig, alias: str = CHAMPION) -> tuple[StackedModel, str]:
    """The model behind ``alias`` as a StackedModel (no pyfunc overhead), and its version."""
    version = version_for(cfg, alias)
    if version is None:
        raise UserError(f"no model has the alias '{alias}' in {cfg.mlflow.model_name} (train and promote one first)")
    return load_version(cfg, version), version


def resolve(cfg: AppConfig, uri: str | None) -> tuple[str, str]:
    """(version, models:/name/version) for a models:/ URI, a version number, an alias, or None (champion)."""
    name = cfg.mlflow.model_name
    spec = uri or CHAMPION
    if spec.startswith("models:/"):
        body = spec.removeprefix("models:/")
        if "@" in body:
            given, alias = body.split("@", 1)
            version = version_for(cfg, alias) if given == name else None
        elif "/" in body:
            given, version = body.split("/", 1)
            if given != name or not version.isdigit():
                version = None
        else:
            version = None
        if version is None:
            raise UserError(f"--model {spec}: no such model in {name} (models:/{name}@champion or models:/{name}/N)")
    elif spec.isdigit():
        version = spec
    else:
        found = version_for(cfg, spec)
        if found is None:
            raise UserError(f"no model has the alias '{spec}' in {name} (train and promote one first)")
        version = found
    return version, f"models:/{name}/{version}"


def load_version(cfg: AppConfig, version: str) -> StackedModel:
    """The StackedModel of one registered version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    connect(cfg)
    try:
        local = mlflow.artifacts.download_artifacts(f"models:/{cfg.mlflow.model_name}/{version}")
    except MlflowException:
        raise UserError(f"{cfg.mlflow.model_name} has no version {version}") from None
    return StackedModel.load(Path(local) / "artifacts" / "model")


def version_created_ns(cfg: AppConfig, version: str) -> int:
    """When a version was registered (ns since the epoch): the runner refuses too old a model."""
    from mlflow.exceptions import MlflowException

    client = connect(cfg)
    try:
        mv = client.get_model_version(cfg.mlflow.model_name, version)
    except MlflowException:
        raise UserError(f"{cfg.mlflow.model_name} has no version {version}") from None
    return int(mv.creation_timestamp) * 1_000_000


def latest_training(cfg: AppConfig) -> tuple[str, int] | None:
    """(version, last grid time of its training window, ns) of the newest registered version, or None."""
    from mlflow.exceptions import MlflowException

    from core.timefmt import parse_time_ns

    if not cfg.resolve(cfg.mlflow.store).exists():
        return None
    client = connect(cfg)
    try:
        versions = client.search_model_versions(f"name = '{cfg.mlflow.model_name}'")
    except MlflowException:
        return None
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    run = client.get_run(newest.run_id).data if newest.run_id else None
    end = (run.tags.get("window_end") or run.params.get("window_end")) if run is not None else None
    return (str(newest.version), parse_time_ns(end)) if end else None
