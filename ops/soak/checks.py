"""The chaos soak's checks, each a PASS / FAIL with its figure and its sample size.

Pure functions over what the soak collected (a DuckDB connection to the warehouse, journal
records, RSS samples, the faults it injected), so each is shown to fail on planted bad data
(tests/test_soak.py).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from market.events import BOOK_UPDATES, TRADES
from ops.soak.schedule import Fault
from standin.private import PRIVATE_FAULTS
from warehouse.journal import Record

NS = 1_000_000_000
# sync_events kinds that say why the stored book breaks off (a new epoch or a silence)
EXPLAINING = ("gap", "snapshot", "restart", "resync", "reconnect", "resubscribe", "reject")
# the sync_events a stand-in fault must leave in the warehouse
EVIDENCE: dict[str, tuple[str, ...]] = {
    "skip_update": ("gap",),
    "snapshot": ("snapshot",),
    "restart": ("restart",),
    "bad_json": ("reject",),
    "missing_field": ("reject",),
    "negative_size": ("reject",),
    "crossed": ("reject",),
    "drop": ("reconnect",),
    "stall": ("gap", "reconnect"),
}
_FAR = 2**62  # "ever after"
TOLERANCE = 1e-6  # BTC and USDT: what float sums of a few hundred fills may differ by


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: str  # the figure, for a person
    n: int  # the sample size it was judged on
    detail: str = ""

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "pass": self.passed, "value": self.value, "n": self.n, "detail": self.detail}


# -- the scheduled flows --------------------------------------------------------------------------


def flow_runs_completed(runs: Sequence[dict[str, Any]]) -> Check:
    """Every scheduled flow run the box's Prefect server ran during the soak ended COMPLETED (``runs``:
    ``flow``, ``state_type``, ``message`` each, from its REST API before the box came down). A run
    still scheduled or running at the end is not judged; none ended is a failure (nothing shown)."""
    ended = [r for r in runs if r["state_type"] not in ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")]
    bad = [r for r in ended if r["state_type"] != "COMPLETED"]
    by_flow = Counter(f"{r['flow']} {r['state_type'].lower()}" for r in ended)
    if not ended:
        return Check("scheduled flows: every run completed", False, "not judged: no run ended", 0)
    why = Counter(f"{r['flow']}: {str(r.get('message') or '')[:160]}" for r in bad)
    detail = "; ".join(f"{k} x{n}" for k, n in sorted(by_flow.items()))
    if why:
        detail += " | " + "; ".join(f"{k} (x{n})" for k, n in why.most_common(3))
    return Check(
        "scheduled flows: every run completed",
        not bad,
        f"{len(ended) - len(bad)} of {len(ended)} completed",
        len(ended),
        detail,
    )


# -- the warehouse --------------------------------------------------------------------------------


def duplicates(con: duckdb.DuckDBPyConnection) -> list[Check]:
    """Rows of book_updates and trades that share their natural key (the writer's dedup key)."""
    out = []
    for spec in (BOOK_UPDATES, TRADES):
        key = ", ".join(spec.key)
        row = con.execute(
            f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {key} FROM {spec.name})) FROM {spec.name}"
        ).fetchone()
        total, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
        dup = total - distinct
        out.append(
            Check(
                f"warehouse: no duplicate {spec.name}",
                dup == 0 and total > 0,
                f"{dup} duplicated",
                total,
                f"natural key ({key})" if total else "no rows at all",
            )
        )
    return out


def ingest_lag(con: duckdb.DuckDBPyConnection, limit_s: float) -> Check:
    """How far the stored book trails the market: receive time - exchange time of the book updates
    (the stand-in stamps each message with the wall-clock time it publishes it at, at any speed), so
    an ingest that falls behind the stream shows here, not as silence."""
    row = con.execute(
        "SELECT count(*), quantile_cont(ts_local_ns - ts_exchange_ns, [0.5, 0.99]), max(ts_local_ns - ts_exchange_ns) "
        "FROM book_updates"
    ).fetchone()
    n = int(row[0]) if row else 0
    if not n or row is None:
        return Check("warehouse: the ingest keeps up", False, "no book updates", 0)
    p50, p99 = (float(q) / NS for q in row[1])
    worst = float(row[2]) / NS
    return Check(
        f"warehouse: the ingest keeps up (p99 lag < {limit_s:g} s)",
        p99 < limit_s,
        f"lag p50 {p50:.2f} s, p99 {p99:.2f} s, max {worst:.1f} s",
        n,
    )


@dataclass(frozen=True)
class Break:
    """Where the stored book breaks off: a new epoch, an update-id jump or a silence."""

    after_ns: int  # ts_local of the last row before it
    at_ns: int  # ts_local of the first row after it
    what: str


def book_breaks(con: duckdb.DuckDBPyConnection, silence_ns: int) -> tuple[list[Break], int]:
    """Every break of the stored book (in local receive order) and the number of rows."""
    rows = con.execute(
        "SELECT ts_local_ns, ts_exchange_ns, update_id, prev_update_id, is_snapshot FROM book_updates "
        "ORDER BY ts_local_ns, update_id"
    ).fetchnumpy()
    return breaks_of(
        rows["ts_local_ns"],
        rows["ts_exchange_ns"],
        rows["update_id"],
        rows["prev_update_id"],
        rows["is_snapshot"],
        silence_ns,
    )


def breaks_of(
    ts: np.ndarray, ts_ex: np.ndarray, uid: np.ndarray, prev: np.ndarray, snapshot: np.ndarray, silence_ns: int
) -> tuple[list[Break], int]:
    """A new epoch, an update-id jump, or market time missing (``silence_ns`` of exchange time between
    two stored updates). A pause in receiving with nothing missing (contiguous ids, exchange times
    close together) is no break: it is lag, which ``ingest_lag`` judges."""
    ts, ts_ex, uid, prev, snapshot = (np.asarray(a) for a in (ts, ts_ex, uid, prev, snapshot))
    out = []
    for i in range(1, len(ts)):
        why = []
        if snapshot[i]:
            why.append(f"new epoch (snapshot u={uid[i]})")
        elif prev[i] != uid[i - 1]:
            why.append(f"update id jump {uid[i - 1]} -> {uid[i]}")
        if ts_ex[i] - ts_ex[i - 1] > silence_ns:
            why.append(f"silence {(ts_ex[i] - ts_ex[i - 1]) / NS:.1f} s")
        if why:
            out.append(Break(int(ts[i - 1]), int(ts[i]), ", ".join(why)))
    return out, len(ts)


def explanations(con: duckdb.DuckDBPyConnection) -> np.ndarray:
    """When the ingest recorded why the book may break: its sync events and its runs' starts."""
    kinds = ", ".join(f"'{k}'" for k in EXPLAINING)
    ev = [int(r[0]) for r in con.execute(f"SELECT ts_local_ns FROM sync_events WHERE kind IN ({kinds})").fetchall()]
    runs = [int(r[0]) for r in con.execute("SELECT started_ns FROM ingest_runs").fetchall()]
    return np.sort(np.asarray(ev + runs, dtype=np.int64))


def gaps_explained(breaks: Sequence[Break], n_rows: int, explained_at: np.ndarray, slack_ns: int) -> Check:
    """Each break of the book must have a recorded reason between its two sides (``slack_ns`` around them)."""
    bad = [
        b for b in breaks if not np.any((explained_at >= b.after_ns - slack_ns) & (explained_at <= b.at_ns + slack_ns))
    ]
    sample = "; ".join(f"{b.what} at {b.at_ns}" for b in bad[:3])
    return Check(
        "warehouse: every gap explained",
        n_rows > 0 and not bad,
        f"{len(bad)} unexplained of {len(breaks)} breaks",
        len(breaks),
        sample or f"{n_rows:,} book updates; explained by sync_events / ingest_runs",
    )


# -- the journals ---------------------------------------------------------------------------------


def account_matches_fills(name: str, records: Sequence[Record]) -> Check:
    """The last account record equals the first one plus every fill journaled between them:
    position, and cash (which moves by -side * qty * price - fee, and by the funding paid); fees
    within each session (a live session counts its own fees from 0, a paper one carries them on).
    Without a fill there is nothing to add up: not judged, which fails (an account that never
    moved shows nothing about the bookkeeping)."""
    accounts = [r for r in records if r.kind == "account"]
    if not accounts:
        return Check(f"{name}: account = sum of fills", False, "no account record", 0)
    first, last = accounts[0], accounts[-1]
    fills = [r for r in records if r.kind == "fill" and first.seq < r.seq <= last.seq]
    if not fills:
        sessions = len({r.session for r in records})
        return Check(f"{name}: account = sum of fills", False, "not judged: no fill", 0, f"{sessions} sessions")
    pos = sum(int(f.data["side"]) * float(f.data["qty"]) for f in fills)
    fees = sum(float(f.data["fee"]) for f in fills)
    cost = sum(int(f.data["side"]) * float(f.data["qty"]) * float(f.data["price"]) for f in fills)
    a, b = first.data, last.data
    funding = float(b.get("funding", 0.0)) - float(a.get("funding", 0.0))
    fee_off = 0.0
    for session in dict.fromkeys(r.session for r in accounts):
        own = [r for r in accounts if r.session == session]
        lo, hi = own[0], own[-1]
        paid = sum(float(f.data["fee"]) for f in fills if f.session == session and lo.seq < f.seq <= hi.seq)
        fee_off += float(hi.data["fees"]) - float(lo.data["fees"]) - paid
    off = {
        "position": float(b["position"]) - float(a["position"]) - pos,
        "cash": float(b["cash"]) - float(a["cash"]) + cost + fees + funding,
        "fees": fee_off,
    }
    worst = max(abs(v) for v in off.values())
    ok = all(math.isfinite(v) for v in off.values()) and worst <= TOLERANCE * max(1.0, abs(cost))
    figure = ", ".join(f"{k} off by {v:+.6g}" for k, v in off.items())
    sessions = len({r.session for r in records})
    detail = f"position {float(b['position']):+.3f} BTC, {fees:.4f} USDT fees, {sessions} sessions"
    return Check(f"{name}: account = sum of fills", ok, figure, len(fills), detail)


def order_ids_unique(name: str, records: Sequence[Record]) -> Check:
    """No order id (nor a live order's client id, its orderLinkId) is submitted twice, over every
    session; without an order, not judged (fails)."""
    submits = [r for r in records if r.kind == "submit"]
    if not submits:
        return Check(f"{name}: no order id reused", False, "not judged: no order", 0)
    ids = Counter(int(r.order_id) for r in submits if r.order_id is not None)
    links = Counter(str(r.data["client_id"]) for r in submits if r.data.get("client_id"))
    reused = sorted(k for k, v in ids.items() if v > 1)
    reused_links = sorted(k for k, v in links.items() if v > 1)
    sessions = len({r.session for r in records})
    bad = len(reused) + len(reused_links)
    sample = ", ".join([*(f"#{k}" for k in reused[:3]), *reused_links[:3]])
    return Check(
        f"{name}: no order id reused",
        bad == 0,
        f"{bad} reused over {sessions} sessions",
        len(submits),
        sample or f"{len(links)} client ids too" if links else sample,
    )


def halts_resolved(name: str, records: Sequence[Record]) -> Check:
    """Every halt is resumed, or its session ends (stopped or killed, with the reason in the halt record)."""
    halts: list[Record] = []
    open_: list[Record] = []
    by_session: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_session[r.session].append(r)
    sessions = list(by_session)
    for i, s in enumerate(sessions):
        pending: Record | None = None
        for r in by_session[s]:
            if r.kind == "halt":
                halts.append(r)
                pending = pending or r
            elif r.kind == "resume":
                pending = None
        ended = i + 1 < len(sessions) or any(r.kind == "stop" for r in by_session[s])
        if pending is not None and not ended:
            open_.append(pending)
    reasons = [str(h.data.get("reason", "")) for h in halts]
    unexplained = sum(not r for r in reasons)
    ok = not open_ and unexplained == 0
    return Check(
        f"{name}: every halt resumed or explained",
        ok,
        f"{len(halts) - len(open_)} of {len(halts)} resumed or ended; {unexplained} without a reason",
        len(halts),
        "; ".join(sorted(set(reasons)))[:300],
    )


# -- recovery from every injected fault ------------------------------------------------------------


@dataclass
class Recovery:
    fault: Fault
    at_ns: int  # when it was injected (wall clock)
    recovered: bool = False
    how: str = ""


@dataclass
class Evidence:
    """What the run left: the warehouse's sync events by kind, its stored book's receive times, the
    runs of the ingest, each journal's records and each service's incarnations (pid, first and
    last seen)."""

    events: dict[str, np.ndarray] = field(default_factory=dict)
    book_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ingest_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    journals: dict[str, list[Record]] = field(default_factory=dict)  # by the service that writes it
    incarnations: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)


def _first_after(times: np.ndarray, lo: int, hi: int) -> int | None:
    i = int(np.searchsorted(times, lo, side="left"))
    return int(times[i]) if i < len(times) and times[i] <= hi else None


def recover(fault: Fault, at_ns: int, ev: Evidence, bound_ns: int) -> Recovery:
    """Whether the box came back from one fault within ``bound_ns`` of its end, how we know, and
    after how long (also when it took longer than the bound)."""
    end = at_ns + int(fault.lasts_s * NS)
    out = Recovery(fault, at_ns)
    who = fault.killed
    if who is not None:
        if not [first for _, first, _ in ev.incarnations.get(who, []) if first > at_ns]:
            out.how = f"no new {who} process"
            return out
        if who == "ingest":
            start = _first_after(ev.ingest_starts, at_ns, _FAR)
            back = _first_after(ev.book_ts, start, _FAR) if start is not None else None
            what = "a new process; data again"
        else:
            starts = np.asarray(sorted(r.ts_ns for r in ev.journals.get(who, []) if r.kind == "start"), np.int64)
            back = _first_after(starts, at_ns, _FAR)
            what = "a new process; its session"
    elif fault.kind in PRIVATE_FAULTS:  # the live runner on the stand-in's account carries on
        times = np.asarray(sorted(r.ts_ns for r in ev.journals.get("runner-standin", [])), np.int64)
        back = _first_after(times, end, _FAR)
        what = "runner-standin journaled"
    else:
        kinds = EVIDENCE[fault.kind]
        seen = [t for k in kinds if (t := _first_after(ev.events.get(k, np.zeros(0, np.int64)), at_ns, _FAR))]
        # a new ingest run before the evidence: the run that met the fault died first (a SIGKILL in a
        # stall, before its watchdog), and the new one starts from a fresh snapshot
        restart = _first_after(ev.ingest_starts, at_ns, min(seen) if seen else _FAR)
        if restart is not None:
            back = _first_after(ev.book_ts, max(restart, end), _FAR)
            what = (
                f"the ingest started again {(restart - at_ns) / NS:.1f} s after (before any {' / '.join(kinds)}); data"
            )
        elif not seen:
            out.how = f"no {' / '.join(kinds)} recorded"
            return out
        else:
            t = min(seen)
            back = _first_after(ev.book_ts, max(t, end), _FAR)
            what = f"{' / '.join(kinds)} recorded {(t - at_ns) / NS:.1f} s after; data"
    if back is None:
        out.how = f"{what}: never"
        return out
    out.recovered = back - end <= bound_ns
    out.how = f"{what} {(back - end) / NS:.1f} s after" + ("" if out.recovered else f" (over {bound_ns / NS:.0f} s)")
    return out


def recovery_check(recoveries: Sequence[Recovery]) -> Check:
    bad = [r for r in recoveries if not r.recovered]
    sample = "; ".join(f"{r.fault.kind} at {r.fault.at_s:.0f} s: {r.how}" for r in bad[:4])
    return Check(
        "every fault recovered",
        bool(recoveries) and not bad,
        f"{len(recoveries) - len(bad)} of {len(recoveries)}",
        len(recoveries),
        sample,
    )


# -- memory -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    service: str
    pid: int
    lived_s: float
    start_kb: float | None  # median RSS over the window ending one simulated hour into its life
    end_kb: float | None  # median RSS over its last window
    n: int  # samples

    @property
    def judged(self) -> bool:
        return self.start_kb is not None and self.end_kb is not None

    @property
    def growth(self) -> float:
        return (self.end_kb / self.start_kb - 1.0) if self.start_kb and self.end_kb is not None else math.nan


def rss_growth(samples: Iterable[tuple[float, str, int, float]], hour_s: float, window_s: float) -> list[Growth]:
    """Per incarnation (service, pid) of ``(t_s, service, pid, rss_kb)`` samples: the median RSS over the
    ``window_s`` ending ``hour_s`` (one simulated hour, in wall seconds) after it was first seen, and
    over its last ``window_s``. Judged only when the two windows do not overlap (it lived long enough)."""
    by: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for at, name, pid, rss in samples:
        by[(name, pid)].append((at, rss))
    out = []
    for (name, pid), pts in by.items():
        t = np.asarray([p[0] for p in pts], dtype=np.float64)
        kb = np.asarray([p[1] for p in pts], dtype=np.float64)
        t0, t1 = float(t.min()), float(t.max())
        a = (t > t0 + hour_s - window_s) & (t <= t0 + hour_s)
        b = t >= t1 - window_s
        long_enough = t1 - window_s > t0 + hour_s and a.any() and b.any()
        out.append(
            Growth(
                name,
                pid,
                t1 - t0,
                float(np.median(kb[a])) if long_enough else None,
                float(np.median(kb[b])) if long_enough else None,
                len(pts),
            )
        )
    return sorted(out, key=lambda g: (g.service, -g.lived_s))


def rss_check(growths: Sequence[Growth], limit: float = 0.10) -> Check:
    judged = [g for g in growths if g.judged]
    bad = [g for g in judged if not g.growth < limit]
    figure = ", ".join(f"{g.service} {100 * g.growth:+.1f} %" for g in judged)
    left = sorted({g.service for g in growths} - {g.service for g in judged})
    detail = f"not judged (no incarnation lived an hour + a window): {', '.join(left)}" if left else ""
    return Check(
        f"RSS growth < {100 * limit:.0f} % after the first hour",
        bool(judged) and not bad,
        figure or "nothing judged",
        len(judged),
        detail,
    )
