"""Prefect flows: thin wrappers over importable functions. Nothing imports this package."""

import os
from pathlib import Path

# Keep Prefect's local state (ephemeral API database, logs) inside the project unless the user
# points it elsewhere (PREFECT_HOME or PREFECT_API_URL for a real Prefect server).
os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parent.parent / ".prefect"))
# offline by design: no telemetry calls to the internet
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
