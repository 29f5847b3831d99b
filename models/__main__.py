"""The model registry from the command line.

python -m models list                 # registered versions: aliases, window, data source, held-out AUCs
python -m models compare 3 champion   # two versions side by side, and the MLflow UI's compare page
python -m models ui [--port 5001]     # the MLflow UI on the project's store (make ui)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from core.cli import add_config_argument, run_main, setup_logging
from core.config import load_config


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    add_config_argument(sub.add_parser("list", help="registered versions and aliases"))
    c = sub.add_parser("compare", help="two versions side by side, with a link to the UI's compare page")
    c.add_argument("a", metavar="A", help="a version number, an alias (champion) or models:/NAME/N")
    c.add_argument("b", metavar="B", help="the other version")
    add_config_argument(c)
    u = sub.add_parser(
        "ui",
        help="start the MLflow UI on the project's store (one process)",
        description="The MLflow UI on the project's store: one uvicorn process, no job runners. "
        "A host other than localhost also needs MLFLOW_SERVER_ALLOWED_HOSTS (MLflow's host check).",
    )
    u.add_argument("--host", help="address to listen on (default: mlflow.ui_host, 127.0.0.1)")
    u.add_argument("--port", type=_port, help="port (default: mlflow.ui_port, 5000)")
    add_config_argument(u)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    cfg = load_config(args.config)
    if args.command == "ui":
        from models import ui

        ui.serve(cfg, args.host, args.port)
        return 0  # not reached: serve replaces the process
    from models import compare, registry

    client = registry.connect(cfg)
    if args.command == "compare":
        print(compare.render(cfg, compare.describe(cfg, client, args.a), compare.describe(cfg, client, args.b)))
        return 0
    print("\n".join(compare.listing(cfg, client)))
    return 0


if __name__ == "__main__":
    run_main(main)
