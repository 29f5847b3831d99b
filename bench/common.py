"""Shared benchmark helpers: the result record, timing, the machine description."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
SHARED = Path(os.environ.get("L2_SHARED_DATA", ROOT.parent / "shared" / "data"))


def entry(name: str, value: float, unit: str, target: str | None, note: str = "") -> dict[str, Any]:
    """One benchmark figure; `target` like '>= 100000' or '< 1' (same unit), None when informational."""
    met = None
    if target is not None:
        op, bound = target.split()
        b = float(bound)
        met = {">=": value >= b, ">": value > b, "<=": value <= b, "<": value < b}[op]
    return {"name": name, "value": round(value, 4), "unit": unit, "target": target, "met": met, "note": note}


def timed(fn: Callable[[], object], repeat: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of `repeat` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    versions = {}
    for pkg in (
        "numpy",
        "numba",
        "duckdb",
        "pyarrow",
        "orjson",
        "ccxt",
        "prefect",
        "mlflow",
        "lightgbm",
        "xgboost-cpu",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
    }


def command(module: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """``python -m module args`` as a user types it, from the project root: (the finished process,
    its wall time in seconds, the CPU cores it and its children used on average)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return p, wall, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
