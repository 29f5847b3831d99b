"""Shared fixtures: a config pointing at a temporary warehouse, the real-data marker."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import AppConfig, load_config
from sim.presets import PLANTED

REPO = Path(__file__).resolve().parents[1]
# the planted market with its metaorders twice as frequent: a model shows its edge on half the hours
DENSE: dict[str, Any] = {**PLANTED, "meta_rate": 2 * PLANTED["meta_rate"]}


# coverage.py measures a subprocess when it finds these in its environment (``[tool.coverage.run]
# patch = ["subprocess"]`` sets them for the test run)
COVERAGE_VARS = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago (the system's choice)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def untraced(env: dict[str, str]) -> dict[str, str]:
    """``env`` without coverage's variables: the commands started with it run unmeasured.

    For the end-to-end tests of minutes whose every command other tests run measured (the scheduled
    retraining, the demo on the planted market; the ``untraced`` mark does it for a whole test): line tracing costs a fifth to a third
    of a process's CPU (the planted demo: 70 CPU-s plain, 91 traced), and these tests are a fifth
    of the suite's CPU. Their lines still count where the other tests run them; a line only they
    reached shows as missed, never the reverse."""
    return {k: v for k, v in env.items() if k not in COVERAGE_VARS}


@pytest.fixture(autouse=True)
def _untraced_mark(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test marked ``untraced`` starts its commands unmeasured (``untraced`` above, for all of them).

    The mark is for a test whose commands reach no line that the measured tests do not reach too,
    as measured (tests/coverage_overlap.py, ``make overlap``, which also lists the tests that could
    take the mark). Line tracing costs the commands a quarter to two fifths of their CPU (a
    ``--help``: 0.22 CPU-s plain, 0.38 traced), and the suite is CPU-bound on two cores."""
    if request.node.get_closest_marker("untraced"):
        for name in COVERAGE_VARS:
            monkeypatch.delenv(name, raising=False)


def interpreted() -> bool:
    """Whether the numba kernels run interpreted (NUMBA_DISABLE_JIT=1: make test's coverage pass)."""
    return os.environ.get("NUMBA_DISABLE_JIT") == "1"


def sized(n: int) -> int:
    """A kernel test's workload (events, seconds of market): ``n`` compiled, half interpreted, where
    the coverage pass needs the kernels' lines run, not the length (``examples`` for hypothesis)."""
    return n // 2 if interpreted() else n


def examples(n: int) -> int:
    """Hypothesis examples for a property of the numba kernels: ``n`` compiled, a tenth when they run
    interpreted (NUMBA_DISABLE_JIT=1, the coverage pass: it needs their lines run, not the search)."""
    return max(n // 10, 5) if interpreted() else n


SHARED_DATA = Path(os.environ.get("L2_SHARED_DATA", REPO.parent / "shared" / "data"))
BINANCE_DIR = SHARED_DATA / "binance-usdm-btcusdt"
BINANCE_EPISODES = {
    "2023-04-04": ["btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz"],
    "2024-07-18": ["btcusdt_20240718.gz", "btcusdt_20240719.gz"],
}

# Tests on the real recordings skip where the data is missing, except where REQUIRE_REAL_DATA=1 (CI,
# .ci/run): there a missing recording fails them, so they can never silently stop running.
if not BINANCE_DIR.is_dir() and os.environ.get("REQUIRE_REAL_DATA") == "1":
    real_data = pytest.mark.usefixtures("_real_data_required")
else:
    real_data = pytest.mark.skipif(not BINANCE_DIR.is_dir(), reason=f"recorded data not found at {BINANCE_DIR}")


@pytest.fixture
def _real_data_required() -> None:
    pytest.fail(f"REQUIRE_REAL_DATA=1 but the recorded data is not at {BINANCE_DIR} (L2_SHARED_DATA)")


def episode_paths(name: str) -> list[Path]:
    return [BINANCE_DIR / f for f in BINANCE_EPISODES[name]]


ConfigFactory = Callable[..., AppConfig]

# every command a test starts prints its Python stacks if it dies of a fatal signal (a segfault in a
# library at exit, say): the test's failure then says where, not just "returncode -11"
os.environ.setdefault("PYTHONFAULTHANDLER", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal has it. A suite started in the background (``nohup make test &``, a
    script's ``&``) inherits SIGINT ignored, and so would every command it starts: the tests that
    stop a command with Ctrl-C then hung (three of them in a fresh clone's run started that way).
    With Python's own handler here, the commands start with SIGINT at its default, as typed."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The test process, as every command: its imports frozen out of the collector's scans."""
    from core.cli import quiet_gc

    quiet_gc()


def pytest_itemcollected(item: pytest.Item) -> None:
    """A kernel test lives in a file that names its marker: ``make warm`` and the interpreted pass
    collect only such files (Makefile KERNEL_TESTS), and the suite skips the marker (WARMED=1), so a
    kernel test marked some other way would run in neither."""
    if item.get_closest_marker("kernels") and "pytest.mark.kernels" not in item.path.read_text():
        raise pytest.UsageError(f"{item.nodeid}: a kernels test whose file does not say pytest.mark.kernels")


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what does not run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, each test marked ``first`` starts at once, on a worker of its own.

    The worksteal scheduler hands each of the n workers a contiguous share of the collection at the
    start (what is left, divided by the workers left), and the others steal from a share's end. A
    test of minutes collected late would start late and end the run alone on one core; here the
    ``first`` tests, longest first, go round the workers to the heads of their shares. Every worker
    collects and reorders alike (the scheduler checks that the collections are the same)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    first = sorted((it for it in items if it.get_closest_marker("first")), key=_first_seconds, reverse=True)
    if workers < 2 or not first:
        return
    rest = [it for it in items if not it.get_closest_marker("first")]
    heads = [first[k::workers] for k in range(workers)]
    left, shares = len(items), []
    for k in range(workers):
        shares.append(left // (workers - k))
        left -= shares[-1]
    if any(size < len(head) for size, head in zip(shares, heads, strict=True)):
        return  # a handful of tests: nothing to balance
    out, taken = [], 0
    for size, head in zip(shares, heads, strict=True):
        out += head + rest[taken : taken + size - len(head)]
        taken += size - len(head)
    items[:] = out + rest[taken:]


def _first_seconds(item: pytest.Item) -> float:
    mark = item.get_closest_marker("first")
    return float(mark.args[0]) if mark is not None and mark.args else 0.0


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Write a config.yaml into tmp_path (warehouse and spool inside it) and load it.

    Keyword arguments are sections merged over the defaults, e.g. warehouse={"snapshot_levels": 5}.
    """

    def make(**sections: dict[str, Any]) -> AppConfig:
        data: dict[str, Any] = {
            "warehouse": {"path": "wh/test.duckdb", "spool_dir": "wh/spool", "lock_timeout": "20s"},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_config(path)

    return make


def trained_config(cfg: AppConfig, tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """The trained project's config written to ``tmp_path/config.yaml`` for a command run as typed:
    its warehouse and registry by absolute path, the journals and logs in ``tmp_path``, and the
    sections given merged over it (``bybit={"rest_url": ...}``)."""
    assert cfg.source_path is not None
    data = yaml.safe_load(cfg.source_path.read_text())
    data["warehouse"]["path"] = str(cfg.resolve(cfg.warehouse.path))
    data["mlflow"] = {"store": str(cfg.resolve(cfg.mlflow.store)), "artifacts": str(cfg.resolve(cfg.mlflow.artifacts))}
    data["live"] = {"journal_dir": str(tmp_path / "journal"), "log_dir": str(tmp_path / "logs")}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config_path(make_config: ConfigFactory, tmp_path: Path) -> Path:
    make_config()
    return tmp_path / "config.yaml"


@pytest.fixture(scope="session")
def prefect_harness(prefect_server_for_commands: None) -> Iterator[None]:
    """Flows run in the test process report to the test worker's Prefect server (the one its flow
    commands use), not to a second, temporary one of Prefect's test harness (25 s to start on a
    loaded machine, once per worker)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if "PREFECT_API_URL" not in os.environ:  # a kernels-only run started no server: Prefect's own harness
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        yield


@pytest.fixture(scope="session", autouse=True)
def no_box_of_the_developers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests never find a box a developer brought up on this checkout (make up, core/box.py):
    the commands they run report to the tests' own Prefect servers."""
    before = os.environ.get("L2_BOX")
    os.environ["L2_BOX"] = str(tmp_path_factory.mktemp("no-box"))
    yield
    if before is None:
        os.environ.pop("L2_BOX", None)
    else:
        os.environ["L2_BOX"] = before


PrefectHome = Callable[[Path], Path]


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> PrefectHome:
    """``prefect_home(path)``: ``path`` made a PREFECT_HOME whose SQLite database is already migrated.

    A Prefect server started on an empty home first runs Prefect's database migrations: 11 s and 10
    CPU-s on the 2-core machine, against 4 s and 4 CPU-s on a migrated database. The migrations run
    once per test run (``prefect server database upgrade``, in the run's shared temporary folder, the
    other workers waiting on a lock), and each server a test starts gets a copy of the result."""
    import subprocess
    import sys

    from prefect import __version__

    root = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    template = root / f"prefect-{__version__}" / "prefect.db"
    with (root / "prefect-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            work = template.parent.with_name(template.parent.name + ".partial")
            shutil.rmtree(work, ignore_errors=True)  # a migration that died half way
            env = untraced({**os.environ, "PREFECT_HOME": str(work), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
            env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
            subprocess.run(
                [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                env=env, check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            work.rename(template.parent)

    def seeded(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path / "prefect.db")
        return path

    return seeded


@pytest.fixture(scope="session", autouse=True)
def prefect_server_for_commands(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """One Prefect server per test worker for the flow commands the tests run in subprocesses.

    Without PREFECT_API_URL each such command starts a temporary server of its own (about 9 s and
    8 CPU-seconds on the 2-core machine, against 4 s and 3 with a server), and under load the
    temporary one can time out. Tests that need no server, or a server of their own, drop the
    variable from the environment they pass on. A run of the numba kernel tests only (``make warm``,
    the interpreted pass: they run no flow command) starts none: it was 8 s at the head of each."""
    if os.environ.get("PREFECT_API_URL") or all(i.get_closest_marker("kernels") for i in request.session.items):
        yield
        return
    import signal
    import subprocess
    import sys
    import time

    from flows.prefect_server import answers

    port = free_port()
    home = request.getfixturevalue("prefect_home")(tmp_path_factory.mktemp("prefect-server"))
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    # Prefect's own server runs none of the project's code: coverage's subprocess measurement (which
    # passes itself on in these variables) would only slow down every flow command's API calls
    env = untraced(env)
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-services",
    ]
    with (home / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        t0 = time.monotonic()
        while not answers(url):
            assert proc.poll() is None, (home / "server.log").read_text()[-2000:]
            assert time.monotonic() - t0 < 180, "the tests' Prefect server did not answer within 180 s"
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = url  # the subprocesses the tests start inherit it
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> tuple[AppConfig, dict[str, Any]]:
    """90 simulated minutes with features, and a small model trained on them (registry version 1).

    Built once per run, not once per test worker: the first worker to ask builds it in the run's
    shared temporary folder (the others wait on a lock), and every worker works on a copy of its own
    (a copied project rebases its registry on first use, models/store.py), so nothing one worker
    writes is seen by the other."""
    if worker_id == "master":  # no xdist: this process is the only one
        return _train(tmp_path_factory.mktemp("train"))
    shared = tmp_path_factory.getbasetemp().parent / "trained"
    with (shared.parent / "trained.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "result.json").exists():
            shutil.rmtree(shared, ignore_errors=True)  # a build that died half way
            shared.mkdir()
            result = _train(shared)[1]
            (shared / "result.json").write_text(json.dumps(result))
    own = tmp_path_factory.mktemp("train")
    shutil.copytree(shared, own, dirs_exist_ok=True, ignore=shutil.ignore_patterns("result.json"))
    return load_config(own / "config.yaml"), json.loads((shared / "result.json").read_text())


def _train(root: Path) -> tuple[AppConfig, dict[str, Any]]:
    from pipelines.featurebuild import build
    from pipelines.train import run_training
    from sim.source import SimSource
    from warehouse.ingest import run_ingest

    S = 1_000_000_000

    (root / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "warehouse": {"path": "wh/l2.duckdb", "spool_dir": "wh/spool", "snapshot_levels": 20},
                "mlflow": {"store": "mlruns/mlflow.db", "artifacts": "mlruns/artifacts"},
                "training": {
                    "window": "2h",
                    "horizon": "60s",
                    "rounds": 40,
                    "early_stopping": 10,
                    "min_rows": 300,
                    "folds": 3,
                    "min_child_samples": 200,  # 90 minutes are ~5,000 rows: the default 2,000 grows no tree
                },
                "promotion": {"min_auc": 0.0},  # the log-loss rule is under test here; the AUC rule below
            }
        )
    )
    cfg = load_config(root / "config.yaml")
    run_ingest(SimSource(cfg.sim, cfg.instrument, 50, 90 * 60 * S), cfg, detail="test")
    build(cfg)
    return cfg, run_training(cfg)
