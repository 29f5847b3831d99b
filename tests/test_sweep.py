"""Backtest sweeps (strategy parameters x windows) as a user runs them, on a real local Dask
cluster (a scheduler and two worker processes, through Prefect's task runner): every cell's figures
equal the same cell run serially in this process."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest

from core.config import AppConfig
from pipelines import sweep
from tests.test_backtest import confidence, signalling
from tests.test_cli import assert_one_line_error, cli

pytestmark = pytest.mark.slow


def _config(cfg: AppConfig) -> str:
    assert cfg.source_path is not None
    return str(cfg.source_path)


def test_a_sweep_on_a_two_worker_dask_cluster_equals_the_serial_run(trained: tuple[AppConfig, Any]) -> None:
    cfg, _ = trained
    conf = confidence(cfg)
    thresholds = [f"{signalling(conf, share):.6f}" for share in (0.05, 0.2)]  # two operating points that trade
    p = cli("-m", "flows.sweep", "--config", _config(cfg), "--model", "1", "--set", f"threshold={','.join(thresholds)}",
            "--strategy", "passive", "--strategy", "baseline", "--window", "30m", "--cluster", "local", "--workers", "2",
            timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r"(\d+) cells in [\d.]+ s; tables in (\S+)", p.stdout)
    assert m, p.stdout[-3000:]
    folder = Path(m[2])
    with (folder / "cells.csv").open() as f:
        distributed = list(csv.DictReader(f))
    spans = sweep.windows(cfg, 30 * 60 * 10**9, None, None)
    cells = sweep.cells(["passive", "baseline"], {"threshold": thresholds}, spans)
    assert int(m[1]) == len(cells) == len(distributed) == 2 * 2 * len(spans) and len(spans) >= 3
    serial = [sweep.run_cell(cfg, "1", c) for c in cells]
    # the same figures, cell for cell (CSV holds them as Python wrote them: repr-exact floats)
    assert [{k: str(v) for k, v in r.items()} for r in serial] == [
        {k: v for k, v in r.items() if v != ""} for r in distributed
    ]
    assert sum(int(r["fills"]) for r in distributed if r.get("fills")) > 0  # they traded: the figures say something
    with (folder / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 4  # two strategies x two thresholds
    for s in summary:
        orders = int(s["orders"])
        assert ("not enough evidence" in s["verdict"]) == (orders < cfg.training.min_orders or int(s["windows"]) < 2)
        assert f"{s['strategy']} {s['params']}: net PnL" in p.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "strategy.no_such=1"], "--set strategy.no_such: no such setting"),
        (["--set", "threshold=abc"], "--set threshold=abc: not a number"),
        (["--set", "strategy.decision_delay=soon"], "--set strategy.decision_delay=soon"),
        (["--cluster", "somewhere"], "--cluster somewhere: local, or a scheduler address"),
        (["--strategy", "yolo"], "--strategy yolo"),
    ],
)
def test_bad_sweep_input_is_one_line_and_exit_2(trained: tuple[AppConfig, Any], args: list[str], fragment: str) -> None:
    cfg, _ = trained
    p = cli("-m", "flows.sweep", "--config", _config(cfg), "--model", "1", *args)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert_one_line_error(p, fragment)
