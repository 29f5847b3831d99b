"""The chaos soak's fault schedule: every fault the stand-in knows and SIGKILLs of the ingest and
the runners, at random but seeded times (numpy's Generator), each with its parameters."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from standin.faults import FAULTS
from standin.private import PRIVATE_FAULTS

KILLED = ("ingest", "runner", "runner-standin")  # the long processes the soak SIGKILLs
STALL_S = (2.0, 12.0)  # a stall's length (wall clock): shorter and longer than ingest.stall_timeout (10 s)
TIMED_S = (3.0, 15.0)  # reject_orders and rate_limit: how long
COUNTED_ON = ("create", "cancel", "amend", "open_orders", "position", "executions", "wallet")


@dataclass(frozen=True)
class Fault:
    """One planned fault: ``at_s`` wall seconds after the box is up; ``kind`` a FAULTS key or
    ``kill:<service>``; ``seconds`` / ``on`` / ``count`` as ``POST /_standin/fault`` takes them."""

    at_s: float
    kind: str
    seconds: float = 0.0
    on: str | None = None
    count: int = 1

    @property
    def killed(self) -> str | None:
        """The service a kill is for (None for a stand-in fault)."""
        return self.kind.removeprefix("kill:") if self.kind.startswith("kill:") else None

    @property
    def lasts_s(self) -> float:
        """How long the fault acts (0 for the ones that act once)."""
        return self.seconds if self.kind in ("stall", "reject_orders", "rate_limit") else 0.0

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /_standin/fault``."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.lasts_s:
            out["seconds"] = self.seconds
        if self.on is not None:
            out["on"], out["count"] = self.on, self.count
        return out

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def plan(seed: int, run_s: float, sim_hours: float, killed: tuple[str, ...] = KILLED) -> list[Fault]:
    """Every stand-in fault kind once per simulated hour (at least once) and one SIGKILL of each
    ``killed`` service per four simulated hours (at least one), over ``run_s`` wall seconds.

    The run is cut into as many equal slots as there are faults, one fault at a random point of the
    first half of each (so two faults are at least half a slot apart and each can be told from the
    next), the kinds shuffled over the slots. The first 10 % of the run is left quiet (the box
    settles) and the last 15 % too (the last faults' recoveries are watched). Kills fall in the
    first third of the run: the incarnation supervisord starts after one then lives long enough
    for its memory to be judged. Deterministic for a seed."""
    if not (run_s > 0 and sim_hours > 0):
        raise ValueError("the run needs a positive length")
    rng = np.random.default_rng(seed)
    per_kind = max(1, round(sim_hours))
    kills = max(1, math.floor(sim_hours / 4))
    kinds = [k for k in FAULTS for _ in range(per_kind)]
    deaths = [f"kill:{s}" for s in killed for _ in range(kills)]
    t0, t1 = 0.10 * run_s, 0.85 * run_s
    n = len(kinds) + len(deaths)
    slot = (t1 - t0) / n
    starts = t0 + slot * np.arange(n)
    early = np.flatnonzero(starts < run_s / 3)
    if len(early) < len(deaths):
        raise ValueError(f"a run of {run_s:.0f} s has no room for {len(deaths)} kills in its first third")
    kill_slots = rng.choice(early, size=len(deaths), replace=False)
    rest = np.setdiff1d(np.arange(n), kill_slots)
    order = rng.permutation(len(kinds))
    out: list[Fault] = []
    for s, kind in zip(kill_slots, deaths, strict=True):
        out.append(Fault(float(starts[s] + rng.uniform(0, slot / 2)), kind))
    for s, k in zip(rest, order, strict=True):
        out.append(_params(kinds[int(k)], float(starts[s] + rng.uniform(0, slot / 2)), rng))
    return sorted(out, key=lambda f: f.at_s)


def _params(kind: str, at_s: float, rng: np.random.Generator) -> Fault:
    if kind == "stall":
        return Fault(at_s, kind, seconds=round(float(rng.uniform(*STALL_S)), 1))
    if kind in ("reject_orders", "rate_limit"):
        return Fault(at_s, kind, seconds=round(float(rng.uniform(*TIMED_S)), 1))
    if kind == "fill_after":
        return Fault(at_s, kind, on="position", count=1)
    if kind in PRIVATE_FAULTS:
        return Fault(at_s, kind, on=str(rng.choice(COUNTED_ON)), count=int(rng.integers(1, 4)))
    return Fault(at_s, kind)
