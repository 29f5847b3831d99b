"""The live runner on recorded data: parity with the backtester, the journal, restarts, the kill switch."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.config import AppConfig
from core.errors import UserError
from execution.types import OrderKind, OrderStatus
from live.loop import Loaded
from live.runner import Options, Runner, check_model, main
from models import registry
from tests.conftest import trained_config
from warehouse import journal as jr

NS = 1_000_000_000


def _cfg(cfg: AppConfig, tmp_path: Path, **live: Any) -> AppConfig:
    return cfg.model_copy(
        update={
            "live": cfg.live.model_copy(update={"journal_dir": tmp_path / "journal", "log_dir": tmp_path, **live}),
        }
    )


def _top_threshold(top: np.ndarray) -> float:
    """The top 3 % of the confidences ``top``, or, when the top value holds more than that (a small tree
    gives a few distinct probabilities), just under it (a signal needs a probability strictly above)."""
    q = float(np.quantile(top, 0.97))
    return q if (top > q).any() else float(top[top < q].max())


def _study_model(cfg: AppConfig, *windows: tuple[int, int]) -> tuple[Any, float]:
    """Version 1 with a threshold low enough that it trades (the EV-chosen one rarely does): the top of
    its confidences (``_top_threshold``), in each of ``windows`` ([start, end) grid times) if given."""
    from pipelines.dataset import load_features

    model = registry.load_version(cfg, "1")
    rows = load_features(cfg)
    top = model.predict_proba(model.take(rows.x, rows.feature_names)).max(axis=1)
    parts = [top[(rows.ts >= a) & (rows.ts < b)] for a, b in windows] or [top]
    q = min(_top_threshold(t) for t in parts)
    return replace(model, threshold_up=q, threshold_down=q), q


def _first_row(cfg: AppConfig) -> int:
    from pipelines.dataset import load_features

    return int(load_features(cfg).ts[0])


def _order_ids(path: Path) -> list[int]:
    return [int(r.order_id) for r in jr.read(path, ["submit"]) if r.order_id is not None]


def _replay(cfg: AppConfig, model: Any, **opts: Any) -> Runner:
    o = Options(
        live=False,
        source="replay",
        model=None,
        duration_ns=None,
        start_ns=None,
        end_ns=None,
        strategy="passive",
        speed=0.0,
        threshold=model.threshold_up,
    )  # fmt: skip  (a study: the backtest's sizes)
    runner = Runner(cfg, replace(o, **opts), Loaded.of(model, "1"))
    asyncio.run(runner.run())
    return runner


def test_a_replay_through_the_runner_is_the_backtest(trained: tuple[AppConfig, Any], tmp_path: Path) -> None:
    from pipelines.backtest import signals, simulate
    from pipelines.dataset import load_features

    cfg = _cfg(trained[0], tmp_path)
    model, _ = _study_model(cfg)
    # the first 45 of the 90 minutes (the runner's replay, traced, is the test's cost): the backtest's
    # decisions up to ``end``, the runner's market three minutes past them (its fills after the last)
    end = _first_row(cfg) + 45 * 60 * NS
    bt = simulate(cfg, "passive", model, None, end, {}, study=True)
    rows = load_features(cfg, None, end)
    sig = signals(model, rows.ts, rows.x)
    _replay(cfg, model, end_ns=end + 3 * 60 * NS)
    path = tmp_path / "journal" / "paper-replay.sqlite"
    decisions = [d for d in jr.read(path, ["decision"]) if d.data["grid_ns"] <= end]
    # the same decisions: every stored feature row, the same probabilities and directions
    assert [d.data["grid_ns"] for d in decisions] == rows.ts.tolist()
    np.testing.assert_allclose([d.data["p_up"] for d in decisions], sig.p_up, rtol=0, atol=1e-12)
    assert [d.data["direction"] for d in decisions] == sig.direction.tolist()
    assert np.count_nonzero(sig.direction) > 5
    # the same orders and fills, up to the backtest's end (its last decision)
    last = int(rows.ts[-1]) + cfg.strategy.decision_delay
    submits = [r for r in jr.read(path, ["submit"]) if r.ts_ns <= last]
    orders = bt.orders[bt.orders["ts_submit_local"] <= last]
    assert len(orders) > 3 and len(submits) == len(orders)
    for s, o in zip(submits, orders, strict=True):
        assert (s.order_id, s.ts_ns, s.data["side"], s.data["order_kind"]) == (
            int(o["order_id"]),
            int(o["ts_submit_local"]),
            int(o["side"]),
            OrderKind(int(o["kind"])).name,
        )
    # how each order ended: its status, last price and size (after amends) and what filled
    done = {d.order_id: d.data for d in jr.read(path, ["done"]) if d.ts_ns <= last}
    ended = orders[(orders["ts_done_ex"] >= 0) & (orders["ts_done_ex"] < last - 2 * cfg.execution.response_latency)]
    assert len(ended) > 3
    for o in ended:
        d = done[int(o["order_id"])]
        assert d["status"] == OrderStatus(int(o["status"])).name and d["filled"] == float(o["filled"])
        assert d["qty"] == float(o["qty"]) and (math.isnan(o["price"]) or d["price"] == float(o["price"]))
    fills = [r for r in jr.read(path, ["fill"]) if r.data["ts_ex"] <= last]
    want = bt.fills[bt.fills["ts_ex"] <= last]
    assert len(want) > 0 and len(fills) == len(want)
    got = [(f.order_id, f.data["ts_ex"], f.data["price"], f.data["qty"], f.data["maker"]) for f in fills]
    assert got == [
        (int(f["order_id"]), int(f["ts_ex"]), float(f["price"]), float(f["qty"]), bool(f["maker"])) for f in want
    ]


def test_a_restart_continues_the_account_and_the_order_ids(trained: tuple[AppConfig, Any], tmp_path: Path) -> None:
    cfg = _cfg(trained[0], tmp_path)
    mid = _first_row(cfg) + 15 * 60 * NS
    model, _ = _study_model(cfg, (0, mid), (mid, mid + 15 * 60 * NS))  # it trades in both sessions
    first = _replay(cfg, model, end_ns=mid)
    acct = first.gateway.account()
    path = tmp_path / "journal" / "paper-replay.sqlite"
    restored = jr.restore(jr._connect(path, readonly=True))
    assert restored.account is not None and restored.account["position"] == pytest.approx(acct["position"])
    assert restored.account["cash"] == pytest.approx(acct["cash"]) and restored.open_orders == {}
    ids_before = set(_order_ids(path))
    second = _replay(cfg, model, start_ns=mid, end_ns=mid + 15 * 60 * NS)
    assert second.restored.account is not None and second.restored.last_order_id == max(ids_before)
    ids_after = [i for i in _order_ids(path) if i not in ids_before]
    assert ids_after and min(ids_after) > max(ids_before)  # no id is ever used twice
    starts = list(jr.read(path, ["start"]))
    assert len(starts) == 2 and starts[1].data["restored"]["position"] == pytest.approx(acct["position"])


def test_the_kill_switch_halts_on_drawdown_and_cancels_everything(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    cfg = _cfg(trained[0], tmp_path)
    cfg = cfg.model_copy(update={"risk": cfg.risk.model_copy(update={"halt_drawdown": 1e-6, "reduce_drawdown": 1e-6})})
    model, _ = _study_model(cfg)
    runner = _replay(cfg, model, end_ns=_first_row(cfg) + 20 * 60 * NS)
    path = tmp_path / "journal" / "paper-replay.sqlite"
    halts = list(jr.read(path, ["halt"]))
    assert len(halts) == 1 and "drawdown" in halts[0].data["reason"]
    assert runner.loop.halted_reason.startswith("drawdown")
    after = [r for r in jr.read(path, ["submit"]) if r.seq > halts[0].seq]
    assert after == []  # nothing new once halted
    assert runner.gateway.open_orders() == []


def test_operator_commands_halt_resume_and_stop(trained: tuple[AppConfig, Any], tmp_path: Path) -> None:
    cfg = _cfg(trained[0], tmp_path, status_interval=NS)
    model, _ = _study_model(cfg)
    path = tmp_path / "journal" / "paper-replay.sqlite"
    jr.Journal(path, "setup").close()
    for c in ("halt", "resume", "stop"):
        jr.send_command(path, c, 0)
    _replay(cfg, model, end_ns=_first_row(cfg) + 30 * 60 * NS)
    kinds = [r.kind for r in jr.read(path, ["halt", "resume", "command", "stop"])]
    assert kinds[:5] == ["halt", "command", "resume", "command", "command"] and kinds[-1] == "stop"
    stop = list(jr.read(path, ["stop"]))[-1]
    assert stop.data["reason"] == "operator command"
    with pytest.raises(UserError, match="unknown command"):
        jr.send_command(path, "explode", 0)


def test_a_model_for_other_features_or_too_old_is_refused(trained: tuple[AppConfig, Any]) -> None:
    cfg = trained[0]
    model = registry.load_version(cfg, "1")
    now = registry.version_created_ns(cfg, "1")
    check_model(cfg, model.feature_set, now, "1", now)  # the trained one passes
    with pytest.raises(UserError, match="feature set"):
        check_model(cfg, "0123456789abcdef", now, "1", now)
    with pytest.raises(UserError, match="days old"):
        check_model(cfg, model.feature_set, now, "1", now + cfg.live.max_model_age + NS)


def test_live_without_keys_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BYBIT_API_KEY", raising=False)
    monkeypatch.delenv("BYBIT_API_SECRET", raising=False)
    with pytest.raises(UserError, match="BYBIT_API_KEY"):
        main(["--live", "--source", "bybit"])
    with pytest.raises(UserError, match="--live trades on Bybit"):
        main(["--live", "--source", "sim"])
    with pytest.raises(UserError, match="--duration"):
        main(["--duration", "soon"])


def _runner_cmd(config: Path, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "live.runner", "--config", str(config), "--source", "replay", "--model", "1", *args]


def _wait_for(path: Path, kind: str, n: int, proc: Any, timeout_s: float = 240.0) -> int:
    """Read the journal while the runner writes it until ``n`` records of ``kind`` are there."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        assert proc.poll() is None, proc.stderr.read()
        if path.exists():
            try:
                count = len(list(jr.read(path, [kind])))
            except UserError:  # the file exists before its tables do
                count = 0
            if count >= n:
                return count
        time.sleep(0.2)
    raise AssertionError(f"no {n} {kind} records within {timeout_s} s")


def test_sigkill_then_restart_keeps_the_position_and_never_reuses_an_order(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    import signal
    import subprocess

    cfg, _ = trained
    config = trained_config(cfg, tmp_path)
    _, q = _study_model(cfg)
    path = tmp_path / "journal" / "paper-replay.sqlite"
    cmd = _runner_cmd(config, "--threshold", repr(q), "--speed", "0")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd())
    try:
        _wait_for(path, "fill", 3, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # what the journal holds after the kill is consistent: the account is the sum of the fills before it
    rows = list(jr.read(path))
    accounts = [r for r in rows if r.kind == "account"]
    assert accounts, "no account record was committed before the kill"
    last = accounts[-1]
    signed = sum(r.data["side"] * r.data["qty"] for r in rows if r.kind == "fill" and r.seq < last.seq)
    assert last.data["position"] == pytest.approx(signed, abs=1e-9)
    before = _order_ids(path)
    assert len(before) == len(set(before)) > 0
    # the restart: the position comes back, the orders that rested on the dead paper exchange end
    restart = subprocess.run(
        _runner_cmd(config, "--threshold", repr(q), "--duration", "3s", "--speed", "100"),
        capture_output=True, text=True, timeout=300, cwd=Path.cwd(),
    )  # fmt: skip
    assert restart.returncode == 0, restart.stderr
    assert "restored from" in restart.stderr
    starts = [r for r in jr.read(path, ["start"])]
    assert len(starts) == 2 and starts[1].data["restored"]["position"] == pytest.approx(last.data["position"])
    after = _order_ids(path)
    assert len(after) == len(set(after)) and min(after[len(before) :], default=max(before) + 1) > max(before)
    left = jr.restore(jr._connect(path, readonly=True))
    assert left.open_orders == {}  # every order of both sessions has ended (the dead ones as CANCELLED)


def test_sigterm_cancels_everything_flushes_and_exits_zero(trained: tuple[AppConfig, Any], tmp_path: Path) -> None:
    import signal
    import subprocess

    cfg, _ = trained
    config = trained_config(cfg, tmp_path)
    _, q = _study_model(cfg)
    path = tmp_path / "journal" / "paper-replay.sqlite"
    proc = subprocess.Popen(
        _runner_cmd(config, "--threshold", repr(q), "--speed", "100"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd(),
    )  # fmt: skip
    try:
        _wait_for(path, "submit", 2, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err and "paper run stopped" in out
    stop = list(jr.read(path, ["stop"]))
    assert len(stop) == 1 and stop[0].data["reason"] == "SIGTERM"
    assert jr.restore(jr._connect(path, readonly=True)).open_orders == {}  # nothing left resting
    log = (tmp_path / "logs" / "runner-paper-replay.log").read_text().splitlines()  # the account's own log
    import json

    assert any(json.loads(line)["msg"].startswith("SIGTERM received") for line in log)


def test_a_newly_promoted_model_is_swapped_in_between_decisions(trained: tuple[AppConfig, Any], tmp_path: Path) -> None:
    import shutil
    import threading

    from live.runner import load_model

    base = trained[0]
    shutil.copy(base.resolve(base.mlflow.store), tmp_path / "mlflow.db")  # a registry of our own to promote in
    cfg = _cfg(base, tmp_path, model_poll=NS // 5)
    cfg = cfg.model_copy(update={"mlflow": cfg.mlflow.model_copy(update={"store": tmp_path / "mlflow.db"})})
    client = registry.connect(cfg)
    name = cfg.mlflow.model_name
    v1 = client.get_model_version(name, "1")
    v2 = client.create_model_version(name, v1.source, run_id=v1.run_id)
    client.set_registered_model_alias(name, "champion", "1")
    first = load_model(cfg, None, registry.version_created_ns(cfg, "1"))
    assert first.version == "1"
    o = Options(live=False, source="replay", model=None, duration_ns=None, start_ns=None, end_ns=None,
                strategy="passive", speed=0.0)  # fmt: skip
    runner = Runner(cfg, o, first)

    def promote_mid_run() -> None:  # promote once the runner trades, stop once the new model has decided a while
        import time

        t0 = time.monotonic()
        try:
            while runner.loop.stats.decisions < 100 and time.monotonic() - t0 < 120:
                time.sleep(0.01)
            client.set_registered_model_alias(name, "champion", str(v2.version))
            while runner.loop.m.version == "1" and time.monotonic() - t0 < 120:
                time.sleep(0.01)
            n = runner.loop.stats.decisions
            while runner.loop.stats.decisions < n + 100 and time.monotonic() - t0 < 120:
                time.sleep(0.01)
        finally:
            runner.stop("test done")

    watcher = threading.Thread(target=promote_mid_run, daemon=True)
    watcher.start()
    asyncio.run(runner.run())
    watcher.join(timeout=10)
    path = tmp_path / "journal" / "paper-replay.sqlite"
    swaps = list(jr.read(path, ["model"]))
    assert [(s.data["previous"], s.data["version"]) for s in swaps] == [("1", str(v2.version))]
    versions = [d.data["model_version"] for d in jr.read(path, ["decision"])]
    k = versions.index(str(v2.version))
    assert k > 0 and set(versions[:k]) == {"1"} and set(versions[k:]) == {str(v2.version)}  # one clean switch
    assert runner.loop.stats.decisions == len(versions)  # no decision lost or repeated around the swap


def _loop(cfg: AppConfig, tmp_path: Path) -> Any:
    from execution.backtest import make_strategy
    from live.paper import PaperGateway
    from live.runner import make_loop

    model = registry.load_version(cfg, "1")
    gw = PaperGateway(cfg, None, 0, NS)
    j = jr.Journal(tmp_path / "j.sqlite", "unit")
    return make_loop(cfg, gw, make_strategy("passive", cfg, model.horizon_ns), Loaded.of(model, "1"), j, paced=True)


@pytest.mark.parametrize(
    ("counter", "limit", "reason"),
    [("errors", "error_burst", "exchange errors"), ("rate_limited", "rate_limit_burst", "rate-limit answers")],
)
def test_a_burst_of_exchange_errors_or_rate_limits_halts(
    trained: tuple[AppConfig, Any], tmp_path: Path, counter: str, limit: str, reason: str
) -> None:
    cfg = _cfg(trained[0], tmp_path)
    loop = _loop(cfg, tmp_path)
    n = getattr(cfg.live, limit)
    setattr(loop.gw, counter, n - 1)
    loop.check(loop.watch.feed.wall_last_tick, True)
    assert not loop.halted_reason  # one short of the burst
    later = loop.watch.feed.wall_last_tick + cfg.live.burst_window + NS
    setattr(loop.gw, counter, n)  # the old ones left the window: one new error is no burst
    loop.watch.feed.wall_last_tick = later
    loop.check(later, True)
    assert not loop.halted_reason
    setattr(loop.gw, counter, 2 * n)
    loop.check(later, True)
    assert reason in loop.halted_reason
    assert [r.data["reason"] for r in jr.read(tmp_path / "j.sqlite", ["halt"])] == [loop.halted_reason]
    loop.resume()  # the operator: the burst is over; the answers in the window no longer count
    loop.check(later + NS, True)
    assert not loop.halted_reason  # it re-halted at once, for a whole window (the chaos soak's rate limits)
    setattr(loop.gw, counter, 3 * n)
    loop.check(later + NS, True)
    assert reason in loop.halted_reason  # a new burst after the resume still halts


def test_an_invalid_book_for_too_long_halts(trained: tuple[AppConfig, Any], tmp_path: Path) -> None:
    cfg = _cfg(trained[0], tmp_path)
    loop = _loop(cfg, tmp_path)
    t = loop.watch.feed.wall_last_tick
    loop.check(t, False)  # invalid: the runner waits for the resync
    loop.check(t + cfg.live.invalid_book // 2, True)  # resynced in time
    loop.check(t + cfg.live.invalid_book, False)
    assert not loop.halted_reason
    loop.watch.feed.wall_last_tick = t + 2 * cfg.live.invalid_book
    loop.check(t + 2 * cfg.live.invalid_book + NS, False)
    assert loop.halted_reason.startswith("no valid book")
    loop.resume()
    assert not loop.halted_reason and loop.strategy.risk.state.name == "ACTIVE"


def test_the_runner_log_is_json_and_rotates(trained: tuple[AppConfig, Any], tmp_path: Path) -> None:
    import json
    import logging

    from live.logs import setup_runner_logging

    cfg = _cfg(trained[0], tmp_path, log_max_bytes=10_000, log_backups=2)
    level = logging.getLogger().level
    path = setup_runner_logging(cfg, tmp_path / "paper-bybit.sqlite")
    log = logging.getLogger("live.test")
    try:
        for i in range(200):
            log.info("line %d %s", i, "x" * 100, extra={"fills": i})
    finally:
        for h in list(logging.getLogger().handlers):
            if getattr(h, "baseFilename", None) == str(path):
                logging.getLogger().removeHandler(h)
                h.close()
        logging.getLogger().setLevel(level)
    assert path == tmp_path / "runner-paper-bybit.log"  # the account's own file
    assert (tmp_path / "runner-paper-bybit.log.1").exists() and not (tmp_path / "runner-paper-bybit.log.3").exists()
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["msg"].startswith("line 199") and last["fills"] == 199 and last["level"] == "INFO"


def test_a_model_that_grows_too_old_while_running_halts_the_runner(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    cfg = _cfg(trained[0], tmp_path)
    loop = _loop(cfg, tmp_path)
    created = registry.version_created_ns(cfg, "1")
    loop.decider.m = Loaded.of(loop.m.model, "1", created)
    loop.check(loop.watch.feed.wall_last_tick, True, created + cfg.live.max_model_age - NS)
    assert not loop.halted_reason
    loop.check(loop.watch.feed.wall_last_tick, True, created + cfg.live.max_model_age + NS)
    assert "older than live.max_model_age" in loop.halted_reason


def test_a_refused_amend_leaves_a_live_order_open_and_a_reject_ends_it(tmp_path: Path) -> None:
    # Bybit turns down one amend ("nothing to change") while the order rests: a restart must still
    # know the order; an order the exchange rejected outright is over
    j = jr.Journal(tmp_path / "j.sqlite", "s1")
    for oid in (1, 2):
        j.add("submit", 1, oid, client_id=f"c{oid}", side=1, qty=0.01, price=100.0)
    j.add("refused", 2, 1, detail="amend: nothing to change")
    j.add("reject", 3, 2, detail="110007: insufficient balance")
    j.close()
    restored = jr.restore(jr._connect(tmp_path / "j.sqlite", readonly=True))
    assert list(restored.open_orders) == [1] and restored.client_ids == {"c1": 1, "c2": 2}


def _two_resting_orders(cfg: AppConfig, tmp_path: Path, window: int) -> tuple[Any, list[int]]:
    """A paper loop whose rate limit (2 requests per ``window``) two resting orders have used up."""
    from core.records import Book

    e = cfg.execution.model_copy(update={"rate_limit": 2, "rate_window": window})
    loop = _loop(cfg.model_copy(update={"execution": e}), tmp_path)
    n, tick = cfg.features.levels, cfg.instrument.tick_size
    bids, asks = 60_000.0 - tick * np.arange(n), 60_000.0 + tick * (1 + np.arange(n))
    t0 = 1_700_000_000 * NS
    loop.on_tick(Book(t0, t0 + 1_000_000, 0, bids, np.ones(n), asks, np.ones(n)))
    gw = loop.gw
    ids = [gw.submit(1, 0.01, bids[5]), gw.submit(-1, 0.01, asks[5])]
    loop.advance(gw.now + 50_000_000)
    return loop, ids


@pytest.mark.parametrize("window", [NS, 3600 * NS])
def test_a_shutdown_sends_a_refused_cancel_all_again_and_names_what_it_could_not_cancel(
    trained: tuple[AppConfig, Any], tmp_path: Path, window: int
) -> None:
    # the strategy's last requests used the rate limit up: the shutdown's cancel-all is refused
    # (retCode 10006); sent again after the window every order is gone, else the ids come back
    loop, ids = _two_resting_orders(_cfg(trained[0], tmp_path), tmp_path, window)
    gw = loop.gw
    assert sorted(o.order_id for o in gw.open_orders()) == ids  # both rest; the window holds 2 requests
    left = asyncio.run(loop.cancel_everything(NS, tries=3))
    assert gw.rate_limited >= 1  # the first cancel-all was refused
    done = {r.order_id: r.data["status"] for r in jr.read(tmp_path / "j.sqlite", ["done"])}
    if window == NS:
        assert left == [] and gw.open_orders() == []
        assert done == dict.fromkeys(ids, OrderStatus.CANCELLED.name)
    else:
        assert sorted(left) == ids and gw.rate_limited >= 3 and done == {}  # one refusal per cancel-all


def test_a_halt_whose_cancel_all_was_refused_cancels_again_until_nothing_is_left(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    from live.loop import RECANCEL_NS

    loop, ids = _two_resting_orders(_cfg(trained[0], tmp_path), tmp_path, NS)
    gw = loop.gw
    loop.halt("operator command")
    loop.advance(gw.now + 2 * NS)
    assert sorted(o.order_id for o in gw.open_orders()) == ids and gw.rate_limited >= 1  # refused
    wall = loop.watch.feed.wall_last_tick + 10 * RECANCEL_NS
    loop.watch.feed.wall_last_tick = wall
    loop.check(wall, True)
    loop.advance(gw.now + NS)
    loop.after_step()
    assert gw.open_orders() == [] and loop.halted_reason == "operator command"
    done = {r.order_id: r.data["status"] for r in jr.read(tmp_path / "j.sqlite", ["done"])}
    assert done == dict.fromkeys(ids, OrderStatus.CANCELLED.name)
