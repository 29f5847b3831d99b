"""Build features and labels for what the warehouse holds: ``python -m flows.feature_build``.

    python -m flows.feature_build                                  # everything new since the last run
    python -m flows.feature_build --start 2026-01-05T00:00:00Z --end 2026-01-05T06:00:00Z
    python -m flows.feature_build --no-labels                      # features only
    python -m flows.feature_build --cluster local --workers 2      # a day per task on a Dask cluster
    python -m flows.feature_build --cluster tcp://10.0.0.5:8786 --partition 6h

Incremental and idempotent: a run continues where the last one stopped, re-running never
duplicates a row. A Prefect flow around pipelines.featurebuild.build (deployed from prefect.yaml).
Export with ``python -m warehouse export --table features|labels``.

With ``--cluster`` (or ``compute.cluster`` in config.yaml) the run's grid times are cut into
partitions (``--partition``, ``compute.partition``; a UTC day by default), each built by a Prefect
task on Dask through prefect-dask (``local``: a cluster of ``--workers`` processes for the run; an
address: a running scheduler whose workers run this project and read the same warehouse path).
The workers only read the warehouse; this process writes each partition's rows in one transaction,
in time order. ``--partition`` without a cluster builds the same partitions here, one after another:
the same rows, bit for bit, as on the cluster. Without either, nothing changes: one pass here.
"""

from __future__ import annotations

import argparse
import collections
import functools
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flows  # noqa: F401  (sets PREFECT_HOME before prefect is imported)
from core.cli import answer_early, run_main, setup_logging
from core.config import AppConfig, load_config
from core.errors import UserError
from core.timefmt import format_ns, parse_duration_ns, parse_time_ns
from flows.common import (
    add_cluster_arguments,
    attempt,
    cluster_of,
    failed,
    finish,
    parser,
    run_flow,
    shared_server,
    task_runner,
)

if TYPE_CHECKING:
    from pipelines.featurebuild import Part, PartRows

log = logging.getLogger(__name__)

DEFAULT_PARTITION = "1d"  # a cluster's unit of work when compute.partition does not say


def _time(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_time_ns(text)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None


def _partition(text: str) -> int:
    try:
        ns = parse_duration_ns(text)
    except ValueError as exc:
        raise UserError(f"--partition: {exc}") from None
    if ns <= 0:
        raise UserError(f"--partition {text}: a positive duration, e.g. 1d or 6h")
    return ns


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser("flows.feature_build", __doc__)
    p.add_argument("--start", help="first grid time (ISO 8601 UTC or ns); default: where the last run stopped")
    p.add_argument("--end", help="last data time to use (ISO 8601 UTC or ns); default: the newest data")
    p.add_argument("--no-labels", action="store_true", help="build features only")
    add_cluster_arguments(p)
    p.add_argument(
        "--partition",
        metavar="DURATION",
        help=f"grid time per task, on the clock (default: compute.partition; {DEFAULT_PARTITION} on a cluster)",
    )
    return p.parse_args(argv)


def checked(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed and validated before Prefect starts: bad input costs one line, not a flow run."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_config(args.config)
    _time(args.start, "--start")
    _time(args.end, "--end")
    cluster_of(args, cfg)
    if args.partition is not None:
        _partition(args.partition)
    return args


# --help and bad input are answered here, before Prefect and the pipelines load (core.cli.answer_early)
answer_early(__name__, checked)

from prefect import State, flow, task
from prefect.cache_policies import NO_CACHE

from pipelines.progress import StepProgress


@task(name="build-features")
def build_task(
    config: str, start: str | None, end: str | None, labels: bool, partition: str | None = None
) -> dict[str, Any]:
    """One build (partition after partition when ``partition`` or compute.partition says); a user
    error comes back as {'status': 'failed', ...}, not a traceback."""

    def job() -> dict[str, Any]:
        cfg = load_config(config)
        if partition is not None:
            compute = cfg.compute.model_copy(update={"partition": _partition(partition)})
            cfg = cfg.model_copy(update={"compute": compute})
        from pipelines.featurebuild import build  # loaded by the run, not for --help or bad input

        with StepProgress("features") as progress:
            result = build(cfg, _time(start, "--start"), _time(end, "--end"), on_progress=progress, labels=labels)
        return {
            "summary": result.summary(),
            "feature_set": result.feature_set,
            "label_set": result.label_set,
            "feature_rows": result.feature_rows,
            "label_rows": result.label_rows,
        }

    return attempt(job)


@flow(name="features", log_prints=True)
def features_flow(
    config: str = "config.yaml",
    start: str | None = None,
    end: str | None = None,
    labels: bool = True,
    partition: str | None = None,
) -> State:
    """Build the features (and labels) that are missing for the warehouse's data, in one task."""
    return finish(build_task(config, start, end, labels, partition), lambda r: r["summary"])


# a partition's rows are the warehouse's, not a function of the task's inputs: never taken from a cache
@task(name="build-partition", cache_policy=NO_CACHE, persist_result=False)
def partition_task(config: str, part: Part) -> dict[str, Any]:
    """One partition's rows (pipelines.featurebuild.compute), computed wherever the task runs."""
    from pipelines.featurebuild import compute

    return attempt(lambda: {"rows": compute(load_config(config), part)})


@flow(name="features-by-partition", log_prints=True)
def partitioned_flow(
    config: str = "config.yaml",
    start: str | None = None,
    end: str | None = None,
    labels: bool = True,
    partition: str = DEFAULT_PARTITION,
) -> State:
    """The same build, a task per partition on a Dask task runner (its worker processes read the
    warehouse while this one writes: DuckDB keeps a file either read-only or read-write per process,
    so the tasks cannot be threads of this process)."""
    from pipelines.featurebuild import plan

    t0 = time.monotonic()
    cfg = load_config(config)

    def planned() -> dict[str, Any]:
        result, parts = plan(cfg, _time(start, "--start"), _time(end, "--end"), labels, _partition(partition))
        return {"result": result, "parts": parts}

    p = attempt(planned)
    if p["status"] == "failed":
        return failed(p)
    result, parts = p["result"], p["parts"]
    counted = f"{len(parts)} partition{'' if len(parts) == 1 else 's'} of {partition}"
    print(f"features: {counted} for {', '.join(result.pairs)}")
    # taken in order and let go once stored: a future keeps its result, and the run holds one at a time
    pending = collections.deque(partition_task.map([config] * len(parts), parts))
    for i, part in enumerate(parts, 1):
        done = pending.popleft().result()
        if done["status"] == "completed":
            done = attempt(functools.partial(_store, cfg, part, done["rows"]))
        if done["status"] == "failed":
            return failed(done)  # the partitions before it are stored: the next run continues after them
        result.feature_rows += done["features"]
        result.label_rows += done["labels"]
        print(f"  partition {i}/{len(parts)} {part.venue}/{part.symbol} from {format_ns(part.start)}: "
              f"{done['features']:,} feature rows, {done['labels']:,} label rows")  # fmt: skip
    result.seconds = time.monotonic() - t0
    summary = f"{result.summary()} ({counted})"
    return finish(
        {"status": "completed", "summary": summary, "feature_set": result.feature_set, "label_set": result.label_set,
         "feature_rows": result.feature_rows, "label_rows": result.label_rows},
        lambda r: r["summary"],
    )  # fmt: skip


def _store(cfg: AppConfig, part: Part, rows: PartRows) -> dict[str, Any]:
    from pipelines.featurebuild import store

    nf, nl = store(cfg, part, rows)
    return {"features": nf, "labels": nl}


def cluster_partition(cfg: AppConfig) -> str:
    """What a build on a cluster goes by: ``compute.partition``, else a day (as config.yaml writes it)."""
    return _duration_text(cfg.compute.partition or parse_duration_ns(DEFAULT_PARTITION))


def _duration_text(ns: int) -> str:
    """A duration as config.yaml writes it (1d, 6h, 90m, ...)."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if ns % (size * 1_000_000_000) == 0:
            return f"{ns // (size * 1_000_000_000)}{unit}"
    return f"{ns}ns"


def main(argv: Sequence[str] | None = None) -> int:
    args = checked(argv)
    cfg = load_config(args.config)
    cluster, workers = cluster_of(args, cfg)
    params: dict[str, Any] = {"config": args.config, "start": args.start, "end": args.end,
                              "labels": not args.no_labels, "partition": args.partition}  # fmt: skip
    if cluster is None:
        state = run_flow(features_flow, "feature build", **params)
    else:
        if args.partition is None:
            params["partition"] = cluster_partition(cfg)
        flow_on_dask = partitioned_flow.with_options(task_runner=task_runner(cluster, workers))
        with shared_server():
            state = run_flow(flow_on_dask, "feature build", **params)
    result = state.result(raise_on_failure=False)
    print(result["summary"] if isinstance(result, dict) else state.message)
    return 0


if __name__ == "__main__":
    run_main(main)
