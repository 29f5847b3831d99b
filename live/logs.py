"""The runner's logs: plain lines on stderr, JSON lines in ``live.log_dir``/runner-<account>.log
(rotated; the account is the journal's name, ``runner-paper-bybit.log`` by default).

A JSON line per record (time, level, logger, message, and any ``extra`` fields) is what a log
shipper or ``jq`` reads; the rotation keeps ``live.log_backups`` files of ``live.log_max_bytes``.
Secrets never get here: the runner never formats a key or a signed request into a message.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path

from core.cli import setup_logging
from core.config import AppConfig
from warehouse.journal import log_path

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_runner_logging(cfg: AppConfig, journal: Path, verbose: bool = False) -> Path:
    """Console lines plus the rotated JSON file of the account whose journal is ``journal``;
    returns the file's path."""
    setup_logging(verbose)
    lc = cfg.live
    path = log_path(cfg.resolve(lc.log_dir), journal)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.handlers.RotatingFileHandler) and Path(h.baseFilename) == path:
            root.removeHandler(h)
            h.close()
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=lc.log_max_bytes, backupCount=lc.log_backups)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, handler.level))
    return path
