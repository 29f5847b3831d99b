"""Retention: old rows move to Parquet by day, checked before deletion; nothing a build needs moves.

One simulated warehouse (two hours across midnight, 1 s cadence) is made once per module and copied
into each test's own directory, so no test depends on another's changes."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from core.config import AppConfig, load_config
from core.errors import DataError, UserError
from core.timefmt import parse_time_ns
from tests.test_cli import assert_one_line_error, cli
from warehouse import retention
from warehouse.cli import main as warehouse_main
from warehouse.db import one, reading, writing
from warehouse.feature_tables import WARMUP_NS, label_history_ns
from warehouse.lake import unlisted as lake_unlisted

NS = 1_000_000_000
HOUR = 3600 * NS
START = "2026-01-05T22:30:00Z"
FEATURES_END = "2026-01-06T00:02:00Z"  # just past an hour: a rule without the warm-up would cut at 00:00
MOVABLE = ("raw_messages", *retention.BOOK_TABLES)
ALL_SERIES = (*MOVABLE, "sync_events", "snapshots_latest", "ingest_runs", "meta")

BASE: dict[str, Any] = {
    "warehouse": {"path": "wh/l2.duckdb", "spool_dir": "wh/spool", "snapshot_levels": 10, "lock_timeout": "20s"},
    "sim": {"start": START, "cadence": "1s"},
    "features": {"levels": 10},
}


def write_config(root: Path, **retain: object) -> AppConfig:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["warehouse"]["retention"] = retain
    (root / "config.yaml").write_text(yaml.safe_dump(data))
    return load_config(root / "config.yaml")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated hours, 22:30 to 00:30 UTC: raw messages, book, trades; no features."""
    from sim.source import SimSource
    from warehouse.ingest import run_ingest

    root = tmp_path_factory.mktemp("template")
    cfg = write_config(root)
    assert run_ingest(SimSource(cfg.sim, cfg.instrument, 50, 2 * HOUR), cfg, detail="test").status == "completed"
    return root / "wh"


@pytest.fixture(scope="module")
def template_built(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same warehouse with features and labels built up to 00:02 (the rest is still to build)."""
    from pipelines.featurebuild import build

    root = tmp_path_factory.mktemp("built")
    shutil.copytree(template, root / "wh")
    result = build(write_config(root), end_ns=parse_time_ns(FEATURES_END))
    assert result.feature_rows > 0 and result.label_rows > 0
    return root / "wh"


def copy_of(wh: Path, root: Path, **retain: object) -> AppConfig:
    shutil.copytree(wh, root / "wh")
    return write_config(root, **retain)


def local_archive(cfg: AppConfig) -> Path:
    """The archive folder of a config whose lake is local (all of this module's)."""
    archive = cfg.resolve(cfg.warehouse.retention.archive)
    assert isinstance(archive, Path)
    return archive


def counts(path: Path) -> dict[str, int]:
    with reading(path) as con:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for t in ALL_SERIES}


def archive_of(cfg: AppConfig, table: str) -> str:
    """Every Parquet file of ``table`` on disk, listed in the lake's manifest or not."""
    return f"read_parquet('{local_archive(cfg)}/{table}/**/*.parquet', hive_partitioning = false)"


def differing_rows(cfg: AppConfig, original: Path, table: str) -> int:
    """Rows of the original table a reader of the whole history does not see, and the other way round."""
    return sum(missing_and_extra(cfg, original, table))


def missing_and_extra(cfg: AppConfig, original: Path, table: str) -> tuple[int, int]:
    """(original rows a reader of all history does not see, rows it sees more often than originally):
    the reader's view is the DuckDB rows and the lake's listed files (warehouse/lake.py)."""
    with reading(cfg.resolve(cfg.warehouse.path), history=(None, None)) as con:
        con.execute(f"ATTACH '{original}' AS orig (READ_ONLY)")
        cols = ", ".join(r[0] for r in con.execute(f"DESCRIBE orig.{table}").fetchall())
        held = f"SELECT {cols} FROM {table}"
        a = one(con, f"SELECT count(*) FROM (SELECT {cols} FROM orig.{table} EXCEPT ALL ({held}))")
        b = one(con, f"SELECT count(*) FROM (({held}) EXCEPT ALL SELECT {cols} FROM orig.{table})")
    assert a is not None and b is not None
    return int(a[0]), int(b[0])


def archived_rows(cfg: AppConfig, table: str) -> int:
    return int(duckdb.sql(f"SELECT count(*) FROM {archive_of(cfg, table)}").fetchall()[0][0])


def built_differently(ref: AppConfig, cfg: AppConfig) -> dict[str, int]:
    """Feature and label rows held by one of the two warehouses and not the other (multisets)."""
    out = {}
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        con.execute(f"ATTACH '{ref.resolve(ref.warehouse.path)}' AS ref (READ_ONLY)")
        for table in ("features", "labels"):
            diff = one(
                con,
                f"SELECT (SELECT count(*) FROM (FROM {table} EXCEPT ALL FROM ref.{table})) + "
                f"(SELECT count(*) FROM (FROM ref.{table} EXCEPT ALL FROM {table}))",
            )
            out[table] = int(diff[0]) if diff else -1
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_then_delete_round_trip_equals_the_original_rows(template: Path, tmp_path: Path) -> None:
    cfg = copy_of(template, tmp_path, raw="30m")
    before = counts(cfg.resolve(cfg.warehouse.path))
    plan, moved = retention.run(cfg)
    # the newest raw message is at about 00:30: 30 minutes back, cut to the hour, is 00:00
    assert plan.cutoffs.raw_ns == parse_time_ns("2026-01-06T00:00:00Z")
    assert {h.table for h in plan.hours} == {"raw_messages"}
    archive = local_archive(cfg)
    files = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*.parquet"))
    assert files == [
        "raw_messages/venue=bybit/date=2026-01-05/part-22.parquet",
        "raw_messages/venue=bybit/date=2026-01-05/part-23.parquet",
    ]
    after = counts(cfg.resolve(cfg.warehouse.path))
    n = archived_rows(cfg, "raw_messages")
    assert n == sum(moved.rows.values()) > 0
    assert after["raw_messages"] == before["raw_messages"] - n
    assert {t: after[t] for t in ALL_SERIES if t != "raw_messages"} == {
        t: before[t] for t in ALL_SERIES if t != "raw_messages"
    }  # book.retention not set: the book stays
    assert differing_rows(cfg, template / "l2.duckdb", "raw_messages") == 0
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT min(ts_local_ns) FROM raw_messages")
    assert row is not None and row[0] >= parse_time_ns("2026-01-06T00:00:00Z")


def test_dry_run_changes_nothing(template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = copy_of(template, tmp_path, raw="30m", book="10m")
    path = cfg.resolve(cfg.warehouse.path)
    before = digest(path)
    assert warehouse_main(["retain", "--dry-run", "--config", str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert digest(path) == before
    assert not list(local_archive(cfg).rglob("*.parquet"))
    plan = retention.plan(cfg)
    rows = sum(h.rows for h in plan.hours if h.table == "raw_messages")
    assert f"would move raw_messages  2026-01-05:  2 h, {rows:>12,} rows" in out
    assert "would move book_updates" not in out
    assert "no features built yet: every book row is kept" in out
    assert "dry run: nothing exported, nothing deleted" in out


def test_rerun_after_a_crash_between_export_and_delete_neither_duplicates_nor_loses(
    template: Path, tmp_path: Path
) -> None:
    # The state a crash after the rename and before the DELETE's commit leaves: every hour's file in
    # place and its rows still in DuckDB, plus a half-written .partial from an interrupted next hour.
    done = copy_of(template, tmp_path / "done", raw="30m")
    retention.run(done)
    cfg = copy_of(template, tmp_path / "crashed", raw="30m")
    shutil.copytree(local_archive(done), local_archive(cfg))
    archive = local_archive(cfg)
    (archive / "raw_messages" / "venue=bybit" / "date=2026-01-06").mkdir()
    (archive / "raw_messages" / "venue=bybit" / "date=2026-01-06" / "part-00.parquet.partial").write_bytes(b"PAR1 torn")
    exported = archived_rows(cfg, "raw_messages")
    assert counts(cfg.resolve(cfg.warehouse.path)) == counts(template / "l2.duckdb")
    # files not committed to the manifest are not read: a reader of all history sees each row once
    assert missing_and_extra(cfg, template / "l2.duckdb", "raw_messages") == (0, 0)

    _, moved = retention.run(cfg)
    assert sum(moved.rows.values()) == exported
    assert archived_rows(cfg, "raw_messages") == exported  # merged with the files there, no row twice
    assert differing_rows(cfg, template / "l2.duckdb", "raw_messages") == 0
    assert not list(archive.rglob("*.partial"))
    # and once more: nothing left to move, nothing changes
    _, again = retention.run(cfg)
    assert sum(again.rows.values()) == 0 and archived_rows(cfg, "raw_messages") == exported


def test_rows_ingested_again_after_archiving_are_merged_not_duplicated(template: Path, tmp_path: Path) -> None:
    cfg = copy_of(template, tmp_path, raw="30m")
    retention.run(cfg)
    first = archived_rows(cfg, "raw_messages")
    with writing(cfg.resolve(cfg.warehouse.path)) as con:  # an old recording imported again: 100 archived rows
        con.execute(
            f"INSERT INTO raw_messages SELECT venue, stream, ts_local_ns, payload FROM {archive_of(cfg, 'raw_messages')} LIMIT 100"
        )
    _, moved = retention.run(cfg)
    assert sum(moved.rows.values()) == 100
    assert archived_rows(cfg, "raw_messages") == first
    assert differing_rows(cfg, template / "l2.duckdb", "raw_messages") == 0


def test_without_features_no_book_row_moves(template: Path, tmp_path: Path) -> None:
    cfg = copy_of(template, tmp_path, raw=None, book="1m")
    before = counts(cfg.resolve(cfg.warehouse.path))
    plan, moved = retention.run(cfg)
    assert plan.cutoffs.book_ns is None and "no features built yet" in plan.cutoffs.book_note
    assert plan.hours == [] and sum(moved.rows.values()) == 0
    assert counts(cfg.resolve(cfg.warehouse.path)) == before


def test_book_rows_the_next_build_reads_are_never_moved(template_built: Path, tmp_path: Path) -> None:
    from pipelines.featurebuild import build

    ref = copy_of(template_built, tmp_path / "ref")
    cfg = copy_of(template_built, tmp_path / "pruned", raw="1m", book="1m")
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        done = int(con.execute("SELECT max(ts_ns) FROM features").fetchall()[0][0])
        open_from = con.execute("SELECT min(ts_ns) FROM labels WHERE open").fetchall()[0][0]
    assert open_from is not None  # labels near 00:02 wait for data after it
    needed = min(done + 1 - WARMUP_NS, int(open_from) - label_history_ns(cfg))
    plan, moved = retention.run(cfg)
    assert plan.cutoffs.book_ns is not None and plan.cutoffs.book_ns <= needed
    assert plan.cutoffs.book_ns == needed // HOUR * HOUR  # the hour holding what the build needs stays
    assert {t for t, _ in moved.rows} == {"raw_messages", *retention.BOOK_TABLES}
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        for table in retention.BOOK_TABLES:
            col = "bucket_ns" if table == "snapshots_1s" else "ts_exchange_ns"
            row = one(con, f"SELECT min({col}) FROM {table}")
            assert row is not None and row[0] >= plan.cutoffs.book_ns
    for table in retention.BOOK_TABLES:
        assert differing_rows(cfg, template_built / "l2.duckdb", table) == 0
    # The next build on the pruned warehouse writes exactly what it writes on the whole one.
    a, b = build(ref), build(cfg)
    assert (a.feature_rows, a.label_rows) == (b.feature_rows, b.label_rows) and a.feature_rows > 0
    assert built_differently(ref, cfg) == {"features": 0, "labels": 0}


def test_compact_gives_the_disk_back_and_keeps_every_row(template: Path, tmp_path: Path) -> None:
    plain = copy_of(template, tmp_path / "plain", raw="30m")
    _, kept = retention.run(plain)
    cfg = copy_of(template, tmp_path / "compact", raw="30m")
    path = cfg.resolve(cfg.warehouse.path)
    _, moved = retention.run(cfg, compact=True)
    assert moved.compacted and not kept.compacted
    assert moved.file_after < moved.file_before and moved.file_after == path.stat().st_size
    assert kept.file_after >= moved.file_after  # a DELETE alone does not shrink the file
    assert counts(path) == counts(plain.resolve(plain.warehouse.path))
    assert not path.with_name(path.name + ".compact").exists() and not Path(f"{path}.wal").exists()
    assert differing_rows(cfg, template / "l2.duckdb", "raw_messages") == 0


def test_show_prints_the_growth_rate_and_the_archive(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = copy_of(template, tmp_path, raw="30m")
    retention.run(cfg)
    assert warehouse_main(["show", "--config", str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out
    growth = out.split("  growth:")[1]
    per_hour = float(growth.split("per hour of data: ")[1].split(" MB")[0].replace(",", ""))
    assert per_hour > 0
    assert "per hour of ingest wall time: " in growth and "1 finished ingest runs" in growth
    raw_line = next(ln for ln in growth.splitlines() if ln.strip().startswith("raw_messages "))
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        n_raw = int(con.execute("SELECT count(*) FROM raw_messages").fetchall()[0][0])
    assert f"{n_raw:,}" in raw_line and "0.5" in raw_line  # half an hour of raw messages left
    archive = local_archive(cfg)
    size = sum(p.stat().st_size for p in archive.rglob("*.parquet"))
    lake_line = next(ln for ln in out.split("  lake ")[1].splitlines() if ln.strip().startswith("raw_messages "))
    moved = archived_rows(cfg, "raw_messages")
    assert lake_line.split()[1:5] == ["bybit/*", "2", "1", f"{moved:,}"]  # pair, files, days, rows
    assert "2026-01-05 2026-01-05" in lake_line and f"{size / moved:,.1f}" in lake_line  # bytes per row
    assert f"total {size / 1e6:,.1f} MB in 2 files" in out and "not in the lake's manifest" not in out


def test_retain_as_a_user_types_it(template: Path, tmp_path: Path) -> None:
    copy_of(template, tmp_path, raw="30m")
    conf = str(tmp_path / "config.yaml")
    p = cli("-m", "warehouse", "retain", "--help")
    assert p.returncode == 0 and "--dry-run" in p.stdout and "--compact" in p.stdout
    p = cli("-m", "warehouse", "retain", "--dry-run", "--config", conf)
    assert p.returncode == 0, p.stderr
    assert "would move raw_messages  2026-01-05:  2 h" in p.stdout
    p = cli("-m", "warehouse", "retain", "--config", conf)
    assert p.returncode == 0, p.stderr
    assert "raw_messages 2026-01-05: " in p.stdout and "rows moved" in p.stdout and "checkpointed" in p.stdout
    p = cli("-m", "warehouse", "retain", "--config", conf)
    assert p.returncode == 0 and "nothing to move" in p.stdout


def test_retain_bad_input_is_one_line_with_its_exit_code(template: Path, tmp_path: Path) -> None:
    cfg = copy_of(template, tmp_path, raw="30m")
    conf = tmp_path / "config.yaml"
    data = yaml.safe_load(conf.read_text())
    path = cfg.resolve(cfg.warehouse.path)
    before = digest(path)

    data["warehouse"]["retention"] = {"raw": "often"}
    conf.write_text(yaml.safe_dump(data))
    p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "warehouse.retention.raw")
    assert p.returncode == 2

    data["warehouse"]["retention"] = {"raw": "30m", "archive": "not-a-dir"}
    conf.write_text(yaml.safe_dump(data))
    (tmp_path / "not-a-dir").write_text("a file")
    p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "is a file, not a directory")
    assert p.returncode == 2

    data["warehouse"]["retention"] = {"raw": "30m"}
    data["warehouse"]["lock_timeout"] = "1s"
    conf.write_text(yaml.safe_dump(data))
    with writing(path):  # another process holds the warehouse
        p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "stayed locked")
    assert p.returncode == 4

    archive = local_archive(cfg)
    archive.mkdir(parents=True, exist_ok=True)
    with (archive / ".retain.lock").open("a") as f:  # another retain runs
        fcntl.flock(f, fcntl.LOCK_EX)
        p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "another retain is running")
    assert p.returncode == 4
    assert digest(path) == before and not list(archive.rglob("*.parquet"))

    data["warehouse"]["path"] = "wh/elsewhere.duckdb"
    data["warehouse"]["retention"] = {"raw": "30m", "archive": "elsewhere"}
    conf.write_text(yaml.safe_dump(data))
    p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "no warehouse here yet")
    assert (
        p.returncode == 2 and not (tmp_path / "elsewhere").exists() and not (tmp_path / "wh/elsewhere.duckdb").exists()
    )


def test_the_archive_directory_unwritable_stops_before_deleting(template: Path, tmp_path: Path) -> None:
    cfg = copy_of(template, tmp_path, raw="30m")
    archive = local_archive(cfg)
    (archive / "raw_messages" / "venue=bybit").mkdir(parents=True)
    (archive / "raw_messages" / "venue=bybit" / "date=2026-01-05").write_text("in the way")  # the day's folder
    before = counts(cfg.resolve(cfg.warehouse.path))
    with pytest.raises(UserError, match="cannot create the archive directory") as err:
        retention.run(cfg)
    assert err.value.exit_code == 4
    assert counts(cfg.resolve(cfg.warehouse.path)) == before


def test_retention_config_defaults_keep_the_book_and_accept_null() -> None:
    from core.config import RetentionConfig

    d = RetentionConfig()
    assert d.book is None and d.raw == 3 * 24 * HOUR and not d.compact
    assert RetentionConfig.model_validate({"raw": None}).raw is None
    assert RetentionConfig.model_validate({"book": "14d"}).book == 14 * 24 * HOUR


def test_the_retain_flow_moves_what_the_command_moves(template: Path, tmp_path: Path) -> None:
    cfg = copy_of(template, tmp_path, raw="30m")
    expected = sum(h.rows for h in retention.plan(cfg).hours)
    p = cli("-m", "flows.retain", "--config", str(tmp_path / "config.yaml"), env={"PREFECT_HOME": str(tmp_path / "pf")})
    assert p.returncode == 0, p.stderr
    assert f"moved {expected:,} rows to " in p.stdout
    assert archived_rows(cfg, "raw_messages") == expected
    (tmp_path / "bad.yaml").write_text("warehouse: {retention: {book: often}}\n")
    p = cli("-m", "flows.retain", "--config", str(tmp_path / "bad.yaml"))
    assert_one_line_error(p, "warehouse.retention.book")
    assert p.returncode == 2


@pytest.mark.untraced
def test_a_retain_killed_midway_and_run_again_ends_as_one_clean_run(template: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    cfg = copy_of(template, tmp_path, raw="1m")
    archive = local_archive(cfg)
    expected = sum(h.rows for h in retention.plan(cfg).hours)
    proc = subprocess.Popen(
        [sys.executable, "-m", "warehouse", "retain", "--config", str(tmp_path / "config.yaml")],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(archive.rglob("*.parquet")):  # the first hour is in place: kill during the next one
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    # killed: nothing lost, and a reader sees no row twice (an hour whose file is in place but not
    # yet listed in the manifest is read from DuckDB until the re-run merges it)
    assert missing_and_extra(cfg, template / "l2.duckdb", "raw_messages") == (0, 0)

    p = cli("-m", "warehouse", "retain", "--config", str(tmp_path / "config.yaml"))
    assert p.returncode == 0, p.stderr
    assert archived_rows(cfg, "raw_messages") == expected
    assert differing_rows(cfg, template / "l2.duckdb", "raw_messages") == 0
    assert not list(archive.rglob("*.partial"))


def unpruned_and_pruned(built: Path, tmp_path: Path) -> tuple[AppConfig, AppConfig, retention.Plan]:
    """Two copies of ``built``: as it is (ref/), and with its book moved to the lake as far as the
    next build allows (pruned/); the pruned copy's retention plan."""
    ref = copy_of(built, tmp_path / "ref")
    cfg = copy_of(built, tmp_path / "pruned", raw="1m", book="1m")
    plan, _ = retention.run(cfg)
    assert plan.cutoffs.book_ns is not None and plan.cutoffs.book_ns > parse_time_ns(START)
    return ref, cfg, plan


def test_a_backtest_window_in_the_lake_reads_the_same_market_as_before_the_move(
    template_built: Path, tmp_path: Path
) -> None:
    from pipelines.replay import load_market

    ref, cfg, plan = unpruned_and_pruned(template_built, tmp_path)
    lo = parse_time_ns(START) + 10 * 60 * NS
    for start, end in ((lo, lo + 20 * 60 * NS), (lo, None), (None, None)):  # in the lake; across it; everything
        a, b = load_market(ref, start, end), load_market(cfg, start, end)
        assert len(b.books) == len(a.books) > 0 and len(b.trades) == len(a.trades) > 0
        for x, y in ((a.books, b.books), (a.trades, b.trades)):
            for name in x._fields:
                assert (getattr(x, name) == getattr(y, name)).all(), name
    # a reader that does not ask for history sees only what the DuckDB file holds
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT count(*) FROM snapshots WHERE ts_exchange_ns < ?", [plan.cutoffs.book_ns])
    assert row == (0,)


def test_files_of_the_first_layout_are_rewritten_into_the_lake_and_nothing_is_lost(
    template: Path, tmp_path: Path
) -> None:
    # what a retain of the first layout left: every pair's rows of an hour in <table>/date=D/part-HH.parquet
    cfg = copy_of(template, tmp_path, raw="30m")
    path, archive = cfg.resolve(cfg.warehouse.path), local_archive(cfg)
    old = archive / "raw_messages" / "date=2026-01-05" / "part-22.parquet"
    old.parent.mkdir(parents=True)
    hour = f"ts_local_ns >= {parse_time_ns('2026-01-05T22:00:00Z')} AND ts_local_ns < {parse_time_ns('2026-01-05T23:00:00Z')}"
    with writing(path) as con:
        con.execute(f"COPY (SELECT * FROM raw_messages WHERE {hour}) TO '{old}' (FORMAT PARQUET)")
        n_old = int(con.execute(f"DELETE FROM raw_messages WHERE {hour}").fetchall()[0][0])
    assert n_old > 0
    with reading(path) as con:
        assert lake_unlisted(con, path.parent, archive) == [old]  # warehouse show would say so
    _, moved = retention.run(cfg)
    assert moved.migrated == 1 and not old.exists() and not old.parent.exists()
    assert "rewrote 1 files of the first layout" in moved.summary()
    assert (archive / "raw_messages" / "venue=bybit" / "date=2026-01-05" / "part-22.parquet").exists()
    assert differing_rows(cfg, template / "l2.duckdb", "raw_messages") == 0
    with reading(path) as con:
        assert lake_unlisted(con, path.parent, archive) == []


def test_a_feature_set_built_after_its_book_moved_reads_the_book_from_the_lake(
    template_built: Path, tmp_path: Path
) -> None:
    from pipelines.featurebuild import build

    _, _, plan = unpruned_and_pruned(template_built, tmp_path)
    # another feature set (a 2 s grid): built from the pair's first book update on
    for root in (tmp_path / "ref", tmp_path / "pruned"):
        data = yaml.safe_load((root / "config.yaml").read_text())
        data["features"]["grid"] = "2s"
        (root / "config.yaml").write_text(yaml.safe_dump(data))
    ref, cfg = load_config(tmp_path / "ref" / "config.yaml"), load_config(tmp_path / "pruned" / "config.yaml")
    a, b = build(ref), build(cfg)
    assert (b.feature_rows, b.label_rows) == (a.feature_rows, a.label_rows) and b.feature_rows > 0
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        first = one(con, "SELECT min(ts_ns) FROM features WHERE feature_set = ?", [b.feature_set])
    assert first is not None and first[0] < plan.cutoffs.book_ns  # rows over the moved hours
    assert built_differently(ref, cfg) == {"features": 0, "labels": 0}


def test_a_lake_file_gone_missing_stops_the_reader_in_one_line(template_built: Path, tmp_path: Path) -> None:
    from pipelines.replay import load_market

    _, cfg, _ = unpruned_and_pruned(template_built, tmp_path)
    archive = local_archive(cfg)
    gone = sorted((archive / "snapshots").rglob("*.parquet"))[0]
    gone.unlink()
    with pytest.raises(DataError, match="listed in the lake's manifest \\(snapshots\\) but missing") as err:
        load_market(cfg, None, None)
    assert str(gone) in str(err.value) and err.value.exit_code == 3
    load_market(cfg, parse_time_ns(FEATURES_END), None)  # a window the missing hour is not in still reads


@pytest.mark.untraced
def test_an_export_of_snapshots_reads_the_lake_as_the_file(template_built: Path, tmp_path: Path) -> None:
    ref, cfg, _ = unpruned_and_pruned(template_built, tmp_path)
    window = ["--start", "2026-01-05T22:40:00Z", "--end", "2026-01-05T23:10:00Z"]  # in the lake, and past it
    for every in (["--every", "1s"], ["--every", "250ms"], []):
        outs = []
        for c in (ref, cfg):
            out = tmp_path / f"{c.source_path.parent.name}-{len(every)}-{every[-1] if every else 'all'}.parquet"
            args = [
                "export",
                "--table",
                "snapshots",
                *window,
                *every,
                "--out",
                str(out),
                "--config",
                str(c.source_path),
            ]
            if c is cfg:  # the warehouse with a lake, as a user types it
                p = cli("-m", "warehouse", *args)
                assert p.returncode == 0, p.stderr
            else:
                assert warehouse_main(args) == 0
            outs.append(duckdb.sql(f"SELECT * FROM read_parquet('{out}') ORDER BY ALL").fetchall())
        assert outs[0] == outs[1] and len(outs[0]) > 0, every
