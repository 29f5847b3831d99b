"""How ``flows.serve`` stops: gracefully, so that a Ctrl-C never cuts a flow run in half.

A terminal's Ctrl-C goes to its whole foreground process group, the flow runs serve started
included: Prefect's engine then logs each interrupted run with a traceback and leaves it Running
on the server, holding its deployment's concurrency slot. So serve blocks SIGINT in itself (and,
since a child inherits its parent's signal mask, in every flow run it starts), and a watcher thread
takes the signal instead. The first Ctrl-C (or a SIGTERM from a supervisor) pauses the served
deployments, so no new run starts, and lets the runs in progress finish for up to ``grace_s``;
then serving stops. A second Ctrl-C stops at once. A run still going then is terminated by
Prefect's runner, and ``settle`` marks whatever is still Running on the server as Crashed.

Serving stops through the runner's own ``astop`` on its event loop (an anyio cancel scope). It once
stopped by interrupting the main thread, which asyncio turns into a cancel of the runner's task; a
suite run saw that cancel lost inside Prefect's runner, and serve went on serving after Ctrl-C, for
good. The main thread is still interrupted if serving has not ended ``patience_s`` after the stop,
and again until it has. Prefect's runner also puts its own SIGTERM handler in place (it exits at
once, no grace, no settling): here a SIGTERM stays a Ctrl-C.
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
from typing import Any

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

    def __init__(self, grace_s: float, patience_s: float = 10.0) -> None:
        self.grace_s = grace_s
        self.patience_s = patience_s  # after the stop, how long serving may take to end before an interrupt
        self.pause: Callable[[], None] | None = None  # set once serving: pauses the served deployments
        self.stop: Callable[[], bool] | None = None  # set once serving: asks the runner to stop (False: it cannot)
        self.wake: Callable[[], object] | None = None  # set once serving: wakes the main thread's event loop
        self.stopping = threading.Event()
        self.ended = threading.Event()  # set by the main thread once serving has returned
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # inherited (nohup ... &): the interrupt needs a handler
            signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, self.on_sigterm)
        threading.Thread(target=self._watch, name="serve-stop", daemon=True).start()

    @staticmethod
    def on_sigterm(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # blocked everywhere: the watcher takes it like a Ctrl-C

    def _watch(self) -> None:
        signal.sigwait({signal.SIGINT})
        self.stopping.set()
        if self.pause is not None:
            self._drain()
        self._end_serving()

    def _end_serving(self) -> None:
        """Ask the runner to stop; interrupt the main thread when it cannot, or has not stopped within
        ``patience_s`` (and again after each ``patience_s``, or at once on another Ctrl-C)."""
        asked = False
        if self.stop is not None:
            try:
                asked = self.stop()
            except Exception as exc:  # its loop already closing: the interrupt below ends it
                log.warning("could not ask the runner to stop: %s", exc)
        if not asked:
            self._interrupt()
        deadline = time.monotonic() + self.patience_s
        while not self.ended.is_set():
            again = signal.sigtimedwait({signal.SIGINT}, 0.2) is not None
            if self.ended.is_set():
                return
            if again or time.monotonic() >= deadline:
                if not again:
                    print(f"serving did not stop within {self.patience_s:.0f} s: interrupting it", flush=True)
                self._interrupt()
                deadline = time.monotonic() + self.patience_s

    def _interrupt(self) -> None:
        """KeyboardInterrupt in the main thread, as a Ctrl-C would raise it there (under asyncio.run:
        a cancel of its task the first time, the exception itself after). No signal arrives, so an event
        loop asleep in its selector would not run the handler before its next timer: it is woken."""
        _thread.interrupt_main()
        if self.wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nothing asleep there
                self.wake()

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


def serve(deployments: list[Any], stopper: Stopper) -> None:
    """Prefect's ``serve`` (flows.py) with a runner that ``stopper`` stops, returning when serving ends.

    The runner is Prefect's, as ``prefect.serve`` makes it; only its SIGTERM handler is the stopper's."""
    import asyncio

    from prefect.runner import Runner

    class StoppableRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            stopper.on_sigterm()

    runner = StoppableRunner(pause_on_shutdown=True, limit=None)
    for d in deployments:
        runner.add_deployment(d)

    async def serving() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> bool:
            if not runner.started:  # not serving yet (or no longer): the interrupt ends it
                return False
            asyncio.run_coroutine_threadsafe(runner.astop(), loop)
            return True

        stopper.stop, stopper.wake = stop, lambda: loop.call_soon_threadsafe(lambda: None)
        await runner.start()

    try:
        with contextlib.suppress(KeyboardInterrupt):  # the stopper's interrupt, when it had to
            asyncio.run(serving())
    finally:
        stopper.ended.set()


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
