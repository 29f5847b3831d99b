"""What every flow's command line shares: the parser, the cluster flags, and turning a failed flow run
into one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from core.cli import add_config_argument
from core.errors import UserError

if TYPE_CHECKING:
    from prefect import State

    from core.config import AppConfig


class FlowFailedError(UserError):
    """A flow run ended Failed: its message is the one line, its exit code the task's."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


class StepFailed(Exception):  # noqa: N818  (it is what a failed run carries, not raised as an error)
    """What a failed flow run carries: its one-line reason and the exit code of its command.

    An exception, not a dict: a deployment's run resolves a Failed state's data into the exception
    it raises (a dict there ends in ``TypeError: Unexpected result for failed state``).
    """

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def attempt(job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What every task returns: the job's result marked completed, or its user error as one line and
    the exit code of its command (never a traceback: the flow turns it into a Failed state)."""
    try:
        return {"status": "completed", **job()}
    except UserError as exc:
        return {"status": "failed", "error": str(exc), "exit_code": exc.exit_code}


def finish(result: dict[str, Any], message: Callable[[dict[str, Any]], str]) -> State:
    """What every flow returns: Failed with the task's one line, or Completed with its message printed."""
    if result["status"] == "failed":
        return failed(result)
    from prefect.states import Completed

    text = message(result)
    print(text)
    return Completed(message=text, data=result)


def run_flow(flow: Callable[..., Any], what: str, **params: Any) -> Any:
    """Run a flow from its command line, on the persistent Prefect server when one is up
    (``persistent_server``); a failed run raises its one line with its exit code."""
    with persistent_server():
        state = flow(**params, return_state=True)
    raise_if_failed(state, what)
    return state


@contextmanager
def persistent_server() -> Iterator[str | None]:
    """The Prefect server a flow command reports to: PREFECT_API_URL when set; else the box's
    (``make up``, ops/box.py) or the local one at 127.0.0.1:4200 (``make prefect-ui``) when it
    answers, so that the command starts no temporary server of its own (about 10 s, and under
    load it can time out); else None: Prefect's temporary server."""
    if url := os.environ.get("PREFECT_API_URL"):
        yield url
        return
    from core.box import box_prefect_url
    from flows.prefect_server import DEFAULT_API_URL, answers, guard_temporary_servers

    found = next((u for u in (box_prefect_url(), DEFAULT_API_URL) if u and answers(u, timeout_s=1.0)), None)
    if found is None:
        guard_temporary_servers()  # Prefect's temporary server: stopped even when this process is killed
        yield None
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    print(f"using the Prefect server at {found}", file=sys.stderr)
    with temporary_settings(updates={PREFECT_API_URL: found}):
        yield found


@contextmanager
def shared_server() -> Iterator[str]:
    """A Prefect server other processes reach too (a Dask cluster's workers report their task runs
    to it): the persistent one when it is up, else a temporary one started here whose address the
    processes started meanwhile inherit (PREFECT_API_URL). Prefect's own temporary server lives in
    this process's settings only: each worker would start one of its own."""
    with persistent_server() as url:
        if url is not None:
            yield url
            return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()  # guarded: persistent_server found none and gave Prefect's temporary servers one
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # the run's log lines reach the server before it stops
        del os.environ["PREFECT_API_URL"]
        server.stop()


def failed(result: dict[str, Any]) -> State:
    """The Failed state of a flow whose task answered {'status': 'failed', 'error': ..., 'exit_code': ...}."""
    from prefect.states import Failed  # not at import: serve sets the API URL before prefect reads it

    message = str(result["error"])
    return Failed(message=message, data=StepFailed(message, int(result.get("exit_code", 3))))


def exit_code(state: Any) -> int:
    """The exit code a failed flow run carries (3, corrupt data or a failed job, when it carries none)."""
    data = state.data
    if not isinstance(data, dict | BaseException):  # a finished run carries its data as a result record
        try:
            data = state.result(raise_on_failure=False)
        except Exception:  # no readable result: the generic code
            data = None
    if isinstance(data, dict):
        return int(data.get("exit_code", 3))
    return int(getattr(data, "exit_code", 3))


def raise_if_failed(state: Any, what: str) -> None:
    """Raise FlowFailedError for a Failed state, with the exit code the failed step carries."""
    if state.is_failed():
        raise FlowFailedError(state.message or f"{what} failed", exit_code(state))


def parser(module: str, doc: str | None, verbose: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the module's docstring as help, ``--config`` and ``-v``."""
    p = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_argument(p)
    if verbose:
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """``--cluster`` and ``--workers``: where the command's tasks run (default: config.yaml's ``compute``)."""
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="local (a Dask cluster for the run) or tcp://host:port (default: compute.cluster)",
    )
    p.add_argument("--workers", type=int, metavar="N", help="workers of a local cluster (default: compute.workers)")


def cluster_of(args: argparse.Namespace, cfg: AppConfig) -> tuple[str | None, int]:
    """(the cluster the tasks run on, None: this process; the workers of a local one), checked."""
    cluster = args.cluster or cfg.compute.cluster
    workers = cfg.compute.workers if args.workers is None else args.workers  # --workers 0 is an error, not a default
    if workers < 1:
        raise UserError(f"--workers {workers}: at least 1")
    if cluster is not None and cluster != "local" and not cluster.startswith(("tcp://", "tls://")):
        raise UserError(f"--cluster {cluster}: local, or a scheduler address tcp://host:port")
    return cluster, workers


@contextmanager
def cluster_address(cluster: str | None, workers: int) -> Iterator[str | None]:
    """The Dask scheduler a run's steps share: None (no cluster: the steps run here), the address of
    a running one, or (``local``) a cluster of ``workers`` processes started here for the whole run
    and closed when it ends, so that a chain of steps starts one cluster, not one per step."""
    if cluster != "local":
        yield cluster
        return
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the cluster's own chatter (workers inherit it)
    from distributed import LocalCluster

    _local_cluster_here()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as local:  # type: ignore[no-untyped-call]
        yield str(local.scheduler_address)


def _local_cluster_here() -> None:
    """What this process does before it starts a local cluster: the resource tracker first, with the
    thread's signal mask kept (the forkserver would start it otherwise), then the forkserver's setup."""
    _start_resource_tracker()
    _fork_workers()


# What the workers' tasks import (Prefect's task engine, the flows' task functions and what they run):
# imported once, in the server the workers are forked from, instead of once in each worker
WORKER_PRELOAD = ("distributed", "prefect", "flows.feature_build", "flows.train", "flows.sweep")


def _fork_workers() -> None:
    """Start a local cluster's workers by forking them from a server process that has imported
    ``WORKER_PRELOAD`` (multiprocessing's forkserver), not each as a fresh interpreter importing it
    all again (Dask's default, spawn: about 5 CPU-s a worker before its first task)."""
    import multiprocessing

    import dask

    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    from distributed.utils import get_mp_context

    get_mp_context()  # type: ignore[no-untyped-call]  # Dask's own preload first (it sets it once per process) ...
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_PRELOAD))  # ... then ours


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker here, keeping this thread's signal mask.

    Python 3.11 starts the tracker on the first spawned process (a cluster's workers) and then
    unblocks SIGINT in the thread that started it, whatever the mask was. A flow run ``flows.serve``
    started keeps SIGINT blocked so that a terminal's Ctrl-C lets it finish (flows/stopping.py):
    with SIGINT unblocked in one of its threads, that Ctrl-C interrupted the chain closing its
    cluster. Started here first, with the mask put back, the later starts find it running and
    leave every mask alone."""
    import signal
    from multiprocessing import resource_tracker

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def task_runner(cluster: str | None, workers: int) -> Any:
    """A flow's task runner: its tasks one at a time here (None), or on Dask: ``local`` (a cluster of
    ``workers`` processes started for the run) or the address of a running scheduler."""
    if cluster is None:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=1)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the cluster's own chatter (workers inherit it)
    from prefect_dask.task_runners import DaskTaskRunner

    if cluster == "local":
        _local_cluster_here()  # the runner starts its cluster in this process, as cluster_address does
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    return DaskTaskRunner(address=cluster)
