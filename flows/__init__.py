"""Prefect flows: thin wrappers over importable functions. Every flow module imports this package
first, for the settings below (before prefect itself is imported)."""

import os
from pathlib import Path

from core.cli import TRANSLATORS
from core.errors import UnavailableError, UserError

# An empty PREFECT_API_URL (``export PREFECT_API_URL=`` to clear it) means none: Prefect would start a
# temporary server for the run but send its events to the empty URL, and log a traceback for each.
if "PREFECT_API_URL" in os.environ and not os.environ["PREFECT_API_URL"].strip():
    del os.environ["PREFECT_API_URL"]
# Keep Prefect's local state (ephemeral API database, logs) inside the project unless the user
# points it elsewhere (PREFECT_HOME or PREFECT_API_URL for a real Prefect server).
os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parent.parent / ".prefect"))
# offline by design: no telemetry calls to the internet
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A flow command without a Prefect server to report to starts a temporary one and waits for it to
# answer: Prefect's 20 s were too short on a loaded 2-core machine (`make demo` beside a CI run
# failed 2 of 3 times), so wait up to two minutes unless the user says otherwise.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

_NO_TEMPORARY_SERVER = "Timed out while attempting to connect to ephemeral Prefect API server"


def _temporary_server_unavailable(exc: Exception) -> UserError | None:
    """Prefect's own error when its temporary server did not answer in time, as one line (exit 4)."""
    if not (isinstance(exc, RuntimeError) and str(exc).startswith(_NO_TEMPORARY_SERVER)):
        return None
    waited = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return UnavailableError(
        f"the temporary Prefect server this command starts did not answer within {waited} s (a busy machine?): "
        "start a persistent one (make prefect-ui) or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    )


_UNREACHABLE_API = "Failed to reach API at "


def _api_unreachable(exc: Exception) -> UserError | None:
    """Prefect's error when the server PREFECT_API_URL names does not answer, as one line (exit 4)."""
    if not (isinstance(exc, RuntimeError) and str(exc).startswith(_UNREACHABLE_API)):
        return None
    url = str(exc).removeprefix(_UNREACHABLE_API).strip()
    return UnavailableError(
        f"no Prefect server answers at {url} (PREFECT_API_URL): start it (make prefect-ui, or make up), "
        "or unset PREFECT_API_URL and the command starts a temporary one"
    )


TRANSLATORS.extend([_temporary_server_unavailable, _api_unreachable])
