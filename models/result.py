"""What training found: the held-out scores, each direction's operating point and its evidence.

Plain records (models/ knows no execution engine): pipelines/training.py fills them, the registry
logs them, the diagnostics plot them and promotion reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from core.config import TrainingConfig
from models.metrics import NEVER, Choice, Scores, metric_key
from models.model import StackedModel


class Evidence(NamedTuple):
    """How much a trading decision needs: ``training.min_orders`` orders, ``training.threshold_z``
    standard errors above zero (the config is the one truth: ``Evidence.of(cfg.training)``)."""

    min_orders: int
    z: float

    @classmethod
    def of(cls, t: TrainingConfig) -> Evidence:
        return cls(t.min_orders, t.threshold_z)


class Cost(NamedTuple):
    cost: float  # per round trip, log-return units; NaN when not measured
    entries: int  # entry orders in the run
    filled: int  # of which filled (round trips)
    label_mean: float  # the labels' mean signed return at the entry decisions
    realized_mean: float  # the mean net return per filled round trip
    se: float  # of the cost: label minus realized over the filled round trips, iid
    needed: int  # filled round trips it needs to count as measured (Evidence.min_orders)

    @property
    def measured(self) -> bool:
        return self.filled >= self.needed and bool(np.isfinite(self.cost))


class Confirmation(NamedTuple):
    ok: bool
    n: int  # entry orders (or signalled rows, confirming by the labels)
    ev: float  # mean net return per order (log-return units)
    se: float
    why: str  # one phrase: what the test found


@dataclass
class Operating:
    """How one direction's operating threshold came about (or why it never trades)."""

    skill: bool  # the held-out AUC's interval lies above 0.5
    threshold: float  # the model's threshold: NEVER unless skilled, chosen and confirmed
    candidate: float = NEVER  # what the search chose on the first part of the calibration block
    choice: Choice | None = None
    cost: Cost | None = None  # measured by the engine (None: the nominal cost was used)
    nominal_cost: float = float("nan")
    confirmation: Confirmation | None = None
    why: str = ""


@dataclass
class TrainResult:
    model: StackedModel
    scores: dict[str, dict[str, Scores]]  # direction -> learner (lgb, xgb, stack) -> scores
    rows: dict[str, int]
    verdict: list[str] = field(default_factory=list)
    operating: dict[str, Operating] = field(default_factory=dict)
    distinct: dict[str, int] = field(default_factory=dict)  # direction -> distinct outputs on the test block

    @property
    def trades(self) -> bool:
        """Whether the procedure found an edge: some direction has skill and a confirmed threshold.

        This is the gate a falsification run counts (flows/falsify.py) and promotion requires
        (flows.promote.skill_gate)."""
        return self.model.trades

    def metrics(self) -> dict[str, float]:
        """Held-out figures by MLflow name (``up_stack/auc``, ``rows/test``: models.metrics.metric_key),
        and the operating point's evidence (``up_stack/skill``, ``up_stack/cost_bps``,
        ``up_stack/confirm_n``, ``up_stack/confirm_ev_bps``, ``up_stack/confirm_se_bps``, ...)."""
        out: dict[str, float] = {f"rows/{k}": float(v) for k, v in self.rows.items()}
        for d, learners in self.scores.items():
            for name, s in learners.items():
                out.update(s.as_dict(d, name))
        for d, o in self.operating.items():

            def key(figure: str, d: str = d) -> str:
                return metric_key(d, "stack", figure)

            out[key("skill")] = float(o.skill)
            out[key("distinct")] = float(self.distinct.get(d, 0))
            out[key("candidate")] = o.candidate
            if o.choice is not None:
                out[key("choice_signals")] = float(o.choice.signals)
                out[key("choice_orders")] = float(o.choice.bets)
                out[key("choice_ev_bps")] = o.choice.per_bet * 1e4
                out[key("choice_se_bps")] = o.choice.se * 1e4
            if o.cost is not None:
                out[key("cost_bps")] = o.cost.cost * 1e4
                out[key("cost_n")] = float(o.cost.filled)
                out[key("cost_se_bps")] = o.cost.se * 1e4
                out[key("cost_entries")] = float(o.cost.entries)
            elif np.isfinite(o.nominal_cost):
                out[key("cost_bps")] = o.nominal_cost * 1e4
            if o.confirmation is not None:
                out[key("confirm_n")] = float(o.confirmation.n)
                out[key("confirm_ev_bps")] = o.confirmation.ev * 1e4
                out[key("confirm_se_bps")] = o.confirmation.se * 1e4
                out[key("confirmed")] = float(o.confirmation.ok)
        return out

    def tags(self) -> dict[str, str]:
        """Run tags: what serves each direction (``up_serves``: stack, lgb or xgb) and whether it trades."""
        out = {}
        for d in self.scores:
            stack = self.model.up if d == "up" else self.model.down
            out[f"{d}_serves"] = stack.serves
            o = self.operating.get(d)
            out[f"{d}_trades"] = "yes" if o is not None and o.threshold < NEVER else "no"
        return out


def verdict(scores: dict[str, dict[str, Scores]]) -> list[str]:
    """Plain sentences: does the stack beat each base learner, does it cut false positives?"""
    lines = []
    for d, s in scores.items():
        st = s["stack"]
        for base in ("lgb", "xgb"):
            b = s[base]
            better = st.log_loss < b.log_loss
            lines.append(
                f"{d}: the stack {'beats' if better else 'does NOT beat'} {base} on held-out log loss "
                f"({st.log_loss:.4f} vs {b.log_loss:.4f}; AUC {st.auc:.3f} vs {b.auc:.3f})"
            )
        lg = s["lgb"]
        if np.isnan(st.fpr) or np.isnan(lg.fpr):
            lines.append(f"{d}: false positives cannot be compared (no negatives in the test block)")
        else:
            cut = st.fpr < lg.fpr
            lines.append(
                f"{d}: at their operating points the stack {'cuts' if cut else 'does NOT cut'} false positives "
                f"against a single LightGBM ({st.fpr:.4f} vs {lg.fpr:.4f}; {st.signals} vs {lg.signals} signals, "
                f"precision {st.precision:.3f} vs {lg.precision:.3f})"
            )
    return lines
