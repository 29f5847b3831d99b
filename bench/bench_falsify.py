"""Falsification figures: the share of null models the gate lets trade, and its planted mirror.

Both run ``python -m flows.falsify`` as a user types it, with the project's config (the training
procedure under test is the project's own), and read its last line:

- null: N = 20 models trained on one simulated day (training.window) whose labels are
  block-permuted against the features, a new permutation per run; the share the gate lets trade
  (target <= 5 %). The simulated day is kept in bench/.cache/falsify and reused.
- planted: N = 10 markets of 12 simulated hours each (the demo's window: a threshold needs hours of
  calibration block to be chosen and confirmed, docs/models.md "Falsification") with the planted
  metaorder edge of sim/presets.py, larger than the round trip; the share that trades and
  earns net of fees on its held-out block (target >= 80 %). Ten, not twenty: each run simulates,
  ingests and builds its own market (about 3-4 minutes a run on the 2-core machine), and the
  interval says what ten runs can and cannot show.

Slow (over an hour together on the 2-core machine, the null's simulated day included the first
time): ``python -m bench falsify`` runs them alone.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

from bench.common import CACHE, ROOT, entry

NULL_RUNS, PLANTED_RUNS, PLANTED_HOURS = 20, 10, 12
SHARE = re.compile(r"(\d+) of (\d+) .*: (\d+\.\d) % \(95 % CI (\d+\.\d)-(\d+\.\d) %")


def _falsify(*args: str) -> tuple[float, str, float]:
    """(share in %, its interval as text, wall seconds) of one falsify command."""
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "flows.falsify", "--config", str(ROOT / "config.yaml"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"flows.falsify {' '.join(args)} failed: {p.stderr.strip().splitlines()[-1:]}")
    last = p.stdout.strip().splitlines()[-1]
    print(f"    {last}", flush=True)
    m = SHARE.search(last)
    if m is None:
        raise RuntimeError(f"flows.falsify: unexpected last line: {last}")
    return float(m[3]), f"{m[1]} of {m[2]}, 95 % CI {m[4]}-{m[5]} %", seconds


def run() -> list[dict[str, Any]]:
    null, null_ci, null_s = _falsify("--runs", str(NULL_RUNS), "--workdir", str(CACHE / "falsify"))
    planted, planted_ci, planted_s = _falsify("--planted", "--runs", str(PLANTED_RUNS), "--hours", str(PLANTED_HOURS))
    return [
        entry(f"falsify null share (block-permuted labels, N = {NULL_RUNS})", null, "%", "<= 5", null_ci),
        entry(f"falsify null: wall time per run (N = {NULL_RUNS})", null_s / NULL_RUNS, "s", None),
        entry(
            f"falsify planted share ({PLANTED_HOURS} h markets, N = {PLANTED_RUNS})", planted, "%", ">= 80", planted_ci
        ),
        entry(f"falsify planted: wall time per run (N = {PLANTED_RUNS})", planted_s / PLANTED_RUNS, "s", None),
    ]
