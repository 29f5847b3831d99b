"""The live runner: ``python -m live.runner --paper`` trades the promoted model, 24/7.

    python -m live.runner --paper --source bybit --duration 60s    # the configured Bybit endpoints
    python -m live.runner --source sim                             # the simulator, live-paced
    python -m live.runner --source replay --start 2026-01-05T12:00:00Z   # the warehouse, fast
    python -m live.runner --source replay --journal study.sqlite   # ... on an account of its own
    python -m live.runner --live --source bybit                    # real orders: needs the keys

Paper trading is the default. ``--live`` needs BYBIT_API_KEY and BYBIT_API_SECRET in the
environment (never on the command line, never logged). The model is ``models:/<name>@champion``
(or ``--model``); the runner refuses a model whose feature set differs from the online feature
engine's or that is older than ``live.max_model_age``, re-reads the alias every
``live.model_poll`` and swaps a newly promoted model in between decisions.

Everything it does goes to the journal of its account (``live.journal_dir``/<mode>-<source>.sqlite,
or ``--journal``; ``python -m live.journal`` reads it while it runs; live/accounts.py says which
journal a run may continue) and to rotated structured logs in ``live.log_dir``; one status line
every ``live.status_interval``. SIGINT / SIGTERM cancel every open order, flush the journal and
exit 0. A restart continues from the journal (paper) or the exchange (live). Every session that
starts ends with a ``stop`` record that says why, a failure included.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.cli import add_config_argument, config_from, run_main
from core.config import AppConfig
from core.errors import UserError
from core.jit import LateKernels
from core.timefmt import format_ns, parse_duration_ns, parse_time_ns
from execution.backtest import make_strategy
from execution.loader import load_strategy
from live.accounts import AccountLock, check_account, claim, journal_path, old_journal_note
from live.alerts import Alerts, Webhook, webhook_url
from live.champion import check_model, load_model, wait_for_champion
from live.decide import Loaded
from live.logs import setup_runner_logging
from live.warm import WarmStart, warm_start
from live.wiring import Options, make_feed, make_gateway, make_loop
from warehouse.journal import Journal, log_path

__all__ = ["Options", "Runner", "Summary", "check_model", "load_model", "main", "make_loop"]

log = logging.getLogger("live.runner")

KEY_ENV, SECRET_ENV = "BYBIT_API_KEY", "BYBIT_API_SECRET"


@dataclass
class Summary:
    mode: str
    journal: Path
    log: Path
    status: str
    decisions: int
    signals: int
    fills: int
    latency_p50_us: float
    latency_p99_us: float
    account: dict[str, float]
    halted: str
    lines: list[str]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options]:
    p = argparse.ArgumentParser(prog="python -m live.runner", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--paper", action="store_true", help="paper trading on the simulated exchange (default)")
    mode.add_argument("--live", action="store_true", help="real orders on Bybit (needs BYBIT_API_KEY/SECRET)")
    add_config_argument(p)
    p.add_argument("--source", choices=("bybit", "sim", "replay"), default="bybit", help="market data (default bybit)")
    p.add_argument("--model", metavar="URI", help="models:/<name>@alias or models:/<name>/N (default the champion)")
    p.add_argument("--duration", metavar="D", help="stop after this long (e.g. 60s, 8h; default: run until stopped)")
    p.add_argument("--start", metavar="T", help="--source replay: from this time (ISO 8601)")
    p.add_argument("--end", metavar="T", help="--source replay: until this time")
    p.add_argument(
        "--strategy",
        default="passive",
        metavar="NAME",
        help="baseline, passive (default) or module:Name, your own Strategy subclass (docs/strategies.md)",
    )
    p.add_argument("--speed", type=float, metavar="X", help="--source replay: 0 as fast as possible, 1 live pace")
    p.add_argument(
        "--journal",
        type=Path,
        metavar="PATH",
        help="the account's journal (default live.journal_dir/<mode>-<source>.sqlite: each source its own account)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="paper only, an execution study: act from this confidence instead of the model's thresholds",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="with no champion with skill yet, wait for one (checked every live.model_poll) instead of exiting",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    try:
        duration = parse_duration_ns(a.duration) if a.duration else None
    except ValueError as exc:
        raise UserError(f"--duration: {exc}") from None
    try:
        start = parse_time_ns(a.start) if a.start else None
        end = parse_time_ns(a.end) if a.end else None
    except ValueError as exc:
        raise UserError(f"--start/--end: {exc}") from None
    if duration is not None and duration <= 0:
        raise UserError("--duration must be positive")
    if a.source != "replay" and (start is not None or end is not None or a.speed is not None):
        raise UserError("--start, --end and --speed are for --source replay")
    if start is not None and end is not None and start >= end:
        order = "is after" if start > end else "is the same instant as"
        raise UserError(f"--start {a.start} {order} --end {a.end}: the replay window is empty")
    if a.live and a.source != "bybit":
        raise UserError("--live trades on Bybit: use --source bybit")
    if a.threshold is not None and (a.live or not 0 < a.threshold < 1):
        raise UserError("--threshold is a paper-only study and must be between 0 and 1")
    if a.wait and a.model is not None:
        raise UserError("--wait waits for a champion: it does not go with --model")
    load_strategy(a.strategy)  # a name that loads no strategy is one line, before anything starts
    return a, Options(
        a.live, a.source, a.model, duration, start, end, a.strategy, a.speed, a.threshold, a.journal, a.wait
    )


def keys_from_env() -> tuple[str, str]:
    key, secret = os.environ.get(KEY_ENV, ""), os.environ.get(SECRET_ENV, "")
    if not key or not secret:
        raise UserError(f"--live needs {KEY_ENV} and {SECRET_ENV} in the environment (paper trading needs neither)")
    return key, secret


class Runner:
    """Wires feed, model, gateway, strategy, journal; ``run()`` until the feed ends, a stop or a signal."""

    def __init__(self, cfg: AppConfig, o: Options, model: Loaded, keys: tuple[str, str] | None = None) -> None:
        self.cfg, self.o = cfg, o
        self.mode = "live" if o.live else "paper"
        lc = cfg.live
        url = webhook_url(cfg.monitor.webhook_url)  # a bad URL is refused before anything is opened
        self.feed = make_feed(cfg, o)
        self.journal_path, start_ns = claim(cfg, self.mode, o.source, o.journal, self.feed)
        self.lock = AccountLock(self.journal_path)
        try:  # again under the lock: another run may have written the journal meanwhile
            check_account(self.journal_path, self.mode, o.source, start_ns, journal_path(cfg, self.mode, o.source))
            self.session = uuid.uuid4().hex[:8]
            self.journal = Journal(self.journal_path, self.session, lc.journal_sync)
        except BaseException:
            self.lock.release()
            raise
        try:
            self._wire(model, keys, url)
        except BaseException:
            self.journal.close()
            self.lock.release()
            raise
        if note := old_journal_note(cfg, self.mode, o.source, self.journal_path):
            log.warning(note)
        last_mark = self.restored.data_ns
        if o.start_ns is None and start_ns is not None and last_mark is not None and last_mark >= 0:
            log.info("the account's replay continues after its last mark, from %s", format_ns(start_ns))

    def _wire(self, model: Loaded, keys: tuple[str, str] | None, url: str) -> None:
        cfg, o = self.cfg, self.o
        self.restored = self.journal.restore()
        study = cfg.strategy.baseline_fraction * cfg.live.equity if o.threshold is not None else 0.0  # same sizes
        self.strategy = make_strategy(
            o.strategy, cfg, model.model.horizon_ns, model.model.tau, own_in_book=o.live, study_notional=study
        )
        self.gateway = make_gateway(cfg, o, self.restored, self.session, keys)
        self.alerts = Alerts(self.journal, Webhook(url, cfg.monitor.webhook_timeout / 1e9) if url else None)
        paced = o.source != "replay"
        self.loop = make_loop(cfg, self.gateway, self.strategy, model, self.journal, paced, self.alerts)
        self.loop.record.data_before = self.restored.data_ns if self.restored.data_ns is not None else -1
        self.stopping = ""
        self.warmed: WarmStart | None = None
        self._feed_seen: Counter[str] = Counter()
        self.kernels: LateKernels | None = LateKernels(log)  # after this, a kernel readied is a stall: logged
        self.begun = False  # the gateway has started: from then on a shutdown cancels what is open
        self._restore_risk()

    def _restore_risk(self) -> None:
        a = self.restored.account
        if a is None:
            return
        r = self.strategy.risk
        r.peak, r.day, r.day_start = (
            float(a.get("peak", float("nan"))),
            int(a.get("day", -1)),
            float(a.get("day_start", float("nan"))),
        )

    def stop(self, why: str) -> None:
        if not self.stopping:
            self.stopping = why
            self.feed.stop()

    async def run(self) -> Summary:
        """Trade until the feed ends, a stop or a signal; whatever ends the session, a ``stop`` record says why."""
        j, loop = self.journal, self.loop
        now = time.time_ns()
        j.add("start", now, mode=self.mode, source=self.o.source, strategy=self.o.strategy, model=loop.m.version,
              feature_set=loop.m.model.feature_set, thresholds=loop.decider.thresholds(),
              restored=self.restored.account)  # fmt: skip
        status, failure = "completed", ""
        try:
            await self.gateway.begin(self.restored, now)
            self.begun = True
            loop.after_step()
            if self.restored.account:
                log.info("restored from %s: %s", self.journal_path, _account_line(self.restored.account))
            await self._trade()
        except BaseException as exc:
            status, failure = "failed", f"failed: {_why(exc)}"
            raise
        finally:
            await self._shutdown(failure)
            if status != "failed" and self.stopping and self.stopping != "duration reached":
                status = "stopped"
        return self.summary(status)

    async def _trade(self) -> None:
        lc, loop = self.cfg.live, self.loop
        t0 = time.monotonic_ns()
        last_status = last_poll = last_cmd = t0
        cold = self.o.source != "bybit"  # a warm start needs the warehouse the ingest fills from the same feed
        async for ticks in self.feed.batches():
            wall = time.monotonic_ns()
            if ticks and not cold:
                cold = True
                self.warmed = warm_start(self.cfg, loop.rows, min(t.ts_ex for t in ticks))
            if ticks:
                loop.watch.heard(wall)
            for tick in ticks:
                loop.on_tick(tick)
            if await self.gateway.sync():
                self.strategy.on_wake(self.gateway)
                loop.after_step()
                await self.gateway.sync()
            loop.after_step()
            self._feed_events()
            loop.check(wall, self.feed.book_valid, time.time_ns())
            if wall - last_status >= lc.status_interval:
                last_status = wall
                loop.record_account()
                loop.health(wall, time.time_ns(), dict(self.feed.counts), self.feed.book_valid)
                log.info(loop.status())
                if self.kernels is not None:
                    self.kernels.check()
            if wall - last_cmd >= min(lc.status_interval, 1_000_000_000):
                last_cmd = wall
                self._commands()
            if wall - last_poll >= lc.model_poll and self.o.model is None:
                last_poll = wall
                await self._poll_model()
            if self.o.duration_ns is not None and wall - t0 >= self.o.duration_ns:
                self.stop("duration reached")
            if self.stopping:
                return
        if self.o.source == "replay" and not self.stopping:
            loop.finish()

    def _feed_events(self) -> None:
        """Gaps, rejected messages, reconnects and resyncs of the feed go to the journal as they happen."""
        c = self.feed.counts
        for kind in ("gaps", "rejected", "reconnect", "resubscribe", "late"):
            new = c[kind] - self._feed_seen[kind]
            if new > 0:
                self._feed_seen[kind] = c[kind]
                self.journal.add("feed", self.gateway.now, event=kind, count=new, book_valid=self.feed.book_valid)

    def _commands(self) -> None:
        for cid, command in self.journal.pending_commands():
            log.warning("operator command: %s", command)
            if command == "resume":
                self.loop.resume()
            elif command == "halt":
                self.loop.halt("operator command")
            else:
                self.stop("operator command")
            self.journal.command_done(cid, self.gateway.now)
            self.journal.commit()

    async def _poll_model(self) -> None:
        from models import registry

        try:
            version, _ = await asyncio.to_thread(registry.resolve, self.cfg, None)
            if version == self.loop.m.version:
                return
            fresh = await asyncio.to_thread(load_model, self.cfg, version, time.time_ns(), self.o.threshold)
        except UserError as exc:
            log.warning("model poll: keeping version %s: %s", self.loop.m.version, exc)
            return
        self.loop.swap(fresh)

    async def _shutdown(self, failure: str = "") -> None:
        """Cancel everything, mark the account, write the ``stop`` record (even when this fails), close."""
        loop, j = self.loop, self.journal
        reason = failure or self.stopping or "end of data"
        broken: BaseException | None = None
        if self.kernels is not None:
            self.kernels.check()
        try:
            try:
                if self.begun:  # else the exchange never answered the start: nothing was sent, nothing to cancel
                    self.strategy.stop(self.gateway)
                    wait = max(self.cfg.execution.rate_window, 1_000_000_000)  # a refused cancel-all: its window
                    left = await loop.cancel_everything(wait)
                    loop.record_account()
                    if left:
                        raise RuntimeError(f"orders {left} are still open on the {self.gateway.name} exchange")
            except Exception as exc:  # the session still ends on the record, saying so
                broken = exc
                reason += f"; the shutdown failed: {_why(exc)}"
                log.error("shutdown: %s", exc)
            j.add("stop", time.time_ns(), reason=reason, status=loop.status())
        finally:
            try:
                j.close()
                self.alerts.close()
                await self.feed.aclose()
                await self.gateway.aclose()
            finally:
                self.lock.release()
        if broken is not None and not failure:
            raise broken

    def summary(self, status: str) -> Summary:
        s = self.loop.stats
        return Summary(
            self.mode,
            self.journal_path,
            log_path(self.cfg.resolve(self.cfg.live.log_dir), self.journal_path),
            status,
            s.decisions,
            s.signals,
            s.fills,
            s.latency(0.5),
            s.latency(0.99),
            self.gateway.account(),
            self.loop.halted_reason,
            [self.loop.status()],
        )


def _why(exc: BaseException) -> str:
    """A user error's own line; anything else with its type (a bug: the traceback follows)."""
    return str(exc) if isinstance(exc, UserError) else repr(exc)


def _account_line(a: dict[str, Any]) -> str:
    return f"position {a.get('position', 0.0):+.3f} BTC, cash {a.get('cash', 0.0):,.2f}, fees {a.get('fees', 0.0):,.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    args, o = parse_args(argv)
    cfg = config_from(args)
    keys = keys_from_env() if o.live else None
    mode = "live" if o.live else "paper"
    log_file = setup_runner_logging(cfg, journal_path(cfg, mode, o.source, o.journal), args.verbose)
    claim(cfg, mode, o.source, o.journal, make_feed(cfg, o))  # before the model loads
    if o.wait:
        try:
            if not wait_for_champion(cfg, o.duration_ns):
                from models.registry import NO_CHAMPION

                raise UserError(NO_CHAMPION.format(name=cfg.mlflow.model_name) + f" within --duration {args.duration}")
        except KeyboardInterrupt:
            print("stopped while waiting for a champion: no session was started")
            return 0
    model = load_model(cfg, o.model, time.time_ns(), o.threshold)
    if o.source != "replay":  # a live-paced feed: nothing may compile once it is connected
        from live.rehearse import rehearse

        log.info(
            "readying the kernels on a rehearsal before connecting (on a fresh checkout they compile: minutes, once)"
        )
        log.info(rehearse(cfg, o, model).line())
    runner = Runner(cfg, o, model, keys)
    gc.freeze()  # the model, mlflow's modules and the rehearsal's objects: no full collection scans them again

    def on_signal(signum: int, _frame: object) -> None:
        log.warning("%s received: cancelling every order, flushing the journal", signal.Signals(signum).name)
        runner.stop(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    log.info("%s runner: model v%s, source %s, journal %s, log %s", runner.mode, model.version, o.source,
             runner.journal_path, log_file)  # fmt: skip
    result = asyncio.run(runner.run())
    print(f"{result.mode} run {result.status}: {result.decisions:,} decisions, {result.signals:,} signals, "
          f"{result.fills:,} fills; tick-to-decision p50 {result.latency_p50_us:.0f} us, "
          f"p99 {result.latency_p99_us:.0f} us")  # fmt: skip
    print(f"  account: {_account_line(result.account)}, equity {result.account['equity']:,.2f}")
    if result.halted:
        print(f"  HALTED: {result.halted}")
    print(f"  journal: {result.journal}  (python -m live.journal {result.journal})")
    print(f"  log:     {result.log}")
    return 0


if __name__ == "__main__":
    run_main(main)
