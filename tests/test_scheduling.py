"""Scheduled retraining as the user lives it, end to end, nothing mocked or called directly.

A real Prefect server (``python -m flows.prefect_server``, its scheduler included) on a fresh box: the
ingest has recorded 90 minutes of a market whose order flow carries no information, no model is
trained yet, and a paper runner (``python -m live.runner --paper --wait``, on the Bybit stand-in) waits
for a champion. Then four hours of a market with a planted edge arrive through ``python -m flows.ingest``
(sim/presets.py, its metaorders twice as frequent: ``DENSE``) and ``python -m flows.serve`` serves the
project's own retraining deployment from prefect.yaml on a 20 s test schedule: its first scheduled chain
(features -> a challenger -> the promotion decision) trains on the new market, on the local Dask cluster
the desk's config.yaml names (``compute: {cluster: local}``: the feature build by partition and the
walk-forward folds as tasks on a scheduler and two worker processes the chain starts), the promotion rule
crowns it on its own evidence (a threshold chosen on one half of the calibration block and confirmed
by the matching engine on the other: the test config gives that block half the window, so each
half's hour holds enough bets; at 6 h and 40 % of the preset's market the confirmation saw 21-25
orders of the 30 it needs, at 4 h of the preset's 16-20), and the waiting runner starts trading it.
The next scheduled run finds nothing new. Ctrl-C stops the runner and serve with exit 0; the server
serve found stays up.

A model without skill is registered and not crowned, and a runner waits while the champion has none:
tests/test_demo.py (``make demo`` on a market without information) and tests/test_training.py show it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import load_config
from core.errors import UserError
from flows.prefect_server import answers
from flows.serve import deployments
from standin import BackgroundStandin
from standin.feeds import SimFeed
from tests.conftest import DENSE, REPO, PrefectHome, free_port, untraced
from tests.test_cli import cli
from warehouse import journal as jr

NS = 1_000_000_000
WAIT_S = 420  # generous: each step is a real subprocess on a busy 2-core machine; nothing is timed

CONFIG: dict[str, dict[str, Any]] = {
    "warehouse": {"path": "wh/l2.duckdb", "spool_dir": "wh/spool", "snapshot_levels": 20, "store_raw": False},
    "mlflow": {"store": "mlruns/mlflow.db", "artifacts": "mlruns/artifacts"},
    "training": {"window": "4h", "shares": [0.3, 0.5, 0.2], "min_rows": 300, "min_child_samples": 300},
    "promotion": {"fresh": "20m"},
    "live": {"journal_dir": "journal", "log_dir": "logs", "model_poll": "1s", "status_interval": "2s"},
}


def until(
    what: str, cond: Callable[[], Any], timeout_s: float = WAIT_S, proc: subprocess.Popen[str] | None = None
) -> Any:
    t0 = time.monotonic()
    while not (value := cond()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended with {proc.returncode}")
        assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(0.5)
    return value


def api(url: str, path: str, body: dict[str, Any], tries: int = 10) -> Any:
    """POST to the Prefect server's API. A 503 (its SQLite database busy on a loaded machine: the
    server says "try again") is retried, as Prefect's own client does."""
    req = urllib.request.Request(
        f"{url}{path}", json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def runs_by_flow(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every flow run on the server, by flow name."""
    flows = {f["id"]: f["name"] for f in api(url, "/flows/filter", {})}
    out: dict[str, list[dict[str, Any]]] = {}
    for r in api(url, "/flow_runs/filter", {"limit": 200}):
        out.setdefault(flows[r["flow_id"]], []).append(r)
    return out


def aliases(store: Path) -> dict[str, int]:
    """alias -> version, read from the registry's own tables (as the MLflow server reads them)."""
    if not store.exists():
        return {}
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        return {a: int(v) for a, v in con.execute("SELECT alias, version FROM registered_model_aliases")}
    except sqlite3.OperationalError:  # the store's tables are not there yet
        return {}
    finally:
        con.close()


def records(path: Path, kinds: list[str]) -> list[jr.Record]:
    """The journal's records of ``kinds``; none while the runner is still creating it (the file is
    there a moment before its table: the fresh-clone CI once read it in between)."""
    try:
        return list(jr.read(path, kinds)) if path.exists() else []
    except UserError:
        return []


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A command in its own session (a terminal's Ctrl-C goes to its process group), killed at the end."""
    with log.open("w") as out:
        p = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield p
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)


def ctrl_c(p: subprocess.Popen[str], timeout_s: float = 120, log: Path | None = None) -> int:
    """SIGINT to the process group, as Ctrl-C in a terminal sends it; the exit code (a hang fails
    with the end of ``log``)."""
    os.killpg(p.pid, signal.SIGINT)
    try:
        return p.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout_s:.0f} s after Ctrl-C; its log ends:\n{text(log)[-3000:] if log else ''}")


def write_configs(project: Path) -> tuple[Path, Path]:
    """The desk's config (a market with a planted edge: strong metaorders; its retraining on the local
    Dask cluster), and the market's quieter first 90 minutes. The scheduled challenger is judged by
    the promotion rule itself, not by the test's say-so."""
    desk = {**CONFIG, "sim": {"model": DENSE}, "compute": {"cluster": "local", "workers": 2}}
    quiet = {**CONFIG, "sim": {"model": {**DENSE, "meta_tilt": 0.0}}}  # the market before the edge
    (project / "config.yaml").write_text(yaml.safe_dump(desk))
    (project / "quiet.yaml").write_text(yaml.safe_dump(quiet))
    return project / "config.yaml", project / "quiet.yaml"


@pytest.mark.slow
@pytest.mark.first(240)
@pytest.mark.timeout(1500)
def test_scheduled_retraining_reaches_a_running_paper_runner(tmp_path: Path, prefect_home: PrefectHome) -> None:
    project = tmp_path / "project"
    project.mkdir()
    config, quiet = write_configs(project)
    cfg = load_config(config)
    store = cfg.resolve(cfg.mlflow.store)
    # the project's own retraining deployment, with a test schedule: every 20 s
    retrain = next(d for d in deployments() if d["name"] == "retrain-daily")
    (project / "deployments.yaml").write_text(
        yaml.safe_dump({"deployments": [{**retrain, "schedules": [{"interval": 20}]}]})
    )
    url = f"http://127.0.0.1:{free_port()}/api"
    # unmeasured (tests.conftest.untraced): every command here runs measured in its own tests
    env = untraced({k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"})
    env |= {
        "PREFECT_HOME": str(prefect_home(project / ".prefect")),
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # the scheduler looks every 2 s (default 60)
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    user = {**env, "PREFECT_API_URL": url}  # the user's commands report to the same server

    # 0. the persistent Prefect server, as `make prefect-ui` starts it
    server_log = project / "prefect-ui.log"
    with process(["-m", "flows.prefect_server", "--api-url", url, "--config", str(config)], server_log, env) as ui:
        until("the Prefect server", lambda: answers(url), proc=ui)

        # 1. the ingest has recorded a quiet market; no model yet, no registry: the paper runner waits
        #    for a champion, on the Bybit stand-in fed by the simulator
        p = cli("-m", "flows.ingest", "--source", "sim", "--duration", "90m", "--config", str(quiet), env=user,
                timeout=600, traced=False)  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        feed = SimFeed(cfg.sim, cfg.instrument, cfg.ingest.depth, history_ns=330 * NS, catchup=30.0)
        with BackgroundStandin(feed) as standin:
            data = {
                **yaml.safe_load(config.read_text()),
                "bybit": {"rest_url": standin.url, "ws_public_url": standin.ws_url},
            }
            runner_config = project / "runner.yaml"
            runner_config.write_text(yaml.safe_dump(data))
            journal = jr.default_path(cfg.resolve(cfg.live.journal_dir), "paper", "bybit")
            runner_args = ["-m", "live.runner", "--paper", "--wait", "--config", str(runner_config)]
            with process(runner_args, project / "runner.log", env) as runner:
                until("the runner waits", lambda: "waiting for one" in text(project / "runner.log"), proc=runner)
                assert "(no model registry at" in text(project / "runner.log")
                assert not records(journal, ["start"])  # no champion: no session

                # 2. new data: the market changed (four hours with a planted edge)
                p = cli("-m", "flows.ingest", "--source", "sim", "--duration", "4h", "--config", str(config),
                        env=user, timeout=900, traced=False)  # fmt: skip
                assert p.returncode == 0, p.stderr[-3000:]
                assert "continues the stored one" in p.stdout + p.stderr
                assert runner.poll() is None and not records(journal, ["start"])  # still waiting

                # 3. serve the retraining on its schedule: it finds the server; its first chain builds
                #    the new market's features, trains a challenger and takes the promotion decision:
                #    the rule crowns it on its own evidence, not the test
                serve_args = ["-m", "flows.serve", "--config", str(config), "--deployments",
                              str(project / "deployments.yaml"), "--api-url", url]  # fmt: skip
                with process(serve_args, project / "serve.log", env) as serve:
                    crowned = until("the scheduled chain's promotion decision on version 1",
                                    lambda: [r for r in runs_by_flow(url).get("retrain", [])
                                             if r["auto_scheduled"] and r["state_type"] == "COMPLETED"
                                             and "version 1" in (r["state"]["message"] or "")],
                                    proc=serve)[0]  # fmt: skip
                    assert crowned["state"]["message"].startswith("promoted: version 1: promoted to champion"), crowned
                    assert aliases(store)["champion"] == 1
                    assert "using the Prefect server at" in text(project / "serve.log")

                    # 4. the waiting runner starts on the champion the schedule crowned
                    started = until("the runner's session on version 1", lambda: records(journal, ["start"]),
                                    proc=runner)[0]  # fmt: skip
                    assert str(started.data["model"]) == "1", started
                    assert ctrl_c(runner) == 0
                    log_text = text(project / "runner.log")
                    assert "stopped while waiting" not in log_text and "Traceback" not in log_text, log_text[-3000:]

                    # 5. the next scheduled run finds nothing new to train on
                    until("a scheduled run with nothing to train",
                          lambda: "nothing to retrain" in text(project / "serve.log"), proc=serve)  # fmt: skip

                    # what the Prefect server saw: the scheduled chain with its feature build and
                    # training on the cluster, and the run that found nothing new
                    runs = runs_by_flow(url)
                    for step in ("promote", "features-by-partition", "train-folds-on-cluster"):
                        assert sum(r["state_type"] == "COMPLETED" for r in runs.get(step, [])) >= 1, step
                    assert sum(r["auto_scheduled"] and r["state_type"] == "COMPLETED" for r in runs["retrain"]) >= 2
                    assert "on the Dask cluster at tcp://127.0.0.1:" in text(project / "serve.log")
                    before = len(text(project / "serve.log"))

                    # 6. Ctrl-C: serve stops with exit 0 and no traceback; the server it found stays up.
                    #    A scheduled run may be in progress: serve lets it finish (up to --grace, 300 s)
                    #    and then marks what is left as crashed (up to 30 s more)
                    assert ctrl_c(serve, timeout_s=600, log=project / "serve.log") == 0
        tail = text(project / "serve.log")[before:]
        assert "Traceback" not in tail, tail[-3000:]
        assert "stopped serving" in tail and "stopping the Prefect server" not in tail
        assert answers(url)
        deployment = api(url, "/deployments/filter", {})[0]
        assert deployment["name"] == "retrain-daily" and deployment["paused"]  # nobody serves it now
        assert ctrl_c(ui) == 0
    assert not answers(url)


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
