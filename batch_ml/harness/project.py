"""Project configs and small demo projects in temporary folders, for tests and benchmarks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from batch_ml.config import ProjectConfig, load_config
from batch_ml.products.forecasting.demo import spec_from_config, write_landing

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def require_shared(path: Path) -> Path:
    """`path` under ../shared/data, for a test that reads a real dataset: on CI (`CI` set),
    where .ci/run puts ../shared beside the clone, its absence fails the test; elsewhere
    (e.g. a clone without the datasets) the test is skipped, saying which file is missing."""
    if not path.exists():
        import os

        import pytest

        assert not os.environ.get("CI"), f"{path} is missing on CI (../shared/data)"
        pytest.skip(f"{path} is not here: ../shared/data is not beside the repository")
    return path


# Every asset of each product, by name.
FORECASTING_ASSETS = {
    "sales",
    "plans",
    "calendar",
    "products",
    "stores",
    "demand_features",
    "demand_model",
    "champion_overrides",
    "model_promotion",
    "predictions",
    "prediction_drift",
    "forecast_accuracy",
    "accuracy_report",
}
SENTIMENT_ASSETS = {
    "reviews",
    "review_labels",
    "review_features",
    "review_model",
    "review_champion_overrides",
    "review_gate",
    "review_sentiment",
    "sentiment_drift",
    "sentiment_accuracy",
    "product_sentiment",
    "sentiment_report",
}

SMALL_CONFIG = """
[data]
root = "data"

[calendar]
start_date = "{start}"
end_date = "{end}"

[forecasting]
horizon = {horizon}
lookback_days = 56
training_weeks = {training_weeks}
min_history_days = {min_history_days}
seed = 42
num_threads = 2

[forecasting.features]
known_in_advance = {known}
calendar = {calendar}
product_attributes = {products}
store_attributes = {stores}
numeric_attributes = {numeric}

[forecasting.demo]
stores = {n_stores}
items = {n_items}
start_date = "{start}"
days = {days}
seed = 7
"""


def write_config(
    folder: Path,
    start: dt.date = dt.date(2025, 1, 1),
    days: int = 130,
    horizon: int = 7,
    n_stores: int = 2,
    n_items: int = 6,
    known=("price", "on_promo", "is_open"),
    calendar=("is_holiday",),
    products=("category", "base_price"),
    stores=("region", "store_size"),
    numeric=("base_price",),
    training_weeks: int = 4,
    min_history_days: int = 70,
    sections: dict[str, dict] | None = None,
) -> Path:
    """`folder/batch_ml.toml` for a demo project of `n_stores` x `n_items` series over `days`
    days from `start`, its data under `folder/data`. `sections`: further TOML tables, e.g.
    `{"backfill": {"days_per_run": 7}}` (values: numbers, strings and lists of them)."""

    def toml_list(xs):
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

    text = SMALL_CONFIG.format(
        start=start,
        end=start + dt.timedelta(days=days),
        horizon=horizon,
        training_weeks=training_weeks,
        min_history_days=min_history_days,
        days=days,
        n_stores=n_stores,
        n_items=n_items,
        known=toml_list(known),
        calendar=toml_list(calendar),
        products=toml_list(products),
        stores=toml_list(stores),
        # Only attributes the config lists can be numeric (`base_price` is the demo's).
        numeric=toml_list(a for a in numeric if a in (*products, *stores)),
    )
    for table, settings in (sections or {}).items():
        # JSON numbers, strings and arrays are TOML values too.
        text += f"\n[{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    path = folder / "batch_ml.toml"
    path.write_text(text)
    return path


# A small sentiment project: the generator's own labelled text (no replay), 2**14 features, six
# weeks of labels per model; every stage of its graph takes a few seconds.
SENTIMENT_TRIAL: dict[str, dict] = {
    "sentiment": {"families": ["tfidf_lr"], "training_days": 42, "num_threads": 1},
    "sentiment.text": {"hash_bits": 14},
    "sentiment.demo": {"reviews_per_day": 40, "products": 12, "seed": 11},
}


def sentiment_project(
    folder: Path,
    start: dt.date = dt.date(2025, 1, 1),
    days: int = 70,
    sections: dict[str, dict] | None = None,
    **config,
) -> ProjectConfig:
    """A sentiment project in `folder` (`SENTIMENT_TRIAL`, each table updated by `sections`)
    over `days` days from `start`, with its demo landing files (kept when already there: a
    second call changes the config only). `config`: more of `write_config`'s arguments (the
    forecasting product it enables too has no landing files unless its demo writes them)."""
    from batch_ml.products.sentiment.demo import generate

    tables = {name: dict(settings) for name, settings in SENTIMENT_TRIAL.items()}
    for name, settings in (sections or {}).items():
        tables.setdefault(name, {}).update(settings)
    tables["sentiment.demo"] |= {"start_date": start.isoformat(), "days": days}
    cfg = load_config(write_config(folder, start=start, days=days, sections=tables, **config))
    generate(cfg)
    return cfg


def demo_project(folder: Path, **config) -> ProjectConfig:
    """A demo project in `folder` (`write_config(folder, **config)`) with its landing files."""
    cfg = load_config(write_config(folder, **config))
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    return cfg
