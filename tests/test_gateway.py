"""Both runner gateways implement the whole protocol: mypy --strict checks the assignments below,
the test checks every member at run time (a Protocol is not checked by isinstance)."""

from __future__ import annotations

import inspect

from core.config import AppConfig
from execution.venue import Gateway
from live.bybit_gateway import BybitGateway
from live.gateway import RunnerGateway
from live.paper import PaperGateway
from tests.conftest import ConfigFactory

NS = 1_000_000_000


def _members(*protocols: type) -> set[str]:
    out: set[str] = set()
    for p in protocols:
        out |= {n for n in vars(p) if not n.startswith("_")} | set(inspect.get_annotations(p))
    return out


def test_the_paper_and_the_bybit_gateway_are_runner_gateways(make_config: ConfigFactory) -> None:
    cfg: AppConfig = make_config()
    paper: RunnerGateway = PaperGateway(cfg, None, 0, NS)
    live: RunnerGateway = BybitGateway(cfg, "key", "secret", "run")
    for_strategies: list[Gateway] = [paper, live]  # what a strategy talks to
    members = _members(Gateway, RunnerGateway)
    assert {"submit", "now", "on_tick", "run_to", "ready_until", "begin", "pause", "sync", "errors"} <= members
    for gw in for_strategies:
        missing = sorted(n for n in members if not hasattr(gw, n))
        assert missing == [], f"{type(gw).__name__} lacks {missing}"
