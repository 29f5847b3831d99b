"""The runner's decisions: a feature row through the model to a signal, for the strategy.

The signal is what the backtester builds from the same row (flows/backtest.py ``signals``): the
calibrated probabilities, the direction by the model's thresholds and the per-second volatility
(``features.grid.sigma_1s``). A newly promoted model swaps in between decisions: the strategy
keeps its orders and state, and takes the new model's horizon and dead zone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from execution.strategy import Signal, Strategy
from features import NAMES
from features.grid import sigma_1s
from models.model import StackedModel

VOL = NAMES.index("rv_300s_bps")


@dataclass
class Loaded:
    """A model as the loop uses it: the model, its version and its columns in the catalog."""

    model: StackedModel
    version: str
    columns: np.ndarray
    created_ns: int | None = None  # when the version was registered (None: not from the registry)

    @classmethod
    def of(cls, model: StackedModel, version: str, created_ns: int | None = None) -> Loaded:
        return cls(model, version, model.columns_for(NAMES), created_ns)


class Decide:
    """The model in use and the strategy it signals to."""

    def __init__(self, model: Loaded, strategy: Strategy) -> None:
        self.m, self.strategy = model, strategy

    def signal(self, g: int, x: np.ndarray) -> Signal:
        """The signal of the row at grid time ``g`` (``x``: the whole catalog's vector)."""
        model = self.m.model
        proba = model.predict_proba(x[self.m.columns])
        direction = int(model.signal(proba)[0])
        return Signal(g, float(proba[0, 0]), float(proba[0, 1]), direction, sigma_1s(float(x[VOL])))

    def swap(self, model: Loaded) -> str:
        """Trade ``model`` from the next decision on; returns the version it replaces."""
        old, self.m = self.m.version, model
        s = self.strategy
        if model.model.horizon_ns != s.params.horizon_ns:
            s.params = replace(s.params, horizon_ns=model.model.horizon_ns)
        horizon_s = model.model.horizon_ns / 1e9  # the Kelly bet is the new model's
        s.sizing = replace(s.sizing, tau=model.model.tau, horizon_s=horizon_s)
        return old

    def thresholds(self) -> dict[str, float]:
        """The operating thresholds in use (a study's may differ from the registered model's)."""
        return {"up": self.m.model.threshold_up, "down": self.m.model.threshold_down}
