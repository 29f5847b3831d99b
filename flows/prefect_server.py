"""A persistent Prefect server: find the one that answers at an API URL, or start one on this machine.

Prefect's scheduler (the service that turns a deployment's schedule into flow runs) lives inside
a persistent ``prefect server start``; the temporary server a flow run starts on its own has none,
so schedules served against it never fire. ``server(url)`` returns the server at ``url`` when it
answers, and otherwise, for a loopback address only, starts one in its own process group (so a
Ctrl-C in the terminal reaches the caller, which then stops the server in order), its state in
PREFECT_HOME and its log in ``log_path``, and stops it again when the block ends.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import UnavailableError, UserError

log = logging.getLogger(__name__)

DEFAULT_API_URL = "http://127.0.0.1:4200/api"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Server:
    api_url: str
    started: bool  # by us: stopped again when the block ends

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/").removesuffix("/api")


def api_url(given: str | None) -> str:
    """--api-url, else PREFECT_API_URL, else the local default; checked for shape."""
    url = (given or os.environ.get("PREFECT_API_URL") or DEFAULT_API_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"Prefect API URL {url!r}: expected http://host:port/api")
    return url


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Does a Prefect server answer its health check at ``url``?"""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as r:  # noqa: S310  (http(s) checked above)
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# What the Prefect server process is given of this one's environment: what Python, Prefect, its
# database driver (PostgreSQL's PG* variables, the password among them) and the network need.
# Nothing else: the exchange keys, the lake's S3 credentials and any other secret of the shell stay
# out of a process that serves an HTTP API (the flow runs serve starts get the whole environment).
SERVER_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV")
SERVER_ENV_PREFIXES = (
    "PREFECT_", "PG", "LC_", "LD_", "SSL_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHON",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` a Prefect server is started with (SERVER_ENV, SERVER_ENV_PREFIXES)."""
    return {k: v for k, v in environ.items() if k in SERVER_ENV or k.startswith(SERVER_ENV_PREFIXES)}


def connection_url(database: str) -> str:
    """``postgresql://...`` as Prefect's server reaches it (SQLAlchemy with its asyncpg driver)."""
    return database.replace("postgresql://", "postgresql+asyncpg://", 1)


@contextmanager
def server(url: str, home: Path, log_path: Path, timeout_s: float = 180.0, database: str = "") -> Iterator[Server]:
    """The Prefect server at ``url``: found, or started here (loopback only) and stopped on exit;
    its database SQLite in ``home``, or the PostgreSQL URL ``database``."""
    if answers(url):
        log.info("using the Prefect server at %s", url)
        yield Server(url, started=False)
        return
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise UnavailableError(f"no Prefect server answers at {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    home.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**server_env(os.environ), "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)  # the server is the API; it must not look for another
    if database:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = connection_url(database)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", str(parts.hostname), "--port", str(port)]
    state = database or str(home)  # a database URL never holds the password (core/config.py)
    print(f"starting a Prefect server at {url} (state {state}, log {log_path})", flush=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # noqa: S603
    guard(proc.pid)
    try:
        _wait_until_up(proc, url, log_path, timeout_s)
        print(f"Prefect server up: UI {Server(url, True).ui_url}", flush=True)
        yield Server(url, started=True)
    finally:
        _stop(proc)


# The guard of a server this process started: it waits for its stdin (a pipe whose other end only
# this process holds) to reach its end, which happens when this process ends, however it ends (a
# SIGKILL included), and then stops the server if it is still the same process (its command line
# as the guard first read it: a recycled pid is left alone), SIGTERM and then SIGKILL, its process
# group when it leads one. Run with -S: no site, so nothing (coverage's .pth either) loads with it.
_GUARD = r"""
import os, signal, sys, time
pid = int(sys.argv[1])
def cmdline():
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
started = cmdline()
try:
    sys.stdin.buffer.read()
except BaseException:
    pass
if started and cmdline() == started:
    kill = os.killpg if os.getpgid(pid) == pid else os.kill
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            kill(pid, sig)
        except OSError:
            break
        end = time.monotonic() + wait_s
        while cmdline() == started and time.monotonic() < end:
            time.sleep(0.1)
        if cmdline() != started:
            break
"""
_GUARDS: list[subprocess.Popen[bytes]] = []  # held for the process's life: their pipes close when it ends


def guard(pid: int) -> None:
    """Stop the server process ``pid`` (started by this process) when this process ends without
    stopping it: a SIGKILLed flow command or serve left its server running for hours."""
    _GUARDS.append(
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-S", "-c", _GUARD, str(pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C to the command's group does not reach it
        )
    )


def guard_temporary_servers() -> None:
    """Give every temporary server Prefect starts in this process (``SubprocessASGIServer``: for a
    flow command without a server to report to) a guard."""
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer._run_uvicorn_command
    if getattr(start, "guarded", False):
        return

    def guarded(self: SubprocessASGIServer) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = start(self)
        guard(proc.pid)
        return proc

    guarded.guarded = True  # type: ignore[attr-defined]
    SubprocessASGIServer._run_uvicorn_command = guarded  # type: ignore[method-assign]


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    next_note = time.monotonic() + 15
    while not answers(url, timeout_s=1.0):
        if proc.poll() is not None:
            raise UnavailableError(f"the Prefect server exited with code {proc.returncode}: {_last_line(log_path)}")
        if time.monotonic() > deadline:
            _stop(proc)
            raise UnavailableError(f"the Prefect server did not answer at {url} within {timeout_s:.0f} s ({log_path})")
        if time.monotonic() > next_note:
            next_note += 15
            print(f"  still waiting for the Prefect server ({_last_line(log_path)})", flush=True)
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][-200:] if lines else "no output yet"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flows.prefect_server`` (``make prefect-ui``): the server and its UI, until Ctrl-C."""
    import argparse

    import flows  # noqa: F401  (PREFECT_HOME inside the project)
    from core.cli import add_config_argument, setup_logging
    from core.config import load_config

    p = argparse.ArgumentParser(prog="python -m flows.prefect_server", description=main.__doc__)
    add_config_argument(p)
    p.add_argument("--api-url", metavar="URL", help="default PREFECT_API_URL or http://127.0.0.1:4200/api")
    args = p.parse_args(argv)
    setup_logging()
    cfg = load_config(args.config)
    url = api_url(args.api_url)
    if answers(url):
        print(f"a Prefect server already answers at {url}: its UI is {Server(url, False).ui_url}")
        return 0

    def on_sigterm(signum: int, frame: object) -> None:  # a supervisor's stop: as Ctrl-C, the server stops too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    log_path = cfg.resolve(cfg.live.log_dir) / "prefect-server.log"
    with server(url, Path(os.environ["PREFECT_HOME"]), log_path, database=cfg.prefect.database) as srv:
        print(f"Prefect UI: {srv.ui_url}; Ctrl-C stops the server", flush=True)
        misses = 0
        try:
            while misses < 3:  # a server that stopped answering three times in a row is gone
                time.sleep(5.0)
                misses = 0 if answers(url, timeout_s=10.0) else misses + 1
        except KeyboardInterrupt:
            print("stopping the Prefect server")
            return 0
    raise UnavailableError(f"the Prefect server at {url} stopped answering")


if __name__ == "__main__":
    from core.cli import run_main

    run_main(main)
