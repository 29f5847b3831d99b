"""Where the box's state lives (``make up``, ops/box.py): what every command may need to find.

``L2_BOX`` (default ``<repo>/.box``) holds the supervisor's socket path, pid and rendered config,
and ``prefect-url``: the persistent Prefect server the box runs, which the flow commands report
to instead of starting a temporary server of their own (flows/common.py ``persistent_server``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def box_dir() -> Path:
    return Path(os.environ.get("L2_BOX") or REPO / ".box")


def box_prefect_url() -> str | None:
    """The box's Prefect API URL, when a box was brought up here (it may be down since)."""
    try:
        return (box_dir() / "prefect-url").read_text().strip() or None
    except OSError:
        return None
