"""The ingest's sources as a command line names them, checked: ``flows.ingest --source`` and the demo.

Apart from flows/ingest.py so that a command can check its sources without loading Prefect
(``flows.demo`` checks its ``--duration`` here before it imports the ingest flow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import parse_duration_ns

if TYPE_CHECKING:
    from market.sources.base import Source

SOURCES = ("bybit", "sim", "file")
DEFAULT_SIM_DURATION = "1h"


def build_source(
    cfg: AppConfig, source: str, paths: list[str] | None, duration: str | None, realtime: bool = False
) -> Source:
    """The source named on the command line, validated (bad input: one-line UserError)."""
    if source not in SOURCES:
        raise UserError(f"unknown source '{source}' (choose from {', '.join(SOURCES)})")
    if source == "file":
        if duration is not None:
            raise UserError("--duration does not apply to --source file")
        from market.sources.files import FileSource, check_paths

        return FileSource(check_paths(paths or []), instrument=cfg.instrument)
    if paths:
        raise UserError(f"--path only applies to --source file, not {source}")
    duration_ns = _duration(duration if duration is not None else (DEFAULT_SIM_DURATION if source == "sim" else None))
    if source == "sim":
        from sim.source import SimSource

        return SimSource(cfg.sim, cfg.instrument, cfg.ingest.depth, duration_ns or 0, realtime=realtime)
    from market.sources.bybit import BybitSource

    bybit: Source = BybitSource(cfg, duration_ns)
    return bybit


def _duration(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        ns = parse_duration_ns(text)
    except ValueError as exc:
        raise UserError(f"--duration: {exc}") from None
    if ns <= 0:
        raise UserError("--duration must be positive")
    return ns
