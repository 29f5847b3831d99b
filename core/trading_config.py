"""Config sections of the trading side: the matching engine, the strategies, sizing, risk, backtests.

The same sections drive the backtester and the live runner, so a backtest and a paper run of one
config trade by the same rules. Fees come from ``labels`` (the maker / taker fees the labels'
dead zone is built on): one place for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.sections import DurationNs, Section
from core.timefmt import parse_duration_ns


class ExecutionConfig(Section):
    """The matching engine shared by the backtester and the paper broker (REFERENCE section 2)."""

    entry_latency: DurationNs = parse_duration_ns("5ms")  # our request -> the exchange
    response_latency: DurationNs = parse_duration_ns("5ms")  # the exchange -> our report
    queue_model: Literal["prob", "risk_averse"] = "prob"  # risk_averse: every cancel is behind us
    queue_power: float = Field(2.0, ge=1, le=10)  # n in p_front = 1 - (front / (front + back))^n
    rate_limit: int = Field(10, ge=1)  # order requests per rate_window (Bybit linear: about 10/s)
    rate_window: DurationNs = parse_duration_ns("1s")
    funding_rate: float = Field(0.0001, gt=-0.01, lt=0.01)  # per funding interval; longs pay when > 0
    funding_interval: DurationNs = parse_duration_ns("8h")


class StrategyConfig(Section):
    """How a model signal becomes orders (execution/strategy.py)."""

    decision_delay: DurationNs = parse_duration_ns("10ms")  # features + prediction after the grid time
    baseline_fraction: float = Field(0.05, gt=0, le=1)  # baseline: fixed share of equity per trade
    improve_confidence: float = Field(0.6, gt=0, le=1)  # passive: from here, quote one tick inside
    cross_confidence: float = Field(0.85, gt=0, le=1)  # passive: only from here, take liquidity
    order_timeout: DurationNs = parse_duration_ns("10s")  # an unfilled entry is cancelled after this
    exit_timeout: DurationNs = parse_duration_ns("5s")  # a passive exit crosses the spread after this
    reprice_ticks: int = Field(1, ge=1)  # requote when the best moves this far from our price
    fade_ratio: float = Field(0.5, ge=0, le=1)  # drop an entry when its probability falls below this x its start

    @model_validator(mode="after")
    def _order(self) -> StrategyConfig:
        if self.cross_confidence < self.improve_confidence:
            raise ValueError("cross_confidence must be at least improve_confidence")
        return self


class SizingConfig(Section):
    """Depth-aware sizing: the minimum of four limits (REFERENCE section 3)."""

    kelly_fraction: float = Field(0.25, gt=0, le=1)  # of the full Kelly leverage mu / sigma^2
    vol_target: float = Field(0.5, gt=0)  # annualized volatility of the position, as a share of equity
    depth_fraction: float = Field(0.05, gt=0, le=1)  # of the visible depth within depth_bps of mid
    depth_bps: float = Field(10.0, gt=0)


class RiskConfig(Section):
    """Checked before every order (execution/risk.py)."""

    max_position_btc: float = Field(1.0, gt=0)
    max_notional: float = Field(100_000.0, gt=0)  # USDT
    daily_loss_limit: float = Field(0.03, gt=0, lt=1)  # share of the day's starting equity: then HALTED
    reduce_drawdown: float = Field(0.03, gt=0, lt=1)  # from the equity peak: REDUCING (no new exposure)
    halt_drawdown: float = Field(0.05, gt=0, lt=1)  # HALTED: cancel-only
    stale_after: DurationNs = parse_duration_ns("2s")  # no book update for this long: no new orders
    max_spread_bps: float = Field(5.0, gt=0)
    min_depth_btc: float = Field(0.5, ge=0)  # within sizing.depth_bps, on the side we would trade

    @model_validator(mode="after")
    def _levels(self) -> RiskConfig:
        if self.halt_drawdown < self.reduce_drawdown:
            raise ValueError("halt_drawdown must be at least reduce_drawdown")
        return self


class BacktestConfig(Section):
    """python -m flows.backtest."""

    equity: float = Field(100_000.0, gt=0)  # starting equity, USDT
    out: Path = Path("reports/backtest")  # one folder per run inside
    sample: DurationNs = parse_duration_ns("1s")  # equity curve sampling


class LiveConfig(Section):
    """python -m live.runner: the journal, logs, model refresh and the kill switch (live/)."""

    journal_dir: Path = Path("logs/journal")  # one SQLite journal per account: <mode>-<source>.sqlite
    journal_sync: Literal["full", "normal"] = "full"  # full: every acknowledged record survives a power cut
    log_dir: Path = Path("logs")
    log_max_bytes: int = Field(10_000_000, ge=10_000)  # runner.log rotates at this size
    log_backups: int = Field(5, ge=1)
    status_interval: DurationNs = parse_duration_ns("10s")  # one status line this often
    model_poll: DurationNs = parse_duration_ns("30s")  # how often the champion alias is re-read
    max_model_age: DurationNs = parse_duration_ns("7d")  # refuse to trade an older model
    equity: float = Field(100_000.0, gt=0)  # paper: the starting cash of a new journal
    feed_silence: DurationNs = parse_duration_ns("5s")  # no market data this long: HALTED
    invalid_book: DurationNs = parse_duration_ns("5s")  # no valid book this long: HALTED
    error_burst: int = Field(5, ge=1)  # exchange errors within burst_window: HALTED
    rate_limit_burst: int = Field(3, ge=1)  # rate-limit answers within burst_window: HALTED
    burst_window: DurationNs = parse_duration_ns("60s")
    slippage_window: int = Field(50, ge=1)  # fills in the rolling slippage / markout figures
    slippage_alert_bps: float = Field(3.0, gt=0)  # rolling arrival slippage above this: an alert line
    markouts: tuple[DurationNs, ...] = tuple(parse_duration_ns(x) for x in ("1s", "10s", "60s"))  # of the monitor
    replay_speed: float = Field(0.0, ge=0)  # --source replay: 0 as fast as possible, 1 live pace
    replay_chunk: DurationNs = parse_duration_ns("1h")  # --source replay reads the stored market this much at a time

    @model_validator(mode="after")
    def _chunk(self) -> LiveConfig:
        if self.replay_chunk <= 0:
            raise ValueError("replay_chunk must be a positive duration")
        return self


class MonitorConfig(Section):
    """Alerts, the dashboard and the operational checks (live/alerts.py, live/dashboard, live/diagnose.py).

    An alert is a log line, a journal record (the dashboard's banner) and, when a webhook URL is
    set, a JSON POST. The URL may carry a token: ``ALERT_WEBHOOK_URL`` in the environment wins over
    ``webhook_url`` and it is never logged."""

    drift_psi: float = Field(0.25, gt=0)  # alert when a feature's population stability index passes this
    drift_window: int = Field(3600, ge=10)  # live decisions the PSI is taken over (the newest)
    drift_min: int = Field(300, ge=10)  # no PSI (and no drift alert) before this many decisions
    drift_ignore: tuple[str, ...] = ()  # features shown on the dashboard but never alerted on (e.g. price-level ones)
    stale_data: DurationNs = parse_duration_ns("2s")  # no market data this long: an alert (live.feed_silence halts)
    drawdown: float = Field(0.02, gt=0, lt=1)  # equity this far under its peak: an alert (HALTED: risk.halt_drawdown)
    webhook_url: str = ""  # optional: POST {"text", "what", "value", "threshold"} per alert
    webhook_timeout: DurationNs = parse_duration_ns("5s")
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8050, ge=1, le=65535)
    dashboard_refresh: DurationNs = parse_duration_ns("5s")  # the page re-reads its figures this often
    warehouse_stale: DurationNs = parse_duration_ns("10m")  # diagnose: an older newest book update fails
    gap_window: DurationNs = parse_duration_ns("24h")  # diagnose: book gaps counted over this much recent data
    max_clock_offset: DurationNs = parse_duration_ns("500ms")  # diagnose: local clock against the exchange's
    min_free_disk_gb: float = Field(2.0, ge=0)  # diagnose: free space under the warehouse, mlruns and logs
