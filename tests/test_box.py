"""``make up`` / ``make status`` / ``make down``: the box under supervisord (ops/box.py), as typed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from flows.prefect_server import answers
from tests.conftest import PrefectHome, free_port

REPO = Path(__file__).resolve().parents[1]
SERVICES = ["standin", "prefect", "serve", "ingest", "runner", "dashboard", "mlflow-ui"]


def _make(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _rows(table: str) -> dict[str, list[str]]:
    """The status table's rows by service: state, pid, uptime, restarts (then address and health)."""
    out = {}
    for line in table.splitlines():
        parts = line.split()
        if parts and parts[0] in SERVICES:
            out[parts[0]] = parts[1:]
    return out


def _until(what: str, cond: object, timeout_s: float = 300) -> None:
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(1.0)


@pytest.mark.slow
@pytest.mark.first(50)
@pytest.mark.timeout(1500)
def test_make_up_runs_every_service_restarts_a_crash_and_make_down_stops_them_all(
    tmp_path: Path, prefect_home: PrefectHome
) -> None:
    ports = {name: free_port() for name in ("prefect", "dashboard", "mlflow", "standin")}
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "warehouse": {"path": "wh/l2.duckdb", "spool_dir": "wh/spool"},
                "mlflow": {"store": "mlruns/mlflow.db", "artifacts": "mlruns/artifacts", "ui_port": ports["mlflow"]},
                "live": {"journal_dir": "journal", "log_dir": "logs"},
                "monitor": {"dashboard_port": ports["dashboard"]},
                "standin": {"port": ports["standin"]},
            }
        )
    )
    url = f"http://127.0.0.1:{ports['prefect']}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"L2_BOX": str(tmp_path / "box"), "PREFECT_HOME": str(prefect_home(tmp_path / "prefect"))}
    box_args = f"BOX_ARGS=--config {config} --prefect-url {url} --wait 900"
    try:
        up = _make(env, "up", "OFFLINE=1", box_args, timeout=1200)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        rows = _rows(up.stdout)
        assert sorted(rows) == sorted(SERVICES), up.stdout
        assert all(r[0] == "RUNNING" for r in rows.values()), up.stdout
        assert all(
            r[-1] == "answers" for name, r in rows.items() if name in ("standin", "prefect", "dashboard", "mlflow-ui")
        )
        offline = yaml.safe_load((tmp_path / "box-offline.yaml").read_text())
        assert offline["bybit"]["rest_url"] == f"http://127.0.0.1:{ports['standin']}"  # the feeds at the stand-in

        # a crash: supervisord starts the runner again, and the table counts it
        status = _make(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        runner = _rows(status.stdout)["runner"]
        pid, before = int(runner[1]), int(runner[3])
        assert before == 0, status.stdout  # a runner without a champion waits for one; it does not exit
        os.kill(pid, signal.SIGKILL)

        def restarted() -> bool:
            r = _rows(_make(env, "status").stdout).get("runner", [])
            return len(r) > 3 and r[0] == "RUNNING" and int(r[1]) != pid and r[3] == "1"

        _until("the runner restarted", restarted)

        # a flow command typed by hand reports to the box's Prefect server, not a temporary one
        other = tmp_path / "other.yaml"
        other.write_text(yaml.safe_dump({"warehouse": {"path": "other/l2.duckdb", "spool_dir": "other/spool"}}))
        p = subprocess.run(
            [sys.executable, "-m", "flows.ingest", "--source", "sim", "--duration", "30s", "--config", str(other)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        assert f"using the Prefect server at {url}" in p.stderr
        req = urllib.request.Request(
            f"{url}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            runs = json.loads(r.read())
        assert any(r["state_type"] == "COMPLETED" and "30s" in json.dumps(r["parameters"]) for r in runs), runs

        # the box's own ingest reports to the box's server too, from its first start: a temporary
        # server of its own would outlive a SIGKILL of the ingest (supervisord restarts the ingest,
        # not its orphan)
        assert any(r["parameters"].get("source") == "bybit" for r in runs), runs

        # the services log where the table says, rotated by supervisord
        logs = tmp_path / "logs" / "box"
        assert (logs / "ingest.log").stat().st_size > 0 and (logs / "supervisord.log").exists()
        assert "Starting temporary server" not in (logs / "ingest.log").read_text()
    finally:
        down = _make(env, "down", timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "supervisord stopped" in down.stdout
    # supervisord stops serve with SIGTERM: serve's own graceful stop (flows/stopping.py), not the
    # immediate exit Prefect's runner gives a SIGTERM
    serve_log = (tmp_path / "logs" / "box" / "serve.log").read_text()
    assert "stopped serving" in serve_log and "Traceback" not in serve_log, serve_log[-3000:]
    after = _make(env, "status")  # make says which exit code its command ended with
    assert after.returncode != 0 and "the box is down" in after.stderr and "Error 4" in after.stderr, after.stderr
    assert not answers(url)  # the Prefect server stopped with the box, none left behind
    for port in ports.values():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, port  # nothing listens any more
    supervisord = re.compile(rf"supervisord.*{re.escape(str(tmp_path))}")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [line for line in ps.splitlines() if supervisord.search(line) or str(tmp_path) in line]


def test_the_box_can_leave_a_service_out_and_trade_the_standin_account(tmp_path: Path) -> None:
    from core.config import AppConfig
    from core.errors import UserError
    from ops.box import STANDIN_KEYS, programs, render

    cfg, config, url = AppConfig(), tmp_path / "config.yaml", "http://127.0.0.1:4200/api"
    names = [p.name for p in programs(cfg, config, url, offline=True, without=["mlflow-ui"], standin_account=True)]
    assert "mlflow-ui" not in names and {"standin", "runner", "runner-standin", "dashboard"} <= set(names)
    progs = programs(cfg, config, url, offline=True, standin_account=True)
    live = next(p for p in progs if p.name == "runner-standin")
    assert "--live" in live.args and live.env == STANDIN_KEYS
    conf = render(tmp_path, tmp_path, progs).read_text()
    assert conf.count('BYBIT_API_KEY="standin-key"') == 1  # that runner's environment only
    # the ingest is told the box's Prefect server: it never starts on a temporary one of its own
    assert dict(next(p for p in progs if p.name == "ingest").env) == {"PREFECT_API_URL": url}
    assert conf.count(f'PREFECT_API_URL="{url}"') == 1
    with pytest.raises(UserError, match="needs --offline"):
        programs(cfg, config, url, offline=False, standin_account=True)
    with pytest.raises(UserError, match="can be left out"):
        programs(cfg, config, url, offline=False, without=["ingest"])
