"""Market-data sources: recorded files, the simulator, Bybit via ccxt.pro."""
