"""The forecasting product as the platform orchestrates it: its assets by role. The platform
generates `forecasting_daily_job`, `forecasting_training_job`, the schedules and the landing
sensor from this (batch_ml.platform.orchestration)."""

from batch_ml.platform.orchestration import Product

PRODUCT = Product(
    name="forecasting",
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
    override="champion_overrides",
    reports=("accuracy_report",),
)
