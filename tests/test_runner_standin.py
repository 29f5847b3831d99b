"""The paper runner against the stand-in server over 127.0.0.1, through the real ccxt.pro client.

The stand-in publishes five and a half minutes of the simulated market's past first (60x real
time) to its first subscriber, so the runner's features warm up in seconds, then runs live. Faults are injected through
the stand-in's own fault endpoint while the runner trades.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.config import AppConfig
from live.bybit_gateway import BybitGateway
from live.loop import Loaded
from live.runner import Options, Runner
from models import registry
from standin import BackgroundStandin
from standin.feeds import SimFeed
from warehouse import journal as jr

pytestmark = pytest.mark.slow
NS = 1_000_000_000
STUDY = 0.01  # the execution study's threshold


@pytest.fixture
def standin(trained: tuple[AppConfig, Any]) -> Iterator[BackgroundStandin]:
    cfg = trained[0]
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50, history_ns=330 * NS, catchup=60.0)) as server:
        yield server


def _bybit(r: Runner) -> BybitGateway:
    """A --live runner's gateway: the Bybit one (its ledger is the exchange's account as we know it)."""
    assert isinstance(r.gateway, BybitGateway)
    return r.gateway


def _run(
    trained: tuple[AppConfig, Any], server: BackgroundStandin, tmp_path: Path,
    script: Callable[[Runner], None], keys: tuple[str, str] | None = None, **live: Any,
) -> Runner:  # fmt: skip
    """Run the runner here while ``script`` (in a thread) watches it, injects faults and stops it."""
    cfg = trained[0]
    cfg = cfg.model_copy(
        update={
            "bybit": cfg.bybit.model_copy(update={"rest_url": server.url, "ws_public_url": server.ws_url}),
            "ingest": cfg.ingest.model_copy(update={"stall_timeout": NS, "reconnect_initial": NS // 10}),
            "live": cfg.live.model_copy(update={"journal_dir": tmp_path / "journal", "log_dir": tmp_path, **live}),
        }
    )
    # These tests are about the feed, the gateways and the journal, not the model's skill: the test
    # model has none (Kelly sizing would size every signal at zero), so the runner runs as an
    # execution study (``threshold``: the study's fixed size, baseline_fraction of the equity). The
    # model is nearly flat: from a threshold under all its probabilities it always signals. (The
    # command line takes --threshold in paper mode only; the live test uses the same sizes.)
    model = replace(registry.load_version(cfg, "1"), threshold_up=STUDY, threshold_down=STUDY)
    o = Options(live=keys is not None, source="bybit", model=None, duration_ns=120 * NS, start_ns=None, end_ns=None,
                strategy="passive", speed=None, threshold=STUDY)  # fmt: skip
    return run_watched(Runner(cfg, o, Loaded.of(model, "1"), keys), script)


def run_watched(runner: Runner, script: Callable[[Runner], None]) -> Runner:
    """Run ``runner`` here while ``script`` (in a thread) watches it, then stop it; the script's
    failure is raised here."""
    failed: list[BaseException] = []

    def watch() -> None:
        try:
            script(runner)
        except BaseException as exc:  # reported in the test's thread
            failed.append(exc)
        finally:
            runner.stop("test done")

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    asyncio.run(runner.run())
    t.join(timeout=30)
    if failed:
        raise failed[0]
    return runner


def until(what: str, cond: Callable[[], bool], timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def caught_up(r: Runner) -> None:
    """Until the stand-in has published its past and runs at wall-clock pace: during the catch-up
    (60x) a resync of a tenth of a second spans more than ``features.max_gap`` of market time, and
    the features would rightly start their five-minute warm-up again."""
    until("the stand-in's past published", lambda: time.time_ns() - r.loop.last_book_ts < 2 * NS)


def test_the_runner_trades_the_standin_feed_and_survives_a_gap_and_a_drop(
    trained: tuple[AppConfig, Any], standin: BackgroundStandin, tmp_path: Path
) -> None:
    def script(r: Runner) -> None:
        s, c = r.loop.stats, r.feed.counts
        until("decisions after the warm-up", lambda: s.decisions >= 3)
        caught_up(r)
        standin.inject("skip_update", 1.0)
        until("a gap", lambda: c["gaps"] >= 1)
        until("a resync", lambda: c["resubscribe"] >= 1 and r.feed.book_valid)
        n = s.decisions
        until("decisions after the resync", lambda: s.decisions >= n + 2)
        standin.inject("drop", 1.0)
        until("a reconnect", lambda: c["reconnect"] >= 1)
        n = s.decisions
        until("decisions after the reconnect", lambda: s.decisions >= n + 2)

    runner = _run(trained, standin, tmp_path, script)
    path = tmp_path / "journal" / "paper-bybit.sqlite"
    decisions = list(jr.read(path, ["decision"]))
    assert len(decisions) >= 7  # the features warmed up on the stand-in's past, then decided live
    assert runner.loop.stats.ticks > 1000 and not runner.loop.halted_reason
    assert list(jr.read(path, ["submit"]))  # post-only quotes went to the paper exchange
    feed = {r.data["event"] for r in jr.read(path, ["feed"])}
    assert "gaps" in feed and "reconnect" in feed  # the gap forced a resync; the drop a reconnect
    assert runner.feed.counts["resubscribe"] >= 1
    assert all(d.data["model_version"] == "1" for d in decisions)
    stop = list(jr.read(path, ["stop"]))
    assert len(stop) == 1 and stop[0].data["reason"] == "test done"


def test_a_silent_feed_halts_the_runner_and_cancels_everything(
    trained: tuple[AppConfig, Any], standin: BackgroundStandin, tmp_path: Path
) -> None:
    def script(r: Runner) -> None:
        until("decisions after the warm-up", lambda: r.loop.stats.decisions >= 2)
        standin.inject("stall", 2.5)
        until("a halt", lambda: bool(r.loop.halted_reason))

    runner = _run(trained, standin, tmp_path, script, feed_silence=NS)
    path = tmp_path / "journal" / "paper-bybit.sqlite"
    halts = list(jr.read(path, ["halt"]))
    assert len(halts) == 1 and halts[0].data["reason"].startswith("feed silent")
    assert runner.loop.halted_reason.startswith("feed silent")
    later = [r for r in jr.read(path, ["submit"]) if r.seq > halts[0].seq]
    assert later == [] and next(iter(jr.read(path, ["cancel_all"]))).ts_ns == halts[0].ts_ns  # cancelled at the halt
    assert runner.gateway.open_orders() == []  # the paper exchange answered the cancels at the stop


def test_live_mode_trades_on_the_standin_exchange_and_a_restart_takes_its_word(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    from standin.private import PrivateSpec

    cfg = trained[0]
    feed = SimFeed(cfg.sim, cfg.instrument, 50, history_ns=330 * NS, catchup=60.0)
    keys = ("runner-key", "runner-secret")
    with BackgroundStandin(feed, private=PrivateSpec(*keys)) as server:

        def trade(r: Runner) -> None:
            until("orders on the exchange", lambda: r.loop.stats.decisions >= 3 and bool(_bybit(r).ledger.orders))

        first = _run(trained, server, tmp_path, trade, keys=keys)
        path = tmp_path / "journal" / "live-bybit.sqlite"
        submits = list(jr.read(path, ["submit"]))
        assert len(list(jr.read(path, ["decision"]))) >= 3
        assert submits and all(s.data["client_id"].startswith(first.session + "-") for s in submits)
        assert all(r.data["detail"] for r in jr.read(path, ["ack"]))  # every request the exchange answered
        stats = server.server.stats_dict()["private"]
        assert stats["open_orders"] == 0  # the stop cancelled everything on the exchange
        second = _run(trained, server, tmp_path, lambda r: until("ticks", lambda: r.loop.stats.ticks > 100), keys=keys)
        # the exchange is the truth: the restart's position is the exchange's, and no order id is reused
        assert _bybit(second).ledger.position == pytest.approx(stats["position"])
        ids = [int(r.order_id) for r in jr.read(path, ["submit"]) if r.order_id is not None]
        assert len(ids) == len(set(ids))


@pytest.mark.untraced
def test_a_live_start_the_exchange_keeps_refusing_exits_4_in_one_line_and_journals_why(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    """``python -m live.runner --live`` as typed, against a stand-in whose position read answers
    Bybit's 10016 to every try: the runner tries ``bybit.start_tries`` times, then exits 4 with one
    line naming the tries and the cause. Its shutdown cancels nothing (nothing was sent) and logs no
    error of its own; the journal ends on a ``stop`` that says why."""
    import os
    import subprocess
    import sys

    from standin.private import PrivateSpec
    from tests.conftest import REPO, trained_config
    from tests.test_cli import assert_one_line_error

    cfg = trained[0]
    keys = ("runner-key", "runner-secret")
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50), private=PrivateSpec(*keys)) as server:
        bybit = {"rest_url": server.url, "ws_public_url": server.ws_url, "start_backoff": "100ms"}
        config = trained_config(cfg, tmp_path, bybit=bybit)
        server.inject("server_error", on="position", count=100)
        env = {**os.environ, "BYBIT_API_KEY": keys[0], "BYBIT_API_SECRET": keys[1]}
        cmd = [sys.executable, "-m", "live.runner", "--live", "--config", str(config), "--model", "1"]
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        calls = int(server.stats()["private"].get("calls_position", 0))
    assert p.returncode == 4, p.stderr[-3000:]
    assert_one_line_error(p, f"cannot start at {server.url} (after 3 tries)", '"retCode":10016', "try again later")
    assert calls == 3 and keys[1] not in p.stderr
    log = (tmp_path / "logs" / "runner-live-bybit.log").read_text()
    assert log.count("start try") == 2 and '"level": "ERROR"' not in log, log[-3000:]
    (stop,) = list(jr.read(tmp_path / "journal" / "live-bybit.sqlite", ["stop"]))
    assert stop.data["reason"].startswith("failed: ") and "10016" in stop.data["reason"], stop.data
    assert not list(jr.read(tmp_path / "journal" / "live-bybit.sqlite", ["submit", "account"]))
