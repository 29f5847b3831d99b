"""What every flow's command line shares: the parser, and turning a failed flow run into one line."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli import add_config_argument
from core.errors import UserError


class FlowFailedError(UserError):
    """A flow run ended Failed: its message is the one line, its exit code the task's."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def raise_if_failed(state: Any, what: str) -> None:
    """Raise FlowFailedError for a Failed state (the task put its exit code in the state's data)."""
    if state.is_failed():
        data = state.data
        if not isinstance(data, dict):  # a state from a flow run carries its data as a result record
            try:
                data = state.result(raise_on_failure=False)
            except Exception:  # no readable result: the generic code
                data = {}
        code = data.get("exit_code", 3) if isinstance(data, dict) else 3
        raise FlowFailedError(state.message or f"{what} failed", int(code))


def parser(module: str, doc: str | None, verbose: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the module's docstring as help, ``--config`` and ``-v``."""
    p = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_argument(p)
    if verbose:
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p
