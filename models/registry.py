"""MLflow: the SQLite registry and artifact folder under mlruns/, training runs, aliases, loading.

A training run logs the config, the feature-set id, the data window, the git commit, the held-out
metrics and verdict, the diagnostics (feature importance by gain and by SHAP values, reliability
plot, confusion matrix, CV folds) and the model as one pyfunc with a signature and an input
example, registered under ``mlflow.model_name`` with the alias ``challenger``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import AppConfig
from core.errors import UnavailableError, UserError
from models.model import StackedModel
from models.train import TrainResult

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    artifacts_uri: str
    db: Path


def store(cfg: AppConfig, create: bool = False) -> Store:
    """The configured store; without ``create`` a missing one is a one-line error."""
    db = cfg.resolve(cfg.mlflow.store)
    art = cfg.resolve(cfg.mlflow.artifacts)
    if not db.exists() and not create:
        raise UnavailableError(f"no model registry at {db}: train a model first (python -m flows.train)")
    if create:
        db.parent.mkdir(parents=True, exist_ok=True)
        art.mkdir(parents=True, exist_ok=True)
    return Store(f"sqlite:///{db}", art.as_uri(), db)


def connect(cfg: AppConfig, create: bool = False) -> Any:
    """Point MLflow at the project's store and return a client."""
    import mlflow
    from mlflow import MlflowClient

    s = store(cfg, create)
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


def log_training(
    cfg: AppConfig, result: TrainResult, x_test: np.ndarray, y_test: dict[str, np.ndarray], window: dict[str, Any]
) -> tuple[str, str]:
    """Log one training run and register its model as the challenger; (run id, model version)."""
    import mlflow

    from models import diagnostics
    from models.pyfunc import StackPyfunc, predict_frame

    client = connect(cfg, create=True)
    exp_id = _experiment(cfg, client)
    model = result.model
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.set_tags({"git_commit": git_commit(), "feature_set": model.feature_set, "label_set": model.label_set})
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
            registered_model_name=cfg.mlflow.model_name,
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    client.set_registered_model_alias(cfg.mlflow.model_name, CHALLENGER, version)
    client.set_model_version_tag(cfg.mlflow.model_name, version, "feature_set", model.feature_set)
    client.set_model_version_tag(cfg.mlflow.model_name, version, "metrics", json.dumps(_headline(result)))
    return run_id, version


def _headline(result: TrainResult) -> dict[str, float]:
    m = result.metrics()
    keys = [f"{d}_stack_{k}" for d in ("up", "down") for k in ("log_loss", "auc", "precision", "fpr")]
    return {k: round(m[k], 6) for k in keys if k in m and np.isfinite(m[k])}


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
