"""``python -m models ui``: the MLflow UI on the project's store, as one light process.

``mlflow ui`` is ``mlflow server``: a parent process that imports all of MLflow and waits, a uvicorn
supervisor with four workers that import it again, and MLflow 3's job runner with seven huey
consumers (GenAI scorers, online scoring, trace archival: nothing this project uses). On this
project's store that was 15 processes, 2.5-3.2 GB of RSS and 23-27 s to the first answer on the
busy 2-core machine (38 s at load 4.4). Here the command execs ONE uvicorn process with one worker
serving MLflow's own ASGI app, configured through the environment variables ``mlflow server`` hands
its workers, with job execution off: 1 process, 250 MB, 2.7-3.3 s (docs/models.md).

MLflow is not imported before the exec: the store is rebased if the project moved (models/store.py,
the standard library's sqlite3), and a port already taken is one line, not a uvicorn traceback.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from core.config import AppConfig
from core.errors import UnavailableError
from models.store import locate, store

APP = "mlflow.server.fastapi_app:app"
# What `mlflow server` (mlflow/server/__init__.py, _run_server) sets for its workers; names from
# mlflow.server.constants (tests/test_mlflow_ui.py holds them to the installed MLflow).
BACKEND_STORE = "_MLFLOW_SERVER_FILE_STORE"
REGISTRY_STORE = "_MLFLOW_SERVER_REGISTRY_STORE"
ARTIFACT_ROOT = "_MLFLOW_SERVER_ARTIFACT_ROOT"
SERVER_NAME = "_MLFLOW_SGI_NAME"
JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def url(cfg: AppConfig, host: str | None = None, port: int | None = None) -> str:
    """The UI's address: the configured host and port unless given."""
    h = host or cfg.mlflow.ui_host
    return f"http://{'127.0.0.1' if h in ('0.0.0.0', '::') else h}:{port or cfg.mlflow.ui_port}"  # noqa: S104  (a bind-all host is browsed locally)


def check_port(host: str, port: int) -> None:
    """One line if ``host:port`` cannot be bound (taken, or no such address), before anything starts."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UnavailableError(f"port {port} on {host} is taken (another MLflow UI?): pass --port N") from None
        raise UnavailableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
        APP,
    ]


def environment(cfg: AppConfig) -> dict[str, str]:
    """The process environment of the UI: the project's store, no job runner, no telemetry."""
    s = locate(cfg, create=True)
    return {
        **os.environ,
        BACKEND_STORE: s.tracking_uri,
        REGISTRY_STORE: s.tracking_uri,
        ARTIFACT_ROOT: s.artifacts_uri,
        SERVER_NAME: "uvicorn",
        JOB_EXECUTION: "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # MLflow's app imports starlette's deprecated WSGI middleware: not the user's business
        "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore:starlette.middleware.wsgi is deprecated"),
    }


def serve(cfg: AppConfig, host: str | None, port: int | None) -> None:
    """Replace this process with the UI server (Ctrl-C stops it)."""
    h, p = host or cfg.mlflow.ui_host, port or cfg.mlflow.ui_port
    check_port(h, p)
    env = environment(cfg)
    print(f"MLflow UI on {url(cfg, h, p)} (store {store(cfg, create=True).where}); Ctrl-C stops it", flush=True)
    os.execve(sys.executable, command(h, p), env)  # noqa: S606  (fixed arguments)
