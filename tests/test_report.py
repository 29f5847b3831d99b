"""The run report: metrics.json, fills.csv, the PNG plots and one self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from execution.quality import RunRecord, minute_returns, parent_shortfall_bps
from execution.report import load_metrics, load_samples, write_report
from tests.test_quality import equity_of, fills_of, on_path, parents_of

PLOTS = ("equity", "slippage", "markout_curve", "confidence", "queue")
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_run(strategy: str = "passive") -> RunRecord:
    """Two fills on the hand-built mid path; equity 10000 -> 11234.5 over one minute (one return: no Sharpe)."""
    parents = parents_of(
        {"tag": 1, "side": 1, "mid": 1000.0, "filled": 1.0, "vwap": 999.9, "confidence": 0.6},
        {"tag": 2, "side": -1, "mid": 1000.0, "filled": 1.0, "vwap": 1000.5, "confidence": 0.9},
    )
    fills = fills_of(
        {"t": 0.5, "side": 1, "price": 999.9, "tag": 1, "fee": 0.2, "queue": 0.3},
        {"t": 30.0, "side": -1, "price": 1000.5, "tag": 2, "fee": 0.55, "maker": False},
    )
    position = equity_of([10000.0, 11234.5])
    position["position"] = [0.0, 1.0]
    meta = {"strategy": strategy, "model": {"uri": "models:/l2/3", "version": 3}, "missing": math.nan}
    return on_path(fills, parents, equity=position, fees=0.75, funding=0.25, meta=meta)


def test_write_report_writes_every_file(tmp_path: Path) -> None:
    html = write_report(tiny_run(), tmp_path / "out")
    assert html == tmp_path / "out" / "report.html"
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {
        "metrics.json", "fills.csv", "parents.csv", "returns.csv", "report.html", *(f"{p}.png" for p in PLOTS)
    }  # fmt: skip
    for p in PLOTS:
        assert (tmp_path / "out" / f"{p}.png").read_bytes().startswith(PNG)


def test_the_samples_compare_needs_round_trip(tmp_path: Path) -> None:
    run = tiny_run()
    write_report(run, tmp_path)
    samples = load_samples(tmp_path)
    assert samples is not None
    np.testing.assert_allclose(samples.shortfall_bps, parent_shortfall_bps(run))
    np.testing.assert_allclose(samples.returns, minute_returns(run))
    assert samples.equity_start == run.equity["equity"][0] and len(samples.return_ts) == len(samples.returns)
    assert load_samples(tmp_path / "nothing") is None  # a report written before the samples existed


def test_metrics_json_round_trips_with_nan_as_null(tmp_path: Path) -> None:
    write_report(tiny_run(), tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: no bare NaN
    assert doc["meta"] == {"strategy": "passive", "model": {"uri": "models:/l2/3", "version": 3}, "missing": None}
    m = doc["metrics"]
    assert m["sharpe"] is None  # one 1-minute return: undefined
    assert m["net_pnl"] == pytest.approx(1234.5)
    assert m["fills"] == 2 and isinstance(m["fills"], int)
    assert m["arrival_slippage_mean_bps"] == pytest.approx((-1.0 - 5.0) / 2)  # buy 999.9: -1; sell 1000.5: -5
    back = load_metrics(tmp_path / "metrics.json")
    assert math.isnan(back["sharpe"]) and back["net_pnl"] == m["net_pnl"]


def test_report_html_embeds_the_plots_and_the_headline_figures(tmp_path: Path) -> None:
    text = write_report(tiny_run(), tmp_path).read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(PLOTS)
    on_disk = {(tmp_path / f"{p}.png").read_bytes() for p in PLOTS}
    assert {base64.b64decode(i) for i in images} == on_disk
    assert "http://" not in text and "https://" not in text  # self-contained

    def headline(label: str) -> str:
        found = re.search(rf"<th>{re.escape(label)}</th><td class=\"num\">([^<]*)</td>", text)
        assert found, label
        return found.group(1)

    assert headline("Net PnL (USDT)") == "1,234.50"
    assert headline("Fees (USDT)") == "0.75"
    assert headline("Maker ratio") == "50.0%"  # 999.9 maker of 999.9 + 1000.5 notional: 49.985 %
    assert headline("Arrival slippage, mean (bps)") == "-3.000"
    assert headline("Sharpe (annualized)") == "n/a"
    assert "models:/l2/3" in text


def test_report_escapes_run_metadata(tmp_path: Path) -> None:
    text = write_report(tiny_run("<script>alert(1)</script>"), tmp_path).read_text()
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


def test_fills_csv_has_the_fill_records_and_per_fill_measures(tmp_path: Path) -> None:
    write_report(tiny_run(), tmp_path)
    with (tmp_path / "fills.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert float(rows[0]["price"]) == 999.9 and rows[0]["maker"] == "1" and rows[1]["maker"] == "0"
    assert int(rows[0]["ts_ex"]) == 500_000_000
    assert float(rows[0]["arrival_slippage_bps"]) == pytest.approx(-1.0)
    assert float(rows[0]["markout_10s_bps"]) == pytest.approx((1001.0 - 999.9) / 999.9 * 1e4)
    assert rows[1]["markout_60s_bps"] == ""  # 30 s + 60 s is past the last mid (61 s)


def test_empty_run_still_writes_a_complete_report(tmp_path: Path) -> None:
    html = write_report(RunRecord(), tmp_path)
    assert html.read_text().count("data:image/png;base64,") == len(PLOTS)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["metrics"]["fills"] == 0 and doc["metrics"]["maker_ratio"] is None
    with (tmp_path / "fills.csv").open() as f:
        assert len(list(csv.reader(f))) == 1  # the header only
    assert np.all([(tmp_path / f"{p}.png").stat().st_size > 0 for p in PLOTS])
