"""The built-in market simulator: a queue-reactive BTC-perpetual order book speaking Bybit v5.

    from sim import MarketSimulator
    sim = MarketSimulator(cfg.sim, cfg.instrument, depth=50)
    for batch in sim.batches(duration_ns=3_600 * 10**9):
        ...  # lists of RawMessage, exactly what the Bybit WebSocket would deliver

``python -m sim compare`` compares its stylized facts with the real recordings.
"""

from sim.simulator import MarketSimulator

__all__ = ["MarketSimulator"]
