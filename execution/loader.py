"""Choose a strategy by name: a short name (``baseline``, ``passive``) or ``module:Name``, a
``Strategy`` subclass a desk wrote in its own module (docs/strategies.md)."""

from __future__ import annotations

import importlib

from core.errors import UserError
from execution.strategy import Baseline, Passive, Strategy

SHORT_NAMES: dict[str, type[Strategy]] = {"baseline": Baseline, "passive": Passive}


def load_strategy(spec: str) -> type[Strategy]:
    """The strategy class ``spec`` names; a UserError of one line when it names none."""
    if spec in SHORT_NAMES:
        return SHORT_NAMES[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"strategy {spec!r}: one of {', '.join(SHORT_NAMES)} or module:Name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"strategy {spec!r}: cannot import module {module_name!r} ({exc})") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise UserError(f"strategy {spec!r}: module {module_name!r} has no {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise UserError(f"strategy {spec!r}: {attr!r} is not a Strategy subclass (execution.strategy.Strategy)")
    return cls
