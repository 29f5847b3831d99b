"""Is this machine ready to trade? ``python -m live.diagnose`` checks what the runner needs.

One row per check, OK / WARN / FAIL, against thresholds from the config:

  warehouse  the DuckDB file opens read-only (a writer holding it: WARN, busy)
  freshness  its newest book update is younger than monitor.warehouse_stale
  gaps       no silence over features.max_gap in its last monitor.gap_window of data (else WARN)
  model      the champion loads, has the runner's feature set, is younger than live.max_model_age
  exchange   bybit.rest_url answers ccxt's fetch_time
  clock      the local clock is within monitor.max_clock_offset of the exchange's (WARN past half)
  disk       monitor.min_free_disk_gb free under the warehouse, the mlruns store and live.log_dir
  journal    every journal in live.journal_dir (or --journal's) passes quick_check, its records make
             sense and its sessions are of one account (one row per journal)

Every check only reads (the journal while the runner may be writing it) and turns its own failure
into a FAIL row, so one broken part never hides the others. ``run_checks`` returns the rows for
other callers (the dashboard); it runs an event loop of its own, so call it from a thread when one
is already running.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec

from core.cli import add_config_argument, config_from, run_main
from core.clock import Clock, SystemClock
from core.config import AppConfig, BybitConfig
from core.errors import UnavailableError, UserError
from core.timefmt import format_ns
from warehouse.journal import journals

Status = Literal["OK", "WARN", "FAIL"]
OK: Status = "OK"
WARN: Status = "WARN"
FAIL: Status = "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}

OPEN_TIMEOUT_S = 2.0  # how long the warehouse check waits for a writer to let go
TIME_SAMPLES = 3  # exchange time requests; the one with the shortest round trip is kept
TRAIN_HINT = "train and promote one first: python -m flows.train; python -m flows.promote"
NS = 1_000_000_000

P = ParamSpec("P")
_NEWEST = "SELECT max(ts_exchange_ns) FROM book_updates WHERE venue = ? AND symbol = ?"


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    status: Status
    detail: str


def human(ns: int) -> str:
    """A duration as people say it: 350 ms, 4.2 s, 12 s, 4 min 10 s, 3 h 12 min, 9 d 5 h."""
    ns = abs(ns)
    s = ns // NS
    if s < 10:
        return f"{ns / 1e6:.0f} ms" if s < 1 else f"{ns / NS:.2g} s"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        big, small, units = s // 60, s % 60, ("min", "s")
    elif s < 48 * 3600:
        big, small, units = s // 3600, s % 3600 // 60, ("h", "min")
    else:
        big, small, units = s // 86_400, s % 86_400 // 3600, ("d", "h")
    return f"{big} {units[0]}" + (f" {small} {units[1]}" if small else "")


def _why(exc: BaseException) -> str:
    """One line for any exception, with its cause (ccxt hides "connection refused" there)."""
    from market.sources.bybit import short_error

    return str(exc) if isinstance(exc, UserError) else short_error(exc)  # short_error adds the direct cause


def _guarded(name: str) -> Callable[[Callable[P, list[Check]]], Callable[P, list[Check]]]:
    """Whatever goes wrong inside a check becomes its FAIL row instead of an exception."""

    def wrap(fn: Callable[P, list[Check]]) -> Callable[P, list[Check]]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> list[Check]:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # any failure of one check is that check's result
                return [Check(name, FAIL, _why(exc))]

        return run

    return wrap


@_guarded("warehouse")
def check_warehouse(cfg: AppConfig, clock: Clock | None = None, open_timeout_s: float = OPEN_TIMEOUT_S) -> list[Check]:
    """The DuckDB file opens read-only; its newest book update is recent; the recent data has no long silence."""
    from warehouse.db import one, reading
    from warehouse.reader import silences

    clock = clock or SystemClock()
    path = cfg.resolve(cfg.warehouse.path)
    venue, symbol = cfg.instrument.venue, cfg.instrument.venue_symbol
    max_gap, window, stale = cfg.features.max_gap, cfg.monitor.gap_window, cfg.monitor.warehouse_stale
    try:
        with reading(path, open_timeout_s) as con:
            row = one(con, _NEWEST, [venue, symbol])
            newest = None if row is None or row[0] is None else int(row[0])
            found = silences(con, max_gap, sys.maxsize, newest - window)[1] if newest is not None else []
    except UnavailableError:
        return [Check("warehouse", WARN, f"busy: a writer holds it ({path}; waited {open_timeout_s:g} s)")]
    rows = [Check("warehouse", OK, f"{path} opens read-only ({path.stat().st_size / 1e6:,.0f} MB)")]
    if newest is None:
        no_data = f"no book updates for {venue}/{symbol}"
        return [*rows, Check("freshness", FAIL, no_data), Check("gaps", WARN, f"not checked: {no_data}")]
    age = clock.now_ns() - newest
    fresh = f"{human(age)} old (limit {human(stale)})" if age >= 0 else f"{human(age)} ahead of the local clock"
    rows.append(Check("freshness", FAIL if age > stale else WARN if age < 0 else OK, f"newest book update {fresh}"))
    # the silences ending within the window, of this pair
    recent = [s for s in found if (s.venue, s.symbol) == (venue, symbol) and s.until_ns > newest - window]
    what = f"longer than {human(max_gap)} in the last {human(window)} of data"
    if not recent:
        return [*rows, Check("gaps", OK, f"no silence {what}")]
    top = max(recent, key=lambda s: s.seconds)
    longest = f"the longest {human(top.until_ns - top.after_ns)} after {format_ns(top.after_ns)}"
    return [*rows, Check("gaps", WARN, f"{len(recent)} silence(s) {what}; {longest}")]


@_guarded("model")
def check_model(cfg: AppConfig, clock: Clock | None = None) -> list[Check]:
    """The champion exists, loads, computes our feature set and is young enough to trade (as the runner asks)."""
    from live.runner import check_model as refuse_unfit
    from models import registry

    clock = clock or SystemClock()
    try:
        registry.store(cfg)
    except UnavailableError:
        return [Check("model", FAIL, f"no model registry at {cfg.resolve(cfg.mlflow.store)}: {TRAIN_HINT}")]
    version = registry.version_for(cfg, registry.CHAMPION)
    if version is None:
        return [Check("model", FAIL, f"no champion in {cfg.mlflow.model_name}: {TRAIN_HINT}")]
    model = registry.load_version(cfg, version)
    created = registry.version_created_ns(cfg, version)
    now = clock.now_ns()
    refuse_unfit(cfg, model.feature_set, created, version, now)  # the runner's own refusal, as one line
    age = f"{human(now - created)} old (limit {human(cfg.live.max_model_age)})"
    return [Check("model", OK, f"champion v{version}, feature set {model.feature_set}, {age}")]


async def _ask_time(endpoints: BybitConfig, clock: Clock) -> tuple[int, int, int]:
    """(fetch_time's round trip, clock offset, its round trip) through ccxt at the configured endpoints."""
    import ccxt.pro as ccxtpro

    from market.sources.bybit import point_at

    timeout_s = endpoints.timeout / NS
    ex = ccxtpro.bybit({"timeout": int(timeout_s * 1000), "enableRateLimit": False})
    point_at(ex, endpoints.rest_url, endpoints.ws_public_url)
    try:
        t0 = clock.now_ns()
        await asyncio.wait_for(ex.fetch_time(), timeout_s)
        first_rtt = clock.now_ns() - t0
        best: tuple[int, int] | None = None  # (round trip, offset)
        for _ in range(TIME_SAMPLES):  # the connection is warm now; keep the tightest bracket
            sent = clock.now_ns()
            answer: dict[str, Any] = await asyncio.wait_for(ex.publicGetV5MarketTime(), timeout_s)
            got = clock.now_ns()
            nano = answer.get("result", {}).get("timeNano")
            server = int(nano) if nano else int(answer["time"]) * 1_000_000  # Bybit v5 /v5/market/time
            sample = (got - sent, (sent + got) // 2 - server)
            best = sample if best is None or sample[0] < best[0] else best
        assert best is not None
        return first_rtt, best[1], best[0]
    finally:
        await ex.close()


@_guarded("exchange")
def check_exchange(cfg: AppConfig, clock: Clock | None = None) -> list[Check]:
    """The configured REST endpoint answers ccxt's fetch_time; the local clock agrees with the exchange's."""
    clock = clock or SystemClock()
    url, limit = cfg.bybit.rest_url, cfg.monitor.max_clock_offset
    try:
        first_rtt, offset, rtt = asyncio.run(_ask_time(cfg.bybit, clock))
    except Exception as exc:  # ccxt, aiohttp, OS and timeout errors all mean: unreachable as configured
        return [
            Check("exchange", FAIL, f"{url} unreachable: {_why(exc)}"),
            Check("clock", WARN, "not measured: the exchange is unreachable"),
        ]
    status = FAIL if abs(offset) > limit else WARN if abs(offset) > limit / 2 else OK
    side = "ahead of" if offset > 0 else "behind"
    clock_line = f"local clock {abs(offset) / 1e6:.1f} ms {side} the exchange (round trip {rtt / 1e6:.1f} ms"
    return [
        Check("exchange", OK, f"{url} answers fetch_time (round trip {first_rtt / 1e6:.1f} ms)"),
        Check("clock", status, f"{clock_line}, limit {limit / 1e6:.0f} ms)"),
    ]


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@_guarded("disk")
def check_disk(cfg: AppConfig) -> list[Check]:
    """Free space on every filesystem holding the warehouse, the MLflow store or the runner's logs."""
    places = [
        ("warehouse", cfg.resolve(cfg.warehouse.path).parent),
        ("mlruns", cfg.resolve(cfg.mlflow.store).parent),
        ("mlruns", cfg.resolve(cfg.mlflow.artifacts)),
        ("logs", cfg.resolve(cfg.live.log_dir)),
    ]
    by_device: dict[int, tuple[Path, list[str]]] = {}
    for what, path in places:
        here = _existing(path)
        whats = by_device.setdefault(os.stat(here).st_dev, (here, []))[1]
        whats += [] if what in whats else [what]
    least = cfg.monitor.min_free_disk_gb
    parts, status = [], OK
    for here, whats in by_device.values():
        free = shutil.disk_usage(here).free / 1e9
        status = FAIL if free < least else status
        parts.append(f"{free:,.1f} GB free for {', '.join(whats)} ({here})")
    return [Check("disk", status, "; ".join(parts) + f" (limit {least:g} GB)")]


@_guarded("journal")
def check_journal(cfg: AppConfig, journal: Path | None = None) -> list[Check]:
    """Every journal in ``live.journal_dir`` (or only ``journal``): one row each, read without writing."""
    if journal is not None:
        if not journal.exists():
            return [Check("journal", WARN, f"{journal}: none (the runner has not run with this journal)")]
        return [_check_one_journal(journal)]
    folder = cfg.resolve(cfg.live.journal_dir)
    found = journals(folder)
    if not found:
        return [Check("journal", WARN, f"{folder}: no journal (the runner has not run yet)")]
    return [_check_one_journal(path) for path in found]


def _check_one_journal(path: Path) -> Check:
    """A sound SQLite file whose records make sense and whose sessions are of one account."""
    try:
        return _journal_row(path)
    except Exception as exc:  # one broken journal is its own row; the others are still checked
        return Check("journal", FAIL, f"{path}: {_why(exc)}")


def _journal_row(path: Path) -> Check:
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        verdict = [str(r[0]) for r in con.execute("PRAGMA quick_check").fetchall()]
        if verdict != ["ok"]:
            return Check("journal", FAIL, f"{path}: quick_check: {verdict[0]}")
        scan = _scan(con)
    except sqlite3.DatabaseError as exc:
        return Check("journal", FAIL, f"{path}: not a readable journal ({exc})")
    finally:
        con.close()
    if scan.problems:
        more = f" (and {len(scan.problems) - 1} more)" if len(scan.problems) > 1 else ""
        return Check("journal", FAIL, f"{path}: {scan.problems[0]}{more}")
    tail = "no account record yet"
    if scan.account is not None:
        tail = f"last account: position {scan.account['position']:+.3f} BTC, equity {scan.account['equity']:,.2f}"
    detail = f"{path}: {scan.records:,} records, {scan.sessions} session(s); {tail}"
    if path.name in ("paper.sqlite", "live.sqlite"):
        detail += "; the shared journal of earlier versions, no longer written"
    if len(scan.accounts) > 1:
        names = ", ".join(f"{m}/{s}" for m, s in scan.accounts)
        return Check("journal", WARN, f"{detail}; its sessions are of several accounts ({names}): no run continues it")
    return Check("journal", OK, detail)


@dataclass
class _Scan:
    problems: list[str]
    records: int
    sessions: int
    account: dict[str, Any] | None
    accounts: list[tuple[str, str]]  # (mode, source) of its sessions' start records


def _scan(con: sqlite3.Connection) -> _Scan:
    """What is wrong, records, sessions, the last account: data is JSON, seq rises, fills are of submitted orders."""
    problems: list[str] = []
    accounts: list[tuple[str, str]] = []
    submitted: set[int] = set()
    sessions: set[str] = set()
    account: dict[str, Any] | None = None
    last = count = 0
    for seq, session, kind, oid, data in con.execute(
        "SELECT seq, session, kind, order_id, data FROM records ORDER BY rowid"
    ):
        count += 1
        sessions.add(session)
        if seq <= last:
            problems.append(f"record seq {seq} follows seq {last}")
        last = max(last, seq)
        try:
            d = json.loads(data)
        except (ValueError, TypeError):
            problems.append(f"record {seq} ({kind}): data is not JSON")
            continue
        if kind == "account":
            account = d if isinstance(d, dict) else {}
        elif kind == "start" and isinstance(d, dict):
            owner = (str(d.get("mode")), str(d.get("source")))
            accounts += [] if owner in accounts else [owner]
        elif kind == "submit" and oid is not None:
            submitted.add(int(oid))
        elif kind == "fill" and oid is not None and int(oid) not in submitted:  # live: None is not our order
            problems.append(f"record {seq}: a fill for order {oid}, which was never submitted")
    bad = [
        k for k in ("position", "cash", "equity") if account is not None and type(account.get(k)) not in (int, float)
    ]
    problems += [f"the last account record has no number for {', '.join(bad)}"] if bad else []
    return _Scan(problems, count, len(sessions), account, accounts)


def run_checks(cfg: AppConfig, journal: Path | None = None, clock: Clock | None = None) -> list[Check]:
    """Every check, in the order data flows: warehouse, model, exchange, disk, the journals (or ``journal``)."""
    return [
        *check_warehouse(cfg, clock),
        *check_model(cfg, clock),
        *check_exchange(cfg, clock),
        *check_disk(cfg),
        *check_journal(cfg, journal),
    ]


def exit_code(checks: Sequence[Check], strict: bool = False) -> int:
    """1 when a check failed (``strict``: or warned), else 0."""
    worst = max((_RANK[c.status] for c in checks), default=0)
    return 1 if worst >= _RANK[WARN if strict else FAIL] else 0


def format_table(checks: Sequence[Check]) -> str:
    w = max([len("check"), *(len(c.name) for c in checks)])
    lines = [f"{'check':<{w}}  status  detail", f"{'-' * w}  ------  {'-' * 6}"]
    lines += [f"{c.name:<{w}}  {c.status:<6}  {c.detail}" for c in checks]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m live.diagnose",
        description=__doc__.rsplit("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 when no check FAILs (--strict: and none WARNs), 1 when one does, 2 on bad input",
    )
    add_config_argument(p)
    p.add_argument(
        "--journal", type=Path, metavar="PATH", help="check this journal only (default: every one in live.journal_dir)"
    )
    p.add_argument("--strict", action="store_true", help="a warning fails too (exit 1)")
    args = p.parse_args(argv)
    cfg = config_from(args)
    checks = run_checks(cfg, args.journal)
    print(format_table(checks))
    return exit_code(checks, args.strict)


if __name__ == "__main__":
    run_main(main)
