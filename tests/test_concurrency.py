"""The ingest writes while other processes read: two real processes, both make progress."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bybit_msgs import random_stream
from tests.conftest import REPO, ConfigFactory

READER = r"""
import json, sys, time
from pathlib import Path
from warehouse.db import reading
path, stop_file = Path(sys.argv[1]), Path(sys.argv[2])
seen = []
while not stop_file.exists():
    if not path.exists():
        time.sleep(0.01)
        continue
    with reading(path, timeout_s=20) as con:
        c = con.execute("SELECT (SELECT count(*) FROM book_updates), (SELECT count(*) FROM snapshots), "
                        "(SELECT count(*) FROM raw_messages)").fetchall()[0]
    seen.append(c)
    time.sleep(0.02)
print(json.dumps(seen))
"""


@pytest.mark.untraced
@pytest.mark.slow
def test_reader_process_reads_while_the_ingest_process_writes(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 10, "flush_rows": 15_000})
    rec = tmp_path / "rec.gz"
    with gzip.open(rec, "wt") as f:
        for m in random_stream(150_000, seed=9):
            f.write(f"{m.ts_local} {m.payload}\n")
    wh = cfg.resolve(cfg.warehouse.path)
    stop = tmp_path / "stop"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(wh), str(stop)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    writer = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.ingest",
            "--source",
            "file",
            "--path",
            str(rec),
            "--config",
            str(tmp_path / "config.yaml"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    stop.touch()
    out, err = reader.communicate(timeout=60)
    assert writer.returncode == 0, writer.stderr[-2000:]
    assert reader.returncode == 0, err[-2000:]
    seen = [tuple(c) for c in json.loads(out)]
    growing = [c for c in seen if 0 < c[0] < 150_001]
    assert len(growing) >= 3, f"the reader saw only {len(growing)} intermediate states in {time.monotonic() - t0:.0f}s"
    # every read sees whole transactions: book updates and their snapshots arrive together
    assert all(bu == sn for bu, sn, _ in seen)
    # and the warehouse only grows
    assert all(a[0] <= b[0] and a[2] <= b[2] for a, b in itertools.pairwise(seen))
    assert seen[-1][0] == 150_001
