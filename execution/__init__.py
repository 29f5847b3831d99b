"""Execution: one matching engine for backtest and paper trading, strategies, sizing, risk, quality."""
