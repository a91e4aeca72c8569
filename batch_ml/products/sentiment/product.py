"""Batch sentiment analysis of customer reviews as the platform sees it: its sources, first
model week and assets by role. The platform builds its jobs (`sentiment_daily_job`,
`sentiment_training_job`, ...), schedules and landing sensor from this declaration, and
gives its assets the groups `sentiment_<stage>`, owners and tag (batch_ml.platform.product).
"""

from __future__ import annotations

from batch_ml.platform.product import DemoHooks, Product
from batch_ml.products.sentiment import demo
from batch_ml.products.sentiment.config import NAME
from batch_ml.products.sentiment.sources import project_sources


def _assets(b) -> list:
    # Imported here: the asset modules name the product's jobs through `b.product`.
    from batch_ml.platform.sources.assets import build as source_assets
    from batch_ml.products.sentiment.assets import evaluation, pipeline

    return [*source_assets(b), *pipeline.build(b), *evaluation.build(b)]


PRODUCT = Product(
    name=NAME,
    description="Daily sentiment (negative, neutral, positive) of every review, per product.",
    owners=("team:sentiment",),
    sources=project_sources,
    first_week=lambda cfg: cfg.product(NAME).first_model_week(cfg.start_date),
    assets=_assets,
    reference=(),
    # A day's chain: its reviews and labels, features, scores with their drift, the accuracy
    # of earlier days' scores whose labels arrived today, and the per-product roll-up.
    daily=(
        "reviews",
        "review_labels",
        "review_features",
        "review_sentiment",
        "sentiment_drift",
        "sentiment_accuracy",
        "product_sentiment",
    ),
    weekly=("review_model", "review_gate"),
    override="review_champion_overrides",
    reports=("sentiment_report",),
    outputs={
        "review_features": (),
        "review_model": ("model_path", "card_path"),
        "review_gate": (),
        "review_sentiment": (),
        "sentiment_drift": (),
        "sentiment_accuracy": (),
        "product_sentiment": (),
        "sentiment_report": (),
    },
    demo=DemoHooks(generate=demo.generate, period_source="reviews", summarize=demo.summarize),
)
