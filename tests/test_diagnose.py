"""python -m live.diagnose against real parts: DuckDB warehouses filled by the simulator, an MLflow
registry with a champion, the stand-in exchange over 127.0.0.1 through ccxt, and runner journals."""

from __future__ import annotations

import math
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from core.clock import ManualClock
from core.config import AppConfig, load_config
from core.timefmt import format_ns
from live import diagnose
from live.diagnose import FAIL, OK, WARN, Check, Status, human
from models import registry
from sim.source import SimSource
from standin import BackgroundStandin
from standin.feeds import SimFeed
from tests.conftest import ConfigFactory, free_port
from tests.test_cli import assert_one_line_error, cli
from warehouse.ingest import run_ingest
from warehouse.journal import Journal, default_path

NS = 1_000_000_000
ROW = re.compile(r"^(\S+)\s+(OK|WARN|FAIL)\s+(.*)$")
T0 = 1_767_571_200 * NS  # journal records' times (2026-01-05)


@dataclass(frozen=True)
class Warehouses:
    fresh: Path  # 20 s of book data ending 10 s before the fixture ran
    gapped: Path  # two stretches 10 s apart


def _ingest(root: Path, name: str, spans: list[tuple[int, int]]) -> Path:
    """Simulated book data over each (start, end) into root/name, by the real ingest."""
    (root / f"{name}.yaml").write_text(yaml.safe_dump({"warehouse": {"path": f"{name}.duckdb", "spool_dir": name}}))
    cfg = load_config(root / f"{name}.yaml")
    for start, end in spans:
        sim = cfg.sim.model_copy(update={"start": start})
        assert run_ingest(SimSource(sim, cfg.instrument, 50, end - start), cfg, detail="test").status == "completed"
    return cfg.resolve(cfg.warehouse.path)


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory: pytest.TempPathFactory) -> Warehouses:
    root = tmp_path_factory.mktemp("diagnose_wh")
    now = time.time_ns()
    fresh = _ingest(root, "fresh", [(now - 30 * NS, now - 10 * NS)])
    gapped = _ingest(root, "gapped", [(now - 60 * NS, now - 40 * NS), (now - 30 * NS, now - 20 * NS)])
    return Warehouses(fresh, gapped)


@pytest.fixture(scope="module")
def champion(trained: tuple[AppConfig, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A registry of our own (a copy of the session's) where version 1 is the champion."""
    base = trained[0]
    store = tmp_path_factory.mktemp("diagnose_mlruns") / "mlflow.db"
    shutil.copy(base.resolve(base.mlflow.store), store)
    mlflow = {"store": str(store), "artifacts": str(base.resolve(base.mlflow.artifacts))}
    cfg = base.model_copy(update={"mlflow": base.mlflow.model_copy(update={"store": store})})
    registry.connect(cfg).set_registered_model_alias(cfg.mlflow.model_name, registry.CHAMPION, "1")
    return mlflow


@pytest.fixture(scope="module")
def standin() -> Iterator[BackgroundStandin]:
    cfg = AppConfig()
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50)) as server:
        yield server


def configure(make_config: ConfigFactory, **sections: dict[str, Any]) -> AppConfig:
    """The test's config.yaml: journal and logs in tmp_path, the given sections merged over that."""
    data: dict[str, dict[str, Any]] = {"live": {"journal_dir": "journal", "log_dir": "logs"}}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return make_config(**data)


def ready(
    make_config: ConfigFactory, wh: Path, mlflow: dict[str, str], server: BackgroundStandin, **sections: dict[str, Any]
) -> AppConfig:
    base: dict[str, dict[str, Any]] = {
        "warehouse": {"path": str(wh)},
        "mlflow": mlflow,
        "bybit": {"rest_url": server.url, "ws_public_url": server.ws_url, "timeout": "5s"},
        "monitor": {"min_free_disk_gb": 0.001},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return configure(make_config, **base)


def journal_path(cfg: AppConfig, mode: str = "paper", source: str = "sim") -> Path:
    return default_path(cfg.resolve(cfg.live.journal_dir), mode, source)


def write_journal(path: Path, account: dict[str, Any] | None = None) -> None:
    """What a short paper session leaves: one order submitted, filled and done, then the account."""
    j = Journal(path, "s1", sync="normal")
    j.add("start", T0, mode="paper", source="sim", strategy="passive", model="1")
    j.add("submit", T0 + 1, 1, side=1, qty=0.01, price=65000.0, order_kind="LIMIT", tag=1)
    j.add("fill", T0 + 2, 1, side=1, price=65000.0, qty=0.01, fee=0.13, maker=True, tag=1)
    j.add("done", T0 + 3, 1, status="FILLED", price=65000.0, qty=0.01, filled=0.01)
    j.add("account", T0 + 4, **(account or {"position": 0.01, "cash": 99349.87, "equity": 99999.87, "peak": math.nan}))
    j.close()


def table(out: str) -> list[tuple[str, str, str]]:
    lines = out.strip().splitlines()
    assert lines[0].split() == ["check", "status", "detail"]
    rows = [ROW.match(line) for line in lines[2:]]
    assert all(rows), out
    return [(m.group(1), m.group(2), m.group(3)) for m in rows if m]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def newest_book_ns(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return int(con.execute("SELECT max(ts_exchange_ns) FROM book_updates").fetchall()[0][0])
    finally:
        con.close()


class ShiftedClock:
    """The system clock, off by ``shift_ns``: a machine whose clock drifted."""

    def __init__(self, shift_ns: int) -> None:
        self.shift_ns = shift_ns

    def now_ns(self) -> int:
        return time.time_ns() + self.shift_ns

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


# -- the whole command ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_ready_machine_passes_every_check_even_strictly(
    make_config: ConfigFactory,
    champion: dict[str, str],
    warehouses: Warehouses,
    standin: BackgroundStandin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = ready(make_config, warehouses.fresh, champion, standin)
    write_journal(journal_path(cfg))
    before = journal_path(cfg).read_bytes()
    assert diagnose.main(["--config", str(tmp_path / "config.yaml"), "--strict"]) == 0
    rows = table(capsys.readouterr().out)
    names = ["warehouse", "freshness", "gaps", "model", "exchange", "clock", "disk", "journal"]
    assert [(n, s) for n, s, _ in rows] == [(n, OK) for n in names]
    detail = {n: d for n, _, d in rows}
    assert detail["warehouse"].startswith(f"{warehouses.fresh} opens read-only")
    assert re.fullmatch(r"newest book update (\d+ s|\d+ min( \d+ s)?) old \(limit 10 min\)", detail["freshness"])
    assert detail["gaps"] == "no silence longer than 5 s in the last 24 h of data"
    assert re.fullmatch(r"champion v1, feature set [0-9a-f]{16}, .* old \(limit 7 d\)", detail["model"])
    assert detail["exchange"].startswith(f"{standin.url} answers fetch_time")
    offset = re.fullmatch(
        r"local clock ([\d.]+) ms (ahead of|behind) the exchange \(round trip ([\d.]+) ms, limit 500 ms\)",
        detail["clock"],
    )
    assert offset and float(offset.group(1)) <= float(offset.group(3)) / 2 + 2  # the stand-in runs on our clock
    assert detail["journal"] == (
        f"{journal_path(cfg)}: 5 records, 1 session(s); last account: position +0.010 BTC, equity 99,999.87"
    )
    assert journal_path(cfg).read_bytes() == before  # read, never written


@pytest.mark.slow
def test_an_unreachable_exchange_fails_alone_and_exits_1(
    make_config: ConfigFactory,
    champion: dict[str, str],
    warehouses: Warehouses,
    standin: BackgroundStandin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    cfg = ready(make_config, warehouses.fresh, champion, standin, bybit={"rest_url": f"http://127.0.0.1:{port}"})
    write_journal(journal_path(cfg))
    assert diagnose.main(["--config", str(tmp_path / "config.yaml")]) == 1
    rows = {n: (s, d) for n, s, d in table(capsys.readouterr().out)}
    status, detail = rows.pop("exchange")
    assert status == FAIL
    assert detail.startswith(f"http://127.0.0.1:{port} unreachable: ") and "Cannot connect to host" in detail
    assert rows.pop("clock") == (WARN, "not measured: the exchange is unreachable")
    assert {s for s, _ in rows.values()} == {OK}  # the other checks ran and passed


@pytest.mark.slow
def test_strict_makes_a_warning_exit_1(
    make_config: ConfigFactory,
    champion: dict[str, str],
    warehouses: Warehouses,
    standin: BackgroundStandin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ready(make_config, warehouses.fresh, champion, standin)  # no journal: the runner never ran
    conf = str(tmp_path / "config.yaml")
    assert diagnose.main(["--config", conf]) == 0
    rows = table(capsys.readouterr().out)
    assert [(n, s) for n, s, _ in rows if s != OK] == [("journal", WARN)]
    assert rows[-1][2] == f"{tmp_path / 'journal'}: no journal (the runner has not run yet)"
    assert diagnose.main(["--config", conf, "--strict"]) == 1


def test_every_check_reports_even_when_everything_is_broken(make_config: ConfigFactory, tmp_path: Path) -> None:
    port = free_port()
    cfg = configure(make_config, bybit={"rest_url": f"http://127.0.0.1:{port}"}, monitor={"min_free_disk_gb": 0})
    wh = cfg.resolve(cfg.warehouse.path)
    wh.parent.mkdir(parents=True)
    duckdb.connect(str(wh)).close()  # a DuckDB file without the warehouse's tables
    checks = diagnose.run_checks(cfg)
    assert [(c.name, c.status) for c in checks] == [
        ("warehouse", FAIL),
        ("model", FAIL),
        ("exchange", FAIL),
        ("clock", WARN),
        ("disk", OK),
        ("journal", WARN),
    ]
    assert "book_updates does not exist" in checks[0].detail  # an unexpected error is still one row
    assert diagnose.exit_code(checks) == 1


# -- the warehouse -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age_ns", "status", "detail"),
    [
        ((3 * 3600 + 12 * 60) * NS, FAIL, "newest book update 3 h 12 min old (limit 10 min)"),
        (9 * 60 * NS, OK, "newest book update 9 min old (limit 10 min)"),
        (-2 * NS, WARN, "newest book update 2 s ahead of the local clock"),
    ],
)
def test_the_newest_book_update_must_be_recent(
    make_config: ConfigFactory, warehouses: Warehouses, age_ns: int, status: Status, detail: str
) -> None:
    cfg = configure(make_config, warehouse={"path": str(warehouses.fresh)})
    newest = newest_book_ns(warehouses.fresh)
    checks = by_name(diagnose.check_warehouse(cfg, ManualClock(newest + age_ns)))
    assert checks["freshness"] == Check("freshness", status, detail)
    assert checks["warehouse"].status == OK
    assert diagnose.exit_code(list(checks.values())) == int(status == FAIL)


def test_silences_in_the_recent_data_warn_with_their_count_and_the_longest(
    make_config: ConfigFactory, warehouses: Warehouses
) -> None:
    con = duckdb.connect(str(warehouses.gapped), read_only=True)
    try:  # the silence, measured here on the raw book updates
        after, until = con.execute(
            "SELECT ts, nxt FROM (SELECT ts_exchange_ns AS ts, lead(ts_exchange_ns) OVER (ORDER BY ts_exchange_ns) "
            "AS nxt FROM book_updates) ORDER BY nxt - ts DESC LIMIT 1"
        ).fetchall()[0]
    finally:
        con.close()
    assert 9 * NS < until - after < 11 * NS
    cfg = configure(make_config, warehouse={"path": str(warehouses.gapped)})
    gaps = by_name(diagnose.check_warehouse(cfg))["gaps"]
    assert gaps == Check(
        "gaps",
        WARN,
        f"1 silence(s) longer than 5 s in the last 24 h of data; the longest {human(until - after)} "
        f"after {format_ns(after)}",
    )
    narrow = configure(make_config, warehouse={"path": str(warehouses.gapped)}, monitor={"gap_window": "5s"})
    assert by_name(diagnose.check_warehouse(narrow))["gaps"] == Check(
        "gaps", OK, "no silence longer than 5 s in the last 5 s of data"
    )


def test_a_writer_holding_the_warehouse_is_busy_not_broken(make_config: ConfigFactory, warehouses: Warehouses) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
         "sys.stdin.read()", str(warehouses.fresh)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        cfg = configure(make_config, warehouse={"path": str(warehouses.fresh)})
        checks = diagnose.check_warehouse(cfg, open_timeout_s=0.3)
    finally:
        holder.communicate("", timeout=30)
    assert checks == [Check("warehouse", WARN, f"busy: a writer holds it ({warehouses.fresh}; waited 0.3 s)")]
    assert diagnose.check_warehouse(cfg)[0].status == OK  # and readable again once the writer let go


def test_a_missing_warehouse_fails(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = configure(make_config)
    assert diagnose.check_warehouse(cfg) == [
        Check(
            "warehouse",
            FAIL,
            f"{tmp_path / 'wh' / 'test.duckdb'}: no warehouse here yet (run an ingest first, e.g. make demo)",
        )
    ]


# -- the model -----------------------------------------------------------------------------------


def test_a_missing_registry_fails_in_one_line(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = configure(make_config, mlflow={"store": "none/mlflow.db"})
    store = tmp_path / "none" / "mlflow.db"
    assert diagnose.check_model(cfg) == [
        Check(
            "model",
            FAIL,
            f"no model registry at {store}: train and promote one first: python -m flows.train; python -m flows.promote",
        )
    ]
    assert not store.parent.exists()  # looked, created nothing


@pytest.mark.slow
def test_a_registry_without_a_champion_fails(
    make_config: ConfigFactory, trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    base = trained[0]
    store = tmp_path / "mlflow.db"  # a copy: other tests may promote in the session's registry
    shutil.copy(base.resolve(base.mlflow.store), store)
    cfg = configure(make_config, mlflow={"store": str(store)})
    client = registry.connect(cfg)
    if registry.version_for(cfg, registry.CHAMPION) is not None:
        client.delete_registered_model_alias(cfg.mlflow.model_name, registry.CHAMPION)
    assert diagnose.check_model(cfg) == [
        Check(
            "model",
            FAIL,
            "no champion in btc-l2: train and promote one first: python -m flows.train; python -m flows.promote",
        )
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        ({"live": {"max_model_age": "1s"}}, "days old (live.max_model_age 0.0 days): train and promote a fresh one"),
        ({"features": {"levels": 30}}, "model version 1 was trained on feature set "),
    ],
)
def test_the_runner_would_refuse_an_old_or_foreign_champion(
    make_config: ConfigFactory, champion: dict[str, str], sections: dict[str, Any], fragment: str
) -> None:
    cfg = configure(make_config, mlflow=champion, **sections)
    a_minute_later = ManualClock(registry.version_created_ns(cfg, "1") + 60 * 1_000_000_000)  # older than 1 s
    [check] = diagnose.check_model(cfg, a_minute_later)
    assert check.status == FAIL and fragment in check.detail, check.detail


# -- the exchange and the clock ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shift_ms", "status", "side"),
    [(2000, FAIL, "ahead of"), (375, WARN, "ahead of"), (-375, WARN, "behind"), (-2000, FAIL, "behind")],
)
def test_a_drifted_local_clock_warns_then_fails(
    make_config: ConfigFactory, standin: BackgroundStandin, shift_ms: int, status: str, side: str
) -> None:
    cfg = configure(make_config, bybit={"rest_url": standin.url, "ws_public_url": standin.ws_url})
    exchange, clock = diagnose.check_exchange(cfg, ShiftedClock(shift_ms * 1_000_000))
    assert exchange.status == OK
    m = re.fullmatch(
        r"local clock ([\d.]+) ms (ahead of|behind) the exchange \(round trip ([\d.]+) ms, limit 500 ms\)", clock.detail
    )
    assert m and clock.status == status and m.group(2) == side, clock
    # measured against the stand-in's clock from the request's midpoint: off by at most half the round trip
    assert abs(float(m.group(1)) - abs(shift_ms)) <= float(m.group(3)) / 2 + 2


# -- the disk ------------------------------------------------------------------------------------


def test_too_little_free_disk_fails(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = configure(make_config, monitor={"min_free_disk_gb": 1e9})
    [check] = diagnose.check_disk(cfg)
    m = re.fullmatch(r"([\d,.]+) GB free for warehouse, mlruns, logs \((.+)\) \(limit 1e\+09 GB\)", check.detail)
    assert check.status == FAIL and m, check
    assert m.group(2) == str(tmp_path)  # nothing exists yet: the nearest existing folder is measured
    assert float(m.group(1).replace(",", "")) == pytest.approx(shutil.disk_usage(tmp_path).free / 1e9, abs=0.5)
    relaxed = configure(make_config, monitor={"min_free_disk_gb": 0})
    assert diagnose.check_disk(relaxed)[0].status == OK


# -- the journal ---------------------------------------------------------------------------------


def _invalid_json(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("INSERT INTO records (ts_ns, session, kind, order_id, data) VALUES (1, 's1', 'fill', 1, '{\"qty\": ')")
    con.commit()
    con.close()


def _unknown_fill(path: Path) -> None:
    j = Journal(path, "s2", sync="normal")
    j.add("fill", T0 + 10, 99, side=-1, price=65010.0, qty=0.01, fee=0.13, maker=True, tag=2)
    j.close()


def _account_without_equity(path: Path) -> None:
    j = Journal(path, "s2", sync="normal")
    j.add("account", T0 + 10, position=0.0, cash=1.0)
    j.close()


def _seq_backwards(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE records (seq INTEGER, ts_ns INTEGER, session TEXT, kind TEXT, order_id INTEGER, data TEXT)"
    )
    con.executemany("INSERT INTO records VALUES (?, 1, 's1', 'start', NULL, '{}')", [(1,), (3,), (2,)])
    con.commit()
    con.close()


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_invalid_json, "record 6 (fill): data is not JSON"),
        (_unknown_fill, "record 6: a fill for order 99, which was never submitted"),
        (_account_without_equity, "the last account record has no number for equity"),
        (_seq_backwards, "record seq 2 follows seq 3"),
    ],
)
def test_a_corrupt_journal_fails_naming_what_is_wrong(make_config: ConfigFactory, spoil: Any, problem: str) -> None:
    cfg = configure(make_config)
    path = journal_path(cfg)
    write_journal(path)
    assert diagnose.check_journal(cfg)[0].status == OK
    spoil(path)
    before = path.read_bytes()
    assert diagnose.check_journal(cfg) == [Check("journal", FAIL, f"{path}: {problem}")]
    assert path.read_bytes() == before


def test_a_journal_is_read_while_the_runner_writes_it(make_config: ConfigFactory) -> None:
    cfg = configure(make_config)
    path = journal_path(cfg)
    write_journal(path)
    j = Journal(path, "s2", sync="normal")  # the runner, mid-session: WAL file open, a transaction pending
    try:
        j.add("start", T0 + 10, mode="paper", source="sim")
        j.commit()
        j.add("decision", T0 + 11, p_up=0.5)
        [check] = diagnose.check_journal(cfg)
    finally:
        j.close()
    assert check.status == OK and ": 6 records, 2 session(s);" in check.detail  # committed records only


def test_a_file_that_is_not_a_journal_fails(make_config: ConfigFactory) -> None:
    cfg = configure(make_config)
    path = journal_path(cfg)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all, " * 100)
    assert diagnose.check_journal(cfg) == [
        Check("journal", FAIL, f"{path}: not a readable journal (file is not a database)")
    ]
    assert path.read_bytes() == b"not a database at all, " * 100


def test_every_journal_is_checked_and_one_mixing_accounts_warns(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = configure(make_config, bybit={"rest_url": f"http://127.0.0.1:{free_port()}"})
    sim, replay = journal_path(cfg), journal_path(cfg, source="replay")
    write_journal(sim)
    write_journal(replay, {"position": -0.149, "cash": 1.0, "equity": 99_996.31})
    old = cfg.resolve(cfg.live.journal_dir) / "paper.sqlite"  # what earlier versions shared between sources
    write_journal(old)
    j = Journal(old, "s2", sync="normal")
    j.add("start", T0 + 10, mode="paper", source="replay")
    j.close()
    rows = {Path(c.detail.split(":")[0]).name: c for c in diagnose.check_journal(cfg)}
    assert sorted(rows) == ["paper-replay.sqlite", "paper-sim.sqlite", "paper.sqlite"]
    assert rows["paper-sim.sqlite"].status == OK and "position +0.010 BTC" in rows["paper-sim.sqlite"].detail
    assert rows["paper-replay.sqlite"].status == OK and "position -0.149 BTC" in rows["paper-replay.sqlite"].detail
    assert rows["paper.sqlite"].status == WARN
    assert "several accounts (paper/sim, paper/replay)" in rows["paper.sqlite"].detail
    assert "the shared journal of earlier versions" in rows["paper.sqlite"].detail
    # one journal, as the command line chooses it
    assert diagnose.check_journal(cfg, replay) == [rows["paper-replay.sqlite"]]
    missing = replay.with_name("nope.sqlite")
    assert diagnose.check_journal(cfg, missing)[0].status == WARN
    conf = str(cfg.source_path)
    assert diagnose.main(["--config", conf, "--journal", str(sim)]) == 1  # no warehouse, model or exchange here
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("journal")]
    assert len(shown) == 1 and str(sim) in shown[0] and " OK " in shown[0]


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.untraced
def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(cli("-m", "live.diagnose", "--config", str(tmp_path / "nope.yaml")), "config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("monitor:\n  max_clock_ofset: 1s\n")
    p = cli("-m", "live.diagnose", "--config", str(bad))
    assert_one_line_error(p, "monitor.max_clock_ofset: unknown key")
    assert p.returncode == 2 and p.stdout == ""
