"""The box: every long-running service of the desk under supervisord, up and down in one command.

    make up            # python -m ops up: start what is not running, then the status table
    make status        # python -m ops status: one table (state, pid, uptime, restarts, address, health)
    make down          # python -m ops down: stop everything gracefully, then supervisord itself
    make up OFFLINE=1  # the same box on the Bybit stand-in (no internet): python -m ops up --offline

The services (``PROGRAMS``): the persistent Prefect server, ``flows.serve`` with the scheduled
deployments on it, the Bybit ingest, the paper runner (``--wait``: it starts on the first champion
the schedule crowns), the monitoring dashboard and the MLflow UI; ``--offline`` adds the Bybit
stand-in and points the ingest and the runner at it; ``--standin-account`` adds a second runner,
``--live`` on the stand-in's own trading account (its public test key pair), so the private API's
faults (rejects, rate limits, dropped requests and responses) meet a real client; ``--without
mlflow-ui`` leaves a service out (the chaos soak, ops/soak). supervisord (http://supervisord.org) restarts
a service that exits, rotates each one's log (``logs/box/<name>.log``, 20 MB x 5) and stops each
with SIGTERM and time to finish: the runner cancels its orders and flushes its journal, serve lets
the runs in progress finish, the ingest flushes.

The box's state is in ``L2_BOX`` (``.box``, core/box.py): supervisord's rendered config, pid and
log, and the Prefect server's address, which the flow commands typed by hand then report to
instead of starting a temporary server each.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.box import REPO, box_dir
from core.cli import add_config_argument
from core.config import AppConfig, load_config
from core.errors import UnavailableError, UserError
from flows.prefect_server import DEFAULT_API_URL, api_url

OFFLINE_CONFIG = "box-offline.yaml"  # beside the user's config: its relative paths mean the same


@dataclass(frozen=True)
class Program:
    name: str
    args: tuple[str, ...]  # after ``python -m``
    priority: int  # started in this order, stopped in the reverse one (make down): the runner first
    stop_s: int  # SIGTERM, then this long to finish before SIGKILL
    url: str = ""  # where it answers (HTTP), for the health column
    env: tuple[tuple[str, str], ...] = ()  # its own environment variables, besides the box's


OPTIONAL = ("dashboard", "mlflow-ui")  # services a box may be brought up without (--without)
STANDIN_KEYS = (("BYBIT_API_KEY", "standin-key"), ("BYBIT_API_SECRET", "standin-secret"))  # standin.private


def programs(
    cfg: AppConfig,
    config: Path,
    prefect_url: str,
    offline: bool,
    without: Sequence[str] = (),
    standin_account: bool = False,
) -> list[Program]:
    c = str(config)
    ui = prefect_url.removesuffix("/api")
    m, mc = cfg.monitor, cfg.mlflow
    out = [
        Program(
            "prefect", ("flows.prefect_server", "--config", c, "--api-url", prefect_url), 10, 30, ui + "/api/health"
        ),
        Program(
            "serve",
            ("flows.serve", "--config", c, "--api-url", prefect_url, "--require-server", "--grace", "60"),
            20,
            120,
        ),
        # the box's Prefect server, named: until it answers, the ingest exits 4 and supervisord starts
        # it again (as serve's --require-server), instead of reporting to a temporary server of its own
        # that a SIGKILL of the ingest would leave running
        Program(
            "ingest",
            ("flows.ingest", "--source", "bybit", "--config", c),
            30,
            60,
            env=(("PREFECT_API_URL", prefect_url),),
        ),
        Program("runner", ("live.runner", "--paper", "--wait", "--config", c), 60, 90),
        Program(
            "dashboard", ("live.dashboard", "--config", c), 50, 10, f"http://{m.dashboard_host}:{m.dashboard_port}/"
        ),
        Program("mlflow-ui", ("models", "ui", "--config", c), 50, 10, f"http://{mc.ui_host}:{mc.ui_port}/health"),
    ]
    if offline:
        s = cfg.standin
        out.insert(0, Program("standin", ("standin", "--config", c), 5, 10, f"http://{s.host}:{s.port}/v5/market/time"))
    if standin_account:  # real orders on the stand-in's account: only where the stand-in is the exchange
        if not offline:
            raise UserError("--standin-account trades on the stand-in: it needs --offline")
        args = ("live.runner", "--live", "--wait", "--config", c)
        out.append(Program("runner-standin", args, 60, 90, env=STANDIN_KEYS))
    unknown = set(without) - set(OPTIONAL)
    if unknown:
        raise UserError(f"--without {', '.join(sorted(unknown))}: only {', '.join(OPTIONAL)} can be left out")
    return [p for p in out if p.name not in without]


def socket_path(box: Path) -> Path:
    """supervisord's control socket: short (a Unix socket path has at most 107 bytes), one per box."""
    key = hashlib.sha256(str(box.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"l2box-{key}.sock"


def render(box: Path, logs: Path, progs: list[Program]) -> Path:
    """supervisord.conf for ``progs``: one process each, restarted when it exits, its log rotated."""
    sock = socket_path(box)
    box_env = f'PYTHONUNBUFFERED="1",PREFECT_HOME="{os.environ.get("PREFECT_HOME", REPO / ".prefect")}"'
    lines = [
        "; rendered by python -m ops up: edit ops/box.py, not this file",
        "[unix_http_server]",
        f"file={sock}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={logs / 'supervisord.log'}",
        "logfile_maxbytes=20MB",
        "logfile_backups=5",
        f"pidfile={box / 'supervisord.pid'}",
        f"directory={REPO}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{sock}",
    ]
    for p in progs:
        env = ",".join([box_env, *(f'{k}="{v}"' for k, v in p.env)])
        lines += [
            "",
            f"[program:{p.name}]",
            f"command={sys.executable} -m {' '.join(p.args)}",
            f"directory={REPO}",
            f"priority={p.priority}",
            "autostart=true",
            "autorestart=true",
            "startsecs=5",
            "startretries=30",  # serve waits for the Prefect server this way
            "stopsignal=TERM",
            f"stopwaitsecs={p.stop_s}",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (p.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=5",
            f"environment={env}",
        ]
    path = box / "supervisord.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def rpc(box: Path) -> Any:
    """supervisord's XML-RPC interface over its socket (supervisorctl's own transport)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path(box)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def running(box: Path) -> bool:
    try:
        return rpc(box).supervisor.getState()["statename"] == "RUNNING"  # type: ignore[no-any-return]
    except (OSError, xmlrpc.client.Fault):
        return False


def healthy(url: str) -> str:
    if not url:
        return ""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as r:  # noqa: S310  (our own http:// addresses)
            return "answers" if r.status < 500 else f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return "answers" if exc.code < 500 else f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError):
        return "no answer"


def restarts(logs: Path, name: str) -> int:
    """How often supervisord saw the service exit (its log and the rotated ones)."""
    n = 0
    for path in logs.glob("supervisord.log*"):
        try:
            n += sum(f"exited: {name} " in line for line in path.read_text(errors="replace").splitlines())
        except OSError:
            continue
    return n


def _uptime(s: int) -> str:
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def table(box: Path, logs: Path, progs: list[Program]) -> tuple[str, bool]:
    """The status table, and whether every service runs (and answers, where it has an address)."""
    info = {p["name"]: p for p in rpc(box).supervisor.getAllProcessInfo()}
    rows = [("service", "state", "pid", "uptime", "restarts", "address", "health")]
    ok = True
    for p in progs:
        i = info.get(p.name, {})
        state = str(i.get("statename", "UNKNOWN"))
        up = state == "RUNNING"
        health = healthy(p.url) if up else ""
        ok = ok and up and health in ("", "answers")
        uptime = _uptime(int(i["now"]) - int(i["start"])) if up else ""
        pid = str(i.get("pid") or "") if up else ""
        rows.append((p.name, state, pid, uptime, str(restarts(logs, p.name)), p.url, health))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return text + f"\nlogs: {logs}/<service>.log", ok


@dataclass(frozen=True)
class Box:
    box: Path
    logs: Path
    progs: list[Program]


def prepare(
    config: Path, offline: bool, prefect_url: str, without: Sequence[str] = (), standin_account: bool = False
) -> Box:
    cfg = load_config(config)
    if offline:  # the user's config, with Bybit's endpoints at the stand-in the box runs
        data = yaml.safe_load(config.read_text()) or {}
        s = cfg.standin
        data["bybit"] = {
            **(data.get("bybit") or {}),
            "rest_url": f"http://{s.host}:{s.port}",
            "ws_public_url": f"ws://{s.host}:{s.port}/v5/public/linear",
        }
        config = config.resolve().parent / OFFLINE_CONFIG
        config.write_text("# written by python -m ops up --offline: the config with Bybit at the stand-in\n"
                          + yaml.safe_dump(data, sort_keys=False))  # fmt: skip
        cfg = load_config(config)
    box = box_dir()
    box.mkdir(parents=True, exist_ok=True)
    logs = cfg.resolve(cfg.live.log_dir) / "box"
    logs.mkdir(parents=True, exist_ok=True)
    return Box(box, logs, programs(cfg, config.resolve(), prefect_url, offline, without, standin_account))


def up(b: Box, prefect_url: str, wait_s: float) -> int:
    conf = render(b.box, b.logs, b.progs)
    (b.box / "prefect-url").write_text(prefect_url + "\n")
    described = {
        "logs": str(b.logs),
        "programs": [{"name": p.name, "url": p.url, "priority": p.priority} for p in b.progs],
    }
    (b.box / "box.json").write_text(json.dumps(described, indent=1) + "\n")
    if running(b.box):
        server = rpc(b.box).supervisor
        server.reloadConfig()
        for p in b.progs:
            if server.getProcessInfo(p.name)["statename"] not in ("RUNNING", "STARTING"):
                server.startProcess(p.name, False)
        print(f"the box was up: started what was not running ({conf})")
    else:
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], check=True)  # noqa: S603
        print(f"supervisord started ({conf}); starting {len(b.progs)} services")
    deadline = time.monotonic() + wait_s
    text, ok = "", False
    while time.monotonic() < deadline:
        if not running(b.box):
            time.sleep(0.5)
            continue
        text, ok = table(b.box, b.logs, b.progs)
        if ok:
            break
        time.sleep(2.0)
    print(text)
    if not ok:
        raise UnavailableError(f"not every service runs and answers after {wait_s:.0f} s: see the table and logs")
    return 0


def down(b: Box, timeout_s: float) -> int:
    if not running(b.box):
        print("the box is down")
        return 0
    server = rpc(b.box).supervisor
    print("stopping every service, one at a time (each gets its time to finish) ...", flush=True)
    for p in sorted(b.progs, key=lambda p: -p.priority):  # the runner first, the stand-in last
        if server.getProcessInfo(p.name)["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            t0 = time.monotonic()
            server.stopProcess(p.name, True)
            print(f"  {p.name}: stopped in {time.monotonic() - t0:.1f} s", flush=True)
    server.shutdown()
    pidfile = b.box / "supervisord.pid"
    deadline = time.monotonic() + timeout_s
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    print("supervisord stopped")
    return 0


def status(b: Box) -> int:
    if not running(b.box):
        raise UnavailableError(f"the box is down (make up); logs in {b.logs}")
    text, ok = table(b.box, b.logs, b.progs)
    print(text)
    if not ok:
        raise UnavailableError("not every service runs and answers")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=("up", "down", "status"))
    add_config_argument(p)
    p.add_argument("--offline", action="store_true", help="add the Bybit stand-in and point the feeds at it")
    p.add_argument(
        "--standin-account",
        action="store_true",
        help="with --offline: a second runner, --live on the stand-in's trading account (runner-standin)",
    )
    p.add_argument(
        "--without", action="append", default=[], choices=OPTIONAL, metavar="NAME", help="leave out a service"
    )
    p.add_argument("--prefect-url", metavar="URL", help=f"the box's Prefect server (default {DEFAULT_API_URL})")
    p.add_argument("--wait", type=float, default=600.0, metavar="S", help="up: how long to wait for every service")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "up":
        if not args.wait > 0:
            raise UserError(f"--wait {args.wait}: a number of seconds > 0")
        url = api_url(args.prefect_url or DEFAULT_API_URL)
        b = prepare(Path(args.config), args.offline, url, args.without, args.standin_account)
        return up(b, url, args.wait)
    b = brought_up()
    return down(b, 120.0) if args.command == "down" else status(b)


def brought_up() -> Box:
    """The box as ``up`` left its description (box.json): what ``status`` and ``down`` act on."""
    box = box_dir()
    try:
        d = json.loads((box / "box.json").read_text())
    except (OSError, ValueError):
        raise UnavailableError(f"no box was brought up here ({box}): make up") from None
    progs = [Program(p["name"], (), int(p["priority"]), 0, p["url"]) for p in d["programs"]]
    return Box(box, Path(d["logs"]), progs)
