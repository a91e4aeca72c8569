"""Stage `model`: a LightGBM model per week, trained only on data from before that week."""

import datetime as dt
import json

import dagster as dg
import polars as pl

from batch_ml.platform.common import (
    BRING_UP_TO_DATE,
    TRANSIENT_RETRY,
    BuildContext,
    measured,
)
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.resources import ModelStore
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.partitions import ForecastMappings
from batch_ml.products.forecasting.training import model_card, train_model, training_examples

GROUP = "model"


def build(b: BuildContext) -> list:
    maps = ForecastMappings.from_config(b.cfg)
    fc = settings(b.cfg).forecast
    hyperparameters = settings(b.cfg).model

    @dg.asset(
        name="demand_model",
        group_name=GROUP,
        partitions_def=b.parts.weekly,
        backfill_policy=b.parts.weekly_backfill,
        kinds={"lightgbm", "polars"},
        retry_policy=TRANSIENT_RETRY,
        code_version="model-v1",
        automation_condition=BRING_UP_TO_DATE,
        pool="cpu_heavy",
        metadata={"partition_column": "model_week"},
        ins={
            "demand_features": dg.AssetIn(partition_mapping=maps.training_window),
            "sales": dg.AssetIn(partition_mapping=maps.training_window),
        },
        description=(
            "LightGBM (tweedie) direct multi-horizon demand model for the week starting on the "
            f"partition's Monday, trained on forecast origins of the {fc.training_weeks} weeks "
            "before it with targets strictly before the week starts (no leakage), early-stopped "
            "on the last 14 target days. The model file is stored under data/models/<version>.txt "
            "(version = hash of the model's bytes) with its card <version>.json (flavour, "
            "parameters, features, window, data version, validation, importance, drift "
            "reference). The rows are the model registry: warehouse "
            "view `demand_model` (version, window, training-data hash, validation WAPEs)."
        ),
    )
    def demand_model(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        demand_features: pl.LazyFrame,
        sales: pl.LazyFrame,
    ):
        rows = []
        with measured(len(context.partition_keys)) as cost:
            for week in partition_dates(context):
                start = week - dt.timedelta(weeks=fc.training_weeks)
                examples = training_examples(
                    demand_features.filter(pl.col("forecast_date").is_between(start, week, "left")),
                    sales.filter(pl.col("date").is_between(start, week, "left")),
                    cutoff=week,
                )
                # Streaming: the join and filter over the window's feature files peak at a
                # quarter of the in-memory engine's memory (train_model sorts the rows). In
                # the call, so that no reference here keeps the unsorted frame alive.
                model = train_model(
                    examples.collect(engine="streaming"),
                    seed=fc.seed,
                    num_threads=fc.num_threads,
                    config=hyperparameters,
                )
                card = model_card(model, (start, week - dt.timedelta(days=1)))
                path = model_store.save(model.model.to_bytes(), card)
                rows.append(
                    {
                        "model_week": week,
                        "model_version": model.version,
                        "window_start": start,
                        "window_end": week - dt.timedelta(days=1),
                        "train_rows": model.train_rows,
                        "valid_rows": model.valid_rows,
                        "best_iteration": model.best_iteration,
                        **model.validation,
                        "features": json.dumps(model.features),
                        "params": json.dumps(model.params, sort_keys=True),
                        "importance": json.dumps(model.importance, sort_keys=True),
                        "data_version": model.data_version,
                        "lightgbm_version": card.library_version,
                        "model_path": str(path),
                        "card_path": str(model_store.card_path(model.version)),
                    }
                )
                context.log.info(
                    f"week {week}: model {model.version}, valid WAPE "
                    f"{model.validation['valid_wape_model']:.3f} (seasonal naive "
                    f"{model.validation['valid_wape_seasonal_naive']:.3f})"
                )
        registry = pl.DataFrame(rows)
        last = rows[-1]
        return dg.Output(
            registry,
            metadata={
                **cost,
                "model_version": last["model_version"],
                "valid_wape_model": last["valid_wape_model"],
                "valid_wape_seasonal_naive": last["valid_wape_seasonal_naive"],
                "valid_wape_moving_average": last["valid_wape_moving_average"],
                "train_rows": last["train_rows"],
                "best_iteration": last["best_iteration"],
                "model_file": dg.MetadataValue.path(last["model_path"]),
            },
        )

    return [demand_model]
