"""The sentiment chain up to the predictions, on the platform's factories: a day's review
features, the weekly model (every configured family, the best on the freshest labels), the
gate (macro-F1 on a rolling backtest against the lexicon and majority baselines) and the
daily `review_sentiment` in the warehouse."""

import datetime as dt
from collections.abc import Mapping, Sequence

import dagster as dg
import polars as pl

from batch_ml.platform.common import BuildContext
from batch_ml.platform.registry.assets import ROWS, GateSpec, Scoring, build_gate_assets
from batch_ml.platform.registry.gate import BASELINE_PREFIX, GatePolicy
from batch_ml.platform.registry.model import Model
from batch_ml.platform.stages import (
    DailyStage,
    ModelStage,
    PredictionStage,
    TrainedModel,
    product_assets,
)
from batch_ml.products.sentiment import model as sentiment_model
from batch_ml.products.sentiment.config import SentimentConfig, settings
from batch_ml.products.sentiment.evaluation import (
    BASELINES,
    baseline_labels,
    labelled_reviews,
    macro_f1,
)
from batch_ml.products.sentiment.partitions import SentimentMappings
from batch_ml.products.sentiment.sources import ARRIVAL, ID, LABELLED, LABELS, REVIEWS

FEATURES = "review_features"
REGISTRY = "review_model"
GATE = "review_gate"
OVERRIDES = "review_champion_overrides"
PREDICTIONS = "review_sentiment"
METRIC = "macro_f1"


def policy(sc: SentimentConfig) -> GatePolicy:
    """Highest backtest macro-F1 wins; a model must beat the lexicon and the majority class."""
    return GatePolicy(
        metric=METRIC,
        higher_is_better=True,
        baselines=BASELINES,
        margin=sc.promotion.margin,
        # The backtest is the weekly model's validation window (see `scores`).
        backtest_days=sc.sentiment.validation_days,
    )


def prediction_schema(classes: Sequence[str]) -> dict[str, pl.DataType]:
    return {
        ID: pl.String,
        "product_id": pl.String,
        ARRIVAL: pl.Date,
        "label": pl.String,
        **{sentiment_model.probability_column(c): pl.Float64 for c in classes},
    }


def build(b: BuildContext) -> list:
    sc = settings(b.cfg)
    s = sc.sentiment
    maps = SentimentMappings.from_config(b.cfg)
    gate_policy = policy(sc)
    schema = prediction_schema(s.classes)

    def features(days: list[dt.date], inputs) -> pl.DataFrame:
        return sentiment_model.review_features(inputs[REVIEWS].collect(), sc.text)

    def train(week: dt.date, inputs) -> TrainedModel:
        first = week - dt.timedelta(days=s.training_days)
        rows = labelled_reviews(inputs[FEATURES], inputs[LABELS], first, week, s.classes)
        return sentiment_model.train_week(rows, week, sc)

    def predict(model: Model | None, served: str, day: dt.date, inputs) -> pl.DataFrame:
        frame = inputs[FEATURES].collect()
        keys = frame.select(ID, "product_id", ARRIVAL)
        if model is not None:
            return keys.hstack(sentiment_model.predicted(model, frame, s.classes))
        week_row = _week_row(inputs[REGISTRY].collect(), day)
        labels = baseline_labels(served.removeprefix(BASELINE_PREFIX), frame, week_row, s.classes)
        return keys.hstack(sentiment_model.one_hot(labels, s.classes))

    def incomplete(frame: pl.DataFrame) -> dict[str, int]:
        unknown = frame.filter(~pl.col("label").is_in(list(s.classes))).height
        return {"unknown_labels": unknown}

    def summary(frame: pl.DataFrame) -> dict:
        shares = frame["label"].value_counts(normalize=True)
        return {
            "reviews": frame.height,
            **{f"share_{c}": float(v) for c, v in shares.iter_rows()},
        }

    def scores(scoring: Scoring, week: dt.date, versions: Sequence[str]) -> Mapping:
        """Every score out of sample, on the labels of the week's validation window: the
        challenger's and the baselines' are those of `train_week` (fitted before the window,
        scored on it; the served model is their refit on all rows); an earlier week's model
        is scored on the window's labels that arrived from its own week on, which it never
        saw."""
        first = week - dt.timedelta(days=scoring.policy.backtest_days)
        rows = labelled_reviews(
            scoring.inputs[FEATURES], scoring.inputs[LABELS], first, week, s.classes
        )
        week_row = _week_row(scoring.registry, week)
        held_out = week_row["validation_rows"] < week_row["training_rows"]
        out: dict[str, float | int | None] = {ROWS: rows.height}
        for version in versions:
            if version == week_row["model_version"]:
                # Validated in-sample (too few labels to hold any back): no score, not promoted.
                out[version] = week_row[f"valid_{METRIC}"] if held_out else None
                continue
            learned_until = dt.date.fromisoformat(scoring.load_card(version)["window_end"])
            unseen = rows.filter(pl.col(LABELLED) > learned_until)
            predicted = sentiment_model.predicted(scoring.load_model(version), unseen, s.classes)
            out[version] = macro_f1(unseen["label"], predicted["label"], s.classes)
        for baseline in BASELINES:
            if held_out:
                out[baseline] = week_row[f"valid_{METRIC}_{baseline}"]
            else:
                labels = baseline_labels(baseline, rows, week_row, s.classes)
                out[baseline] = macro_f1(rows["label"], labels, s.classes)
        return out

    def pinnable(row: Mapping) -> bool:
        baselines = {m: row[f"valid_{METRIC}_{m}"] for m in gate_policy.baselines}
        return gate_policy.beats_baselines(row[f"valid_{METRIC}"], baselines)

    stages = [
        DailyStage(
            name=FEATURES,
            stage="features",
            ins={REVIEWS: dg.AssetIn()},
            compute=features,
            partition_column=ARRIVAL,
            description=(
                "Per review of the day: hashed word and character n-grams of the title and "
                "text (hashing: a day is featurised alone, with no vocabulary to refit), text "
                "length, word count and the lexicon (VADER) score."
            ),
            kinds=frozenset({"polars", "scikitlearn"}),
        ),
        ModelStage(
            name=REGISTRY,
            ins={
                FEATURES: dg.AssetIn(partition_mapping=maps.training_features),
                LABELS: dg.AssetIn(partition_mapping=maps.training_labels),
            },
            train=train,
            description=(
                f"Weekly sentiment model from the labels that arrived in the {s.training_days} "
                "days before the week (never the week itself): each family of "
                f"{list(s.families)} is fitted on all but the last {s.validation_days} days of "
                "labels and scored on those (macro-F1); the best is refitted on all of them. "
                "Rows are the registry; the baselines' fitted state (majority class, lexicon "
                "band) is in the week's row."
            ),
            kinds=frozenset({"scikitlearn", "lightgbm", "polars"}),
            code_version="sentiment-model-v1",
        ),
        PredictionStage(
            name=PREDICTIONS,
            gate_asset=GATE,
            overrides_asset=OVERRIDES,
            policy=gate_policy,
            ins={FEATURES: dg.AssetIn()},
            weekly_ins=(REGISTRY,),
            predict=predict,
            schema=schema,
            partition_column=ARRIVAL,
            incomplete=incomplete,
            summary=summary,
            description=(
                "Every review of day D scored by the champion of D: label and the probability "
                f"of each class ({', '.join(s.classes)}), model_version. Warehouse views "
                f"`{PREDICTIONS}` and `latest_{PREDICTIONS}`."
            ),
            kinds=frozenset({"polars", "duckdb"}),
            code_version="sentiment-predictions-v1",
        ),
    ]
    gate = build_gate_assets(
        GateSpec(
            policy=gate_policy,
            registry_asset=REGISTRY,
            gate_asset=GATE,
            overrides_asset=OVERRIDES,
            score=scores,
            ins={
                FEATURES: dg.AssetIn(partition_mapping=maps.backtest_features),
                LABELS: dg.AssetIn(partition_mapping=maps.backtest_labels),
            },
            pinnable=pinnable,
            partitions_def=b.parts.weekly,
            previous_week=maps.previous_week,
            timezone=b.cfg.timezone,
            group="model",
            kinds=frozenset({"scikitlearn", "polars"}),
        )
    )
    return [*product_assets(b, stages), *gate]


def _week_row(registry: pl.DataFrame, day: dt.date) -> dict:
    """The registry row of the week holding `day` (a baseline's fitted state)."""
    rows = registry.filter(pl.col("model_week") <= day).sort("model_week")
    if rows.is_empty():
        raise ValueError(f"{REGISTRY} has no week up to {day}")
    return rows.row(-1, named=True)
