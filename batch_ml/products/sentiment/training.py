"""Model families for sentiment, behind the platform's model interface.

`fit_family(name, train, cfg, seed)` fits one family on a frame of `text_features` columns and
a `label` column of class values (`CLASSES` order: negative, neutral, positive); every family's
`predict` gives one probability per class in `CLASSES` order (for the LightGBM family the label
is the class's position).

- `tfidf_lr`: a scikit-learn pipeline, idf weighting (`TfidfTransformer` over the hashed
  sublinear counts: the idf is fitted on the training window and stored with the model) and a
  class-balanced multinomial logistic regression. LR's probabilities are calibrated well enough
  for ranking and thresholds (a log-loss fit); the balanced weights shift them toward the rare
  classes, which is what the macro-F1 target asks for.
- `lightgbm`: LightGBM multiclass on the same sparse features (CSR into LightGBM).
- `vader`: the lexicon baseline (`lexicon.vader_model`), its band fitted on the training rows.
- `majority`: the training window's class shares for every row (the rule `sentiment_prior`).

The same inputs and seed give the same bytes (lbfgs and LightGBM with one thread are
deterministic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from batch_ml.platform.registry.model import (
    LightGBMModel,
    Model,
    RuleModel,
    SklearnModel,
    register_rule,
)
from batch_ml.products.sentiment.lexicon import COMPOUND, vader_model
from batch_ml.products.sentiment.text import TextConfig

CLASSES = ("negative", "neutral", "positive")
LABEL = "label"
PRIOR_RULE = "sentiment_prior"
FAMILIES = ("tfidf_lr", "lightgbm", "vader", "majority")
LR_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 2000}  # C: best of 0.25..4 (clothing)
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "multiclass",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.5,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
}
LIGHTGBM_ROUNDS = 300


def tfidf_lr(C: float = 4.0, max_iter: int = 2000, class_weight: Any = "balanced"):  # noqa: N803
    """The `tfidf_lr` estimator: idf over hashed counts, then balanced logistic regression
    (lbfgs: multinomial for 3 classes). A function, so the stored model is a plain sklearn
    Pipeline skops trusts."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("idf", TfidfTransformer(sublinear_tf=False, norm="l2")),
            ("lr", LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)),
        ]
    )


@register_rule(PRIOR_RULE)
def _prior_rule(frame: pl.DataFrame, params: Mapping[str, Any]) -> np.ndarray:
    return np.tile(np.asarray(params["shares"], dtype=np.float64), (frame.height, 1))


def class_codes(labels: pl.Series, classes=CLASSES) -> np.ndarray:
    position = {c: i for i, c in enumerate(classes)}
    unknown = set(labels.unique().to_list()) - set(position)
    if unknown:
        raise ValueError(f"labels {sorted(map(str, unknown))} are not among {list(classes)}")
    return labels.replace_strict(position, return_dtype=pl.Int64).to_numpy()


def fit_family(
    name: str,
    train: pl.DataFrame,
    cfg: TextConfig,
    seed: int,
    *,
    classes=CLASSES,
    threads: int = 1,
    params: Mapping[str, Any] | None = None,
) -> Model:
    """One family fitted on `train` (`text_features` columns, `label`, and `vader_compound`
    for `vader`). `params` override the family's defaults."""
    classes = list(classes)
    if name == "tfidf_lr":
        # The estimator is passed its class values in CLASSES order: sklearn sorts classes_,
        # which is CLASSES order for negative < neutral < positive.
        if sorted(classes) != classes:
            raise ValueError("tfidf_lr needs classes in sorted order")
        return SklearnModel.fit(
            train,
            LABEL,
            # Vectors alone: the idf's row norm would let a raw count (text length) swamp them.
            list(cfg.vectors),
            {**LR_PARAMS, **(params or {})},
            seed,
            threads,
            estimator=tfidf_lr,  # type: ignore[arg-type]
            vectors=cfg.vectors,
        )
    if name == "lightgbm":
        frame = train.with_columns(pl.Series(LABEL, class_codes(train[LABEL], classes)))
        merged = {**LIGHTGBM_PARAMS, "num_class": len(classes), **(params or {})}
        rounds = int(merged.pop("rounds", LIGHTGBM_ROUNDS))
        return LightGBMModel.fit(
            frame, LABEL, cfg.features, merged, seed, threads, rounds=rounds, vectors=cfg.vectors
        )
    if name == "vader":
        return vader_model(train, LABEL, classes)
    if name == "majority":
        codes = class_codes(train[LABEL], classes)
        shares = (np.bincount(codes, minlength=len(classes)) / max(len(codes), 1)).tolist()
        feature = cfg.numeric[:1]
        return RuleModel.fit(
            train,
            LABEL,
            feature,
            {"classes": classes, "shares": shares},
            seed,
            threads,
            rule=PRIOR_RULE,
        )
    raise ValueError(f"unknown family {name!r}; known: {list(FAMILIES)}")


def predicted_classes(probabilities: np.ndarray, classes=CLASSES) -> np.ndarray:
    """The most probable class of each row (ties: the first in `classes`)."""
    return np.asarray(classes, dtype=object)[np.asarray(probabilities).argmax(axis=1)]


__all__ = ["CLASSES", "COMPOUND", "FAMILIES", "LABEL", "fit_family", "predicted_classes"]
