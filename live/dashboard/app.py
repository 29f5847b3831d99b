"""``python -m live.dashboard``: the monitoring page, served by FastAPI on 127.0.0.1.

The page (static/index.html + dashboard.js) asks ``/api/state`` for a snapshot every
``monitor.dashboard_refresh`` and draws it with Plotly, whose JavaScript comes from the installed
plotly package: nothing is fetched from the internet. The server only reads (the journal, the
registry, the warehouse); the runner never waits for it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from core.cli import add_config_argument, config_from, setup_logging
from core.config import AppConfig
from core.errors import UserError
from live.dashboard.state import Snapshot

log = logging.getLogger("live.dashboard")

STATIC = Path(__file__).with_name("static")


def plotly_js() -> Path:
    path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise UserError("plotly's bundled plotly.min.js is missing: reinstall with make venv")
    return path


def create_app(cfg: AppConfig, journal: Path) -> Any:
    from fastapi import FastAPI
    from fastapi.middleware.gzip import GZipMiddleware
    from fastapi.responses import FileResponse, JSONResponse

    snapshot = Snapshot(cfg, journal)
    js = plotly_js()
    app = FastAPI(title="btc-l2 dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    cache = {"Cache-Control": "max-age=86400"}

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/state")
    def state() -> JSONResponse:  # a plain def: FastAPI runs it in its thread pool, the loop stays free
        return JSONResponse(snapshot.build(), headers={"Cache-Control": "no-store"})

    @app.get("/static/plotly.min.js")
    def plotly() -> FileResponse:
        return FileResponse(js, media_type="text/javascript", headers=cache)

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        path = STATIC / name
        if name not in {"dashboard.js", "dashboard.css"}:
            from fastapi import HTTPException

            raise HTTPException(404)
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    app.state.snapshot = snapshot
    return app


def check_port(host: str, port: int) -> None:
    """A port that is taken or a host that does not resolve: one line, before uvicorn starts."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"{host}:{port} is in use (another dashboard? choose one with --port)") from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m live.dashboard",
        description="The monitoring dashboard: the runner's journal, the model registry and the warehouse on one "
        "auto-refreshing page (read-only; the runner never waits for it).",
    )
    add_config_argument(p)
    p.add_argument("--mode", choices=("paper", "live"), default="paper", help="which journal to show (default paper)")
    p.add_argument("--journal", type=Path, help="a journal file instead (default: live.journal_dir/<mode>.sqlite)")
    p.add_argument("--host", help="address to listen on (default monitor.dashboard_host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default monitor.dashboard_port, 8050)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from(args)
    mc = cfg.monitor
    host, port = args.host or mc.dashboard_host, mc.dashboard_port if args.port is None else args.port
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: must be 1..65535")
    journal = args.journal or cfg.resolve(cfg.live.journal_dir) / f"{args.mode}.sqlite"
    check_port(host, port)
    app = create_app(cfg, journal)
    import uvicorn

    print(f"dashboard: http://{host}:{port}  (journal {journal}; Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info" if args.verbose else "warning", access_log=args.verbose)
    return 0
