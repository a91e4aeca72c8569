"""The sentiment product's weekly model and its use, pure functions on Polars frames: a day's
review features, the week's training (every configured family fitted on all but the freshest
labels and scored on those, the best refitted on all), the baselines' fitted state,
predictions with class probabilities, and the drift figures of a day against a model's
training data."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from batch_ml.platform.monitoring.drift import profile, psi
from batch_ml.platform.registry.model import Model
from batch_ml.platform.stages import TrainedModel
from batch_ml.platform.storage.digest import frame_digest
from batch_ml.products.sentiment import lexicon, text, training
from batch_ml.products.sentiment.config import SentimentConfig, TextSettings
from batch_ml.products.sentiment.evaluation import (
    BASELINES,
    LEXICON_HIGH,
    LEXICON_LOW,
    MAJORITY_CLASS,
    baseline_labels,
    macro_f1,
)
from batch_ml.products.sentiment.sources import ARRIVAL, ID, LABELLED

PROFILED = (text.TEXT_LENGTH, text.WORD_COUNT)
CLASS_MIX = "predicted_class"
UNKNOWN_TOKENS = "unknown_token_rate"
KNOWN_TOKENS = "known_tokens"  # card detail: the training window's hashed word n-grams
MIN_TRAINING_ROWS = 50
KEYS = (ID, "product_id", ARRIVAL)


class TrainingDataError(ValueError):
    """Too few labelled reviews, or a single class, to train the week's model on."""


def probability_column(label: str) -> str:
    return f"p_{label}"


def text_config(settings: TextSettings) -> text.TextConfig:
    return text.TextConfig(
        word_ngrams=(1, settings.word_ngram_max),
        char_ngrams=(settings.char_ngram_min, settings.char_ngram_max),
        hash_bits=settings.hash_bits,
    )


def review_features(reviews: pl.DataFrame, settings: TextSettings) -> pl.DataFrame:
    """One row per review: its keys, the hashed n-gram vectors, text length, word count and
    the lexicon's compound score; computed from the review alone."""
    features = text.text_features(reviews, text_config(settings), id_columns=KEYS)
    compound = lexicon.vader_compound(reviews["text"].to_list())
    return features.with_columns(pl.Series(lexicon.COMPOUND, compound, dtype=pl.Float64))


def predicted(model: Model, frame: pl.DataFrame, classes: Sequence[str]) -> pl.DataFrame:
    """`label` and one probability column per class, in `classes` order (every family's
    `predict` gives them in that order)."""
    if frame.is_empty():
        return pl.DataFrame(
            schema={"label": pl.String, **{probability_column(c): pl.Float64 for c in classes}}
        )
    probabilities = np.asarray(model.predict(frame)).reshape(frame.height, len(classes))
    labels = training.predicted_classes(probabilities, classes)
    return pl.DataFrame(
        {
            "label": pl.Series(labels.tolist(), dtype=pl.String),
            **{probability_column(c): probabilities[:, k] for k, c in enumerate(classes)},
        }
    )


def one_hot(labels: pl.Series, classes: Sequence[str]) -> pl.DataFrame:
    """A baseline's labels as predictions: probability 1 for its label."""
    return pl.DataFrame(
        {
            "label": labels.cast(pl.String),
            **{probability_column(c): (labels == c).cast(pl.Float64) for c in classes},
        }
    )


def baseline_state(rows: pl.DataFrame, classes: Sequence[str]) -> dict:
    """The baselines' state fitted on training rows: the majority class (ties: the first in
    `classes` order) and the lexicon's band that scores best on them."""
    classes = list(classes)
    count = dict(rows["label"].value_counts().iter_rows())
    majority = max(classes, key=lambda c: (count.get(c, 0), -classes.index(c)))
    band = lexicon.fit_vader_band(rows[lexicon.COMPOUND].to_numpy(), rows["label"], classes)
    return {MAJORITY_CLASS: majority, LEXICON_LOW: band["low"], LEXICON_HIGH: band["high"]}


def known_tokens(rows: pl.DataFrame, width: int) -> str:
    """The hashed word n-grams the rows hold, as a bitmap (base64, `width` bits): compact
    enough for the model card even at 2**24 features."""
    seen = np.zeros(width, dtype=bool)
    seen[np.asarray(text.seen_word_indices(rows), dtype=np.int64)] = True
    return base64.b64encode(np.packbits(seen).tobytes()).decode("ascii")


def unknown_token_rate(rows: pl.DataFrame, known: str) -> float:
    """The day's unknown-token rate against a card's `known_tokens` bitmap."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(known), dtype=np.uint8))
    return text.unknown_token_rate(rows, np.flatnonzero(bits).tolist())


def class_codes(labels: pl.Series, classes: Sequence[str]) -> np.ndarray:
    return labels.replace_strict(
        {c: k for k, c in enumerate(classes)}, return_dtype=pl.Float64
    ).to_numpy()


def class_profile(labels: pl.Series, classes: Sequence[str]) -> dict:
    """The class mix as a drift profile (`psi`'s reference): class k is the value k, the
    bins' edges between the classes, the last share that of nulls (none)."""
    counts = np.bincount(class_codes(labels, classes).astype(np.int64), minlength=len(classes))
    shares = (counts / max(counts.sum(), 1)).tolist()
    return {"edges": [k + 0.5 for k in range(len(classes) - 1)], "shares": [*shares, 0.0]}


def family_scores(
    fit: pl.DataFrame,
    valid: pl.DataFrame,
    families: Sequence[str],
    fit_model,
    classes: Sequence[str],
    fitted: dict[str, Model] | None = None,
) -> dict[str, float | None]:
    """Macro-F1 on `valid` of each family fitted on `fit`, and of the baselines with their
    state fitted on `fit`. `fitted`, when given, receives each family's model."""
    scores: dict[str, float | None] = {}
    for family in families:
        candidate = fit_model(family, fit)
        if fitted is not None:
            fitted[family] = candidate
        scores[family] = macro_f1(
            valid["label"], predicted(candidate, valid, classes)["label"], classes
        )
    state = baseline_state(fit, classes)
    for baseline in BASELINES:
        scores[baseline] = macro_f1(
            valid["label"], baseline_labels(baseline, valid, state, classes), classes
        )
    return scores


def train_week(rows: pl.DataFrame, week: dt.date, sc: SentimentConfig) -> TrainedModel:
    """The week's model from `rows` (`labelled_reviews` of the labels that arrived in the
    training window): every family fitted on all but the last `validation_days` of labels
    and scored on those; the best refitted on every row."""
    s = sc.sentiment
    classes = list(s.classes)
    present = set(rows["label"].unique().to_list())
    if rows.height < MIN_TRAINING_ROWS or len(present) < 2:
        raise TrainingDataError(
            f"week {week}: {rows.height} labelled reviews with classes {sorted(present)} in the "
            f"{s.training_days} days before it; at least {MIN_TRAINING_ROWS} and two classes "
            "are needed (labels arrive in review_labels)"
        )
    cfg = text_config(sc.text)

    def fit_model(family: str, frame: pl.DataFrame) -> Model:
        return training.fit_family(
            family,
            frame,
            cfg,
            s.seed,
            classes=classes,
            threads=s.num_threads,
            params=sc.model.of(family),
        )

    rows = rows.sort(LABELLED, ID)
    cut = week - dt.timedelta(days=s.validation_days)
    fit, valid = rows.filter(pl.col(LABELLED) < cut), rows.filter(pl.col(LABELLED) >= cut)
    in_sample = fit["label"].n_unique() < 2 or valid.is_empty()
    if in_sample:
        fit, valid = rows, rows  # too few labels to hold any back: scored in-sample
    candidates: dict[str, Model] = {}
    scores = family_scores(fit, valid, s.families, fit_model, classes, candidates)
    best = max(s.families, key=lambda f: (scores[f] or 0.0, -s.families.index(f)))
    # Scored in-sample, the candidate was fitted on every row already: no second fit.
    model = candidates[best] if in_sample else fit_model(best, rows)
    return TrainedModel(
        model=model,
        window=(rows[ARRIVAL].min(), week - dt.timedelta(days=1)),
        # Registry columns: the same whatever families are configured (the table's schema
        # must not change when a family is added); each family's score is in the card.
        validation={
            "valid_macro_f1": scores[best] or 0.0,
            **{f"valid_macro_f1_{name}": scores[name] or 0.0 for name in BASELINES},
        },
        data_version=frame_digest(rows.select(ID, "label", LABELLED)),
        details={
            "family": best,
            "family_scores": {f: scores[f] for f in s.families},
            "classes": classes,
            "validation_rows": valid.height,
            "validated_in_sample": in_sample,
            "profile": {
                **profile(rows, PROFILED),
                CLASS_MIX: class_profile(rows["label"], classes),
            },
            KNOWN_TOKENS: known_tokens(rows, cfg.width),
            # The validation rows' own rate against the fit rows: what a normal day looks like.
            UNKNOWN_TOKENS: unknown_token_rate(valid, known_tokens(fit, cfg.width)),
        },
        state={
            "family": best,
            "training_rows": rows.height,
            "validation_rows": valid.height,
            **baseline_state(rows, classes),
        },
    )


DRIFT_SCHEMA = {"variable": pl.String, "psi": pl.Float64, "value": pl.Float64}


def drift_rows(rows: pl.DataFrame, card: Mapping, classes: Sequence[str]) -> pl.DataFrame:
    """PSI of the profiled text figures and of the predicted class mix (`rows`: a day's
    features with the served `label`) against the card's training profile, and the day's
    unknown-token rate (`value`)."""
    reference = card["profile"]
    values = {
        **{c: rows[c].cast(pl.Float64).to_numpy() for c in PROFILED},
        CLASS_MIX: class_codes(rows["label"], classes),
    }
    out = [
        {"variable": name, "psi": round(psi(reference[name], v), 6), "value": None}
        for name, v in values.items()
    ]
    rate = unknown_token_rate(rows, card[KNOWN_TOKENS])
    out.append({"variable": UNKNOWN_TOKENS, "psi": None, "value": None if np.isnan(rate) else rate})
    return pl.DataFrame(out, schema=DRIFT_SCHEMA).with_columns(
        pl.lit(rows.height, dtype=pl.Int64).alias("rows")
    )
