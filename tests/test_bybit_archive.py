"""A real Bybit order-book archive (ob500, XRPUSDT linear perpetual; ../shared/data/bybit-ob500-sample)
imported as a user types it, with the instrument set in config.yaml alone: every message is taken
and the stored book equals an independent rebuild of the archive, level by level, after each one.

Before, the importer checked prices against Bybit BTCUSDT's tick (0.1, the venue module's) instead
of the configured instrument's (0.0001): all 50 messages were rejected as off_tick."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import orjson
import pytest

from market.events import fixed_to_numpy
from tests.conftest import SHARED_DATA, ConfigFactory
from tests.test_cli import cli
from warehouse.db import reading

ARCHIVE = SHARED_DATA / "bybit-ob500-sample" / "2024-12-01_XRPUSDT_ob500.data.zip"
LEVELS = 20

if not ARCHIVE.is_file() and os.environ.get("REQUIRE_REAL_DATA") == "1":
    pytest.fail(f"REQUIRE_REAL_DATA=1 but the Bybit archive sample is not at {ARCHIVE}", pytrace=False)
pytestmark = [
    pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"no Bybit archive sample at {ARCHIVE}"),
    pytest.mark.real_data,
]


def rebuild(path: Path) -> list[tuple[int, list[list[float]]]]:
    """The archive's book after each message, by a dict per side (nothing shared with the importer):
    (update id, [bid prices, bid sizes, ask prices, ask sizes] of the best LEVELS)."""
    with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as f:
        lines = [orjson.loads(line) for line in f if line.strip()]
    sides: dict[str, dict[float, float]] = {"b": {}, "a": {}}
    out = []
    for m in lines:
        if m["type"] == "snapshot":
            sides = {"b": {}, "a": {}}
        for side in ("b", "a"):
            for px, qty in m["data"][side]:
                if float(qty) == 0:
                    sides[side].pop(float(px), None)
                else:
                    sides[side][float(px)] = float(qty)
        bids = sorted(sides["b"].items(), reverse=True)[:LEVELS]
        asks = sorted(sides["a"].items())[:LEVELS]
        out.append(
            (
                int(m["data"]["u"]),
                [[p for p, _ in bids], [q for _, q in bids], [p for p, _ in asks], [q for _, q in asks]],
            )
        )
    return out


@pytest.mark.untraced
def test_a_bybit_ob500_archive_of_another_perpetual_imports_by_config_alone_and_rebuilds_exactly(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    cfg = make_config(
        instrument={"symbol": "XRP/USDT:USDT", "venue_symbol": "XRPUSDT", "tick_size": 0.0001, "lot_size": 1},
        warehouse={"snapshot_levels": LEVELS},
    )
    p = cli("-m", "flows.ingest", "--source", "file", "--path", str(ARCHIVE), "--config", str(tmp_path / "config.yaml"))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "50 book updates" in p.stdout and "0 rejected, 0 gaps" in p.stdout, p.stdout[-2000:]
    expected = rebuild(ARCHIVE)
    assert len(expected) == 50 and expected[0][0] == 20254869 and expected[-1][0] == 20254918  # PROVENANCE.md
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        t = con.sql(
            "SELECT update_id, bid_px, bid_qty, ask_px, ask_qty, symbol FROM snapshots ORDER BY ts_exchange_ns, update_id"
        ).to_arrow_table()
    assert set(t.column("symbol").to_pylist()) == {"XRPUSDT"}
    stored = list(
        zip(
            t.column("update_id").to_pylist(),
            *(fixed_to_numpy(t.column(c), LEVELS).tolist() for c in ("bid_px", "bid_qty", "ask_px", "ask_qty")),
            strict=True,
        )
    )
    assert [s[0] for s in stored] == [e[0] for e in expected]
    for (uid, *levels), (_, want) in zip(stored, expected, strict=True):
        assert levels == want, f"update {uid}"
