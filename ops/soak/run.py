"""The chaos soak: the whole box for an accelerated day under seeded faults (``make soak``).

    make soak                                    # 24 simulated hours at speed 5 (4.8 wall hours)
    make soak SPEED=24                           # the day in a wall hour: the data side (see below)
    make soak SOAK_HOURS=2 SPEED=5 SEED=7        # a short one: 24 wall minutes and start-up
    python -m ops.soak --hours 2 --speed 5 --seed 7 --out reports/soak

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
its end, every scheduled flow run that ended completed; a journal without a fill or an order is
not judged, which fails. Writes
``<out>/summary.json`` and prints a table. Exit 0 all checks pass, 3 one fails, 2 bad input, 4 the
box did not come up.

Speed. The market publishes its book every ``speed`` x 20 ms of market time (Bybit's 20 ms on the
wall clock) and trades ``speed`` times as often: at 24 the ingest keeps up (p99 lag 0.02 s) and a
day takes an hour. But every timestamp is the wall clock's, so the runners' five-minute windows
then hold two hours of market, which the champion (trained on the market at its own pace) has
never seen, and with a fault every 7 wall seconds their features are rarely warm: at 24 the data
side (warehouse, faults, kills, memory) is judged and the trading side is not. At 5 both are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from core.box import REPO
from core.errors import UnavailableError, UserError
from ops.box import running
from ops.soak.report import conclude, load_raw, save_raw
from ops.soak.schedule import KILLED, Fault, plan
from ops.soak.watch import JOURNALS, Watch
from sim.presets import PLANTED
from warehouse.journal import default_path, read

NS = 1_000_000_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ops.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    p.add_argument(
        "--speed",
        type=float,
        default=5.0,
        help="the market this many times faster (default 5; at 24 a day takes an hour, but the runners "
        "rarely trade: their 5-minute windows hold two market hours)",
    )
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


def configs(out: Path, speed: float) -> tuple[Path, Path, bool]:
    """The soak's config (its own warehouse, journals, logs, ports; the registry in ``<out>/model``)
    and the champion's training config (the same market, a training warehouse of its own), and
    whether a kept champion was trained on another market (then it is trained again).

    The market publishes its book every ``speed`` x 20 ms of market time: on the wall clock that is
    Bybit's own 20 ms, so a soak at speed 24 (a day in an hour) sends the clients as many book
    frames per second as Bybit does, each the merge of 24 x 20 ms of changes (as Bybit's pushes
    merge theirs), and trades 24 times as often. Without it the ingest parsed 50 x speed frames a
    second and fell behind above speed 5 on a 2-core box."""
    model, run = out / "model", out / "run"
    market = {"model": PLANTED, "cadence": round(0.02 * speed, 6)}
    common: dict[str, Any] = {
        "mlflow": {"store": str(model / "mlflow.db"), "artifacts": str(model / "artifacts"), "ui_port": _port()},
        "training": {"window": "4h", "shares": [0.3, 0.5, 0.2], "min_rows": 300, "min_child_samples": 300},
        "promotion": {"fresh": "20m"},
        "sim": market,  # an edge larger than the costs: the champion trades (sim/presets.py)
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
    kept = model / "train.yaml"  # the kept champion's own training config names its market
    trained_on = yaml.safe_load(kept.read_text()).get("sim") if kept.exists() else None
    other_market = (model / "mlflow.db").exists() and trained_on != market
    if other_market:
        shutil.rmtree(model)
    model.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    (model / "train.yaml").write_text(yaml.safe_dump(train, sort_keys=False))
    (run / "config.yaml").write_text(yaml.safe_dump(soak, sort_keys=False))
    return run / "config.yaml", model / "train.yaml", other_market


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
    wall_s = (time.time_ns() - t0) / NS
    return {"t0_ns": t0, "wall_s": wall_s, "done": done, "watch": watch, "stats": stats, "flow_runs": flow_runs(box)}


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (the box's own Prefect server)
        return json.loads(r.read())


def flow_runs(box: Path) -> list[dict[str, Any]]:
    """The flow runs of the box's Prefect server (its scheduled deployments), oldest first: flow name,
    run name, state and its message, from Prefect's REST API. Unreachable: none, said so."""
    try:
        api = (box / "prefect-url").read_text().strip()
        flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {"limit": 200})}
        runs, offset = [], 0
        while page := _post(f"{api}/flow_runs/filter", {"limit": 200, "offset": offset, "sort": "START_TIME_ASC"}):
            runs += page
            offset += len(page)
    except (OSError, ValueError, KeyError) as exc:
        print(f"the box's flow runs could not be read: {exc}", flush=True)
        return []
    return [
        {
            "flow": flows.get(r["flow_id"], r["flow_id"]),
            "name": r["name"],
            "state_type": r["state_type"],
            "message": (r.get("state") or {}).get("message") or "",
            "start": r.get("start_time"),
        }
        for r in runs
    ]


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
    cfg_path, train_path, other_market = configs(out, args.speed)
    if other_market:
        print("the kept champion was trained on another market (speed, cadence): training it again", flush=True)
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
