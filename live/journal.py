"""Read the runner's journal (safe while it runs) or send it a command: ``python -m live.journal PATH``.

The journal itself (one SQLite file per account) is storage: warehouse/journal.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.cli import run_main
from core.timefmt import format_ns
from warehouse.journal import COMMANDS, read, send_command


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m live.journal",
        description="Read the runner's journal (safe while it runs) or send it a command.",
    )
    p.add_argument("path", type=Path, help="journal file, e.g. logs/journal/paper-bybit.sqlite")
    p.add_argument("--kind", action="append", help="only these record kinds (repeatable)")
    p.add_argument("--tail", type=int, default=20, metavar="N", help="the last N records (default 20; 0: all)")
    p.add_argument("--command", choices=COMMANDS, help="queue an operator command for the running runner")
    args = p.parse_args(argv)
    if args.command:
        import time

        send_command(args.path, args.command, time.time_ns())
        print(f"{args.command}: queued; the runner acts on it within one status interval")
        return 0
    rows = list(read(args.path, args.kind))
    for r in rows[-args.tail :] if args.tail else rows:
        oid = f" #{r.order_id}" if r.order_id is not None else ""
        print(f"{r.seq:>7} {format_ns(r.ts_ns)} {r.session} {r.kind}{oid} {json.dumps(r.data)}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    run_main(main)
