"""What the runner monitors and the dashboard reads: the training profile and PSI, the drift window,
the execution figures, alerts with their webhook, and the journal as the dashboard folds it."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from core.errors import UserError
from live.alerts import WEBHOOK_ENV, Alerts, Webhook, webhook_url
from live.dashboard.journal_view import JournalView
from live.drift import DriftMonitor, worst
from live.monitor import SlippageMonitor
from models.profile import BINS, Profile, psi
from tests.conftest import free_port
from warehouse.journal import Journal

NS = 1_000_000_000


def test_the_profile_bins_by_training_deciles_and_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20_000, 3))
    proba = rng.uniform(0.0, 0.2, size=(5_000, 2))
    prof = Profile.of(x, proba)
    assert prof.edges.shape == (3, BINS - 1) and prof.expected.shape == (3, BINS)
    assert np.allclose(prof.expected, 0.1, atol=0.002)  # deciles: a tenth of the rows in each bin
    same = Profile.shares(prof.bins(rng.normal(size=(20_000, 3))))
    shifted = Profile.shares(prof.bins(rng.normal(size=(20_000, 3)) + np.array([0.0, 0.25, 1.0])))
    p_same, p_shift = prof.psi(same), prof.psi(shifted)
    assert (p_same < 0.01).all()
    assert p_shift[0] < 0.01 < p_shift[1] < 0.25 < p_shift[2]  # stable, moderate, significant
    # by hand for one feature: sum (a - e) ln(a / e)
    a, e = shifted[2], prof.expected[2]
    assert p_shift[2] == pytest.approx(float(np.sum((np.maximum(a, 1e-4) - e) * np.log(np.maximum(a, 1e-4) / e))))
    # the held-out confidence: the share between two probabilities follows the quantiles
    share = prof.confidence_share(0, np.array([0.0, 0.1, 0.2]))
    assert share == pytest.approx([0.5, 0.5], abs=0.02)
    again = Profile.from_json(json.loads(json.dumps(prof.to_json())))
    assert (
        again is not None
        and np.array_equal(again.edges, prof.edges)
        and np.array_equal(again.p_quantiles, prof.p_quantiles)
    )
    assert Profile.from_json(None) is None


def test_psi_of_identical_shares_is_zero_and_empty_bins_are_floored() -> None:
    e = np.full(BINS, 0.1)
    assert psi(e, e * 7) == pytest.approx(0.0)
    one_bin = np.zeros(BINS)
    one_bin[0] = 50
    assert math.isfinite(float(psi(e, one_bin))) and float(psi(e, one_bin)) > 1.0


def test_the_drift_window_counts_exactly_the_newest_rows() -> None:
    rng = np.random.default_rng(5)
    prof = Profile.of(rng.normal(size=(5_000, 2)), rng.uniform(size=(100, 2)))
    columns = np.array([2, 0])  # the model's two features sit at catalog columns 2 and 0
    mon = DriftMonitor(prof, columns, ["b", "a"], window=50, min_rows=20)
    rows = rng.normal(size=(130, 3))
    rows[:, 2] += 3.0  # feature "b" moved far; "a" did not
    for k, row in enumerate(rows):
        mon.add(row)
        if k == 10:
            assert mon.psi() is None  # fewer than min_rows
    expected = np.stack([np.bincount(b, minlength=BINS) for b in prof.bins(rows[-50:, columns]).T])
    assert mon.n == 50 and np.array_equal(mon.counts, expected)
    out = mon.psi()
    assert out is not None and list(out) == ["b", "a"]  # worst first
    assert out["b"] > 1.0 and out["a"] < out["b"]
    assert out["b"] == pytest.approx(round(float(prof.psi(expected)[0]), 5))
    assert worst(out) == ("b", out["b"]) and worst(out, ["b"]) == ("a", out["a"])  # an ignored feature never alerts
    assert worst(out, ["a", "b"]) == ("none", 0.0)


def test_the_execution_figures_cover_three_markout_horizons_and_rejects() -> None:
    m = SlippageMonitor(window=4, markouts_ns=[NS, 10 * NS, 60 * NS])
    m.on_fill(0, 1, 100.01, 1.0, True, 100.0)  # paid 1 bp
    m.on_fill(NS // 2, 1, 100.10, 1.0, False, 100.0)  # paid 10 bp
    m.on_mid(NS, 100.05)  # the first fill's 1 s markout is due
    fig = m.figures()
    assert fig.slippage_bps == pytest.approx(5.5)
    assert fig.markouts_bps["1s"] == pytest.approx((100.05 - 100.01) / 100.01 * 1e4)
    assert math.isnan(fig.markouts_bps["10s"]) and math.isnan(fig.markouts_bps["60s"])
    m.on_mid(11 * NS, 100.20)  # both fills' 1 s and 10 s markouts are due now
    fig = m.figures()
    ten = ((100.20 - 100.01) / 100.01 + (100.20 - 100.10) / 100.10) / 2 * 1e4
    assert fig.markouts_bps["10s"] == pytest.approx(ten)
    assert fig.maker_ratio == pytest.approx(0.5)
    m.submitted, m.rejected = 8, 2
    m.on_parent_end(1.0, 4.0)
    d = m.figures().as_dict()
    assert d["reject_rate"] == pytest.approx(0.25) and d["post_only_rejects"] == 2 and d["fill_rate"] == 0.25
    assert set(d) >= {"markout_1s_bps", "markout_10s_bps", "markout_60s_bps", "slippage_bps", "maker_ratio"}
    assert "2 post-only rejects" in m.figures().line()


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append({"type": self.headers["Content-Type"], **json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Hook.got = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook?token=s3cret", _Hook.got
    server.shutdown()


class _Sink:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, dict[str, Any]]] = []
        self.commits = 0

    def add(self, kind: str, ts_ns: int, order_id: int | None = None, **data: Any) -> None:
        self.rows.append((kind, ts_ns, data))

    def commit(self) -> None:
        self.commits += 1


def test_an_alert_is_raised_and_cleared_once_each_and_posted_to_the_webhook(
    hook: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, got = hook
    sink = _Sink()
    alerts = Alerts(sink, Webhook(url, 5.0))
    with caplog.at_level(logging.INFO, "live.alerts"):
        alerts.update("drift", False, 1, 0.1, 0.25, "ok")  # under and not active: nothing
        alerts.update("drift", True, 2, 0.4, 0.25, "obi_1 PSI 0.400")
        alerts.update("drift", True, 3, 0.5, 0.25, "obi_1 PSI 0.500")  # still over: said once
        alerts.update("drift", False, 4, 0.1, 0.25, "obi_1 PSI 0.100")
    alerts.close()
    assert [(k, ts, d["active"]) for k, ts, d in sink.rows] == [("alert", 2, True), ("alert", 4, False)]
    assert sink.rows[0][2]["line"] == "ALERT drift: obi_1 PSI 0.400" and sink.commits == 2
    assert [(g["what"], g["active"], g["value"]) for g in got] == [("drift", True, 0.4), ("drift", False, 0.1)]
    assert got[0]["type"] == "application/json" and got[0]["text"].startswith("ALERT drift")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["ALERT drift: obi_1 PSI 0.400"]
    assert not alerts.active


def test_a_dead_webhook_costs_a_warning_without_its_url(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # closed again: nobody listens there
    url = f"http://127.0.0.1:{port}/hook?token=s3cret"
    hook = Webhook(url, 1.0)
    with caplog.at_level(logging.WARNING, "live.alerts"):
        Alerts(_Sink(), hook).update("stale", True, 1, 3.0, 2.0, "no market data for 3.0 s")
        hook.close()
    assert hook.failed == 1 and hook.sent == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "alert webhook failed" in text and "s3cret" not in text and str(port) not in text


def test_the_webhook_url_comes_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    assert webhook_url("") == ""
    assert webhook_url("https://example.invalid/x") == "https://example.invalid/x"
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/env")
    assert webhook_url("https://example.invalid/x") == "http://127.0.0.1:9/env"
    monkeypatch.setenv(WEBHOOK_ENV, "file:///etc/passwd")
    with pytest.raises(UserError, match=f"^{WEBHOOK_ENV} must be an http"):
        webhook_url("")


def test_the_dashboard_folds_the_journal_incrementally_and_reads_only_the_newest_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import live.dashboard.journal_view as jv

    monkeypatch.setattr(jv, "DECISIONS", 3)
    path = tmp_path / "paper.sqlite"
    view = JournalView(path)
    view.refresh()
    assert "no journal yet" in view.error
    j = Journal(path, "s1", "normal")
    j.add("start", 1, mode="paper", source="sim", strategy="passive", model="4")
    for k in range(5):
        j.add("decision", 10 + k, p_up=0.1 * k, p_down=0.05, direction=int(k == 4), model_version="4")
    j.add("submit", 20, 7, side=1, qty=0.01, price=100.0, order_kind="LIMIT", tag=1)
    j.add("submit", 21, 8, side=-1, qty=0.02, price=101.0, order_kind="LIMIT", tag=2)
    j.add("amend", 22, 7, price=100.5, qty=None)
    j.add("fill", 23, 8, side=-1, price=101.0, qty=0.02, fee=0.0, maker=True, tag=2)
    j.add("done", 24, 8, status="FILLED", price=101.0, qty=0.02, filled=0.02)
    j.add("account", 25, equity=100_000.5, position=-0.02, cash=1.0, fees=0.1, funding=0.0,
          execution={"slippage_bps": 0.4, "markout_1s_bps": 1.0})  # fmt: skip
    j.add("alert", 26, what="stale", active=True, value=3.0, threshold=2.0, line="ALERT stale: x")
    j.commit()
    st = view.refresh()
    assert view.error == ""
    assert [d[1] for d in st.decisions] == pytest.approx([0.2, 0.3, 0.4])  # the newest three only
    assert st.decision_count == 5 and st.model_version == "4"
    assert [o.id for o in st.orders.open()] == [7] and st.orders.orders[7].price == 100.5  # 8 filled and done
    assert st.market.fills[-1].order_id == 8 and st.market.fills[-1].qty == 0.02
    assert st.account is not None and st.account["equity"] == 100_000.5 and st.slippage == [(25, 0.4, 0)]
    assert list(st.active_alerts) == ["stale"]
    j.add("decision", 30, p_up=0.9, p_down=0.0, direction=1, model_version="4")
    j.add("alert", 31, what="stale", active=False, value=0.1, threshold=2.0, line="cleared stale: x")
    j.add("done", 32, 7, status="CANCELLED", price=100.5, qty=0.01, filled=0.0)
    j.add("stop", 33, reason="test")
    j.commit()
    st = view.refresh()
    assert st.decision_count == 6 and [d[1] for d in st.decisions][-1] == 0.9
    assert not st.active_alerts and [a["active"] for a in st.alerts] == [False, True]
    assert st.orders.open() == [] and st.stopped is not None and st.stopped["reason"] == "test"
    j.close()


def test_old_market_data_raises_the_stale_alert_though_it_keeps_arriving() -> None:
    """A live-paced feed that delivers data far behind the calendar (a replayed recording, a stuck
    upstream clock) is stale even while it is never silent; the silence check alone missed it."""
    from core.config import AppConfig
    from live.watch import FeedWatch

    cfg = AppConfig()
    stale = cfg.monitor.stale_data
    sink = _Sink()
    alerts, feed, halts = Alerts(sink), FeedWatch(cfg), list[str]()
    wall = feed.wall_last_tick  # ticks just arrived: never silent below
    feed.check(wall, True, 1, alerts, halts.append, lambda: None, age_ns=stale // 2)
    assert not alerts.active
    feed.check(wall, True, 2, alerts, halts.append, lambda: None, age_ns=9_800_000 * NS)
    assert list(alerts.active) == ["stale"] and "newest market data is 9,800,000.0 s old" in alerts.active["stale"].line
    feed.check(wall, True, 3, alerts, halts.append, lambda: None, age_ns=stale // 2)  # caught up
    assert not alerts.active and not halts
    assert [(r[2]["what"], r[2]["active"]) for r in sink.rows] == [("stale", True), ("stale", False)]
    feed.check(wall + stale + NS, True, 4, alerts, halts.append, lambda: None, age_ns=stale + 2 * NS)
    assert "no market data for" in alerts.active["stale"].line  # silence says so first
