"""The `[forecasting]` section of the project config: horizon, history, features, the
LightGBM hyperparameters, the gate and the demo data.

```toml
[forecasting]            # enabled = false switches the product off
horizon = 14
[forecasting.features]
[forecasting.model]      # LightGBM hyperparameters
[forecasting.promotion]
[forecasting.demo]
```
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from pathlib import Path

from batch_ml.config import (
    ConfigError,
    IngestLimits,
    ProjectConfig,
    check_known_keys,
    first_model_week,
    number_fields,
    parse_date,
    validate_identifier,
)

NAME = "forecasting"
FEATURE_LISTS = ("known_in_advance", "calendar", "product_attributes", "store_attributes")


@dataclass(frozen=True)
class ForecastConfig:
    horizon: int = 14
    lookback_days: int = 56
    training_weeks: int = 8
    min_history_days: int = 84
    seed: int = 42
    num_threads: int = 2


@dataclass(frozen=True)
class FeatureConfig:
    known_in_advance: tuple[str, ...] = ()
    calendar: tuple[str, ...] = ()
    product_attributes: tuple[str, ...] = ()
    store_attributes: tuple[str, ...] = ()
    # Product and store attributes that are numbers; every other attribute is text.
    numeric_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """LightGBM hyperparameters of the weekly model (names as in LightGBM), and its boosting
    rounds: at most `max_rounds`, stopped after `early_stopping_rounds` without a better
    validation loss."""

    objective: str = "tweedie"
    tweedie_variance_power: float = 1.2
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_rounds: int = 400
    early_stopping_rounds: int = 30

    @property
    def lightgbm_params(self) -> dict:
        """The LightGBM parameters (rounds are arguments of the training call, not params)."""
        rounds = {"max_rounds", "early_stopping_rounds"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in rounds}


@dataclass(frozen=True)
class PromotionConfig:
    """The champion/challenger gate: a challenger must beat the champion's backtest WAPE by
    this relative margin (0.02: at least 2 % lower) and beat every baseline."""

    margin: float = 0.02
    # Population stability above this on a feature or the predictions is a drift warning.
    drift_psi_warn: float = 0.25


@dataclass(frozen=True)
class DemoConfig:
    stores: int = 6
    items: int = 40
    start_date: dt.date = dt.date(2025, 1, 1)
    days: int = 365
    seed: int = 7


@dataclass(frozen=True)
class ForecastingConfig:
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def first_model_week(self, start_date: dt.date) -> dt.date:
        """Monday of the first week with `min_history_days` of history after `start_date`."""
        return first_model_week(start_date, self.forecast.min_history_days)


SUBSECTIONS = {
    "features": FeatureConfig,
    "model": ModelConfig,
    "promotion": PromotionConfig,
    "demo": DemoConfig,
}
KNOWN_KEYS = {
    NAME: {f.name for f in fields(ForecastConfig)} | {"enabled", *SUBSECTIONS},
    **{f"{NAME}.{k}": {f.name for f in fields(cls)} for k, cls in SUBSECTIONS.items()},
}


def _names(section: dict, key: str) -> tuple[str, ...]:
    return tuple(validate_identifier(n) for n in section.get(key, []))


def _features(section: dict) -> FeatureConfig:
    features = FeatureConfig(**{k: _names(section, k) for k in section})
    attributes = {*features.product_attributes, *features.store_attributes}
    undeclared = [a for a in features.numeric_attributes if a not in attributes]
    if undeclared:
        raise ConfigError(
            f"{NAME}.features.numeric_attributes {undeclared} are not product or store attributes"
        )
    _check_feature_columns(features)
    return features


def _check_feature_columns(features: FeatureConfig) -> None:
    """Declared covariates and attributes are columns of the same frames as the contract's
    own columns (keys, target, dates) and of each other: a name may be used once."""
    # They import this module.
    from batch_ml.products.forecasting.features import ID_COLUMNS
    from batch_ml.products.forecasting.sources import sources

    # The declared columns, and the columns the declarations add to stored tables (plan_date).
    base = sources(FeatureConfig(), IngestLimits(), ForecastConfig().horizon)
    reserved = {c for s in base.values() for c in (*s.columns, *filter(None, [s.day_column]))}
    reserved |= set(ID_COLUMNS)
    # Sales files may carry the observed values of the known-in-advance covariates.
    observed_covariates = set(base["sales"].optional)
    owner: dict[str, str] = {}
    for key in FEATURE_LISTS:
        for name in getattr(features, key):
            if name in reserved and not (key == "known_in_advance" and name in observed_covariates):
                raise ConfigError(
                    f"{NAME}.features.{key}: column {name!r} is a column of the data contract "
                    f"({', '.join(sorted(reserved))}); name the column differently"
                )
            if name in owner:
                where = "twice" if owner[name] == key else f"also in {NAME}.features.{owner[name]}"
                raise ConfigError(f"{NAME}.features.{key}: column {name!r} is {where}")
            owner[name] = key


def parse_section(section: dict, base_dir: Path) -> ForecastingConfig:
    """The product's config from its `[forecasting]` table (without `enabled`)."""
    top = {k: v for k, v in section.items() if k not in SUBSECTIONS}
    subs = {k: section.get(k, {}) for k in SUBSECTIONS}
    check_known_keys({NAME: section, **{f"{NAME}.{k}": v for k, v in subs.items()}}, KNOWN_KEYS)
    forecast = ForecastConfig(**number_fields(ForecastConfig, top, NAME))
    if forecast.horizon < 1 or forecast.lookback_days < 28:
        raise ConfigError(f"{NAME}.horizon must be >= 1 and {NAME}.lookback_days >= 28")
    promotion = PromotionConfig(**number_fields(PromotionConfig, subs["promotion"], NAME))
    if not 0 <= promotion.margin < 1:
        raise ConfigError(f"{NAME}.promotion.margin must be in [0, 1), got {promotion.margin}")
    model_raw = dict(subs["model"])
    objective = str(model_raw.pop("objective", ModelConfig.objective))
    model = ModelConfig(objective=objective, **number_fields(ModelConfig, model_raw, NAME))
    demo_raw = dict(subs["demo"])
    if "start_date" in demo_raw:
        demo_raw["start_date"] = parse_date(demo_raw["start_date"], f"{NAME}.demo.start_date")
    return ForecastingConfig(
        forecast=forecast,
        features=_features(subs["features"]),
        model=model,
        promotion=promotion,
        demo=DemoConfig(**demo_raw),
    )


def settings(cfg: ProjectConfig) -> ForecastingConfig:
    """The forecasting product's settings in a project config (ConfigError if not enabled)."""
    return cfg.product(NAME)
