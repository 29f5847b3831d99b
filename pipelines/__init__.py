"""The jobs: build features and labels, train, backtest, promote, check predictions.

The library layer between the flows (thin Prefect wrappers) and the rooms they drive: storage
(warehouse), models and execution. Nothing here imports Prefect; bench and tests call it directly.
"""
