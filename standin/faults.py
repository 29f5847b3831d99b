"""The faults the stand-in can be told to inject (``POST /_standin/fault``), and the corrupt book
frames some of them send."""

from __future__ import annotations

from typing import Any

from standin.market import Book, json_text, price_decimals
from standin.private import PRIVATE_FAULTS

FAULTS: dict[str, str] = {
    "skip_update": "the next book delta is applied but not sent: subscribers see an update-id gap",
    "snapshot": "the next book update is sent as a full snapshot (a reset mid-stream)",
    "restart": "a service restart: the best bid level is lost and the book is re-sent with u=1 "
    "as a *delta* (only the u=1 rule saves the client); update ids continue from 1",
    "bad_json": "a truncated frame that is not JSON",
    "missing_field": "a book delta without its update id",
    "negative_size": "a book delta (with the next update id) carrying a negative size",
    "crossed": "a book delta (with the next update id) putting a bid above the best ask",
    "drop": "every WebSocket connection is cut at once (no close frame)",
    "stall": "no market data for `seconds` (connections stay open, pings are answered)",
    **PRIVATE_FAULTS,
}

CORRUPT = ("missing_field", "negative_size", "crossed", "bad_json")  # faults that send a corrupt frame


def corrupt_frame(kind: str, msg: dict[str, Any], next_u: int, book: Book, topic: str, tick: float) -> str:
    """The frame a CORRUPT fault sends instead of the feed's book message ``msg`` (the book as it was
    before that message; ``next_u``: the update id the message would have had)."""
    data = dict(msg["data"])
    data["u"] = next_u
    out: dict[str, Any] = {"topic": topic, "type": "delta", "ts": book.ts, "cts": book.cts}
    if kind == "missing_field":
        del data["u"]
    elif kind == "negative_size":
        bids = [list(b) for b in data["b"]] or [[book.best()[0] or "1.0", "1"]]
        size = bids[0][1].lstrip("-")
        bids[0][1] = "-" + (size if float(size) > 0 else "1")  # "-0" would only be a signed delete
        data["b"] = bids
    elif kind == "crossed":  # only the crossing bid: the message's own asks could lift the best ask above it
        best_ask = book.best()[2]
        data["b"] = [[f"{float(best_ask) + tick:.{price_decimals(tick)}f}", "1.000"]]
        data["a"] = []
    out["data"] = data
    frame = json_text(out)
    if kind == "bad_json":
        frame = frame[: len(frame) // 2]
    return frame
