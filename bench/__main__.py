"""Run every benchmark module (bench/bench_*.py), print a table, write bench/results.json.

python -m bench                 # everything
python -m bench warehouse sim   # only bench_warehouse.py and bench_sim.py
python -m bench falsify         # only the falsification figures (bench_falsify.py: over an hour)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from bench.common import ROOT, machine
from core.memory import settle_allocators


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("only", nargs="*", help="module names without the bench_ prefix")
    p.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = p.parse_args(argv)
    settle_allocators()  # the allocators every command runs with (core.cli.run_main)
    names = sorted(f.stem for f in (ROOT / "bench").glob("bench_*.py"))
    if args.only:
        unknown = set(args.only) - {n.removeprefix("bench_") for n in names}
        if unknown:
            print(f"error: no benchmark module {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']}")
    results: list[dict[str, object]] = []
    for name in names:
        print(f"\n== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        for e in module.run():
            results.append(e)
            flag = "" if e["met"] is None else ("  ok" if e["met"] else "  MISSED")
            target = f"target {e['target']}" if e["target"] else ""
            print(f"  {e['name']:<58} {e['value']:>14,.3f} {e['unit']:<14} {target}{flag}", flush=True)
    Path(args.out).write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    missed = [e["name"] for e in results if e["met"] is False]
    print(
        f"\n{len(results)} figures written to {args.out}; {len(missed)} missed their target"
        + (f": {', '.join(map(str, missed))}" if missed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
