"""The command lines: --help everywhere, bad input as one line and a non-zero exit, data untouched."""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bybit_msgs import random_stream
from tests.conftest import REPO, ConfigFactory, PrefectHome, free_port, untraced
from warehouse.cli import main as warehouse_main


def cli(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 120, traced: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python *args`` as a user types it, on the test's environment plus ``env``; ``traced=False``
    runs it unmeasured by coverage (tests.conftest.untraced)."""
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=full if traced else untraced(full),
    )


def assert_one_line_error(p: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


# the flow commands that answer --help and bad input before Prefect loads (core.cli.answer_early):
# run with -X importtime, no module they imported may be Prefect's (about 1.5 CPU-s of every answer)
ANSWERED_BEFORE_PREFECT = {
    "flows.ingest", "flows.demo", "flows.feature_build", "flows.feature_report", "flows.train", "flows.promote",
    "flows.retrain", "flows.check_predictions", "flows.retain", "flows.backtest", "flows.sweep", "flows.falsify",
}  # fmt: skip


def import_times(module: str) -> tuple[str, ...]:
    """The interpreter flag that lists every import on stderr, for a command that answers before Prefect."""
    return ("-X", "importtime") if module in ANSWERED_BEFORE_PREFECT else ()


def assert_answered_before_prefect(module: str, p: subprocess.CompletedProcess[str]) -> None:
    if module not in ANSWERED_BEFORE_PREFECT:
        return
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")]
    assert "flows.common" in imported  # -X importtime listed them
    assert [m for m in imported if m.split(".")[0].startswith("prefect")] == []


def without_import_times(stderr: str) -> str:
    return "\n".join(ln for ln in stderr.splitlines() if not ln.startswith("import time:"))


@pytest.mark.untraced
@pytest.mark.parametrize(
    "module",
    [
        "flows.ingest",
        "flows.demo",
        "flows.feature_build",
        "flows.feature_report",
        "flows.train",
        "flows.promote",
        "flows.retrain",
        "flows.serve",
        "flows.prefect_server",
        "flows.check_predictions",
        "flows.retain",
        "features",
        "warehouse",
        "sim",
        "sim.archives",
        "standin",
        "bench",
        "live.runner",
        "live.journal",
        "live.diagnose",
        "live.dashboard",
        "flows.backtest",
        "flows.sweep",
        "flows.falsify",
        "models",
        "ops",
        "ops.soak",
        "ops.postgres",
    ],
)
def test_help_works(module: str) -> None:
    p = cli(*import_times(module), "-m", module, "--help")
    assert p.returncode == 0 and "usage:" in p.stdout
    assert_answered_before_prefect(module, p)


# every command that reads the config, as typed, with a config file that is not there: bad input,
# exit 2 exactly (README, "Exit codes"), one line naming the file, nothing started
MISSING_CONFIG = [
    ["flows.ingest", "--source", "sim"],
    ["flows.demo"],
    ["flows.feature_build"],
    ["flows.feature_report"],
    ["flows.train"],
    ["flows.promote"],
    ["flows.retrain"],
    ["flows.serve", "--list"],
    ["flows.prefect_server"],
    ["flows.check_predictions"],
    ["flows.backtest"],
    ["flows.sweep"],
    ["flows.falsify"],
    ["warehouse", "show"],
    ["warehouse", "retain"],
    ["flows.retain"],
    ["standin"],
    ["sim.archives", "--out", "archives"],
    ["live.runner", "--paper"],
    ["live.diagnose"],
    ["live.dashboard"],
    ["models", "list"],
    ["ops", "up"],
]


@pytest.mark.parametrize("args", MISSING_CONFIG, ids=" ".join)
def test_a_config_that_is_not_there_is_bad_input_exit_2(args: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    p = cli(*import_times(args[0]), "-m", *args, "--config", str(missing), env={"L2_BOX": str(tmp_path / "box")})
    assert p.returncode == 2, (p.returncode, without_import_times(p.stderr)[-2000:])
    assert_one_line_error(p, str(missing), "config file not found")
    assert not (tmp_path / "box").exists()  # nothing was brought up
    assert_answered_before_prefect(args[0], p)


def write_recording(path: Path, n: int = 400, seed: int = 1) -> None:
    with gzip.open(path, "wt") as f:
        for m in random_stream(n, seed):
            f.write(f"{m.ts_local} {m.payload}\n")


def test_ingest_bad_path_is_one_line(config_path: Path) -> None:
    assert_one_line_error(
        cli("-m", "flows.ingest", "--source", "file", "--path", "/no/such.gz", "--config", str(config_path)),
        "/no/such.gz: no such file",
    )


@pytest.mark.untraced
def test_ingest_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("warehouse:\n  pth: x\n")
    assert_one_line_error(cli("-m", "flows.ingest", "--source", "sim", "--config", str(bad)), "warehouse.pth")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--source", "file"], "needs at least one --path"),
        (["--source", "sim", "--duration", "soon"], "--duration"),
        (["--source", "sim", "--path", "x"], "--path only applies"),
    ],
)
def test_ingest_bad_arguments_are_one_line(config_path: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(cli("-m", "flows.ingest", *args, "--config", str(config_path)), fragment)


@pytest.mark.untraced
def test_corrupt_file_fails_cleanly_and_keeps_stored_data(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 3})
    cfg_path = tmp_path / "config.yaml"
    good = tmp_path / "good.gz"
    write_recording(good)
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    ok = cli("-m", "flows.ingest", "--source", "file", "--path", str(good), "--config", str(cfg_path), env=env)
    assert ok.returncode == 0, ok.stderr
    before = warehouse_counts(cfg.resolve(cfg.warehouse.path))
    corrupt = tmp_path / "corrupt.gz"
    data = gzip.compress(gzip.decompress(good.read_bytes()) * 3)
    corrupt.write_bytes(data[: len(data) // 2] + b"\x00garbage" + data[len(data) // 2 :])
    p = cli("-m", "flows.ingest", "--source", "file", "--path", str(corrupt), "--config", str(cfg_path), env=env)
    assert_one_line_error(p, "corrupt.gz")
    assert p.returncode == 3
    assert warehouse_counts(cfg.resolve(cfg.warehouse.path)) == before


@pytest.mark.untraced
def test_unknown_file_format_is_one_line(config_path: Path, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    assert_one_line_error(
        cli("-m", "flows.ingest", "--source", "file", "--path", str(f), "--config", str(config_path)), "unknown format"
    )


def warehouse_counts(path: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("raw_messages", "book_updates", "snapshots", "trades")
        }
    finally:
        con.close()


def test_show_and_export_on_an_ingested_file(
    make_config: ConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from market.sources.files import FileSource
    from warehouse.ingest import run_ingest

    cfg = make_config(warehouse={"snapshot_levels": 4})
    rec = tmp_path / "rec.gz"
    write_recording(rec, n=1500)
    assert run_ingest(FileSource([rec]), cfg, detail="t").status == "completed"
    conf = str(tmp_path / "config.yaml")
    assert warehouse_main(["show", "--config", conf]) == 0
    out = capsys.readouterr().out
    assert "snapshots" in out and "bybit" in out and "1,501" in out and "sequence gaps detected: 0" in out
    csv = tmp_path / "s.csv"
    assert (
        warehouse_main(
            [
                "export",
                "--table",
                "snapshots",
                "--levels",
                "2",
                "--every",
                "1s",
                "--format",
                "csv",
                "--out",
                str(csv),
                "--config",
                conf,
            ]
        )
        == 0
    )
    header = csv.read_text().splitlines()[0].split(",")
    assert header == [
        "ts_sample_ns",
        "ts_exchange_ns",
        "ts_local_ns",
        "bid_px_1",
        "bid_px_2",
        "bid_qty_1",
        "bid_qty_2",
        "ask_px_1",
        "ask_px_2",
        "ask_qty_1",
        "ask_qty_2",
    ]
    pq = tmp_path / "s.parquet"
    assert (
        warehouse_main(["export", "--table", "snapshots", "--format", "parquet", "--out", str(pq), "--config", conf])
        == 0
    )
    import duckdb

    cols = duckdb.sql(f"SELECT * FROM read_parquet('{pq}')").columns
    assert cols[:3] == ["ts_exchange_ns", "ts_local_ns", "bid_px_1"] and len(cols) == 2 + 4 * 4
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{pq}')").fetchall()[0][0] == 1501


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--levels", "9"], "keeps 1..4 levels"),
        (["--every", "often"], "--every"),
        (["--start", "yesterday"], "is not a time"),
        (["--table", "trades"], "can export snapshots"),
        (["--venue", "kraken"], "no snapshots for kraken"),
    ],
)
def test_export_bad_input_is_one_line(
    make_config: ConfigFactory, tmp_path: Path, args: list[str], fragment: str
) -> None:
    from market.sources.files import FileSource
    from warehouse.ingest import run_ingest

    cfg = make_config(warehouse={"snapshot_levels": 4})
    rec = tmp_path / "rec.gz"
    write_recording(rec, n=200)
    run_ingest(FileSource([rec]), cfg, detail="t")
    base = {"--table": "snapshots", "--format": "csv", "--out": str(tmp_path / "o.csv")}
    flat = [x for k, v in base.items() if k not in args for x in (k, v)]
    p = cli("-m", "warehouse", "export", *flat, *args, "--config", str(tmp_path / "config.yaml"))
    assert_one_line_error(p, fragment)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.partial").exists()


@pytest.mark.untraced
def test_show_without_a_warehouse_is_one_line(config_path: Path) -> None:
    assert_one_line_error(cli("-m", "warehouse", "show", "--config", str(config_path)), "no warehouse here yet")


def test_the_runner_refuses_bad_input_in_one_line(config_path: Path, tmp_path: Path) -> None:
    no_keys = {"BYBIT_API_KEY": "", "BYBIT_API_SECRET": ""}
    assert_one_line_error(
        cli("-m", "live.runner", "--live", "--config", str(config_path), env=no_keys), "BYBIT_API_KEY"
    )
    assert_one_line_error(cli("-m", "live.runner", "--config", str(tmp_path / "nope.yaml")), "config file not found")
    assert_one_line_error(cli("-m", "live.runner", "--source", "sim", "--start", "2026-01-01"), "for --source replay")
    bad = cli("-m", "live.runner", "--strategy", "desk_nosuch:Quoter", "--config", str(config_path))
    assert_one_line_error(bad, "cannot import module 'desk_nosuch'")
    assert bad.returncode == 2  # bad input
    assert_one_line_error(
        cli("-m", "live.runner", "--strategy", "execution.strategy:Signal", "--config", str(config_path)),
        "is not a Strategy subclass",
    )
    # no model registry yet: one line, no journal
    assert_one_line_error(cli("-m", "live.runner", "--config", str(config_path)), "no model registry")
    assert not (config_path.parent / "logs" / "journal").exists()
    assert_one_line_error(cli("-m", "live.journal", str(tmp_path / "none.sqlite")), "no journal")


@pytest.mark.untraced
def test_make_soak_and_the_standin_at_a_speed_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    """The soak's and the fast stand-in's parameters as typed: one line, exit 2 (make's own 2 for
    make soak), and no soak started: nothing written where it would run."""
    out = tmp_path / "soak"
    p = subprocess.run(
        ["make", "--no-print-directory", "soak", "SOAK_HOURS=0.001", "SPEED=5", f"SOAK_ARGS=--out {out}"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert_one_line_error(p, "--hours 0.001 at --speed 5", "under a wall minute")
    assert p.returncode == 2 and not out.exists()
    speed = cli("-m", "standin", "--speed", "0", "--port", "0")
    assert_one_line_error(speed, "--speed 0")
    assert speed.returncode == 2


def test_a_temporary_prefect_server_that_does_not_answer_in_time_is_one_line_and_exit_4(config_path: Path) -> None:
    """No Prefect server to report to, and the temporary one the command starts does not answer in
    time (1 s here; Prefect's 20 s were too short beside a CI run, hence the project's 120): one line
    naming the way out, exit 4, no traceback, nothing stored."""
    from core.config import load_config

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1", "PREFECT_HOME": str(config_path.parent / "pf")}
    args = ["-m", "flows.ingest", "--source", "sim", "--duration", "1m", "--config", str(config_path)]
    p = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 4, (p.returncode, p.stderr[-3000:])
    assert_one_line_error(p, "temporary Prefect server", "did not answer within 1 s", "make prefect-ui")
    cfg = load_config(config_path)
    assert not cfg.resolve(cfg.warehouse.path).exists()


@pytest.mark.parametrize("command", [["flows.ingest", "--source", "sim", "--duration", "1m"], ["flows.retrain"]])
def test_a_prefect_api_url_where_nothing_answers_is_one_line_and_exit_4(config_path: Path, command: list[str]) -> None:
    """PREFECT_API_URL names a server that is not running (a box brought down, a typo in the port):
    one line naming the URL and the ways out, exit 4 (unavailable), no traceback, nothing stored."""
    from core.config import load_config

    url = f"http://127.0.0.1:{free_port()}/api"  # a port nothing listens on
    p = cli("-m", *command, "--config", str(config_path), env={"PREFECT_API_URL": url}, timeout=300)
    assert p.returncode == 4, (p.returncode, p.stderr[-3000:])
    assert_one_line_error(p, f"no Prefect server answers at {url}", "PREFECT_API_URL", "make prefect-ui")
    cfg = load_config(config_path)
    assert not cfg.resolve(cfg.warehouse.path).exists()


def _servers(port: str) -> list[int]:
    """The pids of Prefect temporary servers on ``port`` (uvicorn on Prefect's app)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"prefect.server.api.server:create_app" in cmd and f"\0{port}\0".encode() in cmd:
            found.append(int(proc.name))
    return found


@pytest.mark.untraced
def test_a_killed_flow_command_leaves_no_temporary_prefect_server_behind(
    config_path: Path, prefect_home: PrefectHome, tmp_path: Path
) -> None:
    """``kill -9`` of a flow command that started a temporary Prefect server (no server to report
    to): the server goes too, not left running for hours (a soak found one 84 minutes later)."""
    import re
    import signal
    import time

    env = {**os.environ, "PREFECT_API_URL": "", "PREFECT_HOME": str(prefect_home(tmp_path / "pf"))}
    log = tmp_path / "ingest.log"
    with log.open("w") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "flows.ingest", "--source", "sim", "--duration", "24h", "--config", str(config_path)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=untraced(env), start_new_session=True,
        )  # fmt: skip
    servers: list[int] = []
    try:
        t0 = time.monotonic()
        while not (m := re.search(r"Starting temporary server on http://127\.0\.0\.1:(\d+)", log.read_text())) or (
            "ingest sim:" not in log.read_text()
        ):
            assert p.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - t0 < 300, log.read_text()[-3000:]
            time.sleep(0.2)
        servers = _servers(m[1])
        assert len(servers) == 1, (m[1], servers)
        os.kill(p.pid, signal.SIGKILL)  # the command alone, as the soak killed the ingest: not its process group
        p.wait(30)
        t0 = time.monotonic()
        while _servers(m[1]):
            assert time.monotonic() - t0 < 120, f"the temporary server on port {m[1]} outlived its command"
            time.sleep(0.2)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        for pid in servers:  # were it left running, not for the rest of the suite
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_a_flow_command_without_a_prefect_server_starts_a_temporary_one_and_logs_no_error(
    config_path: Path, prefect_home: PrefectHome
) -> None:
    """What a newcomer's first command meets (no box up, no server named; here the variable set but
    empty, as ``export PREFECT_API_URL=`` leaves it): a temporary Prefect server for the run, the
    run stored, no error and no traceback in its output."""
    from core.config import load_config

    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(prefect_home(config_path.parent / "pf"))}
    p = cli("-m", "flows.ingest", "--source", "sim", "--duration", "1m", "--config", str(config_path), env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Starting temporary server on http://127.0.0.1:" in p.stderr, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "| ERROR" not in p.stderr, p.stderr[-3000:]
    cfg = load_config(config_path)
    assert warehouse_counts(cfg.resolve(cfg.warehouse.path))["snapshots"] > 0
