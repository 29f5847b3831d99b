"""Parsing and printing of the durations and instants that appear in config files and CLIs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from core.errors import UserError

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)?\s*$")


def parse_duration_ns(value: str | int | float) -> int:
    """Parse '500ms', '1s', '2.5m', '1h' or a number of seconds into nanoseconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '500ms'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return round(value * 1_000_000_000)
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"'{value}' is not a duration (examples: 20ms, 1s, 5m, 1h)")
    return round(float(m.group(1)) * _UNITS_NS[m.group(2) or "s"])


def parse_time_ns(value: str | int) -> int:
    """Parse an instant: ISO 8601 (UTC unless an offset is given), or integer ns since the epoch."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"'{value}' is not a time (use ISO 8601 like 2024-07-19T00:00:00Z or ns)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    seconds = int(dt.timestamp())
    return seconds * 1_000_000_000 + dt.microsecond * 1_000


def format_ns(ns: int | None) -> str:
    """Print ns since the epoch as ISO 8601 UTC with milliseconds."""
    if ns is None:
        return "-"
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns // 1_000_000) % 1000:03d}Z"


def format_duration(ns: int) -> str:
    """Print a duration compactly: 1h02m03s, 4.2s, 350ms."""
    if ns >= 3_600_000_000_000:
        h, rest = divmod(ns // 1_000_000_000, 3600)
        return f"{h}h{rest // 60:02d}m{rest % 60:02d}s"
    if ns >= 60_000_000_000:
        m, s = divmod(ns // 1_000_000_000, 60)
        return f"{m}m{s:02d}s"
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.1f}s"
    return f"{ns / 1e6:.0f}ms"
