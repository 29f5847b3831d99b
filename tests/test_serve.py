"""``python -m flows.serve`` and prefect.yaml: every deployment loads as Prefect loads it; bad input is one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.prefect_server import answers
from flows.serve import PREFECT_YAML, deployments, load_flow
from tests.conftest import REPO, PrefectHome, free_port, untraced
from tests.test_cli import assert_one_line_error, cli

ENTRYPOINTS = sorted({d["entrypoint"] for d in deployments()})

# what a Prefect worker or a served deployment's run does with an entrypoint, in a fresh interpreter
LOAD = "import sys; from prefect.flows import load_flow_from_entrypoint; print(load_flow_from_entrypoint(sys.argv[1]).name)"


def test_no_flow_file_is_named_like_a_top_level_package() -> None:
    # Prefect loads 'flows/x.py' as the module 'x' with flows/ first on the import path: a flow
    # file named like a package ('flows/features.py') hides that package from the flow it serves
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    assert "features" in packages and "flows" in packages
    clashes = sorted(f.name for f in (REPO / "flows").glob("*.py") if f.stem in packages)
    assert clashes == []


def test_every_deployment_loads_from_its_entrypoint_as_prefect_loads_it() -> None:
    assert len(ENTRYPOINTS) >= 6
    # each in a fresh interpreter, as Prefect's runner loads a flow; unmeasured: importing the flow
    # modules is all they run, and every other flow test does that measured
    env = untraced(dict(os.environ))
    procs = {
        ep: subprocess.Popen(
            [sys.executable, "-c", LOAD, ep],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for ep in ENTRYPOINTS
    }
    for ep, p in procs.items():
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, f"{ep}: {err[-2000:]}"
        assert out.split()[-1] == load_flow(ep).name, ep


def test_list_prints_every_deployment_with_its_schedule() -> None:
    p = cli("-m", "flows.serve", "--list")
    assert p.returncode == 0, p.stderr
    for d in deployments():
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith(d["name"] + " "))
        assert d["entrypoint"] in line
        crons = [s["cron"] for s in d.get("schedules") or []]
        assert all(c in line for c in crons) and (crons or "on demand" in line)
    assert "python -m" not in p.stderr and "Traceback" not in p.stderr


def test_the_deployments_file_names_the_retraining_chain_on_a_schedule() -> None:
    items = {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    assert items["retrain-daily"]["entrypoint"] == "flows/retrain.py:retrain_flow"
    assert items["retrain-daily"]["schedules"] and items["retrain-daily"]["concurrency_limit"] == 1
    assert all(d.get("concurrency_limit") == 1 for d in items.values())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("deployments: []", "no deployments"),
        ("deployments: [{name: x}]", "needs a name and an entrypoint"),
        (
            "deployments: [{name: x, entrypoint: 'flows/train.py:train_flow', schedules: [{cron: 'every day'}]}]",
            "cron 'every day'",
        ),
        (
            "deployments: [{name: x, entrypoint: 'flows/train.py:train_flow', schedules: [{interval: -5}]}]",
            "interval must be a positive number",
        ),
        ("deployments: [{name: x, entrypoint: 'flows/train.py:train_flow', schedules: [{daily: 1}]}]", "a schedule is"),
        ("deployments: [{name: x, entrypoint: 'flows/nothing.py:f'}]", "entrypoint flows/nothing.py:f"),
        ("{{{", "cannot read the deployments"),
    ],
)
def test_a_bad_deployments_file_is_one_line(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(content)
    args = ["-m", "flows.serve", "--deployments", str(path)]
    assert_one_line_error(cli(*args, "--list"), fragment)


def test_a_bad_or_unreachable_api_url_is_one_line() -> None:
    assert_one_line_error(cli("-m", "flows.serve", "--api-url", "ftp://127.0.0.1/api"), "expected http://host:port/api")
    p = cli("-m", "flows.serve", "--api-url", "http://prefect.invalid:4200/api")
    assert_one_line_error(p, "no Prefect server answers at http://prefect.invalid:4200/api")
    assert p.returncode == 4


def test_a_server_that_cannot_start_is_one_line(tmp_path: Path, prefect_home: PrefectHome) -> None:
    # a port held by something that is not a Prefect server: the health check finds nothing, and
    # the server serve starts cannot bind it
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        p = cli(
            "-m", "flows.serve", "--api-url", f"http://127.0.0.1:{port}/api",
            env={"PREFECT_HOME": str(prefect_home(tmp_path / "prefect"))}, timeout=240,
        )  # fmt: skip
    assert_one_line_error(p, "the Prefect server exited with code")
    assert p.returncode == 4


def test_serve_starts_a_server_and_ctrl_c_lets_the_run_in_progress_finish(
    tmp_path: Path, prefect_home: PrefectHome
) -> None:
    from tests.test_scheduling import api, ctrl_c, process, until

    # the project's ingest-sim deployment, hourly; the test asks for one run at once, as the UI's "Run" does
    d = {**next(d for d in deployments() if d["name"] == "ingest-sim"), "schedules": [{"interval": 3600}]}
    d["parameters"] = {**d["parameters"], "duration": "90m"}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"deployments": [d]}))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"warehouse": {"path": "wh/l2.duckdb"}}))
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(prefect_home(tmp_path / "prefect")), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env["BYBIT_API_SECRET"] = "shell-secret-the-server-never-gets"
    args = ["-m", "flows.serve", "--config", str(tmp_path / "config.yaml"), "--deployments", str(tmp_path / "d.yaml")]
    log = tmp_path / "serve.log"
    with process([*args, "--api-url", url], log, env) as serve:
        until("serving", lambda: "serving 1 deployments" in log.read_text(), proc=serve)
        assert "starting a Prefect server at " + url in log.read_text()
        # the server serve started was given no secret of the shell (its PREFECT_* settings, yes)
        port = url.split(":")[2].split("/", maxsplit=1)[0]
        server_pid = next(
            p for p in _descendants(serve.pid) if f"server start --host 127.0.0.1 --port {port}" in _cmdline(p)
        )
        environ = Path(f"/proc/{server_pid}/environ").read_bytes().split(b"\0")
        assert f"PREFECT_HOME={tmp_path / 'prefect'}".encode() in environ
        assert not [v for v in environ if b"shell-secret" in v]
        served = until("the deployment on the server", lambda: api(url, "/deployments/filter", {}), proc=serve)
        assert [x["name"] for x in served] == ["ingest-sim"]
        assert served[0]["entrypoint"] == "flows/ingest.py:ingest_flow"
        run = api(url, f"/deployments/{served[0]['id']}/create_flow_run", {})
        until("the run under way", lambda: "ingest sim:" in log.read_text(), proc=serve)
        # Ctrl-C as a terminal sends it, to the whole process group: the run in progress finishes
        assert ctrl_c(serve, timeout_s=600) == 0
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "waiting up to 300 s for 1 run(s) in progress" in text
    assert f"Flow run '{run['name']}' - Finished in state Completed(" in text  # not cut off, not crashed
    assert "marked" not in text  # nothing was left to mark as crashed
    assert "stopping the Prefect server this command started" in text
    assert not answers(url)


def test_a_sigterm_as_the_box_sends_it_is_a_ctrl_c_and_a_run_past_the_grace_is_not_left_running(
    tmp_path: Path, prefect_home: PrefectHome
) -> None:
    """supervisord stops serve with a SIGTERM to its process (ops/box.py). Prefect's runner puts in
    its own SIGTERM handler, which exits at once: no grace, nothing settled; serve keeps its own."""
    from tests.test_scheduling import api, ctrl_c, process, until

    d = {**next(d for d in deployments() if d["name"] == "ingest-sim"), "schedules": []}
    d["parameters"] = {**d["parameters"], "duration": "6h"}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"deployments": [d]}))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"warehouse": {"path": "wh/l2.duckdb"}}))
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(prefect_home(tmp_path / "prefect")), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    ui_args = ["-m", "flows.prefect_server", "--api-url", url, "--config", str(config)]
    with process(ui_args, tmp_path / "ui.log", env) as ui:  # a server that outlives serve
        until("the Prefect server", lambda: answers(url), proc=ui)
        args = ["-m", "flows.serve", "--config", str(config), "--deployments", str(tmp_path / "d.yaml"), "--grace", "0"]
        log = tmp_path / "serve.log"
        with process([*args, "--api-url", url], log, env) as serve:
            served = until("the deployment on the server", lambda: api(url, "/deployments/filter", {}), proc=serve)
            run = api(url, f"/deployments/{served[0]['id']}/create_flow_run", {})
            until("the run under way", lambda: "ingest sim:" in log.read_text(), proc=serve)
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(300) == 0
        text = log.read_text()
        assert "1 run(s) still in progress after 0 s: stopping them" in text, text[-3000:]
        assert "stopped serving" in text and "Traceback" not in text, text[-3000:]
        (state,) = [
            r["state_type"] for r in api(url, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
        ]
        assert state not in ("RUNNING", "PENDING", "SCHEDULED"), state  # nothing holds the deployment's slot
        assert api(url, "/deployments/filter", {})[0]["paused"]
        assert ctrl_c(ui) == 0
    assert not answers(url)


def test_a_scheduled_run_gone_on_a_stop_is_one_line_not_a_traceback() -> None:
    """Pausing the deployments on a stop removes their scheduled runs; Prefect's runner, about to
    start one, logs its ObjectNotFound with a traceback (the fresh-clone CI saw it in serve's log)."""
    import io
    import logging

    from prefect.exceptions import ObjectNotFound

    from flows.stopping import GoneRun

    logger = logging.getLogger("test.state_proposer")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    logger.addFilter(GoneRun())
    try:
        try:
            raise ObjectNotFound(http_exc=ValueError("404"))
        except ObjectNotFound:
            logger.exception("Failed to update state of flow run '%s'", "01a2")
        try:
            raise RuntimeError("something else")
        except RuntimeError:
            logger.exception("a real failure")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "Failed to update state of flow run '01a2': the run is gone (its deployment was paused)" in text
    assert text.count("Traceback") == 1 and "RuntimeError: something else" in text  # only the real one


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (read from /proc), children first."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


# serving that takes no notice of the stop it is asked for, and swallows the first interrupt (as
# asyncio turns it into a cancel of its task): how serve once went on serving after Ctrl-C, for good
_DEAF = """
import asyncio
from flows.stopping import Stopper
stopper = Stopper(grace_s=0, patience_s=1)
stopper.stop = lambda: True
async def serving():
    loop = asyncio.get_running_loop()
    stopper.wake = lambda: loop.call_soon_threadsafe(lambda: None)
    print("serving", flush=True)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("cancel swallowed", flush=True)
try:
    asyncio.run(serving())
except KeyboardInterrupt:
    print("interrupted", flush=True)
finally:
    stopper.ended.set()
print("stopped serving", flush=True)
"""


@pytest.mark.parametrize("ignored", [False, True], ids=["sigint-default", "sigint-ignored-at-start"])
def test_serving_that_does_not_stop_when_asked_is_interrupted_until_it_does(ignored: bool) -> None:
    """Also when serve starts with SIGINT ignored (``nohup make serve &``; a supervisor may leave it so):
    the stop still reaches its watcher (a blocked signal is queued even when ignored), and the
    interrupt, which needs a handler for SIGINT, still lands."""
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None
    p = subprocess.Popen(
        [sys.executable, "-c", _DEAF],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=ignore,  # noqa: PLW1509
    )
    try:
        assert p.stdout is not None and p.stdout.readline() == "serving\n"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:  # a hang fails the test, and leaves nothing running
            p.kill()
            p.wait(30)
    assert p.returncode == 0, out
    late = "serving did not stop within 1 s: interrupting it"
    lines = out.splitlines()
    # the first interrupt under asyncio.run is a cancel of its task: swallowed, so it took another
    assert lines[:2] == [late, "cancel swallowed"] and lines.count(late) >= 2, out
    assert lines[-2:] == ["interrupted", "stopped serving"], out
