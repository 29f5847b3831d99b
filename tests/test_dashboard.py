"""The dashboard: served while a paper runner trades the stand-in, read by headless Chromium.

The browser test needs Debian's chromium (``apt-get install chromium``); it is skipped without it,
except in CI (``REQUIRE_BROWSER=1``, set by .ci/run, which installs it), where it must run. The
screenshot it takes is kept in ``reports/screenshots/dashboard.png`` (git-ignored).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import AppConfig, load_config
from core.errors import UserError
from live.dashboard.app import create_app, main
from models import registry
from standin import BackgroundStandin
from standin.feeds import SimFeed
from tests.browser import browser_or_skip, launch
from tests.conftest import free_port
from tests.test_cli import assert_one_line_error, cli
from tests.test_runner_standin import until
from warehouse import journal as jr

NS = 1_000_000_000
# the runner's waits are for conditions; this bound only fails a runner that never gets there (on a
# fresh clone under load, its own kernel signatures compile first: the kernel tests do not ready them)
HANG_S = 420
REPO = Path(__file__).resolve().parents[1]


class _Server:
    """uvicorn in a thread, as ``python -m live.dashboard`` runs it."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        until("the dashboard server", lambda: self.server.started, 20)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _monitoring_config(cfg: AppConfig, tmp_path: Path, standin: BackgroundStandin) -> Path:
    """The trained project's config.yaml (beside it: its warehouse and registry are relative to it),
    pointed at the stand-in, with the journal and logs in ``tmp_path``; a drift alert as soon as
    there is a PSI (the banner must show it)."""
    assert cfg.source_path is not None
    data = yaml.safe_load(cfg.source_path.read_text()) or {}
    overrides: dict[str, dict[str, Any]] = {
        "bybit": {"rest_url": standin.url, "ws_public_url": standin.ws_url},
        "live": {"journal_dir": str(tmp_path / "journal"), "log_dir": str(tmp_path), "status_interval": "1s"},
        "backtest": {"out": str(tmp_path / "backtests")},
        "monitor": {"drift_min": 10, "drift_psi": 1e-6, "dashboard_refresh": "1s"},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    path = cfg.source_path.with_name("dashboard.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def standin(trained: tuple[AppConfig, Any]) -> Iterator[BackgroundStandin]:
    cfg = trained[0]
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50, history_ns=330 * NS, catchup=60.0)) as server:
        yield server


class _Runner:
    """``python -m live.runner --paper`` on the stand-in, in a process of its own as a user starts
    it beside the dashboard: version 1, the skill-less test model, in an execution study
    (``--threshold``: fixed sizes from a confidence under all its probabilities, so it trades)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.cfg = load_config(config)
        self.args = ["-m", "live.runner", "--paper", "--config", str(config), "--threshold", "0.01",
                     "--model", f"models:/{self.cfg.mlflow.model_name}/1", "--duration", "1200s"]  # fmt: skip
        self.journal = jr.default_path(self.cfg.resolve(self.cfg.live.journal_dir), "paper", "bybit")
        self.log = log
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Runner:
        self._out = self.log.open("w")
        self.proc = subprocess.Popen([sys.executable, *self.args], cwd=REPO, stdout=self._out,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        return self

    def records(self, kind: str) -> list[jr.Record]:
        """The journal's records of one kind (none while the runner is still creating it); a runner
        that ended fails the test with its log's end."""
        assert self.proc is not None
        assert self.proc.poll() is None, f"the runner ended with {self.proc.returncode}: {self.tail()}"
        try:
            return list(jr.read(self.journal, [kind])) if self.journal.exists() else []
        except UserError:
            return []

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        """Ctrl-C, as in the terminal it runs in: exit 0."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        assert self.proc.wait(120) == 0, self.tail()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._out.close()


def _report(folder: Path, version: str, feature_set: str) -> None:
    """A backtest report folder as flows.backtest writes it (metrics.json's meta names the model)."""
    folder.mkdir(parents=True)
    meta = {"model_version": version, "feature_set": feature_set, "strategy": "passive",
            "window": {"start": "2026-01-05T00:00:00.000Z", "end": "2026-01-06T00:00:00.000Z"}}  # fmt: skip
    metrics = {"net_pnl": -3.5, "sharpe": 0.4, "arrival_slippage_mean_bps": -0.8, "markout_10s_bps": 0.3, "fills": 12}
    (folder / "metrics.json").write_text(json.dumps({"meta": meta, "metrics": metrics}))
    (folder / "report.html").write_text(f"<!doctype html><title>report</title><h1>backtest of v{version}</h1>")


def _stopped_account(path: Path) -> None:
    """Another account's journal: a first session with one round trip, a second that stopped holding
    +0.149 BTC after 5 decisions (fewer than monitor.drift_min)."""
    t0 = time.time_ns() - 2 * 3600 * NS
    cash, pos = 100_000.0, 0.0
    j = jr.Journal(path, "a1", "normal")
    for session, start, fills in (("a1", t0, [(10, 1, 0.1, 64_000.0), (20, -1, 0.1, 64_050.0)]),
                                  ("a2", t0 + 3600 * NS, [(10, 1, 0.149, 64_100.0)])):  # fmt: skip
        j.session = session
        j.add("start", start, mode="paper", source="replay", strategy="passive", model="1")
        if session == "a2":
            for k in range(5):
                j.add("decision", start + k * NS, p_up=0.1, p_down=0.1, direction=0, model_version="1")
        for k, (s, side, qty, price) in enumerate(fills):
            oid = (2 if session == "a2" else 1) * 100 + k
            ts = start + s * NS
            j.add("submit", ts - NS, oid, side=side, qty=qty, price=price, order_kind="LIMIT", tag=k + 1)
            j.add("fill", ts, oid, side=side, price=price, qty=qty, fee=0.01, maker=True, tag=k + 1)
            j.add("done", ts, oid, status="FILLED", price=price, qty=qty, filled=qty)
            cash -= side * qty * price + 0.01
            pos += side * qty
            j.add("account", ts, equity=cash + pos * price, position=pos, cash=cash, fees=0.0, funding=0.0,
                  risk="ACTIVE", execution={"post_only_rejects": 0.0})  # fmt: skip
        j.add("health", start + 30 * NS, data_ts=start + 30 * NS, data_age_s=math.nan, risk="ACTIVE",
              book_valid=True, latency_p50_us=90.0, latency_p90_us=120.0, latency_p99_us=300.0)  # fmt: skip
        j.add("stop", start + 40 * NS, reason="SIGTERM")
        j.commit()
    j.close()
    old = time.time() - 3600  # written before the runner's: not the page's first choice
    for f in path.parent.glob(path.name + "*"):
        os.utime(f, (old, old))


def _view(page: Any, view: str) -> None:
    """Until the page shows ``view`` ("journal|session|range")."""
    page.wait_for_function("v => document.body.dataset.view === v", arg=view, timeout=60_000)


def _texts(page: Any, *ids: str) -> dict[str, str]:
    return {k: page.inner_text(f"#{k}") for k in ids}


CHARTS = ("chart-price", "chart-equity", "chart-markouts", "chart-slippage", "chart-confidence", "chart-importance",
          "chart-drift")  # fmt: skip


def _toolbar_clear_of_title(page: Any, chart: str) -> bool:
    """Hover ``chart`` so that Plotly shows its toolbar; whether it stays off the chart's title."""
    page.hover(f"#{chart}")
    page.wait_for_selector(f"#{chart} .modebar", state="visible")
    bar = page.locator(f"#{chart} .modebar").bounding_box()
    title = page.locator(f"#{chart}").locator("xpath=preceding-sibling::h3[1]").bounding_box()
    assert bar is not None and title is not None, chart
    return bool(
        bar["y"] >= title["y"] + title["height"]
        or bar["y"] + bar["height"] <= title["y"]
        or bar["x"] >= title["x"] + title["width"]
        or bar["x"] + bar["width"] <= title["x"]
    )


@pytest.mark.untraced
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_page_shows_a_paper_runner_in_chromium_while_it_runs_and_after_it_stopped(
    trained: tuple[AppConfig, Any], standin: BackgroundStandin, tmp_path: Path
) -> None:
    chromium = browser_or_skip()
    from playwright.sync_api import sync_playwright

    cfg = load_config(_monitoring_config(trained[0], tmp_path, standin))
    feature_set = registry.load_version(cfg, "1").feature_set
    out = cfg.resolve(cfg.backtest.out)
    _report(out / "passive-v1-2026-01-05", "1", feature_set)
    _report(out / "passive-v999-2026-01-05", "999", feature_set)
    _stopped_account(cfg.resolve(cfg.live.journal_dir) / "paper-replay.sqlite")
    assert cfg.source_path is not None
    with (
        _Runner(cfg.source_path, tmp_path / "runner.out") as r,
        _Server(create_app(cfg)) as url,
        sync_playwright() as p,
    ):
        journal = r.journal
        until("decisions", lambda: len(r.records("decision")) >= 15, HANG_S)
        until("a fill and the account marked after it",
              lambda: any(a.data["position"] != 0 for a in r.records("account")), HANG_S)  # fmt: skip
        until("a drift record", lambda: any(r.records("drift")), HANG_S)
        (start,) = r.records("start")
        session = start.session
        browser = launch(p, chromium)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        asked: list[str] = []
        page.on("request", lambda req: asked.append(req.url))
        before = sum(1 for _ in jr.read(journal, ["decision"]))
        page.goto(url)
        page.wait_for_function("document.body.dataset.loaded && window.lastState", timeout=60_000)
        page.wait_for_function("document.getElementById('chart-drift').data !== undefined", timeout=60_000)
        # one state: the texts and the state they were drawn from (the page redraws every second)
        s, t = page.evaluate(
            """ids => { const s = window.lastState;
                        return [s, Object.fromEntries(ids.map(k => [k, document.getElementById(k).innerText]))]; }""",
            ["runner", "risk-state", "champion-version", "model-in-use", "decisions", "equity", "position", "banner",
             "book-valid", "latency", "challenger-version", "thresholds", "pnl", "realized", "unrealized", "data-age",
             "order-history-info", "round-trips-info", "backtests"],
        )  # fmt: skip
        after = sum(1 for _ in jr.read(journal, ["decision"]))

        # -- the runner, as it runs --------------------------------------------------------------
        assert t["runner"].startswith("RUNNING") and "paper" in t["runner"] and "bybit" in t["runner"]
        assert t["risk-state"] == "ACTIVE" and t["model-in-use"] == "v1"
        # the session's registry: version 1 as challenger, promoted or joined by others if test_training ran first
        champion, challenger = (registry.version_for(cfg, a) for a in ("champion", "challenger"))
        assert t["champion-version"] == (f"v{champion}" if champion else "none")
        assert t["challenger-version"] == (f"v{challenger}" if challenger else "none")
        assert "0.010" in t["thresholds"]  # the runner's thresholds, not the registry's
        assert before <= int(t["decisions"].replace(",", "")) <= after  # the journal's count as the page read it
        assert t["equity"] in [f"{a.data['equity']:,.2f}" for a in jr.read(journal, ["account"])]
        assert "ALERT drift" in t["banner"]  # the drift alert (threshold 1e-6) is on the banner
        assert t["book-valid"] == "valid" and t["latency"] != "n/a"
        assert t["data-age"].endswith((" s", " min"))  # the newest data's age, now
        # the journal choice: every account's journal, the one written last (the runner's) chosen
        assert s["journal"]["name"] == journal.stem and page.input_value("#pick-journal") == journal.stem
        assert {o["name"] for o in s["journals"]} == {journal.stem, "paper-replay"}
        assert page.input_value("#pick-session") == session and page.input_value("#pick-range") == "all"

        # -- the price with our orders and fills ---------------------------------------------------
        traces = {tr["name"]: tr for tr in page.evaluate("document.getElementById('chart-price').data")}
        mid = traces.get("mid") or traces["mid (account mark)"]  # the account's mark: the runner journals no book
        assert len(mid["y"]) >= 1 and all(v > 0 for v in mid["y"])
        fills = s["fill_history"]["total"]
        assert 1 <= fills <= sum(1 for _ in jr.read(journal, ["fill"]))
        assert s["prices"]["fills_buy"]["price"] + s["prices"]["fills_sell"]["price"]
        assert len(s["prices"]["fills_buy"]["t"]) + len(s["prices"]["fills_sell"]["t"]) == fills
        assert {"buy fills", "sell fills", "our bids", "our asks"} <= set(traces)
        orders = [y for side in ("orders_buy", "orders_sell") for y in s["prices"][side]["price"] if y is not None]
        assert orders and s["order_history"]["total"] >= 1
        if s["order_history"]["total"] <= 400:  # every order drawn: each post-only reject as a cross
            assert len(traces["post-only rejects"]["x"]) == s["order_history"]["post_only_rejects"]

        # -- order history, round trips, realized / unrealized --------------------------------------
        rows = page.eval_on_selector_all("#order-history tr", "rs => rs.slice(1).map(r => r.innerText)")
        assert rows and all("submit" in row for row in rows)
        assert s["round_trips"]["rows"] and "closed in range" in t["round-trips-info"]
        assert "refused as post-only" in t["order-history-info"]
        pnl, realized, unrealized = (float(t[k].replace(",", "")) for k in ("pnl", "realized", "unrealized"))
        assert realized + unrealized == pytest.approx(pnl, abs=0.02)  # each rounded to a cent

        # -- every execution figure with its n, its interval, a flag below 30 -----------------------
        e = s["execution_stats"]
        assert e["maker"]["n"] == fills and e["rejects"]["count"] == s["execution"]["post_only_rejects"]
        cards = page.evaluate(
            """() => [window.lastState.execution_stats,
                      [...document.querySelectorAll('#exec-cards .card')].map(c => [c.dataset.figure, +c.dataset.n,
                                                                                    c.innerText])]"""
        )  # fmt: skip
        e, cards = cards
        expected = {"slippage": e["slippage"], "maker": e["maker"], "orders_filled": e["orders_filled"],
                    "rejects": e["rejects"], **{f"markout_{h}": e["markouts"][h] for h in e["horizons"]}}  # fmt: skip
        assert {c[0] for c in cards} == set(expected)
        for figure, n, text in cards:
            assert n == expected[figure]["n"] and f"n = {n}" in text, figure
            assert ("not enough evidence" in text) == (n < e["min_n"]), figure
            assert ("95 % CI" in text) == (expected[figure]["lo"] is not None), figure
            if n == 1 and figure.startswith(("slippage", "markout")):  # a mean of one: no spread to tell
                assert "no interval from one sample" in text, figure

        # -- backtests of the model in use, served by the dashboard ---------------------------------
        assert "passive-v1-2026-01-05" in t["backtests"] and "v999" not in t["backtests"]
        report = browser.new_page()
        report.goto(url + page.get_attribute("#backtests a", "href"))
        assert report.inner_text("h1") == "backtest of v1"
        report.close()

        # -- Plotly's toolbar never covers a chart's title (a heading above the chart) ---------------
        for chart in CHARTS:
            assert not page.evaluate(f"(document.getElementById('{chart}').layout.title || {{}}).text"), chart
            assert _toolbar_clear_of_title(page, chart), chart
        # the range choice reaches the server (and comes back as the page's view)
        page.select_option("#pick-range", "15m")
        _view(page, f"{journal.stem}|{session}|15m")
        page.select_option("#pick-range", "all")
        _view(page, f"{journal.stem}|{session}|all")
        page.mouse.move(0, 0)
        page.evaluate("window.scrollTo(0, 0)")
        shots = REPO / "reports" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        shutil.copy(tmp_path / "dashboard.png", shots / "dashboard.png")

        # -- stopped: the last figures are history, and a position left is flagged ------------------
        r.stop()
        page.wait_for_function("window.lastState.runner.stopped_at !== null", timeout=60_000)
        t = _texts(page, "runner", "risk-state", "banner", "data-age", "data-ts", "health-asof")
        assert t["runner"].startswith("STOPPED") and "ACTIVE" not in t["runner"]
        assert t["risk-state"].startswith("last risk state: ") and "stale" in page.get_attribute("#risk-state", "class")
        assert t["data-age"] == "runner stopped" and "stopped at" in t["data-ts"] and "last data at" in t["data-ts"]
        assert "last known" in t["health-asof"]
        position = list(jr.read(journal, ["account"]))[-1].data["position"]
        assert (f"runner stopped holding {position:+.3f} BTC" in t["banner"]) == (abs(position) > 1e-9)

        # -- another account's journal, chosen on the page: a stopped runner holding +0.149 BTC ----
        page.select_option("#pick-journal", "paper-replay")
        _view(page, "paper-replay|a2|all")
        t = _texts(page, "banner", "drift-empty", "data-age", "risk-state", "fills-info", "round-trips-info")
        assert "runner stopped holding +0.149 BTC" in t["banner"]
        assert page.is_hidden("#chart-drift") and page.is_visible("#drift-empty")
        assert t["drift-empty"].startswith("No drift figure yet: 5 of the 10 decisions")
        assert t["data-age"] == "runner stopped" and t["risk-state"] == "last risk state: ACTIVE"
        assert t["fills-info"].startswith("1 in range")
        page.select_option("#pick-session", "a1")
        _view(page, "paper-replay|a1|all")
        assert page.inner_text("#fills-info").startswith("2 in range")
        assert page.inner_text("#round-trips-info").startswith("1 closed in range, 1 won")
        page.select_option("#pick-session", "all")
        _view(page, "paper-replay|all|all")
        assert page.inner_text("#fills-info").startswith("3 in range")
        page.select_option("#pick-range", "15m")
        _view(page, "paper-replay|all|15m")
        assert page.inner_text("#fills-info").startswith("1 in range")  # the newest quarter hour: a2's fill
        browser.close()
    # nothing from the internet: every request the page made went to the dashboard
    assert asked and all(u.startswith(url) for u in asked), [u for u in asked if not u.startswith(url)]
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
