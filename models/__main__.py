"""The model registry from the command line.

python -m models list           # registered versions, aliases, held-out metrics, promotion notes
python -m models ui             # the MLflow UI on the project's store (make ui)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from core.cli import add_config_argument, run_main
from core.config import load_config
from core.errors import UserError
from models import registry


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    add_config_argument(sub.add_parser("list", help="registered versions and aliases"))
    u = sub.add_parser("ui", help="start the MLflow UI on the project's store")
    u.add_argument("--port", type=int, default=5000)
    add_config_argument(u)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.command == "ui":
        s = registry.store(cfg, create=True)
        exe = shutil.which("mlflow", path=os.path.dirname(sys.executable))
        if exe is None:
            raise UserError("the mlflow command is not installed in this environment (make venv)")
        print(f"MLflow UI on http://127.0.0.1:{args.port} (store {s.db}); Ctrl-C stops it", flush=True)
        cmd = [exe, "ui", "--backend-store-uri", s.tracking_uri, "--default-artifact-root", s.artifacts_uri]
        os.execv(exe, [*cmd, "--host", "127.0.0.1", "--port", str(args.port)])  # noqa: S606  (fixed arguments)
    client = registry.connect(cfg)
    name = cfg.mlflow.model_name
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        print(f"{name}: no versions registered yet (python -m flows.train)")
        return 0
    for found in sorted(versions, key=lambda v: int(v.version)):
        v = client.get_model_version(name, found.version)  # search results leave the aliases out
        aliases = ",".join(v.aliases) or "-"
        fs = v.tags.get("feature_set", "?")
        print(f"{name} v{v.version:<4} {aliases:<20} feature set {fs}  {v.tags.get('metrics', '')}")
        if v.description:
            print(f"      {v.description}")
    return 0


if __name__ == "__main__":
    run_main(main)
