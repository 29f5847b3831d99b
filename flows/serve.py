"""Run the project's deployments on their schedules: ``python -m flows.serve`` (``make serve``).

    python -m flows.serve                          # serve prefect.yaml's deployments; Ctrl-C stops (exit 0)
    python -m flows.serve --list                   # the deployments and their schedules, then exit
    python -m flows.serve --api-url http://10.0.0.5:4200/api       # a Prefect server elsewhere
    python -m flows.serve --deployments my-schedules.yaml          # another file of the same shape

Ctrl-C (or SIGTERM) stops gracefully: no new runs start, the runs in progress may finish for up to
--grace seconds (a second Ctrl-C stops them at once), and a run that could not finish is marked
Crashed rather than left Running.

Schedules need Prefect's scheduler, which runs inside a persistent Prefect server (the temporary
server a lone flow run starts has none). serve uses the server at --api-url, else PREFECT_API_URL,
else http://127.0.0.1:4200/api when it answers; on this machine it otherwise starts one (state in
PREFECT_HOME, log in logs/prefect-server.log) and stops it again on exit. The Prefect UI at that
address then shows the deployments and their scheduled runs. Each flow run executes in a child
process loaded from its entrypoint in the deployments file, exactly as a Prefect worker loads it
(``prefect deploy --all`` with a worker of the ``local`` process pool runs the same file).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import run_main, setup_logging
from core.config import load_config
from core.errors import UnavailableError, UserError
from flows.common import parser
from flows.prefect_server import answers, api_url, server
from flows.stopping import GoneRun, Stopper, pause, serve, settle

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"
log = logging.getLogger(__name__)


def deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The deployments of a prefect.yaml-shaped file, each checked for what serve needs."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the deployments ({exc.__class__.__name__})") from None
    items = (data or {}).get("deployments") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError(f"{path}: no deployments")
    for d in items:
        if not isinstance(d, dict) or not d.get("name") or ":" not in str(d.get("entrypoint", "")):
            raise UserError(f"{path}: every deployment needs a name and an entrypoint 'file.py:flow'")
        for s in d.get("schedules") or []:
            schedule(s, f"{path}: {d['name']}")
    return items


def schedule(spec: Any, where: str) -> Any:
    """A prefect.yaml schedule (``cron`` with ``timezone``, or ``interval`` in seconds) as a Prefect schedule."""
    from prefect.schedules import Cron, Interval

    if isinstance(spec, dict) and "cron" in spec:
        try:
            return Cron(str(spec["cron"]), timezone=spec.get("timezone", "UTC"), active=spec.get("active", True))
        except ValueError as exc:
            raise UserError(f"{where}: cron {spec['cron']!r}: {exc}") from None
    if isinstance(spec, dict) and "interval" in spec:
        seconds = spec["interval"]
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise UserError(f"{where}: interval must be a positive number of seconds, not {seconds!r}")
        every = timedelta(seconds=seconds)
        return Interval(every, timezone=spec.get("timezone", "UTC"), active=spec.get("active", True))
    raise UserError(f"{where}: a schedule is {{cron: ..., timezone: ...}} or {{interval: seconds}}, not {spec!r}")


def load_flow(entrypoint: str) -> Any:
    """The flow object of ``path/to/file.py:name`` (imported as its module, from the project root)."""
    module, name = entrypoint.split(":")
    try:
        return getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"entrypoint {entrypoint}: {exc}") from None


def describe(items: list[dict[str, Any]]) -> str:
    lines = []
    for d in items:
        when = []
        for s in d.get("schedules") or []:
            when.append(f"cron '{s['cron']}' {s.get('timezone', 'UTC')}" if "cron" in s else f"every {s['interval']} s")
        lines.append(f"{d['name']:<16} {d['entrypoint']:<36} {', '.join(when) or 'on demand'}")
    return "\n".join(lines)


def to_deployments(items: list[dict[str, Any]], config: str) -> list[Any]:
    out = []
    for d in items:
        params = {**(d.get("parameters") or {}), "config": config}
        out.append(
            load_flow(d["entrypoint"]).to_deployment(
                name=d["name"],
                parameters=params,
                schedules=[schedule(s, d["name"]) for s in d.get("schedules") or []],
                tags=d.get("tags", []),
                concurrency_limit=d.get("concurrency_limit"),
                description=d.get("description"),
            )
        )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.serve", __doc__, verbose=False)
    p.add_argument("--list", action="store_true", help="print the deployments and their schedules, then exit")
    p.add_argument("--api-url", metavar="URL", help="the Prefect server (default PREFECT_API_URL or 127.0.0.1:4200)")
    p.add_argument("--deployments", metavar="PATH", type=Path, default=PREFECT_YAML, help="default: prefect.yaml")
    p.add_argument(
        "--require-server",
        action="store_true",
        help="use the server at the API URL, never start one (none answers: exit 4; a supervisor retries)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=300.0,
        metavar="S",
        help="on Ctrl-C, how long the runs in progress may take to finish (default 300 s; a second Ctrl-C: now)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.grace >= 0:
        raise UserError(f"--grace {args.grace}: a number of seconds >= 0")
    stopper = Stopper(args.grace)  # before any thread starts: SIGINT goes to its watcher, not to the flow runs
    setup_logging()
    cfg = load_config(args.config)
    url = api_url(args.api_url)
    # before prefect is imported (it reads its settings once): this process and its flow runs use
    # the persistent server, never a temporary one of their own
    os.environ["PREFECT_API_URL"] = url
    items = deployments(args.deployments)
    for d in items:
        load_flow(d["entrypoint"])  # a broken entrypoint is one line before any server starts
    print(describe(items))
    if args.list:
        return 0
    home = Path(os.environ["PREFECT_HOME"])
    if args.require_server and not answers(url):
        raise UnavailableError(f"no Prefect server answers at {url} (--require-server)")
    with server(url, home, cfg.resolve(cfg.live.log_dir) / "prefect-server.log", database=cfg.prefect.database) as srv:
        served = to_deployments(items, str(cfg.source_path))
        names = [d["name"] for d in items]
        stopper.pause = lambda: pause(names)
        print(f"serving {len(served)} deployments on {srv.api_url}; the UI: {srv.ui_url}; Ctrl-C stops", flush=True)
        logging.getLogger("prefect.runner.state_proposer").addFilter(GoneRun())
        serve(served, stopper)  # until Ctrl-C or SIGTERM (flows/stopping.py)
        try:
            settled = settle(names)
        except Exception as exc:  # best effort: the server may be gone; runs then show as Prefect left them
            log.warning("could not check the runs in progress: %s", str(exc).splitlines()[0] if str(exc) else exc)
            settled = []
        if settled:
            print(f"marked {len(settled)} flow run(s) in progress as crashed: {', '.join(settled)}")
        print("stopped serving" + ("; stopping the Prefect server this command started" if srv.started else ""))
    return 0


if __name__ == "__main__":
    run_main(main)
