"""The `[sentiment]` section of the project config: the classes, the label lag the contract
allows, the weekly model's training window and families, the gate, the trend test and the
demo data.

```toml
[sentiment]              # enabled = false switches the product off
classes = ["negative", "neutral", "positive"]
[sentiment.text]         # hashed n-gram features
[sentiment.model]        # the model families' hyperparameters
[sentiment.promotion]    # the gate
[sentiment.trend]        # product_sentiment's test
[sentiment.demo]
```
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from pathlib import Path

from batch_ml.config import (
    ConfigError,
    ProjectConfig,
    check_known_keys,
    first_model_week,
    number_fields,
    parse_date,
    validate_identifier,
)
from batch_ml.products.sentiment.rollup import TrendConfig

NAME = "sentiment"
FAMILIES = ("tfidf_lr", "lightgbm")
# The hyperparameters `[sentiment.model.<family>]` may set (numbers); their defaults live with
# the families (batch_ml.products.sentiment.training).
FAMILY_PARAMS = {
    "tfidf_lr": ("C", "max_iter"),
    "lightgbm": (
        "learning_rate",
        "num_leaves",
        "min_data_in_leaf",
        "feature_fraction",
        "lambda_l2",
        "rounds",
    ),
}


@dataclass(frozen=True)
class SentimentSettings:
    # The label values, in the order of the probability columns; a review's label is one.
    classes: tuple[str, ...] = ("negative", "neutral", "positive")
    # The label of a review arrives at most this many days after the review (the contract).
    label_lag_days: int = 14
    # Reviews arriving more than this many days after they were written are refused.
    max_review_age_days: int = 30
    # A week's model learns from the labels that arrived in the `training_days` before it.
    training_days: int = 84
    # Days of labels needed before the first model week.
    min_history_days: int = 28
    # The model families trained each week; the best on the last `validation_days` of the
    # training window (labels arrived last) is the week's challenger.
    families: tuple[str, ...] = FAMILIES
    validation_days: int = 14
    seed: int = 42
    num_threads: int = 2


@dataclass(frozen=True)
class TextSettings:
    """Hashed n-gram features (a day is featurised alone: no vocabulary is fitted)."""

    word_ngram_max: int = 2
    char_ngram_min: int = 2
    char_ngram_max: int = 5
    hash_bits: int = 18


@dataclass(frozen=True)
class ModelSettings:
    """Per family, the hyperparameters that override its defaults (`[sentiment.model.<family>]`,
    keys of FAMILY_PARAMS)."""

    params: dict[str, dict[str, float]] = field(default_factory=dict)

    def of(self, family: str) -> dict[str, float]:
        return dict(self.params.get(family, {}))


@dataclass(frozen=True)
class PromotionSettings:
    """A challenger must beat the champion's macro-F1 by `margin` (relative) and every
    baseline, out of sample on the week's validation window (`validation_days`): the
    challenger and the baselines fitted before it, the champion on the labels it never saw."""

    margin: float = 0.005
    # Population stability above this on a drift figure is a warning.
    drift_psi_warn: float = 0.25


@dataclass(frozen=True)
class DemoSettings:
    start_date: dt.date = dt.date(2025, 1, 1)
    days: int = 365
    # Reviews per day on average (a replay has at most as many reviews as its file).
    reviews_per_day: int = 65
    products: int = 40
    seed: int = 11
    # A CSV of real reviews to replay (the clothing-reviews layout: `Clothing ID`, `Title`,
    # `Review Text`, `Rating`); absent or None: labelled text of the generator's own.
    replay_reviews: Path | None = None


@dataclass(frozen=True)
class SentimentConfig:
    sentiment: SentimentSettings = field(default_factory=SentimentSettings)
    text: TextSettings = field(default_factory=TextSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    promotion: PromotionSettings = field(default_factory=PromotionSettings)
    trend: TrendConfig = field(default_factory=TrendConfig)
    demo: DemoSettings = field(default_factory=DemoSettings)

    def first_model_week(self, start_date: dt.date) -> dt.date:
        """Monday of the first week with `min_history_days` of labels after `start_date`."""
        return first_model_week(start_date, self.sentiment.min_history_days)


SUBSECTIONS = {
    "text": TextSettings,
    "model": ModelSettings,
    "promotion": PromotionSettings,
    "trend": TrendConfig,
    "demo": DemoSettings,
}
LISTS = ("classes", "families")
KNOWN_KEYS = {
    NAME: {f.name for f in fields(SentimentSettings)} | {"enabled", *SUBSECTIONS},
    **{
        f"{NAME}.{k}": {f.name for f in fields(cls)}
        for k, cls in SUBSECTIONS.items()
        if k != "model"
    },
    f"{NAME}.model": set(FAMILY_PARAMS),
    **{f"{NAME}.model.{f}": set(keys) for f, keys in FAMILY_PARAMS.items()},
}


def _settings(top: dict) -> SentimentSettings:
    lists = {k: tuple(str(v) for v in top[k]) for k in LISTS if k in top}
    numbers = number_fields(
        SentimentSettings, {k: v for k, v in top.items() if k not in LISTS}, NAME
    )
    settings = SentimentSettings(**numbers, **lists)
    for label in settings.classes:
        validate_identifier(label, f"{NAME}.classes value")
    if len(settings.classes) < 2 or len(set(settings.classes)) != len(settings.classes):
        raise ConfigError(f"{NAME}.classes must be two or more distinct labels")
    if not settings.families or set(settings.families) - set(FAMILIES):
        raise ConfigError(f"{NAME}.families must be some of {list(FAMILIES)}")
    if settings.validation_days >= settings.training_days:
        raise ConfigError(f"{NAME}.validation_days must be less than training_days")
    for key in ("label_lag_days", "max_review_age_days", "min_history_days", "validation_days"):
        if getattr(settings, key) < 1:
            raise ConfigError(f"{NAME}.{key} must be >= 1")
    return settings


def _model(raw: dict) -> ModelSettings:
    params = {}
    for family, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[{NAME}.model.{family}] must be a table, got {table!r}")
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{NAME}.model.{family}.{key}: expected a number, got {value!r}")
        params[family] = dict(table)
    return ModelSettings(params)


def _trend(raw: dict) -> TrendConfig:
    try:
        return TrendConfig(**number_fields(TrendConfig, raw, f"{NAME}.trend"))
    except ValueError as exc:
        raise ConfigError(f"{NAME}.trend: {exc}") from None


def parse_section(section: dict, base_dir: Path) -> SentimentConfig:
    """The product's config from its `[sentiment]` table (without `enabled`)."""
    top = {k: v for k, v in section.items() if k not in SUBSECTIONS}
    subs = {k: section.get(k, {}) for k in SUBSECTIONS}
    model_tables = {
        f"{NAME}.model.{family}": table
        for family, table in subs["model"].items()
        if isinstance(table, dict)
    }
    check_known_keys(
        {NAME: section, **{f"{NAME}.{k}": v for k, v in subs.items()}, **model_tables}, KNOWN_KEYS
    )
    demo_raw = dict(subs["demo"])
    if "start_date" in demo_raw:
        demo_raw["start_date"] = parse_date(demo_raw["start_date"], f"{NAME}.demo.start_date")
    start = demo_raw.pop("start_date", DemoSettings.start_date)
    replay = demo_raw.pop("replay_reviews", None)
    if replay is not None and not isinstance(replay, str):
        raise ConfigError(f"{NAME}.demo.replay_reviews: expected a path, got {replay!r}")
    promotion = PromotionSettings(**number_fields(PromotionSettings, subs["promotion"], NAME))
    if not 0 <= promotion.margin < 1:
        raise ConfigError(f"{NAME}.promotion.margin must be in [0, 1), got {promotion.margin}")
    return SentimentConfig(
        sentiment=_settings(top),
        text=TextSettings(**number_fields(TextSettings, subs["text"], NAME)),
        model=_model(subs["model"]),
        promotion=promotion,
        trend=_trend(subs["trend"]),
        demo=DemoSettings(
            start_date=start,
            replay_reviews=(base_dir / replay).resolve() if replay else None,
            **number_fields(DemoSettings, demo_raw, NAME),
        ),
    )


def settings(cfg: ProjectConfig) -> SentimentConfig:
    """The sentiment product's settings in a project config (ConfigError if not enabled)."""
    return cfg.product(NAME)
