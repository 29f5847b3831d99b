"""Run the project's deployments on their schedules on this machine: ``python -m flows.serve``.

    python -m flows.serve              # serve every deployment of prefect.yaml (Ctrl-C stops)
    python -m flows.serve --list       # what would be served, with schedules

No work pool, no worker: Prefect's ``serve`` runs the flows in this process's children, on the
cron schedules of prefect.yaml (feature build every 15 min, training, promotion and a backtest daily). With
a Prefect server, ``prefect deploy --all`` deploys the same file instead.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from flows.common import parser

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the deployments ({exc.__class__.__name__})") from None
    return list(data.get("deployments", []))


def load_flow(entrypoint: str) -> Any:
    module, name = entrypoint.split(":")
    return getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)


def describe(items: list[dict[str, Any]]) -> str:
    lines = []
    for d in items:
        crons = [s["cron"] for s in d.get("schedules", []) if "cron" in s]
        when = ", ".join(f"cron '{c}' UTC" for c in crons) or "on demand"
        lines.append(f"{d['name']:<16} {d['entrypoint']:<36} {when}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.serve", __doc__, verbose=False)
    p.add_argument("--list", action="store_true", help="print the deployments and their schedules, then exit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    load_config(args.config)
    items = deployments()
    print(describe(items))
    if args.list:
        return 0
    from prefect import serve

    served = []
    for d in items:
        crons = [s["cron"] for s in d.get("schedules", []) if "cron" in s]
        params = {**d.get("parameters", {}), "config": args.config}
        served.append(
            load_flow(d["entrypoint"]).to_deployment(
                name=d["name"],
                parameters=params,
                cron=crons[0] if crons else None,
                tags=d.get("tags", []),
                concurrency_limit=d.get("concurrency_limit"),
                description=d.get("description"),
            )
        )
    serve(*served)
    return 0


if __name__ == "__main__":
    run_main(main)
