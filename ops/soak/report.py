"""After the soak: the checks run on what the box stored and what the soak saw (``judge``), the
summary (``reports/soak/summary.json``), its table, and ``raw.json`` for ``--judge-only``."""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError, UserError
from ops.soak import checks
from ops.soak.schedule import Fault
from ops.soak.watch import Watch
from standin.private import PRIVATE_FAULTS
from warehouse.journal import Record, read

NS = 1_000_000_000
RSS_WINDOW_S = 20.0  # the median RSS over this long at each end of an incarnation's judged span
LAG_S = 5.0  # the stored book may trail the market by this much at its 99th percentile


def judge(args: argparse.Namespace, cfg_path: Path, ran: dict[str, Any]) -> dict[str, Any]:
    """After the box is down: every check, and the figures the summary reports."""
    from core.config import load_config
    from warehouse.db import reading

    cfg = load_config(cfg_path)
    watch: Watch = ran["watch"]
    ev = checks.Evidence()
    out: list[checks.Check] = []
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        out += checks.duplicates(con)
        breaks, n = checks.book_breaks(con, int(args.silence * NS))
        out.append(checks.gaps_explained(breaks, n, checks.explanations(con), NS))
        out.append(checks.ingest_lag(con, LAG_S))
        ev.book_ts = np.asarray(
            con.execute("SELECT ts_local_ns FROM book_updates ORDER BY 1").fetchnumpy()["ts_local_ns"], np.int64
        )
        rows = con.execute("SELECT kind, list(ts_local_ns ORDER BY ts_local_ns) FROM sync_events GROUP BY 1")
        ev.events = {str(k): np.asarray(ts, np.int64) for k, ts in rows.fetchall()}
        starts = [int(r[0]) for r in con.execute("SELECT started_ns FROM ingest_runs").fetchall()]
        ev.ingest_starts = np.sort(np.asarray(starts, np.int64))
        trades = con.execute("SELECT count(*) FROM trades").fetchone()
    journals: dict[str, Any] = {}
    for service, path in watch.journals.items():
        records: list[Record] = list(read(path)) if path.exists() else []
        ev.journals[service] = records
        if not records:
            out.append(checks.Check(f"{service}: journal", False, "no journal", 0, str(path)))
            continue
        out += [
            checks.account_matches_fills(service, records),
            checks.order_ids_unique(service, records),
            checks.halts_resolved(service, records),
        ]
        kinds = Counter(r.kind for r in records)
        journals[service] = {"path": str(path), "sessions": len({r.session for r in records}), **dict(kinds)}
    ev.incarnations = {
        name: [(pid, seen[0], seen[1]) for pid, seen in pids.items()] for name, pids in watch.incarnations.items()
    }
    bound = int(args.bound * NS)
    recoveries = [checks.recover(f, at, ev, bound) for f, at, _ in ran["done"]]
    out.append(checks.recovery_check(recoveries))
    growths = checks.rss_growth(watch.samples, 3600 / args.speed, RSS_WINDOW_S)
    out.append(checks.rss_check(growths))
    out.append(checks.flow_runs_completed(ran.get("flow_runs", [])))
    return {
        "checks": out,
        "recoveries": recoveries,
        "growths": growths,
        "journals": journals,
        "warehouse": {
            "book_updates": n,
            "trades": int(trades[0]) if trades else 0,
            "breaks": len(breaks),
            "sync_events": {k: len(v) for k, v in ev.events.items()},
            "ingest_runs": len(ev.ingest_starts),
        },
    }


def by_kind(recoveries: Sequence[checks.Recovery], stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Faults by kind: injected, recovered, and for the private API's how often one met a request."""
    out: dict[str, dict[str, Any]] = {}
    private = stats.get("private", {})
    for r in recoveries:
        row = out.setdefault(r.fault.kind, {"injected": 0, "recovered": 0})
        row["injected"] += 1
        row["recovered"] += int(r.recovered)
    for kind, row in out.items():
        if kind in PRIVATE_FAULTS:
            row["sprung"] = sum(int(v) for k, v in private.items() if k.startswith(f"fault_{kind}_"))
    if "reject_orders" in out:
        out["reject_orders"]["orders_rejected"] = int(private.get("rejected_by_fault", 0))
    if "rate_limit" in out:
        out["rate_limit"]["requests_limited"] = int(private.get("rate_limited", 0))
    return out


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def save_raw(out: Path, args: argparse.Namespace, model: dict[str, Any], up_s: float, ran: dict[str, Any]) -> None:
    """What the run saw, for ``--judge-only``: the faults as injected, the RSS samples, the halts."""
    w: Watch = ran["watch"]
    raw = {
        "hours": args.hours,
        "speed": args.speed,
        "seed": args.seed,
        "model": model,
        "up_s": up_s,
        "wall_s": ran["wall_s"],
        "done": [[f.row(), at, line] for f, at, line in ran["done"]],
        "samples": w.samples,
        "incarnations": w.incarnations,
        "halts": w.halts,
        "stats": ran["stats"],
        "flow_runs": ran.get("flow_runs", []),
    }
    (out / "raw.json").write_text(json.dumps(raw) + "\n")


def load_raw(out: Path) -> tuple[dict[str, Any], float, dict[str, Any]]:
    from core.config import load_config

    try:
        raw = json.loads((out / "raw.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{out / 'raw.json'}: no soak to judge again (run one first)") from None
    cfg = load_config(out / "run" / "config.yaml")
    w = Watch(out / "run" / "box", cfg.resolve(cfg.live.journal_dir))
    w.samples = [(float(t), str(n), int(p), float(kb)) for t, n, p, kb in raw["samples"]]
    w.incarnations = {n: {int(p): seen for p, seen in pids.items()} for n, pids in raw["incarnations"].items()}
    w.halts = raw["halts"]
    done = [(Fault(**row), int(at), str(line)) for row, at, line in raw["done"]]
    ran = {"wall_s": raw["wall_s"], "done": done, "watch": w, "stats": raw["stats"],
           "flow_runs": raw.get("flow_runs", []), "hours": raw["hours"], "speed": raw["speed"],
           "seed": raw["seed"]}  # fmt: skip
    return raw["model"], float(raw["up_s"]), ran


def conclude(args: argparse.Namespace, out: Path, model: dict[str, Any], up_s: float, ran: dict[str, Any]) -> int:
    """The checks, summary.json and the table; exit 3 (DataError) when a check fails."""
    if "speed" in ran:  # judged again: the run's own parameters
        args.hours, args.speed, args.seed = ran["hours"], ran["speed"], ran["seed"]
    run = out / "run"
    judged = judge(args, run / "config.yaml", ran)
    summary = summarize(args, model, up_s, ran, judged)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(report(summary))
    print(f"summary: {out / 'summary.json'}; logs: {run / 'logs'}")
    failed = [c["name"] for c in summary["checks"] if not c["pass"]]
    if failed:
        raise DataError(f"{len(failed)} check(s) failed: {'; '.join(failed)}")
    return 0


def summarize(
    args: argparse.Namespace, model: dict[str, Any], up_s: float, ran: dict[str, Any], judged: dict[str, Any]
) -> dict[str, Any]:
    watch: Watch = ran["watch"]
    growths: list[checks.Growth] = judged["growths"]
    kills = Counter(f.killed for f, _, _ in ran["done"] if f.killed)
    return {
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "parameters": {
            "hours": args.hours,
            "speed": args.speed,
            "seed": args.seed,
            "bound_s": args.bound,
            "rss_every_s": args.rss_every,
            "silence_s": args.silence,
        },
        "seed": args.seed,
        "speed": args.speed,
        "simulated_hours": round(ran["wall_s"] * args.speed / 3600, 3),
        "wall_s": round(ran["wall_s"], 1),
        "start_up_s": round(up_s, 1),
        "model": model,
        "faults": by_kind(judged["recoveries"], ran["stats"]),
        "kills": dict(kills),
        "injected": [
            {**f.row(), "line": line, "recovered": r.recovered, "how": r.how}
            for (f, _, line), r in zip(ran["done"], judged["recoveries"], strict=True)
        ],
        "halts": watch.halts,
        "checks": [c.row() for c in judged["checks"]],
        "rss": [
            {
                "service": g.service,
                "pid": g.pid,
                "lived_s": round(g.lived_s, 1),
                "samples": g.n,
                "start_kb": g.start_kb,
                "end_kb": g.end_kb,
                "growth": None if not g.judged else round(g.growth, 4),
            }
            for g in growths
        ],
        "warehouse": judged["warehouse"],
        "journals": judged["journals"],
        "standin": {k: v for k, v in ran["stats"].items() if not isinstance(v, dict)},
        "standin_account": ran["stats"].get("private", {}),
    }


def report(s: dict[str, Any]) -> str:
    """The short table: the checks, then the faults by kind and the RSS per incarnation."""
    lines = [
        f"\nchaos soak: {s['simulated_hours']:.2f} simulated hours at speed {s['speed']:g} "
        f"({s['wall_s']:.0f} s), seed {s['seed']}, model v{s['model']['version']} ({s['model']['how']})",
        "",
    ]
    rows: list[tuple[str, ...]] = [("check", "result", "value", "n")]
    rows += [(c["name"], "PASS" if c["pass"] else "FAIL", c["value"], str(c["n"])) for c in s["checks"]]
    lines += [table(rows), ""]
    rows = [("fault", "injected", "recovered", "note")]
    for kind, f in sorted(s["faults"].items()):
        note = ", ".join(f"{k} {v}" for k, v in f.items() if k not in ("injected", "recovered"))
        rows.append((kind, str(f["injected"]), str(f["recovered"]), note))
    lines += [table(rows), ""]
    rows = [("service", "pid", "lived", "samples", "RSS at 1 h", "RSS at end", "growth")]
    for g in s["rss"]:
        mb = [f"{g[k] / 1024:.0f} MB" if g[k] else "" for k in ("start_kb", "end_kb")]
        growth = f"{100 * g['growth']:+.1f} %" if g["growth"] is not None else "not judged"
        rows.append((g["service"], str(g["pid"]), f"{g['lived_s']:.0f} s", str(g["samples"]), *mb, growth))
    lines.append(table(rows))
    return "\n".join(lines)
