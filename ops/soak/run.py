"""The chaos soak: the whole box for an accelerated day under seeded faults (``make soak``).

    make soak                                    # 24 simulated hours at speed 20 (72 wall minutes)
    make soak SOAK_HOURS=2 SPEED=20 SEED=7       # a short one: 6 wall minutes and start-up
    python -m ops.soak --hours 2 --speed 20 --seed 7 --out reports/soak

It brings up the real box offline (``python -m ops up --offline``: the stand-in fed by the
simulator at ``--speed``, the Prefect server and serve, the ingest, the paper runner, a second
runner ``--live`` on the stand-in's trading account, the dashboard; not the MLflow UI) in a folder
of its own (``<out>/run``: config, warehouse, journals, logs, the box's state, Prefect's home), so
it never touches the developer's warehouse or box. The runners trade a champion trained first on
the same simulated market (``<out>/model``, kept between soaks: ``--retrain`` trains again).

Then, at random but seeded times (ops/soak/schedule.py), every fault the stand-in knows
(``POST /_standin/fault``) and SIGKILLs of the ingest and both runners (supervisord starts them
again). The soak plays the operator: a runner that halts gets a ``resume`` command 5 s later. It
samples each service's RSS (/proc/<pid>/status, per incarnation) every ``--rss-every`` seconds.
After ``make down`` it checks (ops/soak/checks.py): no duplicate book update or trade, every
break of the stored book explained by a recorded sync event or ingest start, each journal's
account equal to the sum of its fills, no order id reused, every fault recovered within
``--bound`` seconds, RSS growth under 10 % from one simulated hour into each incarnation's life to
its end. Writes ``<out>/summary.json`` and prints a table. Exit 0 all checks pass, 3 one fails,
2 bad input, 4 the box did not come up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.box import REPO
from core.errors import DataError, UnavailableError, UserError
from ops.box import rpc, running
from ops.soak import checks
from ops.soak.schedule import KILLED, Fault, plan
from sim.presets import PLANTED
from standin.private import PRIVATE_FAULTS
from warehouse.journal import Record, default_path, read, send_command

NS = 1_000_000_000
RESUME_AFTER_S = 5.0
RSS_WINDOW_S = 20.0  # the mean RSS over this long at each end of an incarnation's judged span
LAG_S = 5.0  # the stored book may trail the market by this much at its 99th percentile
JOURNALS = {"runner": ("paper", "bybit"), "runner-standin": ("live", "bybit")}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ops.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    p.add_argument("--speed", type=float, default=20.0, help="the market this many times faster (default 20)")
    p.add_argument("--seed", type=int, default=1, help="the fault schedule's seed (default 1)")
    p.add_argument("--out", default="reports/soak", help="where the run, the model and summary.json go")
    p.add_argument("--train-hours", type=float, default=4.0, help="simulated hours the champion trains on")
    p.add_argument("--retrain", action="store_true", help="train the champion again even when one is kept")
    p.add_argument("--bound", type=float, default=60.0, help="wall seconds a fault may take to recover (60)")
    p.add_argument("--rss-every", type=float, default=5.0, help="wall seconds between RSS samples (5)")
    p.add_argument("--silence", type=float, default=2.0, help="a break in the stored book: wall seconds (2)")
    p.add_argument("--wait", type=float, default=1200.0, help="wall seconds for the box to come up (1200)")
    p.add_argument(
        "--judge-only", action="store_true", help="run the checks again on the last soak's run folder and raw.json"
    )
    args = p.parse_args(argv)
    for name in ("hours", "speed", "train_hours", "bound", "rss_every", "silence", "wait"):
        if not getattr(args, name) > 0:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be > 0")
    if args.hours * 3600 / args.speed < 60:
        raise UserError(f"--hours {args.hours} at --speed {args.speed} is under a wall minute: nothing to soak")
    return args


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _py(args: Sequence[str], env: dict[str, str], log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ...`` from the repository; its output to ``log`` (or ours)."""
    cmd = [sys.executable, "-m", *args]
    if log is None:
        return subprocess.run(cmd, cwd=REPO, env=env, text=True, check=False)  # noqa: S603
    with log.open("a") as f:
        return subprocess.run(cmd, cwd=REPO, env=env, text=True, stdout=f, stderr=subprocess.STDOUT, check=False)  # noqa: S603


def configs(out: Path, speed: float) -> tuple[Path, Path]:
    """The soak's config (its own warehouse, journals, logs, ports; the registry in ``<out>/model``)
    and the champion's training config (the same market, a training warehouse of its own)."""
    model, run = out / "model", out / "run"
    common: dict[str, Any] = {
        "mlflow": {"store": str(model / "mlflow.db"), "artifacts": str(model / "artifacts"), "ui_port": _port()},
        "training": {"window": "4h", "shares": [0.3, 0.5, 0.2], "min_rows": 300, "min_child_samples": 300},
        "promotion": {"fresh": "20m"},
        "sim": {"model": PLANTED},  # an edge larger than the costs: the champion trades (sim/presets.py)
    }
    train = {
        **common,
        "warehouse": {"path": str(model / "train.duckdb"), "spool_dir": str(model / "spool")},
        "live": {"journal_dir": str(model / "journal"), "log_dir": str(model / "logs")},
    }
    soak = {
        **common,
        "warehouse": {"path": str(run / "wh" / "l2.duckdb"), "spool_dir": str(run / "wh" / "spool")},
        "live": {"journal_dir": str(run / "journal"), "log_dir": str(run / "logs")},
        "monitor": {"dashboard_port": _port()},
        "standin": {"port": _port(), "speed": speed},
    }
    model.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    (model / "train.yaml").write_text(yaml.safe_dump(train, sort_keys=False))
    (run / "config.yaml").write_text(yaml.safe_dump(soak, sort_keys=False))
    return run / "config.yaml", model / "train.yaml"


def champion(train_config: Path, hours: float, env: dict[str, str]) -> dict[str, Any]:
    """The model the runners trade: the kept champion, or one trained now on ``hours`` of the
    simulated market (ingest, then the retraining chain: features, train, the promotion rule). When
    the rule crowns nothing, the new version is made champion by hand and the summary says so."""
    from core.config import load_config
    from models import registry

    cfg = load_config(train_config)
    store = cfg.resolve(cfg.mlflow.store)
    kept = store.exists() and registry.version_for(cfg, "champion")
    if kept:
        return {"version": kept, "how": "kept from an earlier soak", "store": str(store)}
    log = train_config.parent / "train.log"
    print(f"training the champion on {hours:g} simulated hours (log: {log}) ...", flush=True)
    t0 = time.monotonic()
    for args in (["flows.ingest", "--source", "sim", "--duration", f"{int(hours * 3600)}s"], ["flows.retrain"]):
        p = _py([*args, "--config", str(train_config)], env, log)
        if p.returncode != 0:
            raise UnavailableError(f"{' '.join(args)} failed (exit {p.returncode}): see {log}")
    crowned = registry.version_for(cfg, "champion")
    how = "crowned by the promotion rule"
    if not crowned:
        client = registry.connect(cfg)
        versions = client.search_model_versions(f"name = '{cfg.mlflow.model_name}'")
        crowned = str(max(int(v.version) for v in versions))
        client.set_registered_model_alias(cfg.mlflow.model_name, "champion", crowned)
        how = "made champion by the soak (the promotion rule crowned nothing)"
    print(f"  version {crowned}: {how} ({time.monotonic() - t0:.0f} s)", flush=True)
    return {"version": crowned, "how": how, "store": str(store), "trained_on_hours": hours}


class Watch:
    """During the run: the services' pids and RSS, the journals' halts (the soak resumes them)."""

    def __init__(self, box: Path, journal_dir: Path) -> None:
        self.box = box
        self.samples: list[tuple[float, str, int, float]] = []
        self.incarnations: dict[str, dict[int, list[int]]] = {}  # service -> pid -> [first, last] seen (ns)
        self.journals = {s: default_path(journal_dir, *mk) for s, mk in JOURNALS.items()}
        self.seen = dict.fromkeys(self.journals, 0)
        self.kinds: dict[str, Counter[str]] = {s: Counter() for s in self.journals}
        self.resumes: list[tuple[float, str, str]] = []  # (due wall s, service, reason)
        self.halts: list[dict[str, Any]] = []

    def pids(self) -> dict[str, int]:
        info = rpc(self.box).supervisor.getAllProcessInfo()
        return {str(p["name"]): int(p["pid"]) for p in info if p["statename"] == "RUNNING" and p["pid"]}

    def sample(self, t0_ns: int) -> None:
        now = time.time_ns()
        for name, pid in self.pids().items():
            seen = self.incarnations.setdefault(name, {}).setdefault(pid, [now, now])
            seen[1] = now
            kb = rss_kb(pid, children=name == "prefect")  # the server runs in a child of the wrapper
            if kb is not None:
                self.samples.append(((now - t0_ns) / NS, name, pid, kb))

    def journal_news(self, elapsed_s: float) -> None:
        for service, path in self.journals.items():
            if not path.exists():
                continue
            try:
                new = list(read(path, after=self.seen[service]))
            except UserError:
                continue  # being created
            for r in new:
                self.seen[service] = r.seq
                self.kinds[service][r.kind] += 1
                if r.kind == "halt":
                    reason = str(r.data.get("reason", ""))
                    self.halts.append({"service": service, "at_s": round(elapsed_s, 1), "reason": reason})
                    self.resumes.append((elapsed_s + RESUME_AFTER_S, service, reason))
                    print(f"  {service} HALTED ({reason}): the operator resumes it in {RESUME_AFTER_S:.0f} s")
        for _, service, _ in [r for r in self.resumes if r[0] <= elapsed_s]:
            send_command(self.journals[service], "resume", time.time_ns())
        self.resumes = [r for r in self.resumes if r[0] > elapsed_s]


def rss_kb(pid: int, children: bool = False) -> float | None:
    """VmRSS of a process (and of its descendants), kB; None when it is gone."""
    pids = [pid, *(_descendants(pid) if children else [])]
    total, found = 0.0, False
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += float(line.split()[1])
                    found = True
        except OSError:
            continue
    return total if found else None


def _descendants(pid: int) -> list[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def inject(fault: Fault, standin_url: str, watch: Watch) -> str:
    """Apply one fault now; a line for the progress output."""
    who = fault.killed
    if who is not None:
        pid = watch.pids().get(who)
        if pid is None:
            return f"kill {who}: not running, nothing to kill"
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL {who} (pid {pid})"
    body = json.dumps(fault.body()).encode()
    req = urllib.request.Request(standin_url + "/_standin/fault", data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (our own stand-in)
        r.read()
    params = {k: v for k, v in fault.body().items() if k != "kind"}
    return f"fault {fault.kind} {params if params else ''}".rstrip()


def trading(cfg_path: Path, wait_s: float) -> None:
    """Until both runners decide (their kernels ready, their features warm): the soak's clock starts then."""
    from core.config import load_config

    cfg = load_config(cfg_path)
    paths = {s: default_path(cfg.resolve(cfg.live.journal_dir), *mk) for s, mk in JOURNALS.items()}
    t0 = time.monotonic()
    last = -1e9
    while True:
        waiting = [s for s, p in paths.items() if not (p.exists() and next(iter(read(p, ["decision"])), None))]
        if not waiting:
            print(f"both runners decide ({time.monotonic() - t0:.0f} s after the box came up)", flush=True)
            return
        if time.monotonic() - t0 > wait_s:
            raise UnavailableError(f"{', '.join(waiting)} made no decision in {wait_s:.0f} s: see their logs")
        if time.monotonic() - last >= 20:
            last = time.monotonic()
            print(f"  waiting for {', '.join(waiting)} to decide (kernels, warm-up) ...", flush=True)
        time.sleep(1.0)


def soak(args: argparse.Namespace, box: Path, cfg_path: Path, faults: list[Fault]) -> dict[str, Any]:
    """The run itself: faults on schedule, RSS samples, halts resumed; progress every 20 s."""
    from core.config import load_config

    cfg = load_config(cfg_path)
    url = f"http://{cfg.standin.host}:{cfg.standin.port}"
    run_s = args.hours * 3600 / args.speed
    watch = Watch(box, cfg.resolve(cfg.live.journal_dir))
    t0 = time.time_ns()
    done: list[tuple[Fault, int, str]] = []
    todo = list(faults)
    last_rss = last_print = -1e9
    print(f"soaking: {args.hours:g} simulated hours at speed {args.speed:g} = {run_s:.0f} s, {len(faults)} faults")
    while (elapsed := (time.time_ns() - t0) / NS) < run_s:
        while todo and todo[0].at_s <= elapsed:
            f = todo.pop(0)
            at = time.time_ns()
            try:
                line = inject(f, url, watch)
            except OSError as exc:
                line = f"fault {f.kind} could not be injected: {exc}"
            done.append((f, at, line))
            print(f"  [{elapsed:6.1f} s] {line}", flush=True)
        if elapsed - last_rss >= args.rss_every:
            last_rss = elapsed
            watch.sample(t0)
        watch.journal_news(elapsed)
        if elapsed - last_print >= 20:
            last_print = elapsed
            sim = elapsed * args.speed
            decisions = sum(k["decision"] for k in watch.kinds.values())
            fills = {s: k["fill"] for s, k in watch.kinds.items()}
            print(
                f"[{elapsed:5.0f} / {run_s:.0f} s, simulated {sim / 3600:5.2f} of {args.hours:g} h] "
                f"{len(done)} of {len(faults)} faults, {decisions:,} decisions, fills {fills}, "
                f"{len(watch.halts)} halts",
                flush=True,
            )
        time.sleep(0.25)
    watch.sample(t0)
    with urllib.request.urlopen(url + "/_standin/stats", timeout=10) as r:  # noqa: S310
        stats = json.loads(r.read())
    return {"t0_ns": t0, "wall_s": (time.time_ns() - t0) / NS, "done": done, "watch": watch, "stats": stats}


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    run = out / "run"
    box = run / "box"
    if args.judge_only:
        return conclude(args, out, *load_raw(out))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "L2_BOX")}
    if box.exists() and running(box):
        raise UnavailableError(f"a soak's box is still up in {box}: L2_BOX={box} python -m ops down")
    shutil.rmtree(run, ignore_errors=True)
    if args.retrain:
        shutil.rmtree(out / "model", ignore_errors=True)
    cfg_path, train_path = configs(out, args.speed)
    model_env = {
        **env,
        "PREFECT_HOME": str(out / "model" / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    }
    model = champion(train_path, args.train_hours, model_env)
    run_s = args.hours * 3600 / args.speed
    faults = plan(args.seed, run_s, args.hours, KILLED)
    (out / "schedule.json").write_text(json.dumps([f.row() for f in faults], indent=1) + "\n")
    box_env = {**env, "L2_BOX": str(box), "PREFECT_HOME": str(run / "prefect")}
    url = f"http://127.0.0.1:{_port()}/api"
    up_args = [
        "ops",
        "up",
        "--offline",
        "--standin-account",
        "--without",
        "mlflow-ui",
        "--config",
        str(cfg_path),
        "--prefect-url",
        url,
        "--wait",
        str(args.wait),
    ]
    print(f"bringing the box up in {run} (the first start compiles the kernels: minutes) ...", flush=True)
    t_up = time.monotonic()
    if _py(up_args, box_env).returncode != 0:
        _py(["ops", "down"], box_env)
        raise UnavailableError(f"the box did not come up: see {run / 'logs' / 'box'}")
    try:
        trading(cfg_path, args.wait - (time.monotonic() - t_up))
        up_s = time.monotonic() - t_up
        ran = soak(args, box, cfg_path, faults)
    finally:
        print("bringing the box down ...", flush=True)
        _py(["ops", "down"], box_env)
    save_raw(out, args, model, up_s, ran)
    return conclude(args, out, model, up_s, ran)


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
           "hours": raw["hours"], "speed": raw["speed"], "seed": raw["seed"]}  # fmt: skip
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
