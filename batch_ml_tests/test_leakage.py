"""Point-in-time checks (batch_ml.products.forecasting.leakage) on the project's own features
and training set, with demo data; plus leaking features that the checks must catch. No Dagster."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from batch_ml.config import ProjectConfig, load_config
from batch_ml.harness.project import write_config
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.demo import simulate, spec_from_config
from batch_ml.products.forecasting.features import SERIES_KEYS, build_features
from batch_ml.products.forecasting.leakage import (
    ROWS,
    changed_columns,
    feature_leakage,
    perturb_after,
    perturb_training_data,
    training_leakage,
)
from batch_ml.products.forecasting.training import (
    load_model,
    predict,
    train_model,
    training_examples,
)

START = dt.date(2025, 1, 1)
DAYS = 130
LAST_DAY = START + dt.timedelta(days=DAYS - 1)  # 2025-05-10
FIRST_ORIGIN = START + dt.timedelta(days=56)
WEEK = dt.date(2025, 4, 21)  # a Monday: the model week checked
DATED = {"sales": "date", "plans": "plan_date"}  # a plan is known on the day it is published


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[ProjectConfig, dict[str, pl.DataFrame]]:
    cfg = load_config(write_config(tmp_path_factory.mktemp("leakage"), START, DAYS))
    spec = spec_from_config(cfg)
    frames = simulate(spec)
    # As ingested: the plan file of day P holds days P+1..P+horizon and gets plan_date = P.
    published = pl.DataFrame({"plan_date": pl.date_range(START, LAST_DAY, eager=True)})
    frames["plans"] = (
        frames["plans"]
        .join(published, how="cross")
        .filter(
            pl.col("date") > pl.col("plan_date"),
            pl.col("date") <= pl.col("plan_date") + dt.timedelta(days=spec.horizon),
        )
    )
    return cfg, frames


@pytest.fixture(scope="module")
def build(project):
    """The project's feature build (as in defs/features.py) for all origins of the history."""
    cfg = project[0]

    def real(sales, plans, calendar, products, stores) -> pl.DataFrame:
        f = settings(cfg).features
        return build_features(
            sales.lazy(),
            FIRST_ORIGIN,
            LAST_DAY,
            settings(cfg).forecast.horizon,
            settings(cfg).forecast.lookback_days,
            plans=plans.lazy(),
            calendar=calendar.lazy(),
            products=products,
            stores=stores,
            known_in_advance=f.known_in_advance,
            calendar_columns=f.calendar,
            product_attributes=f.product_attributes,
            store_attributes=f.store_attributes,
        ).collect()

    return real


@pytest.fixture(scope="module")
def features(project, build) -> pl.DataFrame:
    return build(**project[1])


def model_examples(cfg: ProjectConfig):
    """The training set of a model week exactly as defs/model.py selects it."""

    def select(features: pl.DataFrame, sales: pl.DataFrame, week: dt.date) -> pl.DataFrame:
        start = week - dt.timedelta(weeks=settings(cfg).forecast.training_weeks)
        return (
            training_examples(
                features.filter(pl.col("forecast_date").is_between(start, week, "left")).lazy(),
                sales.filter(pl.col("date").is_between(start, week, "left")).lazy(),
                cutoff=week,
            )
            .collect()
            .sort("forecast_date", *SERIES_KEYS, "lead")
        )

    return select


@pytest.fixture(scope="module")
def week_model(project, features):
    cfg, frames = project
    examples = model_examples(cfg)(features, frames["sales"], WEEK)
    return examples, train_model(examples, seed=42, num_threads=2)


def _trees(model_text: str) -> str:
    # The model text ends with the training parameters (seed included): compare trees only.
    return model_text.split("\nparameters:\n")[0]


def test_perturb_after_and_changed_columns_basics():
    day = [START + dt.timedelta(days=k) for k in range(4)]
    frame = pl.DataFrame(
        {
            "date": day,
            "store_id": ["S1"] * 4,
            "units": pl.Series([1, 2, None, 4], dtype=pl.Int16),
            "price": pl.Series([1.5, 2.5, 3.5, None], dtype=pl.Float32),
            "flag": [True, False, True, False],
            "lead": pl.Series([1, 1, 1, 1], dtype=pl.Int32),
            "note": ["a", "b", "c", "d"],
        }
    )
    out = perturb_after(frame, "date", day[1], seed=3, keep=["flag"])
    assert out.schema == frame.schema
    assert out.head(2).equals(frame.head(2))
    assert out.select("date", "store_id", "flag", "lead", "note").equals(
        frame.select("date", "store_id", "flag", "lead", "note")
    )
    assert out["units"][2:].null_count() == 0 and out["price"][2:].null_count() == 0
    assert out.equals(perturb_after(frame, "date", day[1], seed=3, keep=["flag"]))
    assert not out.equals(perturb_after(frame, "date", day[1], seed=4, keep=["flag"]))

    keys = ["date", "store_id"]
    assert changed_columns(frame, frame, keys) == []
    assert changed_columns(frame, out, keys) == ["units", "price"]
    fewer = frame.head(3).drop("note").with_columns(extra=pl.lit(1))
    assert changed_columns(frame, fewer, keys) == [ROWS, "note", "extra"]
    with pytest.raises(ValueError, match="not unique"):
        changed_columns(frame, frame, ["store_id"])


def test_the_project_features_are_point_in_time_correct(project, build):
    frames = project[1]
    for origin in (START + dt.timedelta(days=73), LAST_DAY - dt.timedelta(days=10)):
        assert feature_leakage(build, frames, DATED, origin) == []
    # Dating plans by their target day would flag the planned covariates, which are known
    # in advance: the plans' date column for the check is plan_date.
    flagged = feature_leakage(build, frames, {"sales": "date", "plans": "date"}, WEEK)
    assert flagged and all(c.startswith("plan_") for c in flagged)


def test_features_that_use_the_future_are_caught(project, build):
    frames = project[1]
    units = pl.col("units").cast(pl.Float64)

    def next_day_units(**inputs) -> pl.DataFrame:
        nxt = inputs["sales"].select(
            (pl.col("date") - dt.timedelta(days=1)).alias("forecast_date"),
            *SERIES_KEYS,
            units.alias("next_day_units"),
        )
        return build(**inputs).join(nxt, on=["forecast_date", *SERIES_KEYS], how="left")

    def target_day_units(**inputs) -> pl.DataFrame:
        actual = inputs["sales"].select(
            pl.col("date").alias("target_date"), *SERIES_KEYS, units.alias("target_day_units")
        )
        return build(**inputs).join(actual, on=["target_date", *SERIES_KEYS], how="left")

    origin = LAST_DAY - dt.timedelta(days=10)
    assert feature_leakage(next_day_units, frames, DATED, origin) == ["next_day_units"]
    assert feature_leakage(target_day_units, frames, DATED, origin) == ["target_day_units"]


def test_the_training_set_and_model_of_a_week_ignore_data_from_that_week_on(
    project, features, week_model
):
    cfg, frames = project
    select = model_examples(cfg)
    assert training_leakage(features, frames["sales"], WEEK, select) == []
    assert training_leakage(features, frames["sales"], WEEK) == []  # training_examples alone
    # Control: a selection whose targets reach into the week is caught.
    late = WEEK + dt.timedelta(days=3)
    leaky = training_leakage(features, frames["sales"], WEEK, lambda f, s, w: select(f, s, late))
    assert "units" in leaky

    examples, model = week_model
    perturbed = perturb_training_data(features, frames["sales"], WEEK, seed=1)
    assert not perturbed[0].equals(features) and not perturbed[1].equals(frames["sales"])
    again = select(*perturbed, WEEK)
    assert again.equals(examples)
    retrained = train_model(again, seed=42, num_threads=2)
    assert retrained.version == model.version and retrained.model_text == model.model_text


def test_a_forecast_does_not_change_when_data_after_its_origin_changes(project, build, week_model):
    cfg, frames = project
    origin = WEEK + dt.timedelta(days=2)  # a Wednesday: forecast by the model of WEEK
    tampered = {
        name: perturb_after(frame, DATED[name], origin, seed=5) if name in DATED else frame
        for name, frame in frames.items()
    }
    features = build(**tampered)
    examples = model_examples(cfg)(features, tampered["sales"], WEEK)
    model = train_model(examples, seed=42, num_threads=2)
    original_examples, original = week_model
    assert examples.equals(original_examples) and model.model_text == original.model_text

    def forecast(model_text: str, frame: pl.DataFrame) -> pl.DataFrame:
        rows = frame.filter(pl.col("forecast_date") == origin)
        return predict(load_model(model_text), rows, "v")

    before = forecast(original.model_text, build(**frames))
    assert not before.is_empty()
    assert forecast(model.model_text, features).equals(before)


def test_training_is_deterministic_and_uses_its_seed(project, features, week_model):
    examples, model = week_model
    rows = features.filter(pl.col("forecast_date") == WEEK)
    twice = train_model(examples, seed=42, num_threads=2)
    assert twice.model_text == model.model_text and twice.version == model.version
    assert twice.data_version == model.data_version
    same = predict(load_model(twice.model_text), rows, "v")
    assert same.equals(predict(load_model(model.model_text), rows, "v"))

    other = train_model(examples, seed=7, num_threads=2)
    # bagging_fraction / feature_fraction 0.8 draw different rows and features per seed:
    # different trees, not only a different `seed` line in the parameters section.
    assert _trees(other.model_text) != _trees(model.model_text)
    assert not predict(load_model(other.model_text), rows, "v").equals(same)
