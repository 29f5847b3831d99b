"""core/jit.py: an on-disk numba cache written by an older version of the code is a miss, not a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RECORD = """
from typing import NamedTuple
import numpy as np
class Rec(NamedTuple):
    a: np.ndarray
"""
KERNEL = """
{guard}
import numba as nb
@nb.njit(cache=True)
def f(r):
    return r[0].sum()
"""


def _run(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{REPO}", "NUMBA_DISABLE_JIT": "0"}
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True)


def _stale_cache(folder: Path, guard: str) -> subprocess.CompletedProcess[str]:
    """A kernel cached for a record type whose module is then removed (a class moved in a new version),
    called again after its source changed."""
    folder.mkdir()
    (folder / "recmod.py").write_text(RECORD)
    (folder / "kmod.py").write_text(KERNEL.format(guard=guard))
    first = _run(folder, "import numpy as np, recmod, kmod; print(kmod.f(recmod.Rec(np.ones(3))))")
    assert first.returncode == 0 and first.stdout.strip() == "3.0", first.stderr
    (folder / "recmod.py").unlink()
    (folder / "kmod.py").write_text(KERNEL.format(guard=guard) + "# the next version\n")
    return _run(folder, "import numpy as np, kmod; print(kmod.f((np.ones(2),)))")


def test_a_cache_naming_a_removed_class_is_compiled_again(tmp_path: Path) -> None:
    bare = _stale_cache(tmp_path / "bare", "")  # numba alone: the first call fails
    assert bare.returncode != 0 and "No module named 'recmod'" in bare.stderr
    guarded = _stale_cache(tmp_path / "guarded", "import core.jit")
    assert guarded.returncode == 0 and guarded.stdout.strip() == "2.0", guarded.stderr
    again = _run(tmp_path / "guarded", "import numpy as np, kmod; print(kmod.f((np.ones(4),)))")
    assert again.returncode == 0 and again.stdout.strip() == "4.0", again.stderr  # the index was rewritten


def test_every_module_with_cached_kernels_takes_the_guard() -> None:
    missing: list[str] = []
    guarded: list[str] = []
    for path in REPO.glob("*/**/*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in {".venv", "tests", "bench"} or rel.parts[0].startswith("."):
            continue
        text = path.read_text()
        if "cache=True" in text and ("import numba" in text or "kernel_jit" in text) and rel != Path("core/jit.py"):
            (guarded if "core.jit" in text else missing).append(str(rel))
    assert missing == [] and len(guarded) >= 10  # the features', the book's, the parsers', the simulator's ...


def test_no_record_field_is_shadowed_when_the_kernels_run_interpreted() -> None:
    """Under NUMBA_DISABLE_JIT=1 (the coverage pass) a kernel's ``row.field`` is numpy's np.record
    attribute lookup, which finds a scalar's own attributes first: a field called ``base`` or
    ``size`` would read the wrong thing there while the compiled kernel reads the field."""
    import numpy as np

    from execution import records as r
    from features.state import SCALARS_ROW
    from market.book import META_ROW

    rows = [META_ROW, SCALARS_ROW, r.STATE_ROW, r.CONFIG_ROW, r.ACCOUNT_ROW, r.ORDER_ROW, r.REQUEST_ROW]
    for dtype in [*rows, r.REPORT_ROW, r.FILL_ROW, r.SAMPLE_ROW]:
        row = np.zeros(1, dtype)[0]
        assert isinstance(row, np.record), dtype  # attributes for numpy too
        shadowed = [name for name in dtype.names or () if name in dir(np.generic)]
        assert not shadowed, shadowed
        for name in dtype.names or ():
            assert np.array_equal(getattr(row, name), row[name])
