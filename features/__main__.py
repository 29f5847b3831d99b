"""The feature library's command line.

python -m features catalog               # every feature: name, definition, window, unit, source
python -m features catalog --format md   # the same as a Markdown table
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli import run_main
from features.catalog import FEATURES, feature_set_id


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m features", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("catalog", help="list every feature")
    c.add_argument("--format", choices=("text", "md"), default="text", help="plain text (default) or Markdown")
    return p.parse_args(argv)


def catalog(fmt: str) -> str:
    rows = [(f.name, f.definition, f.window or "-", f.unit or "-", f.source) for f in FEATURES]
    head = ("name", "definition", "window", "unit", "source")
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(f"`{r[0]}`" if i == 0 else r[i] for i in range(len(r))) + " |" for r in rows]
    else:
        lines = []
        for name, definition, window, unit, source in rows:
            lines.append(f"{name:<26} window {window:<5} unit {unit}")
            lines.append(f"    {definition}")
            lines.append(f"    source: {source}")
    lines.append("")
    lines.append(f"{len(rows)} features, feature set {feature_set_id()} (windows are trailing, by exchange time)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "catalog":
        sys.stdout.write(catalog(args.format) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
