"""MLflow and Prefect on a real PostgreSQL (issue 15, item 4), started the way a desk starts it:
``python -m ops.postgres start``, then the Prefect server, a training flow and the MLflow UI as
subprocesses with ``mlflow.database`` and ``prefect.database`` set in config.yaml and the password
in PGPASSWORD only.

Skipped where PostgreSQL is not installed, except with ``REQUIRE_POSTGRES=1`` (``.ci/run``
installs it and sets that), so CI cannot skip it silently.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import AppConfig, load_config
from core.errors import ConfigError, UnavailableError
from flows.prefect_server import answers
from tests.conftest import REPO, free_port
from tests.test_cli import assert_one_line_error, cli
from tests.test_runner_standin import until

pytestmark = pytest.mark.slow


def _installed() -> bool:
    from ops.postgres import binary

    try:
        binary("initdb")
        binary("pg_ctl")
    except UnavailableError:
        return False
    return True


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[int, str]]:
    """(port, password) of a PostgreSQL started by ``python -m ops.postgres start``, stopped after."""
    if not _installed():
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is not installed and REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # not under pytest's temporary folder: run as root, the server runs as the postgres user, who
    # must reach its folder (pytest's is closed to other users)
    base = Path(tempfile.mkdtemp(prefix="l2-pg-test-"))
    base.chmod(0o755)
    data, port, password = base / "data", free_port(), secrets.token_hex(12)
    env = {"PGPASSWORD": password}
    started = cli("-m", "ops.postgres", "start", "--dir", str(data), "--port", str(port), env=env)
    assert started.returncode == 0, started.stderr
    assert f"PostgreSQL on 127.0.0.1:{port}" in started.stdout and password not in started.stdout
    try:
        yield port, password
    finally:
        stopped = cli("-m", "ops.postgres", "stop", "--dir", str(data))
        shutil.rmtree(base, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr


def _rows(port: int, password: str, database: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=port, user="l2", password=password, dbname=database)
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        con.close()


class _Service:
    """A long-running command as a user starts it, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], out: Path) -> None:
        self.out = out
        with out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                stdout=f,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )

    def wait_for(self, what: str, cond: Any) -> None:
        until(what, lambda: self.proc.poll() is not None or cond(), 180)
        assert self.proc.poll() is None, self.out.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_training_reports_to_a_prefect_server_and_registers_in_mlflow_both_on_postgresql(
    postgres: tuple[int, str], trained: tuple[AppConfig, dict[str, Any]], tmp_path: Path
) -> None:
    port, password = postgres
    cfg, _ = trained
    data = yaml.safe_load(cfg.source_path.read_text())
    data["warehouse"]["path"] = str(cfg.resolve(cfg.warehouse.path))  # the session's warehouse, read only
    data["mlflow"] = {
        **data["mlflow"],
        "store": str(tmp_path / "never" / "mlflow.db"),  # the SQLite default: must stay unused
        "artifacts": str(tmp_path / "artifacts"),
        "database": f"postgresql://l2@127.0.0.1:{port}/mlflow",
    }
    data["prefect"] = {"database": f"postgresql://l2@127.0.0.1:{port}/prefect"}
    data["live"] = {"log_dir": str(tmp_path / "logs")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    load_config(config)  # a valid config, before anything starts

    env = {"PGPASSWORD": password, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    api = f"http://127.0.0.1:{free_port()}/api"
    args = ["-m", "flows.prefect_server", "--config", str(config), "--api-url", api]
    server = _Service(args, env, tmp_path / "prefect-server.out")
    try:
        server.wait_for("the Prefect server on PostgreSQL answers", lambda: answers(api))
        trained_now = cli(
            "-m", "flows.train", "--config", str(config), env={**env, "PREFECT_API_URL": api}, timeout=300
        )
        assert trained_now.returncode == 0, trained_now.stdout[-2000:] + trained_now.stderr[-2000:]
    finally:
        server.stop()

    # the registry and the flow runs are in PostgreSQL, and nowhere else
    versions = _rows(port, password, "mlflow", "SELECT name, version, current_stage FROM model_versions")
    assert [(n, v) for n, v, _ in versions] == [(cfg.mlflow.model_name, 1)]
    runs = _rows(port, password, "mlflow", "SELECT status FROM runs")
    assert runs and {s for (s,) in runs} == {"FINISHED"}
    flow_runs = _rows(
        port, password, "prefect", "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id"
    )
    assert ("train", "COMPLETED") in flow_runs, flow_runs
    assert not (tmp_path / "never").exists()
    assert not list((tmp_path / "prefect-home").glob("*.db"))  # no SQLite Prefect database either

    # the state outlives the server: a new one on the same database answers with the same run
    api2 = f"http://127.0.0.1:{free_port()}/api"
    again = _Service(
        ["-m", "flows.prefect_server", "--config", str(config), "--api-url", api2], env, tmp_path / "again.out"
    )
    ui_port = free_port()
    ui = _Service(
        ["-m", "models", "ui", "--config", str(config), "--port", str(ui_port)], env, tmp_path / "mlflow-ui.out"
    )
    try:
        again.wait_for("a second Prefect server on the same database answers", lambda: answers(api2))
        seen = _post(f"{api2}/flow_runs/filter", {"flows": {"name": {"any_": ["train"]}}})
        assert [r["state_type"] for r in seen] == ["COMPLETED"]
        ui.wait_for("the MLflow UI on PostgreSQL answers", lambda: answers(f"http://127.0.0.1:{ui_port}"))
        model = _get(f"http://127.0.0.1:{ui_port}/api/2.0/mlflow/registered-models/get?name={cfg.mlflow.model_name}")
        assert [v["version"] for v in model["registered_model"]["latest_versions"]] == ["1"]
    finally:
        again.stop()
        ui.stop()

    # the password is in the environment only: in no output and no log of the services
    said = [trained_now.stdout, trained_now.stderr]
    said += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".out", ".log")]
    assert len(said) >= 5 and not any(password in s for s in said)
    assert f"postgresql://l2@127.0.0.1:{port}/mlflow" in (tmp_path / "mlflow-ui.out").read_text()


@pytest.mark.untraced
def test_a_database_url_with_a_password_or_a_bad_shape_is_refused_without_echoing_it(tmp_path: Path) -> None:
    for url, fragment in (
        ("postgresql://l2:hunter2@127.0.0.1:5432/mlflow", "put it in PGPASSWORD"),
        ("mysql://l2@127.0.0.1/mlflow", "expected postgresql://"),
        ("postgresql://127.0.0.1:5432/mlflow", "a user, a host and a database"),
        ("postgresql://l2@127.0.0.1:99999/mlflow", "port"),
    ):
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({"mlflow": {"database": url}}))
        with pytest.raises(ConfigError) as err:
            load_config(tmp_path / "config.yaml")
        assert fragment in str(err.value) and "hunter2" not in str(err.value)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"prefect": {"database": "postgresql://l2:pw@h/prefect"}}))
    p = cli("-m", "flows.prefect_server", "--config", str(tmp_path / "config.yaml"))
    assert_one_line_error(p, "prefect.database", "PGPASSWORD")
    assert p.returncode == 2 and ":pw@" not in p.stderr


@pytest.mark.untraced
def test_ops_postgres_refuses_a_folder_that_is_not_its_own_and_answers_status(tmp_path: Path) -> None:
    if not _installed():
        pytest.skip("PostgreSQL is not installed")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("someone's files")
    p = cli("-m", "ops.postgres", "start", "--dir", str(tmp_path / "data"), "--port", str(free_port()))
    assert_one_line_error(p, "is not empty and holds no PostgreSQL cluster")
    assert p.returncode == 2 and (tmp_path / "data" / "notes.txt").read_text() == "someone's files"
    status = cli("-m", "ops.postgres", "status", "--dir", str(tmp_path / "nothing"))
    assert status.returncode == 4 and "does not run" in status.stdout
    bad = cli("-m", "ops.postgres", "start", "--port", "0")
    assert bad.returncode == 2 and "--port 0" in bad.stderr
