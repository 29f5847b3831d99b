"""Transitional: where the metaorders sit in ``MarketSimulator.st``, the state record seen as flat
int64 slots, for pipelines/falsify.py until it reads ``MarketSimulator.metaorders()`` (the state's
fields are named in ``sim.state``)."""

from __future__ import annotations

from sim.state import MAX_META, STATE_DTYPE


def _slot(name: str) -> int:
    fields = STATE_DTYPE.fields
    assert fields is not None
    return int(fields[name][1]) // 8  # every field is 8 bytes wide


META_END = _slot("meta_end")
META_SIGN = _slot("meta_sign")

__all__ = ["MAX_META", "META_END", "META_SIGN"]
