"""The model the runner trades: the registry's champion (or a chosen version), refused when unfit.

A model is refused when its feature set differs from the online feature engine's or when it is
older than ``live.max_model_age``; an execution study (``--threshold``) overrides its thresholds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from core.config import AppConfig
from core.errors import UnavailableError, UserError
from features import feature_set_for
from live.decide import Loaded

log = logging.getLogger("live.runner")


def wait_for_champion(cfg: AppConfig, limit_ns: int | None) -> bool:
    """Block until the registry has a champion (True), or ``limit_ns`` has passed (False).

    A runner kept up around the clock (a supervisor restarts what exits) waits for the first model
    with skill instead of exiting: it says so once, then checks every ``live.model_poll``."""
    from models import registry

    def champion() -> tuple[bool, str]:
        try:
            return registry.version_for(cfg, registry.CHAMPION) is not None, ""
        except UnavailableError as exc:  # a fresh box: nothing trained yet, so no registry either
            return False, f" ({exc})"

    found, why = champion()
    if found:
        return True
    poll_s = cfg.live.model_poll / 1e9
    name = cfg.mlflow.model_name
    print(f"no champion with skill in {name}{why}: waiting for one (checked every {poll_s:g} s; Ctrl-C stops)",
          flush=True)  # fmt: skip
    end = None if limit_ns is None else time.monotonic_ns() + limit_ns
    while end is None or time.monotonic_ns() < end:
        # never past the limit: a --duration shorter than the poll gives up when it says
        time.sleep(poll_s if end is None else max(0.0, min(poll_s, (end - time.monotonic_ns()) / 1e9)))
        if champion()[0]:
            return True
    return False


def load_model(cfg: AppConfig, uri: str | None, now_ns: int, threshold: float | None = None) -> Loaded:
    """The model to trade, refused on a feature-set mismatch or when older than the configured age."""
    from models import registry

    if uri is None and registry.version_for(cfg, registry.CHAMPION) is None:
        raise UserError(registry.NO_CHAMPION.format(name=cfg.mlflow.model_name))
    version, _ = registry.resolve(cfg, uri)
    model = registry.load_version(cfg, version)
    created = registry.version_created_ns(cfg, version)
    check_model(cfg, model.feature_set, created, version, now_ns)
    if threshold is None and not model.trades:  # set by hand, or promoted before the skill gate
        log.warning("model version %s trades in neither direction (no skill): no order will be sent", version)
    if threshold is not None:
        model = replace(model, threshold_up=threshold, threshold_down=threshold)
    return Loaded.of(model, version, created)


def check_model(cfg: AppConfig, feature_set: str, created_ns: int, version: str, now_ns: int) -> None:
    ours = feature_set_for(cfg.features.digest(), cfg.instrument.tick_size)
    if feature_set != ours:
        raise UserError(
            f"model version {version} was trained on feature set {feature_set}; this runner computes {ours}"
        )
    age = now_ns - created_ns
    if age > cfg.live.max_model_age:
        raise UserError(
            f"model version {version} is {age / 86_400e9:.1f} days old (live.max_model_age "
            f"{cfg.live.max_model_age / 86_400e9:.1f} days): train and promote a fresh one"
        )
