"""``python -m live.dashboard``: the monitoring page, served by FastAPI on 127.0.0.1.

The page (static/index.html + its scripts) asks ``/api/state?journal=&session=&range=`` for a
snapshot every ``monitor.dashboard_refresh`` and draws it with Plotly, whose JavaScript comes from
the installed plotly package: nothing is fetched from the internet. The journal is one of
``live.journal_dir`` (one per account: paper-bybit, paper-sim, ...; the page offers each, the most
recently written first) or the one ``--journal`` pins. ``/backtests/<folder>`` serves the report
of a backtest of the model in use. The server only reads (the journal, the registry, the
warehouse, the reports); the runner never waits for it.
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
SCRIPTS = {"dashboard.js", "trading.js", "panels.js", "dashboard.css"}


def plotly_js() -> Path:
    path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise UserError("plotly's bundled plotly.min.js is missing: reinstall with make venv")
    return path


def create_app(cfg: AppConfig, journal: Path | None = None) -> Any:
    """The app; ``journal`` pins one journal (None: the page chooses among ``live.journal_dir``'s)."""
    from fastapi import FastAPI, HTTPException
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
    def state(  # a plain def: FastAPI runs it in its thread pool, the loop stays free
        journal: str | None = None, session: str | None = None, range: str | None = None
    ) -> JSONResponse:
        return JSONResponse(snapshot.build(journal, session, range), headers={"Cache-Control": "no-store"})

    @app.get("/backtests/{name}")
    def backtest(name: str) -> FileResponse:
        path = snapshot.backtest_report(name)
        if path is None:
            raise HTTPException(404)
        return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/plotly.min.js")
    def plotly() -> FileResponse:
        return FileResponse(js, media_type="text/javascript", headers=cache)

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in SCRIPTS:
            raise HTTPException(404)
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

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


def pinned_journal(cfg: AppConfig, name: str) -> Path:
    """``--journal``: a file, or a name in ``live.journal_dir`` (``paper-sim`` is ``paper-sim.sqlite``
    there). One that does not exist yet is shown as soon as a runner writes it."""
    path = Path(name)
    if path.suffix == ".sqlite" or len(path.parts) > 1:
        return path
    return cfg.resolve(cfg.live.journal_dir) / f"{name}.sqlite"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m live.dashboard",
        description="The monitoring dashboard: the runner's journal, the model registry and the warehouse on one "
        "auto-refreshing page (read-only; the runner never waits for it).",
    )
    add_config_argument(p)
    p.add_argument(
        "--journal",
        metavar="NAME|PATH",
        help="show only this journal: a name in live.journal_dir (paper-bybit, paper-sim, paper-replay, live-bybit) "
        "or a file (default: the page offers every journal there, the most recently written first)",
    )
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
    journal = pinned_journal(cfg, args.journal) if args.journal else None
    check_port(host, port)
    app = create_app(cfg, journal)
    import uvicorn

    shown = f"the journals in {cfg.resolve(cfg.live.journal_dir)}"
    if journal is not None:
        shown = f"journal {journal}" + ("" if journal.exists() else ": not there yet, shown once a runner writes it")
    print(f"dashboard: http://{host}:{port}  ({shown}; Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info" if args.verbose else "warning", access_log=args.verbose)
    return 0
