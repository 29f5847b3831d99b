"""A flow run ``flows.serve`` started keeps SIGINT blocked, so that a terminal's Ctrl-C lets it finish
(flows/stopping.py); a chain that starts a local Dask cluster keeps it blocked too."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

CHILD = """
import os, signal, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # as serve leaves it for its flow runs
from flows.common import cluster_address
with cluster_address("local", 1) as address:
    assert address.startswith("tcp://127.0.0.1:"), address
    os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C reaches the run's process group
    time.sleep(1.0)  # a thread that unblocked it would take it now: KeyboardInterrupt in the main thread
    pending = signal.SIGINT in signal.sigpending()
print("pending" if pending else "taken")
"""


def test_a_local_cluster_leaves_a_blocked_sigint_blocked() -> None:
    p = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split()[-1] == "pending", p.stdout + p.stderr[-2000:]
