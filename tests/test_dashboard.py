"""The dashboard: served while a paper runner trades the stand-in, read by headless Chromium.

The browser test needs Debian's chromium (``apt-get install chromium``); it is skipped without it,
except in CI (``REQUIRE_BROWSER=1``, set by .ci/run, which installs it), where it must run. The
screenshot it takes is kept in ``reports/screenshots/dashboard.png`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.config import AppConfig
from live import journal as jr
from live.dashboard.app import create_app, main
from live.loop import Loaded
from live.runner import Options, Runner
from market.standin import BackgroundStandin
from market.standin.feeds import SimFeed
from models import registry
from tests.test_cli import assert_one_line_error, cli
from tests.test_runner_standin import run_watched, until

NS = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """uvicorn in a thread, as ``python -m live.dashboard`` runs it."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        until("the dashboard server", lambda: self.server.started, 20)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _monitoring_cfg(cfg: AppConfig, tmp_path: Path, standin: BackgroundStandin) -> AppConfig:
    return cfg.model_copy(
        update={
            "bybit": cfg.bybit.model_copy(update={"rest_url": standin.url, "ws_public_url": standin.ws_url}),
            "ingest": cfg.ingest.model_copy(update={"stall_timeout": NS, "reconnect_initial": NS // 10}),
            "live": cfg.live.model_copy(
                update={"journal_dir": tmp_path / "journal", "log_dir": tmp_path, "status_interval": NS}
            ),
            # a drift alert as soon as there is a PSI: the banner must show it
            "monitor": cfg.monitor.model_copy(update={"drift_min": 10, "drift_psi": 1e-6, "dashboard_refresh": NS}),
        }
    )


@pytest.fixture
def standin(trained: tuple[AppConfig, Any]) -> Iterator[BackgroundStandin]:
    cfg = trained[0]
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50, history_ns=330 * NS, catchup=60.0)) as server:
        yield server


def _run_with(cfg: AppConfig, watch: Callable[[Runner], None]) -> Runner:
    """The paper runner on the stand-in, here, while ``watch`` (in a thread) looks at it, then stops it."""
    model = replace(registry.load_version(cfg, "1"), threshold_up=0.01, threshold_down=0.01)  # it trades
    o = Options(live=False, source="bybit", model=None, duration_ns=150 * NS, start_ns=None, end_ns=None,
                strategy="passive", speed=None)  # fmt: skip
    return run_watched(Runner(cfg, o, Loaded.of(model, "1")), watch)


def _browser_or_skip() -> str:
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return CHROMIUM


@pytest.mark.slow
def test_the_page_shows_a_running_paper_runner_in_chromium(
    trained: tuple[AppConfig, Any], standin: BackgroundStandin, tmp_path: Path
) -> None:
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    cfg = _monitoring_cfg(trained[0], tmp_path, standin)
    journal = tmp_path / "journal" / "paper.sqlite"
    seen: dict[str, Any] = {}

    def watch(r: Runner) -> None:
        until("decisions and a drift figure", lambda: r.loop.stats.decisions >= 15 and r.loop.drift is not None
              and r.loop.drift.psi() is not None, 90)  # fmt: skip
        until("a health record after them", lambda: any(jr.read(journal, ["drift"])), 30)
        app = create_app(cfg, journal)
        with _Server(app) as url, sync_playwright() as p:
            before = sum(1 for _ in jr.read(journal, ["decision"]))
            browser = p.chromium.launch(
                executable_path=chromium,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_function("document.body.dataset.loaded", timeout=30_000)
            page.wait_for_function("document.getElementById('chart-drift').data !== undefined", timeout=30_000)
            after = sum(1 for _ in jr.read(journal, ["decision"]))
            texts = {k: page.inner_text(f"#{k}") for k in
                     ("runner", "risk-state", "champion-version", "model-in-use", "decisions", "equity", "position",
                      "banner", "book-valid", "latency", "slippage", "challenger-version", "thresholds")}  # fmt: skip
            seen["texts"] = texts
            seen["decisions"] = (before, after)
            seen["drift_bars"] = page.evaluate("document.getElementById('chart-drift').data[0].y")
            seen["confidence"] = page.evaluate("document.getElementById('chart-confidence').data.map(t => t.name)")
            seen["equities"] = [f"{a.data['equity']:,.2f}" for a in jr.read(journal, ["account"])]
            shots = REPO / "reports" / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            shutil.copy(tmp_path / "dashboard.png", shots / "dashboard.png")
            browser.close()

    runner = _run_with(cfg, watch)
    t = seen["texts"]
    assert t["runner"].startswith("RUNNING") and "paper" in t["runner"] and "bybit" in t["runner"]
    # the session's registry: version 1 as challenger, promoted or joined by others if test_training ran first
    champion, challenger = (registry.version_for(cfg, a) for a in ("champion", "challenger"))
    assert t["risk-state"] == "ACTIVE" and t["model-in-use"] == "v1"
    assert t["champion-version"] == (f"v{champion}" if champion else "none")
    assert t["challenger-version"] == (f"v{challenger}" if challenger else "none")
    assert "0.010" in t["thresholds"]  # the runner's thresholds, not the registry's
    before, after = seen["decisions"]
    assert before <= int(t["decisions"].replace(",", "")) <= after  # the journal's count as the page read it
    assert t["equity"] in seen["equities"]  # one of the account records the runner wrote
    assert "ALERT drift" in t["banner"]  # the drift alert (threshold 1e-6) is on the banner
    assert t["book-valid"] == "valid" and t["latency"] != "n/a"
    model = runner.loop.m.model
    assert set(seen["drift_bars"]) <= set(model.feature_names)
    assert len(seen["drift_bars"]) == min(20, len(model.feature_names))  # the 20 worst features
    assert {"live P(up)", "training P(up)", "live P(down)", "training P(down)"} <= set(seen["confidence"])
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000


def test_the_state_api_reports_missing_sources_instead_of_failing(make_config: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    cfg = make_config()
    client = TestClient(create_app(cfg, tmp_path / "none.sqlite"))
    s = client.get("/api/state").json()
    assert "no journal yet" in s["journal"]["error"]
    assert s["runner"]["session"] is None and s["account"]["equity"] is None
    assert s["health"]["warehouse"]["status"] == "missing"
    assert "model" in s and s["model"].get("champion") is None
    assert client.get("/static/plotly.min.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404 and client.get("/static/nope.js").status_code == 404
    page = client.get("/").text
    assert "/static/plotly.min.js" in page and "https://" not in page  # nothing from the internet


def test_the_dashboard_cli_refuses_a_taken_port_in_one_line(make_config: Any, tmp_path: Path) -> None:
    make_config()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = cli("-m", "live.dashboard", "--config", str(tmp_path / "config.yaml"), "--port", str(port))
    assert_one_line_error(p, "is in use")
    with pytest.raises(SystemExit):
        main(["--help"])


def test_a_session_that_never_stopped_and_writes_nothing_is_not_responding(make_config: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    cfg = make_config(live={"status_interval": "10s"})
    path = tmp_path / "paper.sqlite"
    j = jr.Journal(path, "s1", "normal")
    j.add("start", 1, mode="paper", source="bybit", strategy="passive", model="1")
    j.commit()
    client = TestClient(create_app(cfg, path))
    r = client.get("/api/state").json()["runner"]
    assert r["running"] and not r["not_responding"]  # just written
    old = time.time() - 60  # a runner commits every status interval: a minute of silence is 6 missed
    for f in (path, path.with_name(path.name + "-wal")):
        if f.exists():
            os.utime(f, (old, old))
    r = client.get("/api/state").json()["runner"]
    assert not r["running"] and r["not_responding"] and r["silent_s"] >= 59
    j.add("stop", 2, reason="operator command")
    j.commit()
    j.close()
    r = client.get("/api/state").json()["runner"]
    assert not r["running"] and not r["not_responding"] and r["stopped"] == "operator command"
