"""Shared-service figures: MLflow and Prefect on PostgreSQL against their SQLite defaults.

A PostgreSQL of the bench's own (``python -m ops.postgres start``, a fresh cluster in a temporary
folder) serves both. Per backend: the Prefect server's start to its first answer on an empty
database (its migrations included), a flow run's record through that server's API (what a flow
run costs the database: created, PENDING, RUNNING, COMPLETED, read back), and
MLflow's tracking store writing runs the size of a training run's record (parameters, 60 metrics,
tags) plus a registered model version. Skipped (no figures) where PostgreSQL is not installed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ROOT, entry
from flows.prefect_server import answers, connection_url

RUNS = 20  # MLflow runs and Prefect flow runs per backend


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect(home: Path, database: str, env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first answer of a new server, median seconds of a flow run's record: created,
    three states set through the server's orchestration rules, read back)."""
    url = f"http://127.0.0.1:{_port()}/api"
    senv = {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if database:
        senv["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = connection_url(database)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", url.split(":")[2][:-4]]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=senv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not answers(url, timeout_s=1.0):
            if proc.poll() is not None:
                raise RuntimeError(f"the Prefect server on {database or 'SQLite'} exited")
            time.sleep(0.1)
        start = time.perf_counter() - t0
        flow = _api(url, "/flows/", {"name": "bench"})["id"]
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            run = _api(url, "/flow_runs/", {"flow_id": flow, "name": secrets.token_hex(4)})["id"]
            for state in ("PENDING", "RUNNING", "COMPLETED"):
                _api(url, f"/flow_runs/{run}/set_state", {"state": {"type": state}})
            _api(url, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run]}}})
            times.append(time.perf_counter() - t0)
        return start, statistics.median(times)
    finally:
        proc.terminate()
        proc.wait(60)


def _api(url: str, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _mlflow(uri: str, artifacts: Path) -> float:
    """Median seconds to record one training-sized run and register it as a model version."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri, uri)
    exp = client.create_experiment(f"bench-{secrets.token_hex(4)}", artifact_location=artifacts.as_uri())
    client.create_registered_model("bench")
    times = []
    for i in range(RUNS):
        t0 = time.perf_counter()
        run = client.create_run(exp, tags={"source": "bench"})
        rid = run.info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            rid,
            metrics=[Metric(f"m{k}", float(k * i), now, 0) for k in range(60)],
            params=[Param(f"p{k}", str(k)) for k in range(20)],
        )
        client.set_terminated(rid)
        client.create_model_version("bench", f"runs:/{rid}/model", rid)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run() -> list[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="l2-pg-bench-"))
    base.chmod(0o755)  # run as root, the server runs as the postgres user, who must reach its folder
    port, password = _port(), secrets.token_hex(12)
    env = {**os.environ, "PGPASSWORD": password}
    env.pop("PREFECT_API_URL", None)
    data = base / "data"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "ops.postgres", "start", "--dir", str(data), "--port", str(port)]
    started = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        if "no PostgreSQL here" in started.stderr:
            print(f"  skipped: {started.stderr.strip()}")
            return []
        raise RuntimeError(f"ops.postgres start failed: {started.stderr.strip()}")
    pg_start = time.perf_counter() - t0
    os.environ["PGPASSWORD"] = password  # psycopg2 reads it, as in the services
    try:
        pg = f"postgresql://l2@127.0.0.1:{port}"
        sq_start, sq_flow = _prefect(base / "home-sqlite", "", env)
        pg_pstart, pg_flow = _prefect(base / "home-pg", f"{pg}/prefect", env)
        sq_run = _mlflow(f"sqlite:///{base / 'mlflow.db'}", base / "art-sqlite")
        pg_run = _mlflow(f"{pg}/mlflow", base / "art-pg")
    finally:
        os.environ.pop("PGPASSWORD", None)
        subprocess.run([sys.executable, "-m", "ops.postgres", "stop", "--dir", str(data)], cwd=ROOT, check=False,
                       capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
    note = f"median of {RUNS}"
    return [
        entry("services: PostgreSQL cluster created and started", pg_start, "s", None,
              "python -m ops.postgres start: initdb, start, two databases"),
        entry("services: Prefect server up, SQLite (new database)", sq_start, "s", None, "to the first /health answer"),
        entry("services: Prefect server up, PostgreSQL (new database)", pg_pstart, "s", None, "migrations included"),
        entry("services: a flow run's record via the API, SQLite", sq_flow * 1e3, "ms", None, note),
        entry("services: a flow run's record via the API, PostgreSQL", pg_flow * 1e3, "ms", None, note),
        entry("services: an MLflow run + model version, SQLite", sq_run * 1e3, "ms", None,
              f"{note}: 20 params, 60 metrics, terminate, register"),
        entry("services: an MLflow run + model version, PostgreSQL", pg_run * 1e3, "ms", None,
              f"{note}: 20 params, 60 metrics, terminate, register"),
    ]  # fmt: skip
