"""Pure feature, training and metric functions (no Dagster)."""

import datetime as dt

import polars as pl
import pytest

from batch_ml.products.forecasting.config import ModelConfig
from batch_ml.products.forecasting.demo import SimulationSpec, simulate
from batch_ml.products.forecasting.features import build_features, feature_columns
from batch_ml.products.forecasting.metrics import accuracy, evaluate_forecasts, roll_up
from batch_ml.products.forecasting.training import predict, train_model, training_examples

D0 = dt.date(2025, 1, 1)


def _series(values, store="S1", item="I1", start=D0):
    return pl.DataFrame(
        {
            "date": [start + dt.timedelta(days=k) for k in range(len(values))],
            "store_id": store,
            "item_id": item,
            "units": [float(v) for v in values],
        }
    )


def test_lags_rolling_means_and_baselines_are_computed_from_history_up_to_origin():
    sales = _series(range(1, 71))  # units on day k (0-based) = k + 1
    origin = D0 + dt.timedelta(days=69)  # units 70
    out = build_features(sales.lazy(), origin, origin, horizon=8, lookback_days=56).collect()
    assert out.height == 8 and out["lead"].to_list() == list(range(1, 9))
    row = {r["lead"]: r for r in out.iter_rows(named=True)}
    assert row[1]["lag_0"] == 70 and row[1]["lag_6"] == 64
    assert row[1]["roll_mean_7"] == pytest.approx(sum(range(64, 71)) / 7)
    assert row[1]["roll_mean_28"] == pytest.approx(sum(range(43, 71)) / 28)
    # Seasonal naive: the same weekday one week before the target, known at the origin.
    assert row[1]["baseline_seasonal_naive"] == 64  # target D+1 -> D-6
    assert row[7]["baseline_seasonal_naive"] == 70  # target D+7 -> D
    assert row[8]["baseline_seasonal_naive"] == 64  # target D+8 -> D+1-7 = D-6
    assert row[1]["baseline_moving_average"] == pytest.approx(row[1]["roll_mean_28"])
    assert row[3]["target_date"] == origin + dt.timedelta(days=3)


def test_missing_rows_count_as_zero_sales_and_inactive_series_are_not_forecast():
    active = _series([5] * 60)
    gone = _series([3] * 20, item="OLD")  # last sale 40 days before the origin
    sparse = _series([2] * 60, item="GAP").filter(pl.col("date") != D0 + dt.timedelta(days=59))
    origin = D0 + dt.timedelta(days=59)
    out = build_features(pl.concat([active, gone, sparse]).lazy(), origin, origin, 7, 56).collect()
    assert set(out["item_id"]) == {"I1", "GAP"}
    gap = out.filter(pl.col("item_id") == "GAP", pl.col("lead") == 1).row(0, named=True)
    assert gap["lag_0"] == 0 and gap["lag_1"] == 2 and gap["days_since_sale"] == 1


@pytest.fixture(scope="module")
def simulated():
    return simulate(SimulationSpec(stores=2, items=8, days=200, seed=3, horizon=7))


def _features(frames, first, last, **kw):
    plans = (
        frames["plans"]
        .join(
            pl.DataFrame({"plan_date": pl.date_range(D0, D0 + dt.timedelta(days=220), eager=True)}),
            how="cross",
        )
        .filter(
            pl.col("date") > pl.col("plan_date"),
            pl.col("date") <= pl.col("plan_date") + dt.timedelta(days=7),
        )
    )
    return build_features(
        kw.pop("sales", frames["sales"]).lazy(),
        first,
        last,
        7,
        56,
        plans=plans.lazy(),
        calendar=frames["calendar"].lazy(),
        products=frames["products"],
        stores=frames["stores"],
        known_in_advance=("price", "on_promo", "is_open"),
        calendar_columns=("is_holiday",),
        product_attributes=("category", "base_price"),
        store_attributes=("region",),
    ).collect()


def test_a_range_of_origins_gives_the_same_rows_as_one_origin_at_a_time(simulated):
    first, last = D0 + dt.timedelta(days=60), D0 + dt.timedelta(days=90)
    batch = _features(simulated, first, last)
    for day in (first, D0 + dt.timedelta(days=75), last):
        single = _features(simulated, day, day)
        assert single.equals(batch.filter(pl.col("forecast_date") == day))


def test_features_of_an_origin_do_not_change_when_later_data_changes(simulated):
    origin = D0 + dt.timedelta(days=100)
    before = _features(simulated, origin, origin)
    future = pl.col("date") > origin
    tampered = simulated["sales"].with_columns(
        pl.when(future).then(pl.col("units") * 10 + 99).otherwise(pl.col("units")).alias("units")
    )
    after = _features(simulated, origin, origin, sales=tampered)
    assert before.equals(after)


def test_training_is_deterministic_and_beats_seasonal_naive(simulated):
    feats = _features(simulated, D0 + dt.timedelta(days=56), D0 + dt.timedelta(days=199))
    cutoff = D0 + dt.timedelta(days=170)
    examples = training_examples(feats.lazy(), simulated["sales"].lazy(), cutoff).collect()
    assert examples["target_date"].max() < cutoff
    first = train_model(examples, seed=1, num_threads=2)
    second = train_model(examples, seed=1, num_threads=2)
    assert first.model_text == second.model_text and first.version == second.version
    assert first.features == feature_columns(examples.columns)
    # The hyperparameters are config ([forecasting.model]): other values, another model.
    tuned = train_model(examples, seed=1, num_threads=2, config=ModelConfig(num_leaves=7))
    assert tuned.params["num_leaves"] == 7 and first.params["num_leaves"] == 31
    assert tuned.version != first.version

    future = feats.filter(pl.col("forecast_date") >= cutoff)
    preds = predict(first.model, future, first.version)
    assert preds.height == future.height and preds["prediction"].min() >= 0
    assert preds["model_version"].unique().to_list() == [first.version]
    scored = preds.join(future, on=["forecast_date", "target_date", "store_id", "item_id"])
    ev = evaluate_forecasts(scored.lazy(), simulated["sales"].lazy())
    overall = {m: w for m, w in roll_up(ev, ["method"]).select("method", "wape").iter_rows()}
    assert overall["model"] < overall["seasonal_naive"]


def test_metrics_match_hand_computed_values_and_roll_up_exactly():
    frame = pl.DataFrame({"units": [10.0, 0.0, 5.0], "f": [8.0, 1.0, 5.0]})
    m = accuracy(frame, "f")
    assert m["wape"] == pytest.approx(3 / 15)
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx((5 / 3) ** 0.5)
    assert m["bias"] == pytest.approx(-1 / 15)

    day = D0
    forecasts = pl.DataFrame(
        {
            "forecast_date": [day - dt.timedelta(days=1), day - dt.timedelta(days=2)] * 2,
            "target_date": [day] * 4,
            "lead": [1, 2, 1, 2],
            "store_id": ["S"] * 4,
            "item_id": ["A", "A", "B", "B"],
            "prediction": [4.0, 6.0, 1.0, 0.0],
            "baseline_seasonal_naive": [0.0] * 4,
            "baseline_moving_average": [5.0] * 4,
        }
    )
    actuals = pl.DataFrame({"date": [day], "store_id": ["S"], "item_id": ["A"], "units": [5.0]})
    ev = evaluate_forecasts(forecasts.lazy(), actuals.lazy())  # B is absent: it sold 0
    model = roll_up(ev.filter(pl.col("method") == "model"), ["method"]).row(0, named=True)
    assert model["n"] == 4 and model["sum_actual"] == 10.0  # A counted once per lead
    assert model["sum_abs_error"] == pytest.approx(1 + 1 + 1 + 0)
    assert model["wape"] == pytest.approx(3 / 10)
