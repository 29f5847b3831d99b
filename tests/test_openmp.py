"""The OpenMP threads of the learners sleep while they wait (core/__init__.py), unless the user says otherwise."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

# each OpenMP runtime a process loads (LightGBM's, XGBoost's, at their import) prints its settings
PROGRAM = "import core, lightgbm, xgboost"


def _spin_counts(env: dict[str, str]) -> list[str]:
    p = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={**env, "OMP_DISPLAY_ENV": "VERBOSE"}, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return re.findall(r"GOMP_SPINCOUNT = '(\d+)'", p.stderr)


@pytest.mark.untraced
@pytest.mark.parametrize(
    ("given", "spinning"),
    [(None, False), ("ACTIVE", True), ("PASSIVE", False)],
)
def test_openmp_threads_wait_passively_unless_the_environment_says_otherwise(given: str | None, spinning: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    counts = _spin_counts(env)
    assert counts, "no OpenMP runtime reported its settings"
    # PASSIVE: a waiting thread sleeps at once (a spin count of 0); ACTIVE spins (libgomp: 30 billion)
    assert all((int(c) > 0) == spinning for c in counts), counts
