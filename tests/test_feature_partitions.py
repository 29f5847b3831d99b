"""The feature build by partition: on a real local Dask cluster (a scheduler and two worker
processes, through Prefect's task runner) as a user runs it, its features and labels equal the
same partitions built serially in this process, row for row and bit for bit; partitions change
the rows of a one-pass build only in the last bits of the windowed sums."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from core.config import AppConfig, load_config
from core.errors import UserError
from core.timefmt import parse_time_ns
from features import NAMES
from pipelines.featurebuild import build, plan
from sim.source import SimSource
from tests.test_cli import assert_one_line_error, cli
from warehouse.db import reading
from warehouse.ingest import run_ingest

S = 1_000_000_000
MIDNIGHT = parse_time_ns("2026-01-05T00:00:00Z")


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 simulated minutes across midnight (23:50 to 00:15 UTC), ingested, nothing built."""
    root = tmp_path_factory.mktemp("market")
    cfg = _config(root, None)
    result = run_ingest(SimSource(cfg.sim, cfg.instrument, 50, 25 * 60 * S), cfg, detail="test")
    assert result.status == "completed"
    return cfg.resolve(cfg.warehouse.path)


def _config(folder: Path, partition: str | None) -> AppConfig:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "warehouse": {"path": "wh/l2.duckdb", "spool_dir": "wh/spool", "snapshot_levels": 20},
                "sim": {"start": "2026-01-04T23:50:00Z"},
                "features": {"chunk": "2m"},
                "compute": {"partition": partition},
            }
        )
    )
    return load_config(folder / "config.yaml")


def _with_data(market: Path, folder: Path, partition: str | None) -> AppConfig:
    cfg = _config(folder, partition)
    path = cfg.resolve(cfg.warehouse.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(market, path)
    return cfg


def _table(cfg: AppConfig, name: str) -> pa.Table:
    key = "feature_set" if name == "features" else "label_set"
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        table = con.sql(f"SELECT * FROM {name} ORDER BY venue, symbol, {key}, ts_ns").to_arrow_table()
    assert table is not None
    return table


def _bits(table: pa.Table) -> dict[str, np.ndarray]:
    """Every column as raw bits (floats as their int64 pattern, NULL as a mask of its own)."""
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        out[f"{name}:null"] = col.is_null().to_numpy(zero_copy_only=False)
        values = col.fill_null(0) if col.null_count else col
        a = values.to_numpy(zero_copy_only=False)
        out[name] = a.view(np.int64) if a.dtype == np.float64 else a
    return out


def test_a_build_on_a_two_worker_dask_cluster_equals_the_serial_build_bit_for_bit(market: Path, tmp_path: Path) -> None:
    serial = _with_data(market, tmp_path / "serial", "10m")
    # a first run to two minutes past midnight (its last minute of labels open), then the rest: the
    # cluster's run completes stored labels as well as building new rows
    build(serial, end_ns=MIDNIGHT + 2 * 60 * S)
    cluster = _config(tmp_path / "cluster", "10m")
    shutil.copytree(serial.resolve(serial.warehouse.path).parent, cluster.resolve(cluster.warehouse.path).parent)
    assert cluster.source_path is not None
    p = cli("-m", "flows.feature_build", "--config", str(cluster.source_path), "--cluster", "local", "--workers", "2",
            timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    done = build(serial)
    m = re.search(r"([\d,]+) feature rows .* and ([\d,]+) label rows .* \((\d+) partitions of 10m\)", p.stdout)
    assert m, p.stdout[-3000:]
    assert (int(m[1].replace(",", "")), int(m[2].replace(",", ""))) == (done.feature_rows, done.label_rows)
    # the two partitions left after 00:02, each printed as it is stored (Prefect logs the flow's prints on stderr)
    assert int(m[3]) == 2 and "partition 2/2 bybit/BTCUSDT from 2026-01-05T00:10:00.000Z" in p.stderr
    assert done.label_rows > done.feature_rows > 500  # the open labels of the first run were redone too
    for name in ("features", "labels"):
        a, b = _table(serial, name), _table(cluster, name)
        assert a.num_rows == b.num_rows > 1000
        with reading(serial.resolve(serial.warehouse.path)) as con:
            con.execute(f"ATTACH '{cluster.resolve(cluster.warehouse.path)}' AS other (READ_ONLY)")
            for x, y in ((name, f"other.{name}"), (f"other.{name}", name)):
                row = con.execute(f"SELECT count(*) FROM (SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y})").fetchone()
                assert row == (0,), (name, x, y)
        bits_a, bits_b = _bits(a), _bits(b)
        for column, values in bits_a.items():
            np.testing.assert_array_equal(values, bits_b[column], err_msg=f"{name}.{column}")


def test_partitions_change_a_one_pass_build_only_in_the_last_bits(market: Path, tmp_path: Path) -> None:
    one_pass = _with_data(market, tmp_path / "one", None)
    parts = _with_data(market, tmp_path / "parts", "5m")
    build(one_pass)
    progress: list[str] = []
    result = build(parts, on_progress=lambda _, line: progress.append(line))
    assert len(progress) == 5  # 23:55 to 00:15 in 5 minute partitions, and the data's last grid time, 00:15
    assert plan(parts, None, None, False, 5 * 60 * S)[1] == []  # built: no partition left, not an empty one
    f1, f2 = _table(one_pass, "features"), _table(parts, "features")
    assert result.feature_rows == f1.num_rows == f2.num_rows
    for column in ("ts_ns", "ts_update_ns"):
        assert f1.column(column).equals(f2.column(column))
    x1 = np.column_stack([f1.column(n).to_numpy() for n in NAMES])
    x2 = np.column_stack([f2.column(n).to_numpy() for n in NAMES])
    assert (x1 != x2).any()  # windowed sums restart where a partition does...
    np.testing.assert_allclose(x2, x1, rtol=1e-9, atol=1e-6)  # ...and differ in their last bits only
    l1, l2 = _table(one_pass, "labels"), _table(parts, "labels")
    assert result.label_rows == l1.num_rows == l2.num_rows
    for column in l1.column_names:
        if column == "tb_vol":  # the realized vol is a running sum too
            np.testing.assert_allclose(l2.column(column).to_numpy(), l1.column(column).to_numpy(), rtol=1e-9)
        else:
            assert l1.column(column).equals(l2.column(column)), column


def test_a_bad_cluster_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = _config(tmp_path, None)
    assert cfg.source_path is not None
    p = cli("-m", "flows.feature_build", "--config", str(cfg.source_path), "--cluster", "somewhere")
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert_one_line_error(p, "--cluster somewhere: local, or a scheduler address")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--partition", "0s"], "--partition 0s: a positive duration"),
        (["--partition", "soon"], "--partition: 'soon' is not a duration"),
        (["--cluster", "local", "--workers", "0"], "--workers 0: at least 1"),
    ],
)
def test_a_bad_partition_or_worker_count_is_a_user_error(tmp_path: Path, args: list[str], fragment: str) -> None:
    from flows.feature_build import main

    cfg = _config(tmp_path, None)
    with pytest.raises(UserError, match=re.escape(fragment)) as caught:
        main(["--config", str(cfg.source_path), *args])
    assert caught.value.exit_code == 2
