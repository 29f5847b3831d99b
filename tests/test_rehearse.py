"""The runner readies every kernel before it connects (live/rehearse.py, core/jit.py's keyed cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numba as nb
import pytest
import yaml

from core.config import AppConfig
from core.jit import Kernels, kernel_sources, sources_key
from standin.background import BackgroundStandin
from standin.feeds import SimFeed
from tests.test_runner import _study_model
from warehouse import journal as jr

NS = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]


def test_the_cache_key_changes_with_any_source_a_kernel_can_depend_on_and_only_with_them(tmp_path: Path) -> None:
    files = {
        "features/__init__.py": "",
        "features/a.py": "import numba\nfrom core.x import Y\nfrom features import (\n    c,\n)\n"
        "@numba.njit(cache=True)\ndef k(): return Y\n",  # a module with a cached kernel
        "features/c.py": "import models.m as m\n",  # ... imports a sibling, which imports another package
        "models/m.py": "M = 1\n",
        "core/x.py": "import core.z\nY = 1\n",  # ... and a core module, which imports another
        "core/z.py": "Z = 1\n",
        "core/unused.py": "U = 1\n",  # no kernel module imports it
        "features/plain.py": "from core.unused import U\n",  # no cached kernel: a flow's helper, say
        "models/store.py": "S = 1\n",  # the registry: no kernel imports it
        "live/a.py": "L = 1\n",  # no kernel lives there
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(text)
    key = sources_key(tmp_path, ("features",))
    changes = {"core/unused.py": False, "features/plain.py": False, "models/store.py": False, "live/a.py": False,
               "core/z.py": True, "core/x.py": True, "models/m.py": True, "features/c.py": True,
               "features/__init__.py": True, "features/a.py": True}  # fmt: skip
    for rel, depends in changes.items():
        (tmp_path / rel).write_text((tmp_path / rel).read_text() + "# changed\n")
        now = sources_key(tmp_path, ("features",))
        assert (now != key) == depends, rel
        key = now
    (tmp_path / "features" / "helper.py").write_text("H = 1\n")  # a new module without kernels
    assert sources_key(tmp_path, ("features",)) == key
    (tmp_path / "features" / "b.py").write_text("@njit(cache=True)\ndef k(): pass\n")  # a new one with kernels
    assert sources_key(tmp_path, ("features",)) != key


def test_the_key_covers_every_module_with_cached_kernels() -> None:
    covered = set(kernel_sources())
    for path in REPO.glob("*/**/*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in {".venv", "tests", "bench"} or rel.parts[0].startswith("."):
            continue
        if "cache=True" in path.read_text() and rel != Path("core/jit.py"):
            assert path in covered, rel


@nb.njit
def _double(x: Any) -> Any:
    return 2 * x


def test_kernels_counts_what_a_kernel_readies_and_names_it() -> None:
    before = Kernels.snapshot()
    assert "tests.test_rehearse._double" in before.counts and before.counts["tests.test_rehearse._double"] == 0
    assert any(k.startswith("features.vector.") for k in before.counts)  # the project's kernels are seen
    assert _double(3) == 6 and _double(1.5) == 3.0  # two signatures
    after = Kernels.snapshot()
    assert after.new_since(before) == ["tests.test_rehearse._double"] and after.readied_since(before) == 2
    assert _double(4) == 8 and Kernels.snapshot().readied_since(after) == 0  # an int again: nothing new


@pytest.mark.untraced
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_start_readies_every_kernel_before_it_connects_and_never_stalls(
    trained: tuple[AppConfig, Any], tmp_path: Path
) -> None:
    """A start of the runner on the Bybit stand-in: every kernel signature the runner needs is readied
    on the rehearsal before it connects, none after, and the feed's stall watchdog (2 s here) never
    reconnects. Readying is the one path a signature takes whether numba compiles it (a fresh
    checkout: minutes) or loads it from the keyed cache (here, the suite's own): a signature the
    rehearsal missed would be readied after start-up either way, and be reported as a stall. The
    suite's cache is a fresh clone's for every signature only the runner uses (the kernel tests
    fill the rest first); compiling all of them again from nothing here would prove no more and cost
    minutes of the suite."""
    cfg, _ = trained
    _, q = _study_model(cfg)
    feed = SimFeed(cfg.sim, cfg.instrument, cfg.ingest.depth, history_ns=330 * NS, catchup=30.0)
    with BackgroundStandin(feed) as standin:
        assert cfg.source_path is not None
        data = yaml.safe_load(cfg.source_path.read_text())
        data["warehouse"]["path"] = str(cfg.resolve(cfg.warehouse.path))
        data["mlflow"] = {
            "store": str(cfg.resolve(cfg.mlflow.store)),
            "artifacts": str(cfg.resolve(cfg.mlflow.artifacts)),
        }
        data["live"] = {"journal_dir": str(tmp_path / "journal"), "log_dir": str(tmp_path / "logs")}
        data["bybit"] = {"rest_url": standin.url, "ws_public_url": standin.ws_url}
        data["ingest"] = {"stall_timeout": "2s", "reconnect_initial": "100ms"}
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(data))
        cmd = [sys.executable, "-m", "live.runner", "--paper", "--config", str(config), "--model", "1",
               "--threshold", repr(q), "--duration", "60s"]  # fmt: skip
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1000)
    assert p.returncode == 0, p.stderr[-3000:]
    msgs = [json.loads(line)["msg"] for line in (tmp_path / "logs" / "runner-paper-bybit.log").read_text().splitlines()]
    ready = next(i for i, m in enumerate(msgs) if m.startswith("kernels ready in"))
    connected = next(i for i, m in enumerate(msgs) if m.startswith("bybit: streaming"))
    assert ready < connected, msgs[: connected + 1]
    readied = int(msgs[ready].split("(")[1].split()[0])
    assert readied > 0, msgs[ready]  # compiled or loaded on the rehearsal
    assert not [m for m in msgs if "readied after start-up" in m]
    assert not [m for m in msgs if "reconnecting" in m]  # the stall watchdog never fired
    journal = tmp_path / "journal" / "paper-bybit.sqlite"
    assert not [r for r in jr.read(journal, ["feed"]) if r.data["event"] == "reconnect"]
    decisions = list(jr.read(journal, ["decision"]))
    assert decisions, "the runner took no decision while connected: the check above held for nothing"
