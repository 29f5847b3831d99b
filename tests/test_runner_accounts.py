"""The runner as a user meets it: each account keeps to its own journal, a bad window is one line,
and every session that starts ends on the record, a failure included (real subprocesses, the
session's trained model and its small warehouse)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import AppConfig
from core.timefmt import format_ns
from live.accounts import AccountLock, old_journal_note
from live.feed import Tick
from live.loop import Loaded
from live.runner import Options, Runner
from models import registry
from tests.conftest import ConfigFactory
from tests.test_cli import assert_one_line_error, cli
from warehouse import journal as jr
from warehouse.db import one, reading

NS = 1_000_000_000
Trained = tuple[AppConfig, dict[str, Any]]


def _config(cfg: AppConfig, tmp_path: Path, **warehouse: str) -> str:
    """The trained config, written beside it (its relative warehouse and registry stay valid), with the
    journals and logs in tmp_path and the warehouse sections given."""
    assert cfg.source_path is not None
    data = yaml.safe_load(cfg.source_path.read_text())
    data["warehouse"] = {**data["warehouse"], **warehouse}
    data["live"] = {"journal_dir": str(tmp_path / "journal"), "log_dir": str(tmp_path / "logs")}
    path = cfg.source_path.parent / f"accounts-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _stored(cfg: AppConfig) -> tuple[int, int]:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        row = one(con, "SELECT min(ts_exchange_ns), max(ts_exchange_ns) FROM snapshots")
    assert row is not None
    return int(row[0]), int(row[1])


def _runner(config: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return cli("-m", "live.runner", "--paper", "--model", "1", "--config", config, *args, env=env, timeout=900)


def _sessions(path: Path) -> tuple[list[jr.Record], list[jr.Record]]:
    return list(jr.read(path, ["start"])), list(jr.read(path, ["stop"]))


@pytest.mark.slow
@pytest.mark.timeout(900)  # a dozen runner processes: generous for a loaded 2-core machine
def test_a_replay_account_and_a_simulated_one_keep_to_themselves(trained: Trained, tmp_path: Path) -> None:
    cfg = trained[0]
    config = _config(cfg, tmp_path)
    folder = tmp_path / "journal"
    # what an earlier version left: one paper journal shared by every source
    old = folder / "paper.sqlite"
    j = jr.Journal(old, "old", sync="normal")
    j.add("start", 1, mode="paper", source="bybit")
    j.add("account", 2, position=-0.149, cash=109_700.0, equity=99_996.31)
    j.close()
    old_records = list(jr.read(old))

    first, _ = _stored(cfg)
    mid = first + 12 * 60 * NS
    # the first account: a replay that trades (the test model always signals from a threshold this low)
    p = _runner(config, "--source", "replay", "--threshold", "0.01", "--end", format_ns(mid))
    assert p.returncode == 0, p.stderr
    replay = folder / "paper-replay.sqlite"
    assert f"journal: {replay}" in p.stdout
    notes = [line for line in p.stderr.splitlines() if "old shared journal" in line]
    assert len(notes) == 1 and str(old) in notes[0] and "-0.149 BTC" in notes[0] and "not continued" in notes[0]
    assert list(jr.read(old)) == old_records  # left as it was
    fills = list(jr.read(replay, ["fill"]))
    account = jr.inspect(replay).account
    assert fills and account is not None and account["cash"] != cfg.live.equity  # it traded
    assert account["position"] == pytest.approx(sum(f.data["side"] * f.data["qty"] for f in fills), abs=1e-9)
    after_replay = list(jr.read(replay))

    # the second account: the simulated market, live-paced, for a few seconds
    p = _runner(config, "--source", "sim", "--duration", "3s")
    assert p.returncode == 0, p.stderr
    sim = folder / "paper-sim.sqlite"
    assert f"journal: {sim}" in p.stdout
    fresh = jr.inspect(sim)
    assert fresh.accounts == [("paper", "sim")] and fresh.account is not None
    assert (fresh.account["position"], fresh.account["cash"]) == (0.0, cfg.live.equity)  # nothing of the replay's
    assert next(iter(jr.read(sim, ["start"]))).data["restored"] is None
    assert list(jr.read(replay)) == after_replay  # the first account, untouched

    # what may not continue the replay's account: refused in one line before any session starts
    keys = {"BYBIT_API_KEY": "k", "BYBIT_API_SECRET": "s"}
    for args, env, fragment in [
        (["--source", "sim", "--journal", str(replay)], None, "is the paper account on --source replay"),
        (["--source", "sim", "--journal", str(old)], None, "is the paper account on --source bybit"),
        (["--source", "bybit", "--journal", str(sim)], None, "a paper run on --source bybit never continues it"),
        (["--source", "replay", "--start", format_ns(first)], None, "would take it back in time"),
        (["--source", "replay", "--start", format_ns(mid), "--end", format_ns(first)], None, "is after --end"),
        (["--source", "replay", "--start", format_ns(mid), "--end", format_ns(mid)], None, "the same instant"),
        (["--source", "replay", "--start", "2030-01-01T00:00:00Z"], None, "holds no book data"),
    ]:
        assert_one_line_error(_runner(config, *args, env=env), fragment)
    live = cli("-m", "live.runner", "--live", "--source", "bybit", "--journal", str(replay), "--model", "1",
               "--config", config, env=keys, timeout=300)  # fmt: skip
    assert_one_line_error(live, "a live run on --source bybit never continues it")
    with_lock = AccountLock(replay)  # a runner of this account is running
    try:
        assert_one_line_error(_runner(config, "--source", "replay"), f"another runner (pid {os.getpid()})")
    finally:
        with_lock.release()
    assert list(jr.read(replay)) == after_replay
    starts, stops = _sessions(replay)
    assert len(starts) == len(stops) == 1

    # without --start the replay continues its own account where it stopped
    p = _runner(config, "--source", "replay", "--threshold", "0.01", "--end", format_ns(mid + 8 * 60 * NS))
    assert p.returncode == 0, p.stderr
    assert "restored from" in p.stderr
    starts, stops = _sessions(replay)
    assert len(starts) == len(stops) == 2
    assert starts[1].data["restored"]["position"] == pytest.approx(account["position"])
    later = [d for d in jr.read(replay, ["decision"]) if d.seq > starts[1].seq]
    earlier = [d for d in jr.read(replay, ["decision"]) if d.seq < starts[1].seq]
    assert later and min(d.data["grid_ns"] for d in later) > max(d.data["grid_ns"] for d in earlier)
    assert jr.inspect(sim).account == fresh.account  # and the simulated account is untouched by it


def test_corrupt_data_in_the_middle_of_a_replay_ends_the_session_on_the_record(
    trained: Trained, tmp_path: Path
) -> None:
    import duckdb

    cfg = trained[0]
    copy = tmp_path / "wh" / "l2.duckdb"
    copy.parent.mkdir()
    src = cfg.resolve(cfg.warehouse.path)
    for suffix in ("", ".wal"):
        if src.with_name(src.name + suffix).exists():
            shutil.copy(src.with_name(src.name + suffix), copy.with_name(copy.name + suffix))
    first, _ = _stored(cfg)
    bad = (first + 12 * 60 * NS, first + 13 * 60 * NS)  # in the replay's second chunk: after the session started
    con = duckdb.connect(str(copy))
    try:
        con.execute("UPDATE trades SET qty = -qty WHERE ts_exchange_ns >= ? AND ts_exchange_ns < ?", list(bad))
        spoiled = con.execute("SELECT count(*) FROM trades WHERE qty < 0").fetchall()[0][0]
        assert spoiled > 0
    finally:
        con.close()
    config = _config(cfg, tmp_path, path=str(copy), spool_dir=str(tmp_path / "wh" / "spool"))
    data = yaml.safe_load(Path(config).read_text())
    data["live"]["replay_chunk"] = "10m"  # read 10 minutes at a time (the default is an hour)
    Path(config).write_text(yaml.safe_dump(data))
    p = _runner(config, "--source", "replay", "--end", format_ns(first + 15 * 60 * NS))
    assert_one_line_error(p, "is corrupt", "trades need a finite price and a positive size")
    assert p.returncode == 3
    path = tmp_path / "journal" / "paper-replay.sqlite"
    starts, stops = _sessions(path)
    assert len(starts) == len(stops) == 1
    assert stops[0].data["reason"].startswith("failed: the stored market")
    assert list(jr.read(path, ["decision"]))  # it traded the first hour before it met the bad data
    assert list(jr.read(path, ["account"]))[-1].seq < stops[0].seq  # the account was marked before the stop


def test_a_journal_that_cannot_be_one_is_one_line(config_path: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a journal\n")
    for journal, fragment in [
        (tmp_path, "a folder, not a journal"),
        (notes, "not a journal (file is not a database)"),
    ]:
        p = cli("-m", "live.runner", "--source", "replay", "--journal", str(journal), "--config", str(config_path))
        assert_one_line_error(p, str(journal), fragment)
        assert p.returncode == 2
    assert notes.read_text() == "not a journal\n"


def test_the_old_shared_journal_is_named_and_how_to_continue_it_when_it_was_one_account(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    cfg = make_config(live={"journal_dir": "journal"})
    folder = cfg.resolve(cfg.live.journal_dir)
    assert old_journal_note(cfg, "paper", "bybit", folder / "paper-bybit.sqlite") is None  # none there
    old = folder / "paper.sqlite"
    j = jr.Journal(old, "s1", sync="normal")
    j.add("start", 1, mode="paper", source="bybit")
    j.add("account", 2, position=0.25, equity=100_012.5)
    j.close()
    note = old_journal_note(cfg, "paper", "bybit", folder / "paper-bybit.sqlite")
    assert note is not None and "(position +0.250 BTC, equity 100,012.50) is not continued" in note
    assert note.endswith(f"; --journal {old} continues it)")  # it only ever was the Bybit feed's paper account
    other = old_journal_note(cfg, "paper", "replay", folder / "paper-replay.sqlite")
    assert other is not None and "--journal" not in other
    assert old_journal_note(cfg, "paper", "bybit", old) is None  # chosen: nothing to say
    assert old_journal_note(cfg, "live", "bybit", folder / "live-bybit.sqlite") is None  # paper's is not live's


class BrokenFeed:
    """A feed that delivers nothing, then breaks the way a bug would."""

    name = "replay"
    book_valid = True

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def prepare(self, after_ns: int | None) -> int | None:
        return None

    async def batches(self) -> AsyncIterator[list[Tick]]:
        yield []
        raise RuntimeError("the feed broke")

    def stop(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def test_an_unexpected_error_still_ends_the_session_on_the_record(trained: Trained, tmp_path: Path) -> None:
    cfg = trained[0]
    cfg = cfg.model_copy(update={"live": cfg.live.model_copy(update={"journal_dir": tmp_path, "log_dir": tmp_path})})
    o = Options(live=False, source="replay", model=None, duration_ns=None, start_ns=None, end_ns=None,
                strategy="passive", speed=0.0)  # fmt: skip
    runner = Runner(cfg, o, Loaded.of(registry.load_version(cfg, "1"), "1"))
    runner.feed = BrokenFeed()
    with pytest.raises(RuntimeError, match="the feed broke"):
        asyncio.run(runner.run())
    starts, stops = _sessions(runner.journal_path)
    assert len(starts) == len(stops) == 1
    assert stops[0].data["reason"] == "failed: RuntimeError('the feed broke')"
    AccountLock(runner.journal_path).release()  # the lock went with the session
