"""A project folder moves and is copied with its models (models/store.py).

MLflow stores absolute artifact URIs; a copy or a move must still load its own models, register new
ones into its own folder, and never read or write the original's.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from core.config import AppConfig, TrainingConfig, load_config
from models import registry
from models.learners import BoostParams
from models.result import Evidence, TrainResult
from models.store import rebase
from pipelines.training import train
from tests.conftest import REPO

S = 1_000_000_000
pytestmark = pytest.mark.slow

NEED = Evidence.of(TrainingConfig())


@pytest.fixture(scope="module")
def fitted() -> tuple[TrainResult, np.ndarray, dict[str, np.ndarray]]:
    """A small model on a planted signal (no warehouse needed), its held-out rows and labels."""
    rng = np.random.default_rng(0)
    n = 6000
    x = rng.normal(size=(n, 6))
    ret = 1e-4 * (1.5 * x[:, 0] + rng.normal(size=n))
    direction = np.where(ret > 1e-4, 1, np.where(ret < -1e-4, -1, 0)).astype(np.int8)
    names = [f"f{i}" for i in range(6)]
    params = replace(
        BoostParams.of(TrainingConfig()), rounds=30, early_stopping=5, min_child_samples=50, num_leaves=31, max_depth=6
    )
    result = train(
        x, np.arange(n) * S, ret, direction, names, "fs", "ls", 30 * S, 1e-4, params, 3, (0.6, 0.2, 0.2), 60 * S, NEED
    )
    test = slice(n - result.rows["test"], None)
    y = {"up": (direction[test] == 1).astype(float), "down": (direction[test] == -1).astype(float)}
    return result, x[test], y | {"direction": direction[test]}


def _project(root: Path) -> AppConfig:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(
        yaml.safe_dump({"mlflow": {"store": "mlruns/mlflow.db", "artifacts": "mlruns/artifacts"}})
    )
    return load_config(root / "config.yaml")


def _register(cfg: AppConfig, fitted: tuple[TrainResult, np.ndarray, dict[str, np.ndarray]]) -> str:
    result, x, y = fitted
    window = {
        "start": "2026-01-05T00:00:00.000Z",
        "end": "2026-01-05T01:40:00.000Z",
        "rows": 6000,
        "data_source": "sim",
    }
    return registry.log_training(cfg, result, x, y, window)[1]


def _stored_text(db: Path) -> str:
    """Every text value in the database, one per line."""
    con = sqlite3.connect(db)
    out = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in con.execute(f'SELECT * FROM "{table}"'):
            out += [v for v in row if isinstance(v, str)]
    con.close()
    return "\n".join(out)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _same_predictions(cfg: AppConfig, version: str, result: TrainResult, x: np.ndarray) -> None:
    np.testing.assert_array_equal(registry.load_version(cfg, version).predict_proba(x), result.model.predict_proba(x))


def test_a_moved_project_loads_its_models_and_registers_new_ones_in_its_own_folder(
    fitted: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result, x, _ = fitted
    old = _project(tmp_path / "desk")
    assert _register(old, fitted) == "1"
    shutil.copytree(tmp_path / "desk", tmp_path / "moved")
    shutil.rmtree(tmp_path / "desk")  # the original is gone: the stored paths lead nowhere
    new = load_config(tmp_path / "moved" / "config.yaml")
    with caplog.at_level(logging.INFO, logger="models.store"):
        _same_predictions(new, "1", result, x)
    assert any("the project moved" in r.getMessage() and "desk" in r.getMessage() for r in caplog.records)
    assert _register(new, fitted) == "2"
    _same_predictions(new, "2", result, x)
    db = tmp_path / "moved" / "mlruns" / "mlflow.db"
    assert str(tmp_path / "desk") not in _stored_text(db)
    for mlmodel in (tmp_path / "moved" / "mlruns").rglob("MLmodel"):
        assert str(tmp_path / "desk") not in mlmodel.read_text()
    client = registry.connect(new)
    for v in ("1", "2"):
        uri = client.get_model_version_download_uri(new.mlflow.model_name, v)
        assert uri.startswith((tmp_path / "moved").as_uri())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="models.store"):
        registry.connect(new)
    assert not caplog.records  # rebased once: nothing left to do


def test_a_copy_never_reads_or_writes_the_original_that_still_exists(fitted: Any, tmp_path: Path) -> None:
    result, x, _ = fitted
    original = _project(tmp_path / "a")
    _register(original, fitted)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    before = _snapshot(tmp_path / "a")
    copy = load_config(tmp_path / "b" / "config.yaml")
    _same_predictions(copy, "1", result, x)
    assert _register(copy, fitted) == "2"
    assert _snapshot(tmp_path / "a") == before  # not one byte of the original changed
    stored = _stored_text(tmp_path / "b" / "mlruns" / "mlflow.db")
    assert f"{tmp_path / 'a'}/" not in stored and (tmp_path / "b" / "mlruns" / "artifacts").as_uri() in stored
    client = registry.connect(copy)
    run = client.get_run(client.get_model_version(copy.mlflow.model_name, "2").run_id)
    assert run.info.artifact_uri.startswith((tmp_path / "b").as_uri())
    assert (tmp_path / "b" / "mlruns" / "artifacts" / run.info.run_id).is_dir()
    assert not (tmp_path / "a" / "mlruns" / "artifacts" / run.info.run_id).exists()
    assert [v.version for v in registry.connect(original).search_model_versions("name = 'btc-l2'")] == [1]


def test_a_store_that_is_not_ours_is_left_alone(fitted: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    theirs = _project(tmp_path / "theirs")
    _register(theirs, fitted)
    db = tmp_path / "theirs" / "mlruns" / "mlflow.db"
    before = _snapshot(tmp_path / "theirs")
    elsewhere = tmp_path / "ours" / "artifacts"  # a config pointing at their database, artifacts somewhere else
    elsewhere.mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="models.store"):
        assert rebase(db, elsewhere, "btc-l2") == {}
    assert any("left as it is" in r.getMessage() for r in caplog.records)
    link = tmp_path / "link"  # the same folder spelled through a symlink: nothing moved
    link.symlink_to(tmp_path / "theirs" / "mlruns" / "artifacts")
    assert rebase(db, link, "btc-l2") == {}
    assert rebase(tmp_path / "nothing.db", elsewhere, "btc-l2") == {} and not (tmp_path / "nothing.db").exists()
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x TEXT)").connection.commit()
    assert rebase(tmp_path / "other.db", elsewhere, "btc-l2") == {}  # a database, but not MLflow's
    assert _snapshot(tmp_path / "theirs") == before


POLL = """
import sys, time
from core.config import load_config
from core.errors import UnavailableError
from models import registry

cfg = load_config(sys.argv[1])
print("polling", flush=True)
seen, t0 = 0, time.monotonic()
while seen < 20 and time.monotonic() - t0 < 240:  # until the store has answered 20 times
    try:
        registry.version_for(cfg, registry.CHAMPION)
        seen += 1
    except UnavailableError:  # not there yet
        pass
    time.sleep(0.002)
print("answered", seen, flush=True)
"""


@pytest.mark.untraced
def test_a_process_reading_a_registry_while_another_creates_it_never_sees_it_half_made(tmp_path: Path) -> None:
    """A paper runner waiting for its first champion polls the registry while the first training
    creates it (a fresh box). Created in place, the store had half its tables for a second or two,
    and the poller's MLflow migrated it too: it died on "No such constraint" or "Circular dependency
    detected" (3 runs of 3 before models/store.py created it in a file of its own)."""
    cfg = _project(tmp_path / "box")
    poller = subprocess.Popen(
        [sys.executable, "-c", POLL, str(cfg.source_path)], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert poller.stdout is not None and poller.stdout.readline().strip() == "polling"
        client = registry.connect(cfg, create=True)  # what the first training does
        assert client.search_registered_models() == []
        out, err = poller.communicate(timeout=280)
    finally:
        poller.kill()
    assert poller.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert out.strip() == "answered 20", out
    db = cfg.resolve(cfg.mlflow.store)
    assert [p.name for p in db.parent.iterdir() if p.name.endswith(".creating")] == []  # no file left over
    assert registry.version_for(cfg, registry.CHAMPION) is None  # a whole store, no champion yet
