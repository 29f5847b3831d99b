"""Named simulator markets: overrides of ``sim.model`` (config.yaml) by name.

- ``calibrated``: config.yaml's own model, calibrated against the real recordings
  (docs/simulator.md). Its metaorders tilt order flow a little (``meta_tilt`` 0.08): a model finds
  some ranking in it, but not enough after fees to trade (the demo then crowns no champion).
- ``no-edge``: metaorders still start but tilt nothing: order signs carry no information about
  the next tens of seconds. The falsification null (``python -m flows.falsify --null market``).
- ``planted``: a market with an edge planted larger than the costs (docs/models.md,
  "Falsification"): frequent one-minute metaorders at the largest tilt, in a market with more
  order flow, whose depletions step the price far (``pullback_ticks``). The mid moves about
  +29 bp (95 % interval +21 to +36, 266 metaorders in 2 h, seed 3) over the 30 s after a
  metaorder is first seen, against a passive round trip of 5-13 bp as the engine measured it.
  What ``python -m flows.falsify --planted`` measures the pipeline's power on, and the demo's
  default market: a market where the research loop should find money, so the demo shows a
  champion, its thresholds and an execution study with enough orders. It is not the real market;
  ``python -m flows.demo --market calibrated`` runs the calibrated one.
"""

from __future__ import annotations

from typing import Any

CALIBRATED: dict[str, Any] = {}
NO_EDGE: dict[str, Any] = {"meta_tilt": 0.0}
PLANTED: dict[str, Any] = {
    "meta_tilt": 0.45,
    "meta_rate": 2.0,
    "meta_duration": "60s",
    "market_rate": 100.0,
    "pullback_ticks": 100.0,
}
MARKETS: dict[str, dict[str, Any]] = {"planted": PLANTED, "calibrated": CALIBRATED, "no-edge": NO_EDGE}
ABOUT: dict[str, str] = {
    "planted": "an edge planted larger than the costs, so the research loop has something to find",
    "calibrated": "calibrated against the real recordings (config.yaml as it is)",
    "no-edge": "order flow without information about the next tens of seconds (nothing to find)",
}
