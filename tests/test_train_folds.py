"""Training with its walk-forward folds on a real Dask cluster (a scheduler and two worker processes,
through Prefect's task runner) as a user runs it, a local one the command starts or a running one
named by its address: the model it registers equals the one trained serially in a process of its
own, booster dump for booster dump."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from core.config import AppConfig, load_config
from core.errors import UserError
from models import registry
from models.stack import DirectionStack
from tests.conftest import REPO, free_port
from tests.test_cli import assert_one_line_error, cli
from tests.test_training import own_registry


def _same_stack(serial: DirectionStack, cluster: DirectionStack, name: str) -> None:
    assert cluster.lgb_model.model_to_string() == serial.lgb_model.model_to_string(), name
    assert cluster.xgb_model.get_dump(with_stats=True) == serial.xgb_model.get_dump(with_stats=True), name
    assert bytes(cluster.xgb_model.save_raw()) == bytes(serial.xgb_model.save_raw()), name
    # the out-of-fold probabilities, through what is fitted and kept of them: each fold's boosters'
    # rounds, both learners' AUC and log loss on its rows, and the meta-learner's weights
    np.testing.assert_equal(cluster.folds, serial.folds, err_msg=name)
    for field in ("meta_coef", "meta_intercept", "cal_coef", "cal_intercept", "serves", "note"):
        np.testing.assert_equal(getattr(cluster, field), getattr(serial, field), err_msg=f"{name}.{field}")


@pytest.mark.slow
def test_folds_on_a_two_worker_dask_cluster_train_the_serial_model_bit_for_bit(
    trained: tuple[AppConfig, dict[str, Any]], tmp_path: Path
) -> None:
    cfg = own_registry(trained, tmp_path)  # version 1: the session's model, trained serially
    assert cfg.source_path is not None
    p = cli("-m", "flows.train", "--config", str(cfg.source_path), "--cluster", "local", "--workers", "2", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"registered {cfg.mlflow.model_name} version 2 as challenger" in p.stdout, p.stdout[-2000:]
    # each direction's folds went to the cluster as tasks (Prefect logs the flow's prints on stderr)
    assert re.findall(r"(\d+) walk-forward folds fitted as tasks", p.stderr) == [str(cfg.training.folds)] * 2
    serial, cluster = registry.load_version(cfg, "1"), registry.load_version(cfg, "2")
    for name in ("up", "down"):
        stack = getattr(serial, name)
        assert stack.folds and all(f["lgb_rounds"] >= 1 for f in stack.folds)  # folds that fitted something
        _same_stack(stack, getattr(cluster, name), name)
    assert (cluster.threshold_up, cluster.threshold_down) == (serial.threshold_up, serial.threshold_down)


@contextmanager
def running_cluster(folder: Path, workers: int = 1) -> Iterator[str]:
    """A Dask cluster as a desk runs one, started the way docs/scaling.md says: ``dask scheduler``
    and ``dask worker <address>`` (its processes, its nanny), each in a process group of its own, the
    project importable on the workers (a desk installs it there); its address once every worker is in.
    One worker process by default: the work split over two is the ``--cluster local --workers 2``
    tests' (here, in this file and in tests/test_sweep.py and tests/test_feature_partitions.py)."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_LOGGING__DISTRIBUTED": "warning"}
    folder.mkdir(parents=True, exist_ok=True)
    commands = [
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        [dask, "worker", address, "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard",
         "--local-directory", str(folder / "work")],
    ]  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in commands:  # a worker waits for its scheduler to answer
            with (folder / f"{cmd[1]}.log").open("wb") as log:
                procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))  # fmt: skip
        with Client(address, timeout="120s") as client:  # so does a client
            client.wait_for_workers(workers, timeout=240)
        yield address
    finally:
        for p in reversed(procs):  # the workers first, then the scheduler: as Ctrl-C would
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(30)


def tasks_run(address: str) -> dict[str, int]:
    """Tasks the scheduler at ``address`` has seen finish, by key prefix: how many times a task of the
    prefix entered the "memory" state (``state_counts`` accumulates every entry into each state)."""
    from distributed import Client

    def count(dask_scheduler: Any) -> dict[str, int]:
        return {k: v.state_counts["memory"] for k, v in dask_scheduler.task_prefixes.items()}

    with Client(address, timeout="120s") as client:
        return dict(client.run_on_scheduler(count))


@pytest.mark.slow
def test_the_scheduled_retrain_runs_on_the_cluster_address_config_yaml_names(
    trained: tuple[AppConfig, dict[str, Any]], tmp_path: Path
) -> None:
    """``compute.cluster: tcp://host:port`` in config.yaml (a cluster the desk keeps running: its
    scheduler and worker processes started with Dask's own commands) and ``python -m flows.retrain``
    (what the retrain-daily deployment runs): the chain's feature build by partition and its folds
    go to that cluster as tasks, and the challenger it registers in an empty registry is the
    session's serially trained model again, booster for booster. (``compute.cluster: local``, a
    cluster the chain starts itself, is tests/test_scheduling.py's scheduled chain.)"""
    cfg = own_registry(trained, tmp_path)
    assert cfg.source_path is not None
    data = yaml.safe_load(cfg.source_path.read_text())
    # a warehouse of its own: the chain's feature build writes (the last horizon's open labels)
    shutil.copy(cfg.resolve(cfg.warehouse.path), tmp_path / "l2.duckdb")
    data["warehouse"]["path"] = str(tmp_path / "l2.duckdb")
    data["mlflow"]["store"] = str(tmp_path / "empty.db")  # no version yet: the chain trains
    with running_cluster(tmp_path / "dask") as address:
        data["compute"] = {"cluster": address}
        config = tmp_path / "cluster.yaml"
        config.write_text(yaml.safe_dump(data))
        p = cli("-m", "flows.retrain", "--config", str(config), timeout=600)
        ran = tasks_run(address)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr  # Prefect logs the flows' prints on stderr
    assert f"retrain: feature build and training folds on the Dask cluster at {address}" in out, out[-3000:]
    assert "for flow 'features-by-partition'" in out and "for flow 'train-folds-on-cluster'" in out, out[-3000:]
    assert re.findall(r"(\d+) walk-forward folds fitted as tasks", out) == [str(cfg.training.folds)] * 2
    assert "Traceback" not in out, out[-3000:]
    # the running cluster's scheduler saw the work: the feature build's partitions, and every fold of
    # both directions as a task of its own (flows/feature_build.py, flows/train.py)
    assert ran.get("partition_task", 0) >= 1 and ran.get("fold_task", 0) == 2 * cfg.training.folds, ran
    cluster_cfg = load_config(config)
    serial, cluster = registry.load_version(cfg, "1"), registry.load_version(cluster_cfg, "1")
    for name in ("up", "down"):
        _same_stack(getattr(serial, name), getattr(cluster, name), name)
    assert (cluster.threshold_up, cluster.threshold_down) == (serial.threshold_up, serial.threshold_down)


@pytest.mark.untraced
def test_a_bad_cluster_address_is_one_line_and_exit_2(config_path: Path) -> None:
    p = cli("-m", "flows.train", "--config", str(config_path), "--cluster", "somewhere")
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert_one_line_error(p, "--cluster somewhere: local, or a scheduler address")


def test_no_workers_is_a_user_error(config_path: Path) -> None:
    from flows.train import main

    with pytest.raises(UserError, match="--workers 0: at least 1") as caught:
        main(["--config", str(config_path), "--cluster", "local", "--workers", "0"])
    assert caught.value.exit_code == 2
