"""The sentiment product's evaluation, pure functions on Polars frames: labelled reviews
(point in time: the labels that had arrived by a day), the baselines' labels from their
fitted state, and a day's accuracy rows (macro-F1, accuracy, per-class precision and
recall, confusion counts) for the served model and the baselines on the same reviews.

Confusion counts are stored, not only the day's scores: the scores of any window (a month,
the whole evaluation) are those of its summed counts (`scores_from_counts`), never a mean of
daily scores.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from batch_ml.products.sentiment.lexicon import COMPOUND, band_labels
from batch_ml.products.sentiment.metrics import classification_metrics, confusion_metrics
from batch_ml.products.sentiment.sources import ARRIVAL, ID, LABELLED

LEXICON, MAJORITY = "lexicon", "majority"
BASELINES = (LEXICON, MAJORITY)
SERVED = "served"  # the predictions as served: each review by its day's champion
SCORERS = (SERVED, *BASELINES)
# Registry columns of the baselines' fitted state.
MAJORITY_CLASS = "majority_class"
LEXICON_LOW, LEXICON_HIGH = "lexicon_low", "lexicon_high"


class LabelError(ValueError):
    """A label that is not one of the configured classes."""


def labelled_reviews(
    features: pl.LazyFrame,
    labels: pl.LazyFrame,
    first: dt.date,
    end: dt.date,
    classes: Sequence[str],
) -> pl.DataFrame:
    """The features of the reviews whose labels arrived in [first, end), with `label` and
    `labelled_on`, sorted by review id. A label of a review not among `features` (not
    delivered, or older than the window read) is left out."""
    arrived = (
        labels.filter(pl.col(LABELLED) >= first, pl.col(LABELLED) < end)
        .select(ID, "label", LABELLED)
        .collect()
    )
    check_labels(arrived, classes)
    return features.join(arrived.lazy(), on=ID, how="inner").sort(ID).collect()


def check_labels(labels: pl.DataFrame, classes: Sequence[str]) -> None:
    unknown = labels.filter(~pl.col("label").is_in(list(classes)))
    if unknown.height:
        first = unknown.sort(LABELLED, ID).row(0, named=True)
        raise LabelError(
            f"{unknown.height} label(s) not among the classes {list(classes)}, e.g. review "
            f"{first[ID]!r} labelled {first['label']!r} on {first[LABELLED]} "
            "(review_labels of that day); fix the file or [sentiment] classes"
        )


def baseline_labels(
    baseline: str, features: pl.DataFrame, week_row: Mapping, classes: Sequence[str]
) -> pl.Series:
    """A baseline's labels for `features` from its state fitted for the week (`week_row`:
    the week's registry row)."""
    if baseline == MAJORITY:
        return pl.Series("label", [week_row[MAJORITY_CLASS]] * features.height, dtype=pl.String)
    if baseline == LEXICON:
        positions = band_labels(
            features[COMPOUND].to_numpy(), week_row[LEXICON_LOW], week_row[LEXICON_HIGH], classes
        )
        return pl.Series("label", np.asarray(classes, dtype=object)[positions], dtype=pl.String)
    raise ValueError(f"unknown baseline {baseline!r}; known: {BASELINES}")


def macro_f1(truth: pl.Series, predicted: pl.Series, classes: Sequence[str]) -> float | None:
    """Macro-F1 over `classes`, None without rows."""
    if not len(truth):
        return None
    return classification_metrics(truth.to_list(), predicted.to_list(), classes)["macro_f1"]


def count_column(truth: str, predicted: str) -> str:
    return f"n_{truth}_as_{predicted}"


def accuracy_schema(classes: Sequence[str]) -> dict[str, pl.DataType]:
    return {
        LABELLED: pl.Date,
        "scorer": pl.String,
        "reviews": pl.Int64,
        "macro_f1": pl.Float64,
        "accuracy": pl.Float64,
        **{f"{m}_{c}": pl.Float64 for c in classes for m in ("precision", "recall", "f1")},
        **{count_column(t, p): pl.Int64 for t in classes for p in classes},
    }


def scores_from_counts(counts: Mapping[str, int], classes: Sequence[str]) -> dict[str, float]:
    """Macro-F1, accuracy and per-class precision/recall/F1 of confusion counts
    (`count_column` keys), flat (`precision_<class>`, ...): a class never predicted has
    precision 0, never true recall 0."""
    matrix = [[counts[count_column(t, p)] for p in classes] for t in classes]
    scores = confusion_metrics(matrix, classes)
    out = {"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"]}
    for c, per_class in scores["per_class"].items():
        out |= {f"{m}_{c}": per_class[m] for m in ("precision", "recall", "f1")}
    return out


def accuracy_rows(
    day: dt.date, truth: pl.Series, predicted: Mapping[str, pl.Series], classes: Sequence[str]
) -> pl.DataFrame:
    """One row per scorer of `predicted` for the labels that arrived on `day`."""
    schema = accuracy_schema(classes)
    rows = []
    for scorer, labels in predicted.items():
        pairs = pl.DataFrame({"t": truth, "p": labels}).group_by("t", "p").len()
        counts = {count_column(t, p): 0 for t in classes for p in classes}
        counts |= {count_column(t, p): n for t, p, n in pairs.iter_rows()}
        scores = scores_from_counts(counts, classes) if len(truth) else {}
        rows.append({LABELLED: day, "scorer": scorer, "reviews": len(truth), **scores, **counts})
    return pl.DataFrame(rows, schema=schema)


def day_accuracy(
    day: dt.date,
    labels: pl.DataFrame,
    predictions: pl.DataFrame,
    features: pl.DataFrame,
    registry: pl.DataFrame,
    classes: Sequence[str],
) -> pl.DataFrame:
    """The accuracy rows of the labels that arrived on `day`: the served predictions and the
    baselines (each with the state of the week its review arrived in) on the same reviews,
    those that were predicted (reviews before the first model week were not)."""
    check_labels(labels, classes)
    rows = (
        labels.select(ID, "label")
        .join(predictions.select(ID, ARRIVAL, pl.col("label").alias("served")), on=ID)
        .join(features.select(ID, COMPOUND), on=ID)
        .sort(ID)
    )
    predicted = {SERVED: rows["served"]}
    if rows.height:
        # The week (a Monday) holding each review's arrival day: its registry row.
        with_week = rows.with_columns(
            pl.col(ARRIVAL).dt.truncate("1w").alias("model_week")
        ).with_row_index("_i")
        for baseline in BASELINES:
            parts = [
                group.select("_i", baseline_labels(baseline, group, _row(registry, week), classes))
                for (week,), group in with_week.group_by("model_week")
            ]
            predicted[baseline] = pl.concat(parts).sort("_i")["label"]
    else:
        predicted |= {b: pl.Series("label", [], dtype=pl.String) for b in BASELINES}
    return accuracy_rows(day, rows["label"], predicted, classes)


def _row(registry: pl.DataFrame, week: dt.date) -> dict:
    return registry.filter(pl.col("model_week") == week).row(0, named=True)
