"""Ingest L2 market data into the warehouse: ``python -m flows.ingest --source bybit|sim|file``.

    python -m flows.ingest --source sim --duration 2h          # two more hours of the simulated market
    python -m flows.ingest --source file --path a.gz --path b.gz   # import recordings (one stream)
    python -m flows.ingest --source bybit                       # stream from Bybit (endpoints in config)

A Prefect flow (deployed from prefect.yaml) around warehouse.ingest.run_ingest. The simulated
source continues where the stored market ends (warehouse.continuation), so each run adds its
duration; the summary line says so, and says when a run stored nothing new (all already held).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import format_ns
from flows.common import failed, parser, persistent_server, raise_if_failed
from flows.sources import SOURCES, build_source

log = logging.getLogger(__name__)

REHEARSAL_NS = 10 * 1_000_000_000  # of simulated Bybit messages: a snapshot, deltas, trades


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.ingest", __doc__)
    p.add_argument("--source", required=True, choices=SOURCES, help="where the data comes from")
    p.add_argument("--path", action="append", metavar="P", help="recorded file (repeatable; --source file)")
    p.add_argument("--duration", metavar="S", help="how long: seconds or 30m, 2h (sim: simulated time)")
    p.add_argument("--realtime", action="store_true", help="sim: run at wall-clock pace, starting now")
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_config(args.config)
    build_source(cfg, args.source, args.path, args.duration, args.realtime)
    return args


# --help and bad input are answered here, before Prefect and the pipelines load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task
from prefect.states import Completed

from pipelines.progress import IngestProgress
from warehouse.continuation import continue_sim
from warehouse.ingest import rehearse, run_ingest


@task(name="ingest")
def ingest_task(
    config: str, source: str, paths: list[str] | None, duration: str | None, realtime: bool
) -> dict[str, Any]:
    """Run one ingest; a user error comes back as {'status': 'failed', 'error': ...}, not a traceback."""
    try:
        cfg = load_config(config)
        detail = " ".join(paths or []) if source == "file" else f"duration={duration or 'open'}"
        note = ""
        if source == "sim" and not realtime and (on := continue_sim(cfg)) is not None:  # realtime starts now
            cfg = cfg.model_copy(update={"sim": on.sim})
            note = f" (the simulated market continues the stored one, which ends {format_ns(on.stored_end_ns)})"
            detail += f" from={format_ns(on.sim.start)}"
            log.info("the warehouse holds a market up to %s: simulating from %s on", format_ns(on.stored_end_ns),
                     format_ns(on.sim.start))  # fmt: skip
        src = build_source(cfg, source, paths, duration, realtime)
        durable = source == "bybit" or realtime
        rehearsed = source == "bybit"  # its stall watchdog must not see the kernels compile: before it connects
        if rehearsed:
            from sim import MarketSimulator

            print("readying the kernels on simulated Bybit messages (on a fresh checkout they compile: once)")
            print(rehearse(src, cfg, MarketSimulator(cfg.sim, cfg.instrument, cfg.ingest.depth).batches(REHEARSAL_NS)))
        with IngestProgress(f"ingest {source}") as progress:
            result = run_ingest(src, cfg, detail, on_progress=progress, durable=durable, rehearsed=rehearsed)
    except UserError as exc:
        return {"status": "failed", "error": str(exc), "exit_code": exc.exit_code}
    out: dict[str, Any] = {
        "run_id": result.run_id,
        "status": result.status,
        "summary": result.summary() + note,
        "counts": dict(result.counts),
        "inserted": dict(result.inserted),
        "seconds": result.seconds,
        "recovered": result.recovered,
    }
    if result.error:
        out.update(status="failed", error=result.error, exit_code=result.exit_code or 3)
    return out


@flow(name="ingest", log_prints=True)
def ingest_flow(
    source: str = "sim",
    paths: list[str] | None = None,
    duration: str | None = None,
    realtime: bool = False,
    config: str = "config.yaml",
) -> State:
    """Ingest market data from Bybit, the simulator or recorded files into the warehouse."""
    result = ingest_task(config, source, paths, duration, realtime)
    if result["status"] == "failed":
        return failed(result)
    print(result["summary"])
    return Completed(message=result["summary"], data=result)


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    with persistent_server():
        state = ingest_flow(
            source=args.source,
            paths=args.path,
            duration=args.duration,
            realtime=args.realtime,
            config=args.config,
            return_state=True,
        )
        result = state.result(raise_on_failure=False) if state.is_completed() else None
    raise_if_failed(state, "ingest")
    print(result["summary"] if isinstance(result, dict) else state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
