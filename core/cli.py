"""Shared command-line plumbing: --config, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from core.config import AppConfig, load_config
from core.errors import UserError
from core.memory import settle_allocators

log = logging.getLogger(__name__)

# a collection of the youngest generation after this many new container objects (CPython: 700)
GC_THRESHOLDS = (50_000, 20, 20)
# and a full collection at least this often (seconds), for a command that runs for hours
FULL_COLLECTION_S = 60.0

# A library's exception that means what a UserError means (a service that did not answer, ...),
# turned into one by the layer that knows the library (flows/__init__.py: Prefect's temporary server).
Translator = Callable[[Exception], UserError | None]
TRANSLATORS: list[Translator] = []


def translated(exc: Exception) -> UserError | None:
    """The UserError a registered translator makes of ``exc``, or None."""
    for translate in TRANSLATORS:
        if (err := translate(exc)) is not None:
            return err
    return None


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="config.yaml",
        metavar="PATH",
        help="configuration file (default: config.yaml)",
    )


def config_from(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a CLI entry point: user errors print one line to stderr and exit non-zero."""
    settle_allocators()  # before quiet_gc's thread, or any of the command's
    quiet_gc()
    sys.exit(_exit_code(lambda: main(argv)))


def _exit_code(call: Callable[[], int]) -> int:
    """``call()``'s exit code; a user error (or a library's error a translator knows) is its one line on
    stderr and its code, Ctrl-C 130, a closed stdout 0; any other error is a bug: its traceback."""
    try:
        return call()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a library's error a translator knows is one line too; any other is a bug
        err = translated(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def answer_early(name: str, check: Callable[[Sequence[str] | None], object]) -> None:
    """``--help`` and bad input answered before a command loads its heavy libraries.

    A flow command calls this with its ``__name__`` above its Prefect import (about 1.5 s of CPU,
    more than everything else ``--help`` needs). Run as the command (``__main__``), ``check`` parses
    and checks the command line as ``run_main`` runs ``main``: argparse answers ``--help`` and its own
    errors (exit 0 / 2), a UserError is its one line and exit code. Imported (a deployment, a Dask
    worker, another flow), it does nothing. The command's ``main`` runs the same check again, so
    nothing depends on it.

    A check that passed leaves the logging as it found it: ``check`` sets it up as ``main`` does
    (``setup_logging``: a check's log lines reach the user), and Prefect, imported next, keeps a
    handler it finds on the root logger instead of installing its own.
    """
    if name != "__main__":
        return
    before = _logging_state()
    passed = False

    def run() -> int:
        nonlocal passed
        check(None)
        passed = True
        return 0

    code = _exit_code(run)
    if not passed:
        sys.exit(code)
    _restore_logging(before)


def quiet_gc() -> None:
    """Tune the cyclic garbage collector for a command that imports a lot and then works in batches.

    Everything alive now (the modules of prefect, mlflow, numba, ...) is frozen out of the collector's
    scans (``gc.freeze``), and a collection waits for ``GC_THRESHOLDS[0]`` new container objects, not
    700: a batch's short-lived rows are freed by reference counting before they are scanned and
    promoted. Reference cycles are still collected. Measured on the planted demo (485 simulated
    minutes): the collector took 12.4 s of the command's 93.6 CPU-s in 59 full collections, each
    scanning every imported object; 0.7 s of 73.4 after (docs/operations.md, "Garbage collection").
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    # the interpreter's last collection sees everything again: a binding that counts what is left at
    # exit (DuckDB's nanobind) finds nothing to report
    atexit.unregister(gc.unfreeze)
    atexit.register(gc.unfreeze)
    FullCollections.once(FULL_COLLECTION_S)


class FullCollections:
    """A full collection every ``every_s`` seconds, on a daemon thread of its own.

    With the thresholds above a full collection waits for about 20 million new container objects, and
    in Python 3.11 also for the objects awaiting it to reach a quarter of those already long-lived. A
    command that runs around the clock makes reference cycles that outlive the young generations all
    the time: in the live ingest, a ``queue.Empty`` raised in Prefect's call machinery twice a second
    (prefect/_internal/concurrency/calls.py), kept with its traceback and frames by a future. Beside
    the stand-in at speed 24 its tracked objects grew by 1,800 a minute (460,582 to 487,463 in 15
    minutes), to wait until about 110,000 had piled up (a quarter of 445,000 long-lived: at that
    rate, about an hour); with these collections they stayed at 444,000-446,000. A full collection
    took 28 ms over 200,000 tracked objects (the imports before ``quiet_gc`` frozen); at one a minute,
    about 0.05 % of a core, nearer 0.1 % for the ingest's 445,000 (estimated, not measured there)."""

    started: FullCollections | None = None  # the process's own (quiet_gc)

    @classmethod
    def once(cls, every_s: float) -> None:
        if cls.started is None:
            cls.started = cls(every_s)

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gc-full", daemon=True)
        # started with every signal blocked (a thread inherits its creator's mask): a signal sent to
        # the process never lands on it, so a command that takes SIGINT with sigwait on a thread of
        # its own (flows.serve's Stopper) still gets every one
        before = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            gc.collect()
            self.runs += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


PROJECT_LOGGERS = ("__main__", "core", "market", "features", "warehouse", "models", "execution", "sim", "pipelines",
                   "standin", "flows", "live", "ops", "bench")  # fmt: skip
NOISY_LOGGERS = ("asyncio", "aiohttp.access", "httpx", "ccxt", "numba", "distributed")


def setup_logging(verbose: bool = False) -> None:
    """Plain, timestamped log lines on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The project's own loggers keep their level when Prefect configures logging for a flow (its root
    # logger is at WARNING, and its console handler passes everything): a flow command's INFO lines,
    # "recording clock of ..." and the like, reach the user too.
    for ours in PROJECT_LOGGERS:
        logging.getLogger(ours).setLevel(logging.DEBUG if verbose else logging.INFO)


LoggingState = tuple[list[logging.Handler], dict[str, int]]


def _logging_state() -> LoggingState:
    """What ``setup_logging`` changes: the root logger's handlers and the levels it sets."""
    names = ("", *PROJECT_LOGGERS, *NOISY_LOGGERS)
    return list(logging.root.handlers), {n: logging.getLogger(n).level for n in names}


def _restore_logging(state: LoggingState) -> None:
    handlers, levels = state
    for handler in logging.root.handlers[:]:
        if handler not in handlers:
            logging.root.removeHandler(handler)
            handler.close()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
