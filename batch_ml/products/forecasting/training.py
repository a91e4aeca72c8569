"""Training and inference of the demand model (pure functions, no Dagster).

One direct multi-horizon model: the lead is a feature. The model is the registry's LightGBM
flavour (platform/registry/model.py); training is deterministic for the same data,
parameters, seed and thread count (LightGBM `deterministic=True`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from batch_ml.platform.monitoring.drift import PREDICTION, profile
from batch_ml.platform.registry.gate import BASELINE_PREFIX
from batch_ml.platform.registry.model import LightGBMModel, Model, ModelCard
from batch_ml.products.forecasting.config import ModelConfig
from batch_ml.products.forecasting.features import (
    BASELINE_COLUMNS,
    SERIES_KEYS,
    TARGET,
    categorical_columns,
    feature_columns,
)
from batch_ml.products.forecasting.metrics import accuracy

# Not hyperparameters: how LightGBM runs (reproducible, no logging). The hyperparameters and
# boosting rounds are config, `[forecasting.model]` (ModelConfig holds their defaults).
RUNTIME_PARAMS = {"deterministic": True, "force_col_wise": True, "verbosity": -1}
DEFAULT_MODEL = ModelConfig()
VALIDATION_DAYS = 14
PROFILED_FEATURES = 8  # drift is watched on the model's most important features
# Deciles of a drift profile are stable on a few hundred thousand rows; predicting every
# training row for them cost a tenth of a 30k-series training.
PROFILE_ROWS = 200_000


class NotEnoughDataError(ValueError):
    """The training window holds too few examples to fit and validate a model."""


@dataclass(frozen=True)
class TrainedModel:
    model: LightGBMModel
    train_rows: int
    valid_rows: int
    validation: dict[str, float] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)  # share of total gain
    profile: dict[str, dict] = field(default_factory=dict)  # drift reference (training rows)
    data_version: str = ""  # content hash of the training examples

    @property
    def features(self) -> list[str]:
        return self.model.features

    @property
    def params(self) -> dict:
        return self.model.params

    @property
    def best_iteration(self) -> int:
        return self.model.num_iteration

    @property
    def model_text(self) -> str:
        return self.model.model_text

    @property
    def version(self) -> str:
        """Content-derived version: the hash of the model text, so the same model bytes
        always get the same id."""
        return self.model.version


def training_examples(
    features: pl.LazyFrame, actuals: pl.LazyFrame, cutoff: dt.date
) -> pl.LazyFrame:
    """Feature rows joined with the actual units of their target day, for targets < cutoff.

    A series absent from a day's sales file sold nothing that day (data contract), so a
    missing actual is 0 for days whose sales were loaded.
    """
    loaded_days = actuals.select(pl.col("date").unique().alias("target_date"))
    target = actuals.select(pl.col("date").alias("target_date"), *SERIES_KEYS, pl.col(TARGET))
    return (
        features.filter(pl.col("target_date") < cutoff)
        .join(loaded_days, on="target_date", how="semi")
        .join(target, on=["target_date", *SERIES_KEYS], how="left")
        .with_columns(pl.col(TARGET).fill_null(0.0))
    )


def train_model(
    examples: pl.DataFrame, seed: int, num_threads: int, config: ModelConfig = DEFAULT_MODEL
) -> TrainedModel:
    """Fit on all but the last VALIDATION_DAYS target days with `config`'s hyperparameters;
    stop early on those days."""
    if examples.is_empty():
        raise NotEnoughDataError("no training examples in the training window")
    # Sorted by target day first, so the training and validation rows are two slices (views,
    # not copies: at 30k series the examples are a few GB).
    examples = examples.sort("target_date", *SERIES_KEYS, "forecast_date", "lead")
    last = examples["target_date"].max()
    valid_start = last - dt.timedelta(days=VALIDATION_DAYS - 1)
    train_rows = examples["target_date"].search_sorted(valid_start, side="left")
    train, valid = examples.slice(0, train_rows), examples.slice(train_rows)
    if train.height < 100 or valid.is_empty():
        raise NotEnoughDataError(
            f"{train.height} training and {valid.height} validation rows: need more history"
        )
    features = feature_columns(examples.columns)
    model = LightGBMModel.fit(
        train,
        TARGET,
        features,
        {**config.lightgbm_params, **RUNTIME_PARAMS},
        seed=seed,
        threads=num_threads,
        valid=valid,
        categorical=categorical_columns(features),
        rounds=config.max_rounds,
        early_stopping_rounds=config.early_stopping_rounds,
    )
    scored = valid.with_columns(prediction=pl.Series(_forecast(model, valid)))
    validation = {
        f"valid_wape_{method}": accuracy(scored, column)["wape"]
        for method, column in {"model": "prediction", **BASELINE_COLUMNS}.items()
    }
    gains = model.booster.feature_importance("gain", iteration=model.num_iteration)
    total = float(gains.sum()) or 1.0
    importance = {f: round(float(g) / total, 6) for f, g in zip(features, gains, strict=True)}
    top = sorted(features, key=lambda f: (-importance[f], f))[:PROFILED_FEATURES]
    sample = train.gather_every(max(1, train.height // PROFILE_ROWS))  # deterministic
    fitted = sample.select(top).with_columns(pl.Series(PREDICTION, _forecast(model, sample)))
    return TrainedModel(
        model,
        train.height,
        valid.height,
        validation,
        importance=importance,
        profile=profile(fitted, [*top, PREDICTION]),
        data_version=data_version(examples),
    )


def data_version(frame: pl.DataFrame) -> str:
    """Content hash of a frame (row order included; callers sort): the training data's id."""
    digest = hashlib.sha256(",".join(f"{n}:{t}" for n, t in frame.schema.items()).encode())
    digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def backtest_examples(
    examples: pl.LazyFrame, week: dt.date, days: int = VALIDATION_DAYS
) -> pl.LazyFrame:
    """The gate's backtest rows for the model of `week`: targets in the `days` days before
    the week (the challenger only early-stopped on the last VALIDATION_DAYS of them; earlier
    models never saw them)."""
    start = week - dt.timedelta(days=days)
    return examples.filter(pl.col("target_date").is_between(start, week, closed="left"))


def backtest_wapes(examples: pl.DataFrame, models: dict[str, Model]) -> dict[str, float]:
    """WAPE of each model (by version) and of the baselines on the same backtest rows."""
    scores = {
        method: accuracy(examples, column)["wape"] for method, column in BASELINE_COLUMNS.items()
    }
    for version, model in models.items():
        forecast = predict(model, examples, version)["prediction"]
        scores[version] = accuracy(examples.with_columns(forecast=forecast), "forecast")["wape"]
    return scores


def _forecast(model: Model, frame: pl.DataFrame) -> np.ndarray:
    """Units sold cannot be negative: the model's values clipped at 0."""
    return np.clip(model.predict(frame), 0, None)


def load_model(model_text: str) -> LightGBMModel:
    return LightGBMModel.from_bytes(model_text.encode("utf-8"))


def predict(model: Model, features: pl.DataFrame, model_version: str) -> pl.DataFrame:
    """Forecast rows for a feature frame: one row per origin, target day and series."""
    values = _forecast(model, features)
    return features.select("forecast_date", "target_date", "lead", *SERIES_KEYS).with_columns(
        prediction=pl.Series(values, dtype=pl.Float64),
        model_version=pl.lit(model_version),
    )


def predict_baseline(features: pl.DataFrame, version: str) -> pl.DataFrame:
    """Forecast rows from a baseline column (`version` = "baseline:<method>")."""
    column = BASELINE_COLUMNS[version.removeprefix(BASELINE_PREFIX)]
    return features.select(
        "forecast_date",
        "target_date",
        "lead",
        *SERIES_KEYS,
        pl.col(column).cast(pl.Float64).fill_null(0.0).alias("prediction"),
    ).with_columns(model_version=pl.lit(version))


def model_card(model: TrainedModel, window: tuple[dt.date, dt.date]) -> ModelCard:
    """The registry's card: window, training data version, validation WAPEs, and forecasting's
    details (importance and the drift reference read by reports and drift checks)."""
    return model.model.card(
        window=window,
        data_versions={"training_examples": model.data_version},
        validation=model.validation,
        details={
            "best_iteration": model.best_iteration,
            "train_rows": model.train_rows,
            "valid_rows": model.valid_rows,
            "importance": model.importance,
            "profile": model.profile,
        },
    )
