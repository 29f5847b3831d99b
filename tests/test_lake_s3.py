"""The lake on S3-compatible storage: retention uploads, readers read back, a crash merges.

Against a real S3 server on 127.0.0.1 (moto's, ``python -m moto.server``, started once for the
module), never a mock of the client: the same pyarrow S3 filesystem, requests and signatures a
MinIO or AWS bucket gets. The warehouses are test_retention's templates (two simulated hours
across midnight; one with features built), copied into each test's own directory; each test has
its own bucket."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.dataset as pads
import pytest
from pyarrow import fs as pafs

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import parse_time_ns
from tests import test_retention as tr
from tests.conftest import free_port
from tests.test_cli import assert_one_line_error, cli
from warehouse import retention
from warehouse.db import one, reading

template = tr.template
NS = 1_000_000_000
KEY_ID, SECRET = "lake-test-key", "lake-test-secret"  # moto accepts any; set in the environment only


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, up until the module's tests are done."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "moto.server exited: is moto installed (requirements.lock)?"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto.server did not listen within 30 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def built(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template with features and labels built to 23:10 (shorter than test_retention's, for
    time): the book's 22:00 hour is one no build needs any more."""
    from pipelines.featurebuild import build

    root = tmp_path_factory.mktemp("built")
    shutil.copytree(template, root / "wh")
    assert build(tr.write_config(root), end_ns=parse_time_ns("2026-01-05T23:10:00Z")).feature_rows > 0
    return root / "wh"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def bucket(endpoint: str, name: str) -> pafs.S3FileSystem:
    """A new bucket on the server, and a filesystem to look into it."""
    s3 = pafs.S3FileSystem(
        access_key=KEY_ID,
        secret_key=SECRET,
        region="us-east-1",
        endpoint_override=endpoint.removeprefix("http://"),
        scheme="http",
        allow_bucket_creation=True,
    )
    s3.create_dir(name)
    return s3


def objects(s3: pafs.S3FileSystem, prefix: str) -> dict[str, int]:
    """Every object below ``prefix`` (bucket/key), by key, with its size."""
    infos = s3.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return {i.path: int(i.size) for i in infos if i.type == pafs.FileType.File}


def object_rows(s3: pafs.S3FileSystem, prefix: str) -> int:
    keys = sorted(k for k in objects(s3, prefix) if k.endswith(".parquet"))
    return pads.dataset(keys, filesystem=s3, format="parquet").count_rows() if keys else 0


def manifest(cfg: AppConfig) -> list[tuple[str, int]]:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        return [(str(p), int(b)) for p, b in con.execute("SELECT path, bytes FROM lake_parts ORDER BY path").fetchall()]


@pytest.mark.slow
def test_a_retain_to_s3_is_read_back_row_for_row_and_replays_the_same_market(
    built: Path, s3_endpoint: str, tmp_path: Path
) -> None:
    from pipelines.replay import load_market

    s3 = bucket(s3_endpoint, "lake-e2e")
    ref = tr.copy_of(built, tmp_path / "ref")
    cfg = tr.copy_of(
        built, tmp_path / "pruned", raw="1m", book="1m", archive="s3://lake-e2e/lake", s3_endpoint=s3_endpoint
    )
    conf = str(tmp_path / "pruned" / "config.yaml")
    p = cli("-m", "warehouse", "retain", "--config", conf)
    assert p.returncode == 0, p.stderr
    assert "into s3://lake-e2e/lake" in p.stdout and "rows moved" in p.stdout
    assert KEY_ID not in p.stdout + p.stderr and SECRET not in p.stdout + p.stderr

    # every manifest line is an object of that size, and nothing stays on the local disk
    listed = manifest(cfg)
    stored = objects(s3, "lake-e2e/lake")
    assert listed and {f"s3://{k}": n for k, n in stored.items() if k.endswith(".parquet")} == dict(listed)
    assert {t for (path, _) in listed for t in tr.MOVABLE if f"/lake/{t}/venue=bybit/" in path} == set(tr.MOVABLE)
    assert not list((tmp_path / "pruned").rglob("*.parquet*"))
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        assert con.execute("SELECT * FROM lake_s3").fetchall() == [("lake-e2e", s3_endpoint, "us-east-1")]

    # a reader of all history sees every original row once, from DuckDB and the bucket together
    for table in tr.MOVABLE:
        assert tr.missing_and_extra(cfg, built / "l2.duckdb", table) == (0, 0), table
    lo = parse_time_ns(tr.START) + 10 * 60 * NS
    for start, end in ((lo, lo + 20 * 60 * NS), (None, None)):  # a window in the lake; everything
        a, b = load_market(ref, start, end), load_market(cfg, start, end)
        assert len(b.books) == len(a.books) > 0 and len(b.trades) == len(a.trades) > 0
        for x, y in ((a.books, b.books), (a.trades, b.trades)):
            for name in x._fields:
                assert (getattr(x, name) == getattr(y, name)).all(), name

    p = cli("-m", "warehouse", "show", "--config", conf)
    assert p.returncode == 0, p.stderr
    lake_part = p.stdout.split("  lake s3://lake-e2e/lake ")[1]
    n_files = sum(1 for path, _ in listed if "/raw_messages/" in path)
    raw = next(ln for ln in lake_part.splitlines() if ln.strip().startswith("raw_messages "))
    assert raw.split()[1:3] == ["bybit/*", str(n_files)]
    assert f"in {len(listed):,} files" in lake_part and "not looked for on S3" in lake_part

    # credentials come from the environment only: a reader without them is told so in one line
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_SECRET_ACCESS_KEY")
        with pytest.raises(UserError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):  # noqa: SIM117
            with reading(cfg.resolve(cfg.warehouse.path), history=(None, None)):
                pass


@pytest.mark.slow
def test_a_retain_stopped_after_its_upload_merges_on_the_next_run_without_duplicates(
    template: Path, s3_endpoint: str, tmp_path: Path
) -> None:
    # The state a crash after an upload and before the commit leaves: the objects in the bucket,
    # their rows still in DuckDB, no manifest line. Made by a retain of another copy into the same place.
    s3 = bucket(s3_endpoint, "lake-crash")
    place = {"archive": "s3://lake-crash/lake", "s3_endpoint": s3_endpoint}
    done = tr.copy_of(template, tmp_path / "done", raw="30m", **place)
    _, first = retention.run(done)
    exported = sum(first.rows.values())
    uploaded = objects(s3, "lake-crash/lake")
    assert exported > 0 and object_rows(s3, "lake-crash/lake") == exported
    cfg = tr.copy_of(template, tmp_path / "crashed", raw="30m", **place)
    path = cfg.resolve(cfg.warehouse.path)
    assert tr.counts(path) == tr.counts(template / "l2.duckdb")
    with reading(path) as con:
        assert one(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'lake_parts'") == (0,)
    assert tr.missing_and_extra(cfg, template / "l2.duckdb", "raw_messages") == (0, 0)  # objects not listed: unread

    p = cli("-m", "warehouse", "retain", "--config", str(tmp_path / "crashed" / "config.yaml"))
    assert p.returncode == 0, p.stderr
    assert f"moved {exported:,} rows" in p.stdout
    assert objects(s3, "lake-crash/lake").keys() == uploaded.keys()
    assert object_rows(s3, "lake-crash/lake") == exported  # merged with the objects there, no row twice
    assert tr.missing_and_extra(cfg, template / "l2.duckdb", "raw_messages") == (0, 0)
    assert not list((tmp_path / "crashed").rglob("*.parquet*"))  # the staged copies are gone
    _, again = retention.run(cfg)
    assert sum(again.rows.values()) == 0 and object_rows(s3, "lake-crash/lake") == exported


@pytest.mark.slow
def test_s3_settings_and_failures_are_one_line_and_never_show_a_credential(
    template: Path, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tr.copy_of(template, tmp_path, raw="30m", archive="s3://lake-fail/lake", s3_endpoint=s3_endpoint)
    conf = tmp_path / "config.yaml"
    path = cfg.resolve(cfg.warehouse.path)
    before = tr.digest(path)
    text = conf.read_text()

    conf.write_text(text.replace("s3://lake-fail/lake", "s3://AKIDLEAKED:leaked-secret@lake-fail/lake"))
    p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "warehouse.retention.archive", "credentials in the URL", "AWS_SECRET_ACCESS_KEY")
    assert p.returncode == 2 and "leaked" not in p.stdout + p.stderr and "AKIDLEAKED" not in p.stdout + p.stderr

    conf.write_text(text.replace(s3_endpoint, s3_endpoint.replace("//", "//AKIDLEAKED:leaked-secret@")))
    p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "warehouse.retention.s3_endpoint", "credentials in the URL")
    assert p.returncode == 2 and "leaked" not in p.stdout + p.stderr and "AKIDLEAKED" not in p.stdout + p.stderr

    conf.write_text(text)
    with monkeypatch.context() as mp:
        mp.delenv("AWS_ACCESS_KEY_ID")
        p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "the lake is on S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    assert p.returncode == 2 and tr.digest(path) == before  # refused before the warehouse was opened

    # the bucket does not exist: the upload fails, one line, exit 4, nothing deleted
    p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "s3://lake-fail/lake/raw_messages/venue=bybit/date=2026-01-05/part-22.parquet")
    assert p.returncode == 4 and SECRET not in p.stderr

    closed = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    conf.write_text(text.replace(s3_endpoint, closed))
    p = cli("-m", "warehouse", "retain", "--config", str(conf))
    assert_one_line_error(p, "cannot")
    assert p.returncode == 4
    assert tr.counts(path) == tr.counts(template / "l2.duckdb") and not list(tmp_path.rglob("*.parquet*"))
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'lake%'").fetchall() == [(0,)]
