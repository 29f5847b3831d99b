"""How ``flows.serve`` stops: gracefully, so that a Ctrl-C never cuts a flow run in half.

A terminal's Ctrl-C goes to its whole foreground process group, the flow runs serve started
included: Prefect's engine then logs each interrupted run with a traceback and leaves it Running
on the server, holding its deployment's concurrency slot. So serve blocks SIGINT in itself (and,
since a child inherits its parent's signal mask, in every flow run it starts), and a watcher thread
takes the signal instead. The first Ctrl-C (or a SIGTERM from a supervisor) pauses the served
deployments, so no new run starts, and lets the runs in progress finish for up to ``grace_s``;
then serving stops. A second Ctrl-C stops at once. A run still going then is terminated by
Prefect's runner, and ``settle`` marks whatever is still Running on the server as Crashed.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def flow_run_processes(pid: int) -> list[int]:
    """The live flow-run processes (``python -m prefect.engine``) that ``pid`` started (Linux /proc);
    not the Prefect server, which is a child too."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:  # it ended while we looked
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"prefect.engine" in command:
            out.append(int(stat.parent.name))
    return out


class Stopper:
    """Blocks SIGINT for this process from now on (call before any thread starts) and watches for it."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.pause: Callable[[], None] | None = None  # set once serving: pauses the served deployments
        self.stopping = threading.Event()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        signal.signal(signal.SIGTERM, self._on_sigterm)
        threading.Thread(target=self._watch, name="serve-stop", daemon=True).start()

    @staticmethod
    def _on_sigterm(signum: int, frame: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # blocked everywhere: the watcher takes it like a Ctrl-C

    def _watch(self) -> None:
        signal.sigwait({signal.SIGINT})
        self.stopping.set()
        if self.pause is not None:
            self._drain()
        _thread.interrupt_main()  # KeyboardInterrupt in the main thread: serving ends there

    def _drain(self) -> None:
        assert self.pause is not None
        try:
            self.pause()
        except Exception as exc:  # the server may be gone: nothing new can start then either
            log.warning("could not pause the deployments: %s", str(exc).splitlines()[0] if str(exc) else exc)
        deadline = time.monotonic() + self.grace_s
        running = flow_run_processes(os.getpid())
        if running:
            print(
                f"stopping: no new runs; waiting up to {self.grace_s:.0f} s for {len(running)} run(s) in progress "
                "(Ctrl-C again stops them now)",
                flush=True,
            )
        while running and time.monotonic() < deadline:
            if signal.sigtimedwait({signal.SIGINT}, 0.5) is not None:
                print("stopping now", flush=True)
                return
            running = flow_run_processes(os.getpid())
        if running:
            print(f"{len(running)} run(s) still in progress after {self.grace_s:.0f} s: stopping them", flush=True)


class GoneRun(logging.Filter):
    """Prefect's runner logs a traceback when a scheduled run it was about to start has gone from
    the server, which is what pausing the deployments on a stop does to the runs already scheduled
    (a race on every stop with a short interval). Here that is one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "ObjectNotFound":
            record.msg, record.args = f"{record.getMessage()}: the run is gone (its deployment was paused)", ()
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.INFO, "INFO"
        return True


def pause(names: list[str]) -> None:
    """Pause the served deployments on the server: no new run of theirs starts."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        for d in client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))):
            client.pause_deployment(d.id)


def settle(names: list[str], grace_s: float = 30.0) -> list[str]:
    """After serving stopped: stop the flow runs still in progress, then mark every run of these
    deployments (and its sub-flows) that is still in progress as Crashed, so that none stays
    "Running" in the UI and holds its deployment's concurrency slot for ever. The names marked."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    for pid in flow_run_processes(os.getpid()):  # Prefect's runner has terminated them; in case one lingers
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while flow_run_processes(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.2)
    active = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING, StateType.CANCELLING])
        )
    )
    message = "flows.serve stopped while this run was in progress"
    marked: list[str] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=active, deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
        )
        crashed = {r.id for r in runs}
        for sub in client.read_flow_runs(flow_run_filter=active):  # sub-flows of those runs
            parent = sub.parent_task_run_id
            if sub.id not in crashed and parent is not None and client.read_task_run(parent).flow_run_id in crashed:
                runs.append(sub)
        for r in runs:
            client.set_flow_run_state(r.id, Crashed(message=message), force=True)
            marked.append(r.name)
    return marked
