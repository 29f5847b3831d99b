"""Execution: one matching engine for backtest and paper trading, strategies, sizing, risk, quality.

- ``engine``: ``Engine`` (numba kernels in ``kernel``, ``queue``, ``records``), fed ``Market``
  (``market``) in blocks or event by event; the local view a strategy reads is the ``Gateway`` protocol
- ``strategy``: ``Baseline`` and ``Passive`` on a target position; ``sizing`` and ``risk`` behind them
- ``backtest``: the driver that runs a strategy on recorded blocks and model ``Signals``
- ``quality`` / ``report`` / ``comparison``: the execution metrics, the HTML report, side by side
- ``types``: the shared records (fills, orders, parents, equity) and the engine's configuration
"""

from execution.backtest import Signals, engine_config, make_strategy, replay
from execution.engine import Engine, Wake
from execution.market import Market, market_data
from execution.quality import RunRecord, metrics
from execution.risk import RiskLimits, RiskManager, RiskState
from execution.sizing import SizingParams, size
from execution.strategy import Baseline, Passive, Signal, Strategy, StrategyParams
from execution.types import EngineConfig, Fees, OrderKind, OrderStatus, QueueModel, Side
from execution.venue import BookView, Gateway, OpenOrder

__all__ = [
    "Baseline",
    "BookView",
    "Engine",
    "EngineConfig",
    "Fees",
    "Gateway",
    "Market",
    "OpenOrder",
    "OrderKind",
    "OrderStatus",
    "Passive",
    "QueueModel",
    "RiskLimits",
    "RiskManager",
    "RiskState",
    "RunRecord",
    "Side",
    "Signal",
    "Signals",
    "SizingParams",
    "Strategy",
    "StrategyParams",
    "Wake",
    "engine_config",
    "make_strategy",
    "market_data",
    "metrics",
    "replay",
    "size",
]
