"""Choosing a strategy by name: the short names, a desk's own ``module:Name``, one-line errors."""

from __future__ import annotations

import pytest

from core.errors import UserError
from execution.loader import load_strategy
from execution.strategy import Baseline, Passive


class Patient(Passive):
    """A desk's strategy in its own module: the passive one, never crossing the spread."""


NOT_A_STRATEGY = 3


def test_short_names_and_module_names_load_strategy_classes() -> None:
    assert load_strategy("baseline") is Baseline
    assert load_strategy("passive") is Passive
    assert load_strategy("tests.test_loader:Patient") is Patient
    assert load_strategy("execution.strategy:Passive") is Passive


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("aggressive", "one of baseline, passive or module:Name"),
        ("no_such_module_here:Thing", "cannot import module 'no_such_module_here'"),
        ("tests.test_loader:Missing", "has no 'Missing'"),
        ("tests.test_loader:NOT_A_STRATEGY", "is not a Strategy subclass"),
        ("tests.test_loader:UserError", "is not a Strategy subclass"),
        (":Patient", "module:Name"),
    ],
)
def test_a_bad_strategy_name_is_one_line(spec: str, why: str) -> None:
    with pytest.raises(UserError) as err:
        load_strategy(spec)
    assert why in str(err.value) and "\n" not in str(err.value)
