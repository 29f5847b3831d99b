"""Every command tunes the garbage collector before its work (core.cli.quiet_gc)."""

from __future__ import annotations

import gc
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.cli import GC_THRESHOLDS, run_main
from core.errors import UserError


def test_a_command_freezes_its_imports_and_collects_in_larger_batches() -> None:
    seen: dict[str, object] = {}
    before = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)  # CPython's defaults, as a command starts with them

    def main(argv: Sequence[str] | None) -> int:
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        return 0

    try:
        with pytest.raises(SystemExit) as done:
            run_main(main, [])
    finally:
        gc.set_threshold(*before)
    assert done.value.code == 0
    assert seen["threshold"] == GC_THRESHOLDS and GC_THRESHOLDS[0] > 700
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000  # pytest's, prefect's, ... objects


def test_a_user_error_still_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: Sequence[str] | None) -> int:
        raise UserError("bad --thing")

    with pytest.raises(SystemExit) as done:
        run_main(main, [])
    assert done.value.code == UserError("x").exit_code != 0
    assert capsys.readouterr().err == "error: bad --thing\n"


@pytest.mark.untraced
def test_a_command_that_used_duckdb_exits_without_a_leak_report() -> None:
    """A frozen object outlives the interpreter's last collection; DuckDB's binding then reports every
    one of its objects as leaked on stderr. The command unfreezes at exit."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = "from core.cli import run_main\nimport duckdb\ncon = duckdb.connect()\nrun_main(lambda argv: 0)"
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr[-2000:]


def test_a_long_running_command_collects_its_reference_cycles_without_waiting_for_the_thresholds() -> None:
    """Garbage in a cycle, with automatic collection off (as the raised thresholds nearly have it):
    the full collections on their own thread free it."""
    import threading
    import weakref

    from core import cli

    started = cli.FullCollections.started  # every command has them (quiet_gc)
    assert started is not None and started.every_s == cli.FULL_COLLECTION_S
    # and the thread takes no signal: flows.serve's Stopper waits for SIGINT on a thread of its own
    # (a Ctrl-C that landed here was a KeyboardInterrupt in the main thread: serve stopped at once)
    status = Path(f"/proc/self/task/{started._thread.native_id}/status").read_text()
    blocked = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigBlk:")), 16)
    assert all(blocked >> (s - 1) & 1 for s in (signal.SIGINT, signal.SIGTERM)), hex(blocked)

    class Node:
        me: object = None

    freed = threading.Event()
    node = Node()
    node.me = node  # a reference cycle: reference counting alone never frees it
    weakref.finalize(node, freed.set)
    del node
    was = gc.isenabled()
    gc.disable()
    full = cli.FullCollections(0.05)
    try:
        assert freed.wait(60), "a cycle still alive a minute later"
        assert full.runs >= 1
    finally:
        full.stop()
        if was:
            gc.enable()
    assert not full._thread.is_alive()
