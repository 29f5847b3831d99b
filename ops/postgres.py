"""``python -m ops.postgres start | stop | status``: a PostgreSQL server of the project's own, for
MLflow's tracking server and Prefect's server when they are shared (docs/scaling.md).

    PGPASSWORD=... python -m ops.postgres start --dir warehouse/pg --port 5433
    python -m ops.postgres status --dir warehouse/pg
    python -m ops.postgres stop --dir warehouse/pg

``start`` creates the cluster on first use (``initdb``), starts it listening on 127.0.0.1 only, and
creates the databases the services need (``mlflow``, ``prefect``), then returns: the server runs
on in the background, its log in ``<dir>/postgres.log``. Then, in config.yaml::

    mlflow:
      database: postgresql://l2@127.0.0.1:5433/mlflow
    prefect:
      database: postgresql://l2@127.0.0.1:5433/prefect

The password comes from ``PGPASSWORD`` in the environment (libpq's own variable, read by MLflow's
psycopg2 and Prefect's asyncpg alike), never from a file the project writes: with it the cluster
asks every connection for it (scram-sha-256); without it, it trusts connections from this machine,
and says so. A desk's own PostgreSQL (a managed one) needs none of this: set the URLs.

PostgreSQL refuses to run as root. Run as root (a container, this project's CI), the server runs as
the ``postgres`` system user (Debian's package creates it), which then owns ``<dir>``.

The binaries are looked up on the PATH, then in Debian's ``/usr/lib/postgresql/<version>/bin``
(``apt-get install postgresql``; ``.ci/run`` installs it when missing).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core.errors import UnavailableError, UserError

USER = "l2"  # the cluster's superuser, who owns the databases
DATABASES = ("mlflow", "prefect")
SYSTEM_USER = "postgres"  # who runs the server when we are root


def binary(name: str) -> str:
    """A PostgreSQL program: on the PATH, else the newest of Debian's versioned folders."""
    if found := shutil.which(name):
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if versions:
        return str(versions[-1])
    raise UnavailableError(f"no PostgreSQL here ({name} not found): apt-get install postgresql")


def _as_server_user() -> list[str]:
    """The command prefix that runs a PostgreSQL program as a user it accepts."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise UnavailableError(
            f"PostgreSQL will not run as root and there is no {SYSTEM_USER!r} user: run this as another user"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise UnavailableError("PostgreSQL will not run as root and runuser (util-linux) is missing")
    return [runuser, "-u", SYSTEM_USER, "--"]


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)  # noqa: S603  (our arguments)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()] or lines
        raise UnavailableError(f"{what} failed: {errors[0] if errors else f'exit code {proc.returncode}'}")
    return proc.stdout


def _hand_over(data: Path) -> None:
    """As root: the server's user must own its folder and reach it through every parent."""
    if os.geteuid() != 0:
        return
    ent = pwd.getpwnam(SYSTEM_USER)
    os.chown(data, ent.pw_uid, ent.pw_gid)
    for parent in data.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise UserError(
                f"{parent} is closed to the {SYSTEM_USER!r} user the server runs as: choose a --dir it can reach"
            )


def running(data: Path) -> bool:
    if not (data / "postmaster.pid").exists():
        return False
    proc = subprocess.run(  # noqa: S603  (our arguments)
        [*_as_server_user(), binary("pg_ctl"), "status", "-D", str(data)], capture_output=True, check=False
    )
    return proc.returncode == 0


def init(data: Path) -> None:
    """A new cluster in ``data`` (an empty or missing folder), its superuser ``l2``."""
    data.mkdir(parents=True, exist_ok=True)
    if any(data.iterdir()):
        raise UserError(f"{data} is not empty and holds no PostgreSQL cluster: choose another --dir")
    data.chmod(0o700)
    _hand_over(data)
    password = os.environ.get("PGPASSWORD")
    cmd = [*_as_server_user(), binary("initdb"), "-D", str(data), "-U", USER, "-E", "UTF8", "--no-instructions"]
    if password:
        # the password reaches initdb in a file only the server's user reads (mode 600), deleted at once
        fd, name = tempfile.mkstemp(prefix="l2-pg-pw-")
        pw = Path(name)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        try:
            if os.geteuid() == 0:
                ent = pwd.getpwnam(SYSTEM_USER)
                os.chown(pw, ent.pw_uid, ent.pw_gid)
            _run([*cmd, "--auth=scram-sha-256", f"--pwfile={pw}"], "initdb")
        finally:
            pw.unlink(missing_ok=True)
    else:
        print("no PGPASSWORD: the server trusts every connection from this machine", flush=True)
        _run([*cmd, "--auth=trust"], "initdb")


def start(data: Path, port: int, databases: Sequence[str] = DATABASES) -> None:
    """The cluster in ``data`` running on 127.0.0.1:``port`` with ``databases``; created if new."""
    if not (data / "PG_VERSION").exists():
        init(data)
    if running(data):
        print(f"PostgreSQL already runs from {data}", flush=True)
    else:
        _hand_over(data)
        log = data / "postgres.log"
        options = f"-p {port} -k {data.resolve()} -c listen_addresses=127.0.0.1"
        _run(
            [*_as_server_user(), binary("pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-o", options],
            f"starting PostgreSQL (its log: {log})",
        )
    for name in databases:
        create_database(port, name)
    print(f"PostgreSQL on 127.0.0.1:{port} (data {data}), databases: {', '.join(databases)}", flush=True)


def create_database(port: int, name: str) -> None:
    import psycopg2

    try:
        con = psycopg2.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres", connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise UnavailableError(f"cannot connect to PostgreSQL on 127.0.0.1:{port}: {_first_line(exc)}") from None
    try:
        con.autocommit = True  # CREATE DATABASE runs outside a transaction
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()


def stop(data: Path) -> None:
    if not running(data):
        print(f"no PostgreSQL runs from {data}", flush=True)
        return
    _run([*_as_server_user(), binary("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"], "stopping PostgreSQL")
    print(f"PostgreSQL stopped ({data})", flush=True)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ops.postgres",
        description="A PostgreSQL server of the project's own for MLflow and Prefect (docs/scaling.md).",
    )
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--dir", type=Path, default=Path("warehouse/pg"), help="the cluster's folder (default warehouse/pg)")
    p.add_argument("--port", type=int, default=5433, help="start: the port on 127.0.0.1 (default 5433)")
    p.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help=f"start: the databases to create when missing (default {','.join(DATABASES)})",
    )
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:
        p.error(f"--port {args.port}: expected 1-65535")
    args.databases = [d for d in args.databases.split(",") if d]
    bad = [d for d in args.databases if not d.replace("_", "").isalnum()]
    if bad:
        p.error(f"--databases {','.join(bad)}: letters, digits and _ only")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.action == "start":
        start(args.dir, args.port, args.databases)
    elif args.action == "stop":
        stop(args.dir)
    else:
        up = running(args.dir)
        print(f"PostgreSQL {'runs' if up else 'does not run'} from {args.dir}")
        return 0 if up else 4
    return 0


if __name__ == "__main__":
    from core.cli import run_main

    run_main(main)
