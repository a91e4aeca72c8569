"""The champion/challenger gate and overrides as pure functions."""

import datetime as dt
import math

import pytest

from batch_ml.platform.registry.gate import (
    ChampionState,
    Override,
    OverrideError,
    apply_overrides,
    champion_on,
    decide,
)

BASELINES = {"seasonal_naive": 0.60, "moving_average": 0.55}
MARGIN = 0.02


def scores(**wapes):
    return {**BASELINES, **wapes}


def test_the_first_valid_model_becomes_champion():
    d = decide(ChampionState(), "a", scores(a=0.50), MARGIN)
    assert (d.decision, d.state.champion) == ("promoted", "a")


def test_a_better_challenger_is_promoted_and_the_old_champion_kept_for_rollback():
    d = decide(ChampionState("a"), "b", scores(a=0.50, b=0.45), MARGIN)
    assert d.decision == "promoted"
    assert d.state == ChampionState("b", pinned=False, previous="a")


@pytest.mark.parametrize(
    ("challenger", "why"),
    [
        (0.52, "worse than the champion"),
        (0.495, "better, but by less than the margin"),
        (math.nan, "not finite"),
    ],
)
def test_a_challenger_that_does_not_clearly_beat_the_champion_is_kept_out(challenger, why):
    d = decide(ChampionState("a"), "b", scores(a=0.50, b=challenger), MARGIN)
    assert d.decision == "rejected", why
    assert d.state.champion == "a"


def test_a_challenger_must_beat_every_baseline_even_without_a_champion():
    d = decide(ChampionState(), "a", scores(a=0.57), MARGIN)
    assert d.decision == "rejected" and "moving_average" in d.reason
    assert d.state.champion is None


def test_a_pinned_champion_is_held_against_a_better_challenger():
    d = decide(ChampionState("a", pinned=True), "b", scores(a=0.50, b=0.30), MARGIN)
    assert (d.decision, d.state.champion) == ("held", "a")


def test_overrides_apply_in_effective_order_inside_the_window():
    monday = dt.date(2025, 4, 21)
    overrides = [
        Override(monday + dt.timedelta(days=3), "rollback"),
        Override(monday + dt.timedelta(days=1), "pin", "x"),
        Override(monday + dt.timedelta(days=9), "unpin"),
    ]
    start = ChampionState("b", previous="a")
    assert champion_on(monday, start, monday, overrides) == start
    assert champion_on(monday + dt.timedelta(days=2), start, monday, overrides).champion == "x"
    # The rollback goes back to the champion before the pin, and unpins.
    rolled = champion_on(monday + dt.timedelta(days=5), start, monday, overrides)
    assert rolled == ChampionState("b", pinned=False, previous="x")
    # An override after the day never changes it (time travel: no rewriting of the past).
    assert apply_overrides(start, overrides, after=None, upto=monday) == start


def test_a_rollback_with_no_earlier_champion_is_an_error():
    with pytest.raises(OverrideError, match="no earlier champion"):
        apply_overrides(
            ChampionState("a"),
            [Override(dt.date(2025, 1, 1), "rollback")],
            None,
            dt.date(2025, 1, 1),
        )
