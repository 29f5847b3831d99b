"""Comparing model versions: ``python -m models compare``, ``python -m models ui``, and the UI in Chromium.

The store here holds the session's trained versions plus one more trained on a shorter window (so
the two held-out AUCs differ), in a copy of the session's project: the copy also has to be rebased
(models/store.py) before anything reads it. The browser test needs Debian's chromium; it is
skipped without it, except with ``REQUIRE_BROWSER=1`` (CI). Its screenshot is kept in
``reports/screenshots/mlflow-compare.png`` (git-ignored).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from core.config import AppConfig, load_config
from models import compare, registry, ui
from models.__main__ import main as models_main
from pipelines.train import run_training
from tests.browser import browser_or_skip, launch
from tests.conftest import REPO, free_port
from tests.test_cli import assert_one_line_error, cli
from tests.test_runner_standin import until

NS = 1_000_000_000
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_versions(
    trained: tuple[AppConfig, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[AppConfig, str, str]:
    """(config of a copied project, version 1, a version trained on the 30 s labels instead of 60 s)."""
    cfg, _ = trained
    root = tmp_path_factory.mktemp("compare")
    shutil.copytree(cfg.resolve(cfg.mlflow.store).parent, root / "mlruns")
    data = yaml.safe_load(cfg.source_path.read_text())
    data["warehouse"]["path"] = str(cfg.resolve(cfg.warehouse.path))  # the session's warehouse, read only
    data["training"]["horizon"] = "30s"  # the same rows, other labels (a shorter window may leave a class out)
    (root / "config.yaml").write_text(yaml.safe_dump(data))
    copy = load_config(root / "config.yaml")
    return copy, "1", run_training(copy)["version"]


def _auc(cfg: AppConfig, version: str, direction: str = "up") -> tuple[str, float]:
    """(training run id, its held-out stack AUC) as the store has them."""
    client = registry.connect(cfg)
    run_id = client.get_model_version(cfg.mlflow.model_name, version).run_id
    return run_id, float(client.get_run(run_id).data.metrics[f"{direction}_stack/auc"])


def test_the_ui_sets_what_mlflow_server_sets_for_its_workers() -> None:
    from mlflow.environment_variables import MLFLOW_SERVER_ENABLE_JOB_EXECUTION
    from mlflow.server import constants

    assert ui.BACKEND_STORE == constants.BACKEND_STORE_URI_ENV_VAR
    assert ui.REGISTRY_STORE == constants.REGISTRY_STORE_URI_ENV_VAR
    assert ui.ARTIFACT_ROOT == constants.ARTIFACT_ROOT_ENV_VAR
    assert MLFLOW_SERVER_ENABLE_JOB_EXECUTION.name == ui.JOB_EXECUTION
    cfg = AppConfig()
    assert ui.url(cfg) == "http://127.0.0.1:5000" and ui.url(cfg, "0.0.0.0", 5001) == "http://127.0.0.1:5001"


def test_compare_prints_both_versions_side_by_side_with_the_ui_link(
    two_versions: tuple[AppConfig, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, a, b = two_versions
    assert models_main(["compare", a, b, "--config", str(cfg.source_path)]) == 0
    out = capsys.readouterr().out
    client = registry.connect(cfg)
    runs = []
    for version in (a, b):
        run_id, auc = _auc(cfg, version)
        run = client.get_run(run_id)
        lo, hi = run.data.metrics["up_stack/auc_lo"], run.data.metrics["up_stack/auc_hi"]
        assert lo <= auc <= hi
        assert f"{auc:.3f} [{lo:.3f}, {hi:.3f}]" in out
        assert run.info.run_name in out and run.info.run_name.startswith(f"v{version} train ")
        runs.append(run_id)
    head = out.splitlines()[0].split()
    assert head == [f"v{a}", f"v{b}", "B", "-", "A"]
    for label in ("window", "data source", "feature set", "up: threshold", "down AUC", "latest backtests"):
        assert any(line.startswith(label) or line.startswith(f"  {label}") for line in out.splitlines()), label
    assert "sim" in next(line for line in out.splitlines() if line.startswith("data source"))
    link = out.strip().splitlines()[-1]
    assert link.startswith(f"{ui.url(cfg)}/#/compare-runs?runs=")
    query = dict(part.split("=", 1) for part in link.split("?", 1)[1].split("&"))
    assert json.loads(unquote(query["runs"])) == runs
    experiments = {client.get_run(r).info.experiment_id for r in runs}
    assert set(json.loads(unquote(query["experiments"]))) == experiments


def test_compare_with_an_unknown_version_or_no_registry_is_one_line(
    two_versions: tuple[AppConfig, str, str], tmp_path: Path
) -> None:
    cfg, a, _ = two_versions
    p = cli("-m", "models", "compare", a, "99", "--config", str(cfg.source_path))
    assert_one_line_error(p, "has no version 99")
    assert p.returncode == 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"mlflow": {"store": "none/mlflow.db"}}))
    p = cli("-m", "models", "compare", "1", "2", "--config", str(tmp_path / "config.yaml"))
    assert_one_line_error(p, "no model registry at")
    assert p.returncode == 4


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class _UI:
    """``python -m models ui`` as a user starts it, in its own process."""

    def __init__(self, cfg: AppConfig) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["-m", "models", "ui", "--port", str(self.port), "--config", str(cfg.source_path)]
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def __enter__(self) -> _UI:
        # the first answer needs MLflow imported: give a loaded machine its time, but fail early if it died
        until("the MLflow UI answers", lambda: self.proc.poll() is not None or _answers(self.url + "/health"), 180)
        assert self.proc.poll() is None, self.proc.communicate()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def test_the_ui_is_one_process_a_taken_port_is_one_line_and_ctrl_c_stops_it(
    two_versions: tuple[AppConfig, str, str],
) -> None:
    cfg, _, _ = two_versions
    with _UI(cfg) as server:
        assert _children(server.proc.pid) == []  # one uvicorn worker in the process itself, no job runner
        assert _answers(server.url + "/ajax-api/2.0/mlflow/registered-models/search")
        taken = cli("-m", "models", "ui", "--port", str(server.port), "--config", str(cfg.source_path))
        assert_one_line_error(taken, f"port {server.port} on 127.0.0.1 is taken")
        assert taken.returncode == 4
        server.proc.send_signal(signal.SIGINT)
        out, err = server.proc.communicate(timeout=60)
        assert server.proc.returncode == 0, err
        assert "Traceback" not in err and f"MLflow UI on http://127.0.0.1:{server.port}" in out


def _row_values(page: Any, metric: str) -> list[str]:
    """The compare page's values of ``metric``, one per run. The metrics table is two virtualised
    grids (names, values) scrolled together: scroll the values until the name's row is drawn, then
    take the value cells at the same row offset."""
    name = page.get_by_role("link", name=metric, exact=True)
    values = page.locator("[role=grid]").last

    def drawn() -> bool:
        if name.count() == 0:
            values.hover()
            page.mouse.wheel(0, 90)
            return False
        return True

    until(f"the row of {metric}", drawn, 60)
    page.mouse.wheel(0, 1)  # MLflow 3.17's name grid follows one wheel event late: level them for the screenshot
    top = name.locator("xpath=..").evaluate("el => el.style.top")
    cells = values.locator(f"[role=rowgroup] > div[style*='top: {top};']")
    until(f"the values of {metric}", lambda: cells.count() >= 2, 30)
    ordered = sorted(cells.all(), key=lambda c: float(c.evaluate("el => parseFloat(el.style.left)")))
    return [c.inner_text().strip() for c in ordered]


def test_the_compare_page_shows_both_versions_held_out_auc_in_chromium(
    two_versions: tuple[AppConfig, str, str],
) -> None:
    chromium = browser_or_skip()
    from playwright.sync_api import sync_playwright

    cfg, a, b = two_versions
    expected = [_auc(cfg, v, d) for d in ("up", "down") for v in (a, b)]
    assert abs(expected[0][1] - expected[1][1]) > 1e-3  # two different models: the page must tell them apart
    client = registry.connect(cfg)
    names = [client.get_run(_auc(cfg, v)[0]).info.run_name for v in (a, b)]
    with _UI(cfg) as server, sync_playwright() as p:
        link = compare.compare_url(cfg, *(compare.describe(cfg, client, v) for v in (a, b)))
        browser = launch(p, chromium)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(link.replace(ui.url(cfg), server.url))
        page.get_by_text("Run details").wait_for(timeout=120_000)
        for name in names:  # the runs say which version and window they are
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        for d, pair in (("down", expected[2:]), ("up", expected[:2])):  # the table's order: scrolled down once
            shown = _row_values(page, f"{d}_stack/auc")
            # the page rounds to three decimals (MLflow's Utils.formatMetric)
            assert [float(s) for s in shown] == pytest.approx([auc for _, auc in pair], abs=5e-4), (d, shown, pair)
        shots = REPO / "reports" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "mlflow-compare.png"))
        browser.close()
