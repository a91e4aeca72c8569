"""The VADER lexicon baseline: a review's compound score (-1..1) cut into negative / neutral /
positive by a band fitted on training labels, so the baseline has fitted state (the band, in
the rule model's JSON parameters) and is trained and gated like any model.

`vader_compound` scores text; `fit_vader_band` picks the band (low, high) maximising macro-F1
on the training rows over a grid of cut points; `vader_model` binds the registered rule
`sentiment_vader` to it. The rule reads the `vader_compound` column and returns one-hot class
probabilities in the order of `classes`. With two classes the band collapses to one cut."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import polars as pl

from batch_ml.platform.registry.model import RuleModel, register_rule
from batch_ml.products.sentiment.metrics import macro_f1_of_confusion

COMPOUND = "vader_compound"
VADER_RULE = "sentiment_vader"
CUTS = np.round(np.arange(-0.95, 0.951, 0.05), 2)


@cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(texts: Sequence[str | None]) -> np.ndarray:
    """VADER's compound score of each text (0 for a missing or empty one)."""
    analyzer = _analyzer()
    return np.array(
        [analyzer.polarity_scores(t)["compound"] if t else 0.0 for t in texts], dtype=np.float64
    )


def band_labels(compound: np.ndarray, low: float, high: float, classes: Sequence) -> np.ndarray:
    """Class positions: below `low` the first class, above `high` the last, between them the
    middle one (three classes); with two classes `high` is the cut."""
    compound = np.asarray(compound, dtype=np.float64)
    if len(classes) == 2:
        return (compound > high).astype(np.int64)
    return np.where(compound < low, 0, np.where(compound > high, 2, 1))


def fit_vader_band(compound: np.ndarray, labels: Sequence, classes: Sequence) -> dict[str, Any]:
    """The band maximising training macro-F1 (ties: the first in grid order, so deterministic).
    `labels` are class values of `classes` (2 or 3 of them, in negative..positive order)."""
    if len(classes) not in (2, 3):
        raise ValueError(f"the VADER rule maps to 2 or 3 classes, got {list(classes)}")
    classes = list(classes)
    truth = np.asarray(labels)
    best = (-1.0, 0.0, 0.0)
    pairs = (
        [(c, c) for c in CUTS]
        if len(classes) == 2
        else [(lo, hi) for lo in CUTS for hi in CUTS if hi >= lo]
    )
    position = {c: i for i, c in enumerate(classes)}
    codes = np.array([position[v] for v in truth.tolist()], dtype=np.int64)
    k = len(classes)
    for low, high in pairs:
        predicted = band_labels(compound, low, high, classes)
        confusion = np.bincount(codes * k + predicted, minlength=k * k).reshape(k, k)
        score = macro_f1_of_confusion(confusion)
        if score > best[0]:
            best = (score, float(low), float(high))
    return {"classes": classes, "low": best[1], "high": best[2], "train_macro_f1": best[0]}


@register_rule(VADER_RULE)
def _vader_rule(frame: pl.DataFrame, params: Mapping[str, Any]) -> np.ndarray:
    classes = params["classes"]
    picked = band_labels(frame[COMPOUND].to_numpy(), params["low"], params["high"], classes)
    return np.eye(len(classes))[picked]


def vader_model(train: pl.DataFrame, target: str, classes: Sequence) -> RuleModel:
    """The VADER rule with its band fitted on `train` (a `vader_compound` and a `target`
    column of class values)."""
    params = fit_vader_band(train[COMPOUND].to_numpy(), train[target].to_numpy(), classes)
    return RuleModel.fit(train, target, [COMPOUND], params, seed=0, threads=1, rule=VADER_RULE)
