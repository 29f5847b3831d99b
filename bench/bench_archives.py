"""Back-fill figures: a day of BTCUSDT in Bybit's archive formats (ob500 zip + trade csv.gz) imported
into a fresh warehouse, against the five-minute target (issue 15); an hour of Tardis's CSV beside it.

The day is the simulator's (config.yaml's calibrated market, its book 500 levels deep), written
once by sim/archives.py and kept in bench/.cache (about ten minutes): its book at Bybit's ob500
push interval (100 ms), its trades at the calibrated rate. The import is the user's path
(FileSource -> run_ingest), with the default warehouse settings (raw messages kept)."""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.common import CACHE, ROOT, SHARED, entry
from core.config import AppConfig, load_config
from market.sources.files import FileSource
from sim.archives import write_archives
from warehouse.ingest import run_ingest

OB500_CADENCE = "100ms"  # Bybit pushes orderbook.500 every 100 ms: what its ob500 archive holds
# a book 500 levels deep on each side (1,000 ticks, 60 % of them occupied): snapshots of 500 levels a
# side and deltas of about 30 levels, 780 bytes a line, as Bybit's BTCUSDT ob500 lines are
OB500_BOOK = {"depth_ticks": 1000, "depth_occupancy": 0.6}


def _config(directory: Path, data: dict[str, Any]) -> AppConfig:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(data))
    return load_config(directory / "config.yaml")


def _archives(hours: float, tardis: bool, name: str) -> list[Path]:
    """The simulated market in the archive formats (written once, cached)."""
    directory = CACHE / name
    done = directory / "complete"
    base = load_config(ROOT / "config.yaml")
    sim = base.sim.model_dump(mode="json") | {"cadence": OB500_CADENCE}
    sim["model"] |= OB500_BOOK
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        cfg = _config(directory / "cfg", {"sim": sim})
        print(f"  writing {hours:g} simulated hours in the archive formats (once, cached in {directory}) ...")
        written = write_archives(cfg, hours, directory / "files", tardis=tardis)
        done.write_text("\n".join(str(p) for p in written.files) + "\n")
    return [Path(line) for line in done.read_text().split()]


def _import(paths: list[Path], name: str, instrument: dict[str, Any] | None = None) -> tuple[float, dict[str, int]]:
    directory = CACHE / f"{name}-import"
    shutil.rmtree(directory, ignore_errors=True)
    data: dict[str, Any] = {"warehouse": {"path": "wh.duckdb", "spool_dir": "spool"}}
    cfg = _config(directory, data | ({"instrument": instrument} if instrument else {}))
    t = time.perf_counter()
    result = run_ingest(FileSource(paths, instrument=cfg.instrument), cfg, detail=f"bench {name}")
    dt = time.perf_counter() - t
    assert result.status == "completed", result.error
    shutil.rmtree(directory, ignore_errors=True)
    return dt, dict(result.counts)


SAMPLE = SHARED / "bybit-ob500-sample" / "2024-12-01_XRPUSDT_ob500.data.zip"
XRPUSDT = {"symbol": "XRP/USDT:USDT", "venue_symbol": "XRPUSDT", "tick_size": 0.0001, "lot_size": 1}


def _real_shaped_day() -> Path | None:
    """A day of ob500 lines shaped as Bybit's real ones: the real XRPUSDT sample (a snapshot of 500
    levels a side, then 49 deltas of 60 levels, 1.3 KB each) over and over with new update ids and
    times, every 100 ms, to a day's 864,000 lines: more than a real day (a snapshot every 5 s), the
    real bytes and levels per delta (written once, cached; None without the sample)."""
    if not SAMPLE.is_file():
        return None
    path = CACHE / "archives-real-shaped" / "2024-12-01_XRPUSDT_ob500.data.zip"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SAMPLE) as zf:
        lines = [orjson.loads(x) for x in zf.read(zf.namelist()[0]).splitlines() if x.strip()]
    u, ts = int(lines[0]["data"]["u"]), int(lines[0]["ts"])
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf, zf.open(path.stem, "w") as f:
        for i in range(864_000):
            m = lines[
                i % len(lines)
            ]  # the snapshot again every 50 lines: the deltas apply to the book they were cut from
            m["data"]["u"], m["data"]["seq"] = u + i, u + i
            m["ts"] = m["cts"] = ts + 100 * i
            f.write(orjson.dumps(m) + b"\n")
    tmp.rename(path)
    return path


def run() -> list[dict[str, Any]]:
    out = []
    day = _archives(24.0, tardis=False, name="archives-day")
    dt, counts = _import(day[:2], "archives-day")
    n = f"{counts['book_updates']:,} book updates + {counts['trades']:,} trades, {counts.get('rejected', 0)} rejected"
    out.append(entry("archive import: a day of BTCUSDT ob500 + trades", dt, "s", "< 300", n))
    out.append(entry("archive import: messages per second", counts["messages"] / dt, "msg/s", None, n))
    real = _real_shaped_day()
    if real is not None:
        dt, counts = _import([real], "real-shaped", instrument=XRPUSDT)
        size = f"{real.stat().st_size / 1e6:,.0f} MB zip"
        n = f"{counts['book_updates']:,} book updates, {counts.get('rejected', 0)} rejected, {size}"
        out.append(entry("archive import: a day of real-shaped ob500 lines (XRPUSDT)", dt, "s", "< 300", n))
    hour = _archives(1.0, tardis=True, name="archives-hour")
    dt, counts = _import(hour[2:], "tardis-hour")
    n = f"{counts['book_updates']:,} book updates + {counts['trades']:,} trades from Tardis CSV"
    out.append(entry("Tardis import: an hour of incremental_book_L2 + trades", dt, "s", None, n))
    return out
