"""The demand-forecasting product as the platform sees it: its sources, first model week and
assets by role. The platform builds its jobs (`forecasting_daily_job`,
`forecasting_training_job`, ...), schedules and landing sensor from this declaration, and
gives its assets the groups `forecasting_<stage>`, owners and tag (batch_ml.platform.product).
"""

from __future__ import annotations

from batch_ml.platform.product import DemoHooks, Product
from batch_ml.products.forecasting import demo
from batch_ml.products.forecasting.config import NAME
from batch_ml.products.forecasting.sources import project_sources

# Written only by a person's pin, unpin or rollback (`batch-ml champion ...`).
OVERRIDES = "champion_overrides"


def _assets(b) -> list:
    # Imported here: the asset modules name the product's jobs through `b.product`, and this
    # module is what declares them.
    from batch_ml.platform.sources.assets import build as source_assets
    from batch_ml.products.forecasting.assets import (
        evaluation,
        features,
        model,
        predictions,
        promotion,
    )

    return [
        *source_assets(b),
        *features.build(b),
        *model.build(b),
        *promotion.build(b),
        *predictions.build(b),
        *evaluation.build(b),
    ]


PRODUCT = Product(
    name=NAME,
    description="Daily demand forecasts per store x item for the next `horizon` days.",
    owners=("team:forecasting",),
    sources=project_sources,
    first_week=lambda cfg: cfg.product(NAME).first_model_week(cfg.start_date),
    assets=_assets,
    reference=("calendar", "products", "stores"),
    # A day's chain: its files, its features, its forecasts with their drift, and the accuracy
    # of the forecasts made for it on earlier days.
    daily=(
        "sales",
        "plans",
        "demand_features",
        "predictions",
        "prediction_drift",
        "forecast_accuracy",
    ),
    weekly=("demand_model", "model_promotion"),
    override=OVERRIDES,
    reports=("accuracy_report",),
    outputs={
        "demand_features": (),
        "demand_model": ("model_path", "card_path"),
        "model_promotion": (),
        "predictions": (),
        "prediction_drift": (),
        "forecast_accuracy": (),
        "accuracy_report": (),
    },
    demo=DemoHooks(generate=demo.generate, period_source="sales", summarize=demo.summarize),
)
