"""Alerts: a figure crossing its threshold is a log line, a journal record and an optional webhook POST.

An alert is raised once when its figure goes over its threshold and cleared once when it comes
back; both are journalled (``alert`` records, ``active`` true or false), which is what the
dashboard's banner shows. The thresholds (config ``monitor:``, and ``live.slippage_alert_bps``):

- ``slippage``: the rolling arrival slippage of our fills,
- ``drift``: the worst feature's population stability index, live against training,
- ``stale``: the age of the newest market data (the kill switch halts later, ``live.feed_silence``),
- ``drawdown``: how far equity is under its peak (the risk manager halts later, ``risk.halt_drawdown``).

The webhook gets ``{"text", "what", "active", "value", "threshold", "ts"}`` as JSON, from a
thread of its own: a slow or dead endpoint never holds the runner, it costs a warning. Its URL may
carry a token, so ``ALERT_WEBHOOK_URL`` in the environment wins over the config, and it is never
logged.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import UserError
from core.timefmt import format_ns

log = logging.getLogger("live.alerts")

WEBHOOK_ENV = "ALERT_WEBHOOK_URL"


class Sink(Protocol):
    def add(self, kind: str, ts_ns: int, order_id: int | None = None, **data: Any) -> None: ...

    def commit(self) -> None: ...


def webhook_url(configured: str) -> str:
    """The webhook URL: the environment's, else the config's ('' for none); checked, never echoed."""
    url = os.environ.get(WEBHOOK_ENV, "").strip() or configured.strip()
    if url and not url.startswith(("http://", "https://")):
        source = WEBHOOK_ENV if os.environ.get(WEBHOOK_ENV, "").strip() else "monitor.webhook_url"
        raise UserError(f"{source} must be an http:// or https:// URL")
    return url


class Webhook:
    """POSTs JSON payloads one after another from a daemon thread."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.sent = self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=100)
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.failed += 1
            log.warning("alert webhook: 100 alerts waiting, this one is dropped")

    def _run(self) -> None:
        while (payload := self._queue.get()) is not None:
            body = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"}
            req = urllib.request.Request(self.url, body, headers, method="POST")  # noqa: S310 http(s) checked
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                    resp.read()
                self.sent += 1
            except Exception as exc:  # any failure of the endpoint is a warning, never the runner's problem
                self.failed += 1
                reason = str(getattr(exc, "reason", "") or exc).replace(self.url, "<webhook>")
                log.warning("alert webhook failed: %s: %s", exc.__class__.__name__, reason[:200])

    def close(self, timeout_s: float = 2.0) -> None:
        """Deliver what is queued (for up to ``timeout_s``), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)


@dataclass(frozen=True)
class Alert:
    what: str
    value: float
    threshold: float
    line: str
    ts_ns: int


class Alerts:
    """Raise and clear alerts by name; each edge is logged, journalled and posted once."""

    def __init__(self, journal: Sink, webhook: Webhook | None = None) -> None:
        self.journal, self.webhook = journal, webhook
        self.active: dict[str, Alert] = {}

    def update(self, what: str, over: bool, ts_ns: int, value: float, threshold: float, detail: str) -> None:
        """``over``: the figure is past its threshold now; ``detail`` says by how much, in words."""
        if over == (what in self.active):
            return
        if over:
            line = f"ALERT {what}: {detail}"
            self.active[what] = Alert(what, value, threshold, line, ts_ns)
            log.warning(line)
        else:
            del self.active[what]
            line = f"cleared {what}: {detail}"
            log.info(line)
        self.journal.add("alert", ts_ns, what=what, active=over, value=value, threshold=threshold, line=line)
        self.journal.commit()
        if self.webhook is not None:
            payload = {"text": line, "what": what, "active": over, "value": value, "threshold": threshold}
            self.webhook.send(payload | {"ts": format_ns(ts_ns)})

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
