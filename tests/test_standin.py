"""The real ccxt.pro client against the Bybit v5 stand-in over 127.0.0.1: the live ingest path.

Every stored snapshot is checked against the server's own book at the same update: after a gap,
a mid-stream snapshot, a u=1 restart, corrupt frames and dropped connections, the warehouse
holds exactly the book the exchange had, never anything in between.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from core.config import AppConfig
from core.errors import UnavailableError, UserError
from market.sources.bybit import BybitSource
from sim.source import SimSource
from standin import BackgroundStandin
from standin.feeds import SimFeed
from tests.conftest import REPO, ConfigFactory, free_port
from warehouse.db import one, reading
from warehouse.ingest import IngestResult, run_ingest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def standin() -> Iterator[BackgroundStandin]:
    cfg = AppConfig()
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50)) as server:
        yield server


def _post(url: str, body: object) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _config(make_config: ConfigFactory, server: BackgroundStandin, **ingest: str) -> AppConfig:
    return make_config(
        bybit={"rest_url": server.url, "ws_public_url": server.ws_url, "timeout": "5s"},
        ingest={"reconnect_initial": "100ms", "reconnect_max": "1s", "stall_timeout": "1s", **ingest},
        warehouse={"snapshot_levels": 5},
    )


def _ingest(
    cfg: AppConfig, server: BackgroundStandin, faults: list[str], every: int = 50, tail: int = 100
) -> IngestResult:
    """Stream while the faults are posted to the server one at a time, each once the stream has carried
    ``every`` more frames (so a fault always meets a connected, subscribed client, and a drop's or a
    stall's next fault waits for the reconnect), then ``tail`` frames more, then stop.

    Paced by what the server sent, not by the wall clock: a loaded machine, a cold import or a kernel
    compiled on the first batch only makes the test slower. The tail is counted as the client took
    it: counted as sent, a client still compiling its kernels stored 8 book updates of the 100
    frames, not the 40 the clean-stream test asks for."""
    source, ended = BybitSource(cfg, None), threading.Event()

    def frames() -> int:
        return int(server.stats()["frames_sent"])

    def taken() -> int:
        return source.frames_received

    def after(n: int, count: Callable[[], int] = frames) -> bool:
        start, deadline = count(), time.monotonic() + 120
        while count() - start < n:
            if ended.is_set() or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def drive() -> None:
        for kind in faults:
            if not after(every):
                break
            _post(server.url + "/_standin/fault", {"kind": kind, "seconds": 2.5})
        after(tail, taken)
        source.stop()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        result = run_ingest(source, cfg, detail="test")
    finally:
        ended.set()
        source.stop()
        driver.join(timeout=130)
    assert result.status == "completed", result.error
    return result


def _events(cfg: AppConfig) -> list[tuple[str, int, str]]:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        return [
            (str(k), int(u), str(d))
            for k, u, d in con.execute(
                "SELECT kind, update_id, detail FROM sync_events ORDER BY ts_local_ns"
            ).fetchall()
        ]


def _assert_book_is_the_servers(cfg: AppConfig, server: BackgroundStandin, minimum: int) -> list[int]:
    """Every stored snapshot equals the server's book after the same update; returns their update ids."""
    truth = {(int(u), int(cts)): (bb, bq, ba, aq) for u, cts, bb, bq, ba, aq in server.history()}
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        rows = con.execute(
            "SELECT update_id, ts_exchange_ns, bid_px[1], bid_qty[1], ask_px[1], ask_qty[1] FROM snapshots "
            "ORDER BY ts_local_ns"
        ).fetchall()
    assert len(rows) >= minimum
    for u, ts, bb, bq, ba, aq in rows:
        want = truth.get((u, ts // 1_000_000))
        assert want is not None, f"stored update {u} is not one the server published"
        assert (bb, bq, ba, aq) == tuple(float(x) for x in want), f"book after update {u} differs from the server's"
    return [int(r[0]) for r in rows]


def _assert_no_duplicates(cfg: AppConfig) -> None:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        trades = one(con, "SELECT count(*), count(DISTINCT trade_id) FROM trades")
        book = one(con, "SELECT count(*), count(DISTINCT (ts_exchange_ns, update_id, is_snapshot)) FROM book_updates")
    assert trades is not None and book is not None
    assert trades[0] > 0 and trades[0] == trades[1]
    assert book[0] > 0 and book[0] == book[1]


def test_a_clean_stream_stores_exactly_the_servers_book_and_trades(
    standin: BackgroundStandin, make_config: ConfigFactory
) -> None:
    cfg = _config(make_config, standin)
    result = _ingest(cfg, standin, [])
    assert result.counts["gaps"] == 0 and result.counts["rejected"] == 0
    assert result.counts["book_updates"] > 40  # orderbook.50 every 20 ms
    _assert_book_is_the_servers(cfg, standin, minimum=40)
    _assert_no_duplicates(cfg)
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        streams = dict(con.execute("SELECT stream, count(*) FROM raw_messages GROUP BY stream").fetchall())
    assert streams.get("orderbook.50.BTCUSDT", 0) > 40 and streams.get("publicTrade.BTCUSDT", 0) > 0


def test_a_gap_resyncs_a_new_snapshot_resets_and_u1_overwrites(
    standin: BackgroundStandin, make_config: ConfigFactory
) -> None:
    cfg = _config(make_config, standin)
    result = _ingest(cfg, standin, ["skip_update", "snapshot", "restart"])
    kinds = [k for k, _, _ in _events(cfg)]
    assert result.counts["gaps"] >= 1 and "gap" in kinds
    assert "resubscribe" in kinds  # the gap made the source ask for a fresh snapshot
    assert any(d.endswith("(book invalid after gap)") for k, _, d in _events(cfg) if k == "resubscribe")
    assert kinds.count("snapshot") >= 3  # the first, the resubscribe's, the mid-stream one
    assert "restart" in kinds
    ids = _assert_book_is_the_servers(cfg, standin, minimum=100)
    # u=1 came as a *delta* after the server lost its best bid: only overwriting the book matches
    assert 1 in ids
    after = ids[ids.index(1) :]
    assert after == sorted(after) and len(after) > 10


def test_malformed_frames_are_rejected_counted_logged_and_never_stored(
    standin: BackgroundStandin, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config(make_config, standin)
    with caplog.at_level(logging.WARNING):
        result = _ingest(cfg, standin, ["bad_json", "missing_field", "negative_size", "crossed"], every=30)
    assert result.counts["rejected"] >= 4
    rejects = [d for k, _, d in _events(cfg) if k == "reject"]
    for reason in ("bad_json", "missing_field", "negative", "crossed"):
        assert any(d.startswith(reason) for d in rejects), (reason, rejects)
        assert any("rejected message (" + reason in r.getMessage() for r in caplog.records), reason
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        payloads = [p for (p,) in con.execute("SELECT payload FROM raw_messages").fetchall()]
        negative = one(con, "SELECT count(*) FROM book_updates WHERE list_min(bid_qty) < 0 OR list_min(ask_qty) < 0")
    for p in payloads:
        orjson.loads(p)  # no truncated frame was kept
        assert '"-' not in p  # no negative size was kept
    assert negative == (0,)
    _assert_book_is_the_servers(cfg, standin, minimum=60)  # the crossed update never reached a snapshot


def test_a_crossed_frame_crosses_the_book_whatever_the_message_it_replaces_changes() -> None:
    """The ``crossed`` fault's frame, applied to the book the clients hold, puts a bid at or above
    the best ask, also when the message it stands in for takes the best ask away (at speed 24 a
    message merges 480 ms of changes: a soak found 5 of 24 crossed frames that crossed nothing, which
    a client rightly took, then saw the real message's id again as a gap)."""
    from standin.faults import corrupt_frame
    from standin.market import Book

    book = Book(bids={"99.9": "2", "99.8": "1"}, asks={"100.0": "1", "100.1": "3", "100.5": "2"}, u=7, ready=True)
    for asks in ([], [["100.0", "0"]], [["100.0", "0"], ["100.1", "0"]], [["100.3", "4"]]):
        msg = {"topic": "orderbook.50.X", "type": "delta", "data": {"s": "X", "b": [["99.9", "0"]], "a": asks, "u": 8}}
        frame = json.loads(corrupt_frame("crossed", msg, 8, book, "orderbook.50.X", 0.1))
        held = Book(bids=dict(book.bids), asks=dict(book.asks))
        held.apply(frame["data"]["b"], held.bids)
        held.apply(frame["data"]["a"], held.asks)
        best_bid, _, best_ask, _ = held.best()
        assert float(best_bid) >= float(best_ask), (asks, frame)
        assert frame["data"]["u"] == 8 and frame["type"] == "delta"


def test_each_crossed_update_costs_exactly_one_resubscribe(
    standin: BackgroundStandin, make_config: ConfigFactory
) -> None:
    """A crossed update invalidates the book: one resubscribe, one fresh snapshot. The batches that
    arrive before that snapshot are still invalid and ask again; the snapshot answers them too (a
    request the source had not sent yet when it arrived was cleared, not sent as a second one)."""
    cfg = _config(make_config, standin)
    result = _ingest(cfg, standin, ["crossed", "crossed", "crossed"])
    kinds = [k for k, _, _ in _events(cfg)]
    assert result.counts["rejected"] == kinds.count("reject") == 3
    assert kinds.count("resubscribe") == 3, kinds
    assert kinds.count("snapshot") == 4, kinds  # the first, then one per resubscribe
    why = [d for k, _, d in _events(cfg) if k == "resubscribe"]
    assert all(d.endswith("(book invalid after crossed)") for d in why), why  # the reason, not a guess
    _assert_book_is_the_servers(cfg, standin, minimum=100)


def test_dropped_connections_reconnect_and_nothing_is_duplicated(
    standin: BackgroundStandin, make_config: ConfigFactory
) -> None:
    cfg = _config(make_config, standin)
    before = standin.stats()["connections_total"]
    result = _ingest(cfg, standin, ["drop", "drop"])
    assert result.counts["reconnect"] >= 2
    assert standin.stats()["connections_total"] - before >= 3
    details = [d for k, _, d in _events(cfg) if k == "reconnect"]
    assert len(details) >= 2 and all("reconnecting in" in d for d in details)
    _assert_no_duplicates(cfg)
    _assert_book_is_the_servers(cfg, standin, minimum=80)


def test_a_silent_stream_is_detected_and_reopened(standin: BackgroundStandin, make_config: ConfigFactory) -> None:
    cfg = _config(make_config, standin)
    # a tail of 300 frames: the first delta after the stall follows the snapshot of the stream reopened
    # during it with a gap (the stand-in held back the stall's updates), and the ingest resubscribes;
    # with 100, a loaded run (the overlap measurement) took them all before the batch with the gap was
    # processed and stopped before the fresh snapshot: 37 stored snapshots
    result = _ingest(cfg, standin, ["stall"], tail=300)
    assert result.counts["reconnect"] >= 1
    assert any("no market data" in d for k, _, d in _events(cfg) if k == "reconnect")
    ids = _assert_book_is_the_servers(cfg, standin, minimum=60)
    assert len(ids) > 0


def _cli(args: list[str], tmp_path: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_ingest_cli_streams_from_the_standin(
    standin: BackgroundStandin, make_config: ConfigFactory, tmp_path: Path
) -> None:
    cfg = _config(make_config, standin)
    out = _cli(
        ["-m", "flows.ingest", "--source", "bybit", "--duration", "2", "--config", str(cfg.source_path)], tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "completed:" in out.stdout and " 0 gaps" in out.stdout
    _assert_book_is_the_servers(cfg, standin, minimum=30)
    # every kernel readied before it connected (a rehearsal on simulated Bybit messages), none after
    # (a kernel readied while streaming is a logged warning, which the command shows)
    log = out.stdout + out.stderr
    assert 0 <= log.find("kernels ready in") < log.find("ingest bybit:"), log[-3000:]
    assert "readied after start-up" not in log


def test_an_unreachable_endpoint_is_one_line_and_touches_nothing_stored(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    port = free_port()
    cfg = make_config(
        bybit={"rest_url": f"http://127.0.0.1:{port}", "ws_public_url": f"ws://127.0.0.1:{port}/v5/public/linear"},
    )
    run_ingest(SimSource(cfg.sim, cfg.instrument, 50, 5_000_000_000), cfg, detail="before")
    wh = cfg.resolve(cfg.warehouse.path)
    query = (
        "SELECT (SELECT count(*) FROM book_updates), (SELECT count(*) FROM trades), (SELECT count(*) FROM snapshots)"
    )
    with reading(wh) as con:
        before = one(con, query)
    out = _cli(
        ["-m", "flows.ingest", "--source", "bybit", "--duration", "2", "--config", str(cfg.source_path)], tmp_path
    )
    assert out.returncode == UnavailableError.exit_code  # 4: the service cannot be reached (README)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bybit: cannot load markets from http://127.0.0.1:" in errors[0], out.stderr
    assert "Connect call failed" in errors[0]  # the cause, not only ccxt's "bybit GET <url>"
    assert "Traceback" not in out.stderr
    with reading(wh) as con:
        assert one(con, query) == before


def test_the_standin_runs_on_its_own_and_answers_like_bybit(tmp_path: Path, config_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "standin", "--port", "0", "--config", str(config_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("stand-in Bybit v5 listening on http://127.0.0.1:"), proc.stderr
        url = line.split()[5]
        fresh = _get(url + "/_standin/stats")  # every counter is there at 0 before anything happened
        assert fresh["connections_total"] == 0 and fresh["fault_drop"] == 0 and fresh["connections"] == 0
        assert _get(url + "/v5/market/time")["retCode"] == 0
        info = _get(url + "/v5/market/instruments-info?category=linear")["result"]["list"][0]
        assert info["symbol"] == "BTCUSDT" and info["priceFilter"]["tickSize"] == "0.1"
        assert _get(url + "/v5/market/instruments-info?category=linear&status=PreLaunch")["result"]["list"] == []
        book = _get(url + "/v5/market/orderbook?category=linear&symbol=BTCUSDT&limit=3")["result"]
        assert len(book["b"]) == 3 and float(book["b"][0][0]) < float(book["a"][0][0])
        assert _get(url + "/v5/market/orderbook?category=linear&symbol=BTCUSDT&limit=900")["retCode"] == 10001
        code, body = _post(url + "/_standin/fault", {"kind": "meteor"})
        assert code == 400 and "unknown fault" in body["retMsg"]
        code, body = _post(url + "/_standin/fault", {"kind": "snapshot"})
        assert code == 200 and _get(url + "/_standin/stats")["fault_snapshot"] == 1
        rows = _get(url + "/_standin/history")  # the best bid/ask after each update, in order
        assert rows and all(len(r) == 6 and float(r[2]) < float(r[4]) for r in rows)
        assert [r[0] for r in rows] == sorted({r[0] for r in rows})
        assert _get(url + f"/_standin/history?after={rows[0][0]}")[: len(rows) - 1] == rows[1:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_the_history_keeps_the_last_updates_in_memory_it_took_at_start() -> None:
    import inspect
    import tracemalloc

    from standin import server
    from standin.server import History

    source, first = inspect.getsourcelines(History)

    def held_by_history() -> int:  # bytes allocated in History's own lines and still alive
        ours = [tracemalloc.Filter(True, server.__file__, lineno=n) for n in range(first, first + len(source))]
        return sum(s.size for s in tracemalloc.take_snapshot().filter_traces(ours).statistics("filename"))

    tracemalloc.start()
    try:
        h = History(1000)
        made = held_by_history()
        for u in range(1, 5001):
            h.append(u, 1000 + u, f"{60000 + u / 10:.1f}", "0.25", f"{60001 + u / 10:.1f}", "1.5")
        grown = held_by_history() - made
    finally:
        tracemalloc.stop()
    assert made >= h._rows.nbytes and grown < 1000, (made, grown)  # a list per update held about 2 MB
    rows = h.rows()
    assert len(h) == len(rows) == 1000 and [r[0] for r in rows] == list(range(4001, 5001))
    assert rows[-1] == [5000, 6000, "60500.0", "0.25", "60501.0", "1.5"]
    assert [r[0] for r in h.rows(after=4990)] == list(range(4991, 5001)) and h.rows(after=5000) == []
    with pytest.raises(ValueError, match="longer than 24"):
        h.append(5001, 0, "1" * 25, "1", "2", "1")


@pytest.mark.untraced
def test_the_standin_cli_rejects_bad_input_in_one_line(tmp_path: Path, config_path: Path) -> None:
    cases = [
        ["--feed", "file"],
        ["--feed", "file", "--path", str(tmp_path / "missing.gz")],
        ["--port", "70000"],
    ]
    for args in cases:
        out = _cli(["-m", "standin", *args, "--config", str(config_path)], tmp_path, timeout=60)
        assert out.returncode != 0 and "Traceback" not in out.stderr
        assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: "), out.stderr


def test_a_recorded_bybit_file_can_feed_the_standin(make_config: ConfigFactory, tmp_path: Path) -> None:
    from sim import MarketSimulator
    from standin.feeds import FileFeed

    base = AppConfig()
    recording = tmp_path / "bybit.jsonl.gz"
    with gzip.open(recording, "wt") as f:
        for batch in MarketSimulator(base.sim, base.instrument, 50).batches(120_000_000_000):
            f.writelines(m.payload + "\n" for m in batch)
    feed = FileFeed(recording, speed=10.0)
    assert feed.depth == 50
    with BackgroundStandin(feed) as server:
        cfg = _config(make_config, server)
        result = _ingest(cfg, server, [], tail=200)
        assert result.counts["gaps"] == 0 and result.counts["rejected"] == 0
        ids = _assert_book_is_the_servers(cfg, server, minimum=100)  # ten times Bybit's pace
    assert ids == sorted(ids)
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        newest = one(con, "SELECT max(ts_exchange_ns) FROM snapshots")
    assert newest is not None and abs(newest[0] / 1e9 - time.time()) < 60  # replayed data looks current


def test_the_file_feed_refuses_what_it_cannot_replay(tmp_path: Path) -> None:
    from standin.feeds import FileFeed

    binance = tmp_path / "binance.gz"
    with gzip.open(binance, "wt") as f:
        f.write('1700000000000000 {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate"}}\n')
    with pytest.raises(UserError, match="Bybit files only"):
        FileFeed(binance)
    trades_only = tmp_path / "trades.jsonl"
    trades_only.write_text('{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[]}\n')
    with pytest.raises(UserError, match="no orderbook"):
        FileFeed(trades_only)
    with pytest.raises(UserError, match="speed"):
        FileFeed(trades_only, speed=0)


@pytest.mark.untraced
def test_sigint_stops_the_live_ingest_cleanly_and_flushes(
    standin: BackgroundStandin, make_config: ConfigFactory, tmp_path: Path
) -> None:
    cfg = _config(make_config, standin)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.ingest", "--source", "bybit", "--config", str(cfg.source_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wh = cfg.resolve(cfg.warehouse.path)
    deadline = time.monotonic() + 90
    stored = 0
    while stored < 50 and time.monotonic() < deadline:  # an open-ended stream, until it has data
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
        if wh.exists():
            try:
                with reading(wh, timeout_s=2) as con:
                    stored = int((one(con, "SELECT count(*) FROM book_updates") or (0,))[0])
            except (duckdb.Error, UserError):  # the writer holds the file for a moment
                continue
    assert stored >= 50
    stopped_at = time.time_ns()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped:" in out
    with reading(wh) as con:
        last = one(con, "SELECT max(ts_local_ns) FROM book_updates")
        status = one(con, "SELECT status FROM ingest_runs")
    assert last is not None and stopped_at - int(last[0]) < 1_000_000_000  # flushed up to the stop
    assert status == ("stopped",)
