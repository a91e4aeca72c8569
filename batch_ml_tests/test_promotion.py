"""The champion/challenger gate and overrides as pure functions."""

import datetime as dt
import math

import polars as pl
import pytest

from batch_ml.platform.registry.gate import (
    ChampionState,
    GatePolicy,
    Override,
    OverrideError,
    UndecidedWeekError,
    apply_overrides,
    champion_on,
    decide,
    serving_version,
)
from batch_ml.products.forecasting.assets.promotion import policy as forecasting_policy

BASELINES = {"seasonal_naive": 0.60, "moving_average": 0.55}
MARGIN = 0.02
# Forecasting's policy: lowest WAPE wins, against its two baselines.
WAPE = forecasting_policy(MARGIN)
# A classifier's: highest macro-F1 wins, against a majority-class and a lexicon baseline.
F1 = GatePolicy("macro_f1", True, ("majority", "lexicon"), margin=0.05, backtest_days=7)
F1_BASELINES = {"majority": 0.30, "lexicon": 0.60}


def scores(**wapes):
    return {**BASELINES, **wapes}


def test_the_first_valid_model_becomes_champion():
    d = decide(ChampionState(), "a", scores(a=0.50), WAPE)
    assert (d.decision, d.state.champion) == ("promoted", "a")


def test_a_better_challenger_is_promoted_and_the_old_champion_kept_for_rollback():
    d = decide(ChampionState("a"), "b", scores(a=0.50, b=0.45), WAPE)
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
    d = decide(ChampionState("a"), "b", scores(a=0.50, b=challenger), WAPE)
    assert d.decision == "rejected", why
    assert d.state.champion == "a"


def test_a_challenger_must_beat_every_baseline_even_without_a_champion():
    d = decide(ChampionState(), "a", scores(a=0.57), WAPE)
    assert d.decision == "rejected" and "moving_average" in d.reason
    assert d.state.champion is None


def test_a_pinned_champion_is_held_against_a_better_challenger():
    d = decide(ChampionState("a", pinned=True), "b", scores(a=0.50, b=0.30), WAPE)
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


def f1(**scores):
    return {**F1_BASELINES, **scores}


def test_forecasting_declares_its_policy_lowest_wape_against_both_baselines():
    assert (WAPE.metric, WAPE.higher_is_better) == ("wape", False)
    assert WAPE.baselines == ("seasonal_naive", "moving_average")
    assert (WAPE.margin, WAPE.backtest_days) == (MARGIN, 14)


def test_higher_is_better_promotes_a_higher_score_by_the_margin():
    assert decide(ChampionState(), "a", f1(a=0.70), F1).state.champion == "a"
    d = decide(ChampionState("a"), "b", f1(a=0.70, b=0.74), F1)
    assert (d.decision, d.state) == ("promoted", ChampionState("b", previous="a"))
    # 0.73 is better than 0.70 but by less than 5 %: needs >= 0.735.
    d = decide(ChampionState("a"), "b", f1(a=0.70, b=0.73), F1)
    assert d.decision == "rejected" and ">= 0.7350" in d.reason
    # A lower score is worse, however low (the direction of a lower-is-better gate is wrong here).
    assert decide(ChampionState("a"), "b", f1(a=0.70, b=0.10), F1).decision == "rejected"


def test_higher_is_better_needs_a_score_above_every_baseline():
    d = decide(ChampionState(), "a", f1(a=0.55), F1)
    assert d.decision == "rejected" and "lexicon" in d.reason and "majority" not in d.reason
    # A tie with a baseline is not beating it.
    assert decide(ChampionState(), "a", f1(a=0.60), F1).decision == "rejected"


@pytest.mark.parametrize(
    ("policy", "champion", "just_enough", "not_enough"),
    [
        (WAPE, 0.50, 0.4895, 0.4905),  # lower is better: needs <= 0.49
        (F1, 0.80, 0.8405, 0.8395),  # higher is better: needs >= 0.84
    ],
)
def test_the_margin_is_relative_to_the_champion_in_either_direction(
    policy, champion, just_enough, not_enough
):
    baselines = BASELINES if policy is WAPE else {"majority": 0.1, "lexicon": 0.2}
    promoted = decide(
        ChampionState("a"), "b", {**baselines, "a": champion, "b": just_enough}, policy
    )
    assert promoted.decision == "promoted"
    kept_out = decide(
        ChampionState("a"), "b", {**baselines, "a": champion, "b": not_enough}, policy
    )
    assert kept_out.decision == "rejected"


def test_a_negative_score_is_still_judged_by_the_margin():
    """E.g. a log-likelihood: higher is better, and 5 % better than -1.0 is -0.95."""
    loglik = GatePolicy("loglik", True, ("prior",), margin=0.05, backtest_days=7)
    scores = {"prior": -3.0, "a": -1.0}
    assert decide(ChampionState("a"), "b", {**scores, "b": -0.96}, loglik).decision == "rejected"
    assert decide(ChampionState("a"), "b", {**scores, "b": -0.949}, loglik).decision == "promoted"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
@pytest.mark.parametrize("policy", [WAPE, F1])
def test_a_non_finite_challenger_is_rejected_in_either_direction(policy, bad):
    baselines = BASELINES if policy is WAPE else F1_BASELINES
    d = decide(ChampionState("a"), "b", {**baselines, "a": 0.5, "b": bad}, policy)
    assert d.decision == "rejected" and "not finite" in d.reason
    assert d.state == ChampionState("a")


def test_a_champion_without_a_finite_score_gives_way_and_a_missing_baseline_is_not_a_bar():
    d = decide(ChampionState("a"), "b", f1(a=math.nan, b=0.65), F1)
    assert d.decision == "promoted" and "no finite backtest macro_f1" in d.reason
    no_lexicon = {"majority": 0.3, "lexicon": math.nan, "a": 0.4}
    assert decide(ChampionState(), "a", no_lexicon, F1).decision == "promoted"


def test_a_pin_holds_and_the_pinned_champion_is_kept_in_either_direction():
    pinned = ChampionState("a", pinned=True)
    assert decide(pinned, "b", f1(a=0.61, b=0.99), F1).decision == "held"
    assert decide(pinned, "a", f1(a=0.70), F1).decision == "kept"
    # A challenger that fails the baselines is rejected before the pin is considered.
    assert decide(pinned, "b", f1(a=0.70, b=0.50), F1).decision == "rejected"


@pytest.mark.parametrize(
    ("policy", "scores", "best"),
    [
        (WAPE, {"seasonal_naive": 0.6, "moving_average": 0.55}, "moving_average"),
        (F1, {"majority": 0.3, "lexicon": 0.6}, "lexicon"),
        (F1, {"majority": 0.3, "lexicon": math.nan}, "majority"),
        (F1, {}, "majority"),  # no baseline scored: the first one
    ],
)
def test_the_fallback_is_the_best_baseline_by_the_policys_direction(policy, scores, best):
    assert policy.best_baseline(scores) == best


def test_serving_version_falls_back_to_the_weeks_best_baseline_until_a_champion():
    monday = dt.date(2025, 4, 21)
    gate = pl.DataFrame(
        {
            "model_week": [monday, monday + dt.timedelta(days=7)],
            "champion_version": [None, "a"],
            "pinned": [False, False],
            "previous_champion": [None, None],
            "fallback_baseline": ["lexicon", "majority"],
        },
        schema_overrides={"champion_version": pl.String, "previous_champion": pl.String},
    )
    assert serving_version(gate, [], monday + dt.timedelta(days=3), "baseline:") == (
        "baseline:lexicon"
    )
    assert serving_version(gate, [], monday + dt.timedelta(days=8), "baseline:") == "a"
    pin = [Override(monday + dt.timedelta(days=2), "pin", "x")]
    assert serving_version(gate, pin, monday + dt.timedelta(days=2), "baseline:") == "x"
    with pytest.raises(UndecidedWeekError, match="2025-05-05"):
        serving_version(gate, [], monday + dt.timedelta(days=14), "baseline:")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"margin": 1.0}, "margin must be in"), ({"backtest_days": 0}, "backtest window")],
)
def test_a_policy_with_an_impossible_margin_or_window_is_refused(kwargs, message):
    args = {"margin": 0.02, "backtest_days": 7, **kwargs}
    with pytest.raises(ValueError, match=message):
        GatePolicy("macro_f1", True, ("majority",), **args)
