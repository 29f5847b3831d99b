"""A command's native allocators are set for a process that runs around the clock (core/memory.py):
glibc's malloc arenas capped, Arrow on the system allocator, DuckDB's allocator handing memory back
in the live ingest's (lean) writer. Whether that keeps a live ingest's memory flat is measured by ``make soak``
(its RSS check), not here; these show the settings are in force where the commands run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.memory import ARENAS, malloc_arenas
from tests.conftest import REPO
from warehouse.db import reading
from warehouse.writer import ALLOCATOR_SETTINGS, WarehouseWriter

pytestmark = pytest.mark.skipif(malloc_arenas() is None, reason="glibc's malloc only")

# a command's main that makes DuckDB run eight threads at once, each allocating as it goes (the
# arenas glibc makes for them are what the cap bounds), then reports what the process has
COMMAND = textwrap.dedent(
    """
    import json, sys
    import duckdb, pyarrow as pa
    from core.memory import malloc_arenas

    def main(argv=None):
        con = duckdb.connect(":memory:", config={"threads": 8})
        con.execute("SELECT count(DISTINCT (x % 100000)::VARCHAR || 'x') FROM range(200000) t(x)").fetchall()
        print(json.dumps({"arenas": malloc_arenas(), "arrow": pa.default_memory_pool().backend_name}))
        return 0

    if sys.argv[1] == "run_main":
        from core.cli import run_main
        run_main(main)
    else:
        main()
    """
)


def _run(how: str, **preset: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "ARROW_DEFAULT_MEMORY_POOL")}
    env.update(preset)
    p = subprocess.run(
        [sys.executable, "-c", COMMAND, how], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    out: dict[str, object] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def test_a_command_run_through_run_main_caps_the_malloc_arenas_and_gives_arrow_the_system_allocator() -> None:
    plain = _run("plain")  # the same work outside run_main: what glibc and Arrow do by default
    assert isinstance(plain["arenas"], int) and plain["arenas"] > ARENAS
    assert plain["arrow"] != "system"
    assert _run("run_main") == {"arenas": ARENAS, "arrow": "system"}
    # what the user set in the environment is kept
    preset = {"MALLOC_ARENA_MAX": str(ARENAS + 2), "ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}
    assert _run("run_main", **preset) == {"arenas": ARENAS + 2, "arrow": "jemalloc"}


def test_a_lean_warehouse_writer_has_duckdb_hand_freed_memory_back(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    writer = WarehouseWriter(path, levels=5, lean=True)  # as the live ingest makes it (durable)
    try:
        with reading(path) as con:
            rows = con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN (SELECT unnest($names))",
                {"names": list(ALLOCATOR_SETTINGS)},
            ).fetchall()
    finally:
        writer.close()
    assert dict(rows) == ALLOCATOR_SETTINGS
