"""Where a simulated market goes on: right after the stored market, from its last mid price.

Simulating from the configured ``sim.start`` again would replay the same messages (same seed,
same start): every one of them already held, nothing new stored. So when the configured start
lies inside or before what the warehouse holds for the instrument, the simulation starts one
second after the stored market's last book update, at its last mid price, with a seed derived from
the configured one and the new start (a new path, reproducibly). A ``sim.start`` after the stored
market is kept as configured. ``python -m flows.ingest --source sim`` and ``flows.demo`` both
continue through ``continue_sim``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from core.config import AppConfig, SimConfig
from warehouse import reader
from warehouse.db import reading

SEAM_NS = 1_000_000_000  # the new market's first update comes this long after the stored one's last


@dataclass(frozen=True)
class Continuation:
    stored_end_ns: int  # the stored market's last book update
    mid: float  # its mid price there
    sim: SimConfig  # the simulator's config, moved past it


def stored_market_end(cfg: AppConfig) -> tuple[int, float] | None:
    """(time, mid) of the warehouse's last book update of the instrument; None when it holds none."""
    path = cfg.resolve(cfg.warehouse.path)
    venue, symbol = cfg.instrument.venue, cfg.instrument.venue_symbol
    if not path.exists():
        return None
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        if (venue, symbol) not in reader.stored_pairs(con):
            return None
        _, end = reader.time_bounds(con, venue, symbol)
        last = reader.latest_snapshot(con, venue, symbol, 1)
    mid = (last.column("bid_px_1")[0].as_py() + last.column("ask_px_1")[0].as_py()) / 2
    return end, round(mid, 1)


def continue_sim(cfg: AppConfig) -> Continuation | None:
    """``cfg.sim`` moved past the stored market when its start would repeat it; None to simulate as configured."""
    stored = stored_market_end(cfg)
    if stored is None or cfg.sim.start > stored[0]:
        return None
    end, mid = stored
    start = end + SEAM_NS
    seed = int(hashlib.sha256(f"{cfg.sim.seed}:{start}".encode()).hexdigest()[:8], 16)
    sim = cfg.sim.model_copy(
        update={"start": start, "seed": seed, "model": cfg.sim.model.model_copy(update={"base_price": mid})}
    )
    return Continuation(end, mid, sim)
