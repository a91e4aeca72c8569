"""Model families for sentiment, behind the platform's model interface.

`fit_family(name, train, cfg, seed)` fits one family on a frame of `text_features` columns and
a `label` column of class values (`CLASSES` order: negative, neutral, positive); every family's
`predict` gives one probability per class in `CLASSES` order (for the LightGBM family the label
is the class's position).

- `tfidf_lr`: a scikit-learn pipeline, idf weighting (a `TfidfTransformer` per block, word and
  character, over the hashed sublinear counts: the idfs are fitted on the training window and
  stored with the model), the lexicon's compound score as one more column, and NB-LR
  (`NBLogisticRegression`: per class, the tf-idf columns scaled by the class's naive-Bayes
  log-count ratio, then a class-balanced binary logistic regression; one-vs-rest, its
  probabilities normalised to sum 1). The ratios are folded into the coefficients after the
  fit, so the stored model is stock sklearn (a `OneVsRestClassifier` of `LogisticRegression`).
  LR's probabilities are calibrated well enough for ranking and thresholds (a log-loss fit);
  the balanced weights shift them toward the rare classes, which is what the macro-F1 target
  asks for.
- `lightgbm`: LightGBM multiclass on the text length, word count, the lexicon's compound score
  and the hashed word n-grams (CSR into LightGBM; the character block is left out: its many
  dense columns made the histograms ten times dearer for no validation gain). The number of
  trees is chosen by early stopping on the freshest `LIGHTGBM_STOP_SHARE` of the training
  rows (the rows' order: `train_week` sorts them by label arrival) with at most `rounds`, and
  the booster is then refitted on every row with that many trees.
- `vader`: the lexicon baseline (`lexicon.vader_model`), its band fitted on the training rows.
- `majority`: the training window's class shares for every row (the rule `sentiment_prior`).

The same inputs and seed give the same bytes (lbfgs and LightGBM with one thread are
deterministic)."""

from __future__ import annotations

import functools
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
from batch_ml.products.sentiment.text import CHARS, WORDS, TextConfig

CLASSES = ("negative", "neutral", "positive")
LABEL = "label"
PRIOR_RULE = "sentiment_prior"
FAMILIES = ("tfidf_lr", "lightgbm", "vader", "majority")
# C and the layout: chosen on inner splits of the benchmark's training rows (see its doc).
LR_PARAMS: dict[str, Any] = {"C": 2.0, "max_iter": 2000}
NB_ALPHA = 0.1  # NB-LR's smoothing of the log-count ratios (see NBLogisticRegression)
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "multiclass",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.5,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_col_wise": True,  # measured faster than row-wise on these sparse columns
}
LIGHTGBM_ROUNDS = 100  # at most: early stopping picks fewer
LIGHTGBM_STOP_SHARE = 0.2  # the last rows held out to choose the number of trees
LIGHTGBM_PATIENCE = 10
LIGHTGBM_MIN_STOP_ROWS = 30  # fewer rows held out: no early stopping, `rounds` trees


def tfidf_lr(
    C: float = 2.0,  # noqa: N803
    max_iter: int = 2000,
    class_weight: Any = "balanced",
    alpha: float = NB_ALPHA,
    width: int = 2**18,
    chars: bool = True,
):
    """The `tfidf_lr` estimator over the matrix [compound, words, chars] (`width` columns per
    vector block): an idf and l2 norm fitted per block (so the many character n-grams do not
    drown the words in one row norm), the lexicon's compound score passed through as one more
    column, then NB-LR (`NBLogisticRegression`: one balanced binary logistic regression per
    class over the tf-idf columns scaled by that class's log-count ratio). `fit_family` folds
    the ratios into the fitted coefficients, so the stored model is a plain sklearn Pipeline
    (ColumnTransformer, OneVsRestClassifier of LogisticRegression) of types skops trusts."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.pipeline import Pipeline

    blocks = [
        ("compound", "passthrough", slice(0, 1)),
        ("words", TfidfTransformer(norm="l2"), slice(1, 1 + width)),
    ]
    if chars:
        blocks.append(("chars", TfidfTransformer(norm="l2"), slice(1 + width, 1 + 2 * width)))
    model = NBLogisticRegression(
        C=C, max_iter=max_iter, class_weight=class_weight, alpha=alpha, unscaled=1
    )
    return Pipeline([("blocks", ColumnTransformer(blocks, sparse_threshold=1.0)), ("lr", model)])


class NBLogisticRegression:
    """NB-LR (Wang & Manning 2012, the logistic-regression form of NBSVM), one-vs-rest: for
    each class c (the positive class alone for two classes) the log-count ratio
    r = log((alpha + f_c) / |alpha + f_c|_1) - log((alpha + f_rest) / |alpha + f_rest|_1) of
    the summed feature values f of its rows and of the others, and a binary logistic
    regression on the columns scaled by r (the first `unscaled` columns, the compound score,
    as they are). Probabilities: the binary ones normalised to sum 1 (sklearn's OvR).

    `alpha` is the smoothing in the features' own units: the columns are l2-normed tf-idf
    values, so a column's sum is far below its count and the textbook alpha 1 flattens r.

    Only a fitting device: `folded()` gives the equivalent stock `OneVsRestClassifier`
    (decision w . (r * x) + b = (w * r) . x + b), which is what a model stores."""

    def __init__(
        self,
        C: float = 2.0,  # noqa: N803
        max_iter: int = 2000,
        class_weight: Any = "balanced",
        alpha: float = NB_ALPHA,
        unscaled: int = 0,
    ):
        self.C, self.max_iter, self.class_weight = C, max_iter, class_weight
        self.alpha, self.unscaled = alpha, unscaled

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {
            "C": self.C,
            "max_iter": self.max_iter,
            "class_weight": self.class_weight,
            "alpha": self.alpha,
            "unscaled": self.unscaled,
        }

    def set_params(self, **params: Any) -> NBLogisticRegression:
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def fit(self, X, y) -> NBLogisticRegression:  # noqa: N803
        import scipy.sparse as sp
        from sklearn.linear_model import LogisticRegression

        X = sp.csr_matrix(X, dtype=np.float64)  # noqa: N806
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("NB-LR needs at least two classes")
        targets = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        self.estimators_, self.ratios_ = [], []
        for target in targets:
            positive = y == target
            ratio = np.ones(X.shape[1])
            ratio[self.unscaled :] = _log_count_ratio(X[:, self.unscaled :], positive, self.alpha)
            lr = LogisticRegression(
                C=self.C, max_iter=self.max_iter, class_weight=self.class_weight
            )
            lr.fit(X.multiply(ratio[None, :]).tocsr(), positive.astype(np.int64))
            self.estimators_.append(lr)
            self.ratios_.append(ratio)
        return self

    def folded(self):
        """The fitted model as a stock OneVsRestClassifier over the unscaled columns."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.preprocessing import LabelBinarizer

        ovr = OneVsRestClassifier(
            LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
        )
        for lr, ratio in zip(self.estimators_, self.ratios_, strict=True):
            lr.coef_ = lr.coef_ * ratio[None, :]
        ovr.estimators_ = self.estimators_
        ovr.label_binarizer_ = LabelBinarizer(sparse_output=True).fit(self.classes_)
        ovr.classes_ = ovr.label_binarizer_.classes_
        ovr.n_features_in_ = self.estimators_[0].n_features_in_
        return ovr


def _log_count_ratio(X, positive: np.ndarray, alpha: float) -> np.ndarray:  # noqa: N803
    p = alpha + np.asarray(X[positive].sum(axis=0)).ravel()
    q = alpha + np.asarray(X[~positive].sum(axis=0)).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


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
        # Counts (text length) stay out: unscaled they would swamp the normed blocks.
        layout = {"width": cfg.width, "chars": CHARS in cfg.vectors}
        fitted = SklearnModel.fit(
            train,
            LABEL,
            [COMPOUND, *cfg.vectors],  # the matrix: compound first, then the vector blocks
            {**LR_PARAMS, **(params or {})},
            seed,
            # One thread: lbfgs on a sparse matrix gains little from more, and on a busy
            # machine two BLAS threads made the fit 7x slower (1.3 s -> 9 s, demo week).
            1,
            estimator=functools.partial(tfidf_lr, **layout),  # type: ignore[arg-type]
            vectors=cfg.vectors,
        )
        # The NB ratios folded into the coefficients: the stored steps are stock sklearn.
        pipeline = fitted.estimator
        pipeline.steps[-1] = ("lr", pipeline.steps[-1][1].folded())
        return SklearnModel(pipeline, fitted.features, fitted.vectors)
    if name == "lightgbm":
        return _fit_lightgbm(train, cfg, seed, classes, threads, params or {})
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


def lightgbm_features(cfg: TextConfig) -> tuple[list[str], dict[str, int]]:
    """The `lightgbm` family's columns (numeric first) and its vector columns' widths."""
    return [*cfg.numeric, COMPOUND, WORDS], {WORDS: cfg.vectors[WORDS]}


def _fit_lightgbm(
    train: pl.DataFrame,
    cfg: TextConfig,
    seed: int,
    classes: list,
    threads: int,
    params: Mapping[str, Any],
) -> Model:
    frame = train.with_columns(pl.Series(LABEL, class_codes(train[LABEL], classes)))
    merged = {**LIGHTGBM_PARAMS, "num_class": len(classes), **params}
    rounds = int(merged.pop("rounds", LIGHTGBM_ROUNDS))
    features, vectors = lightgbm_features(cfg)
    held = int(frame.height * LIGHTGBM_STOP_SHARE)
    early, late = frame[: frame.height - held], frame[frame.height - held :]
    if held >= LIGHTGBM_MIN_STOP_ROWS and early[LABEL].n_unique() == len(classes):
        stopped = LightGBMModel.fit(
            early,
            LABEL,
            features,
            merged,
            seed,
            threads,
            valid=late,
            rounds=rounds,
            early_stopping_rounds=LIGHTGBM_PATIENCE,
            vectors=vectors,
        )
        rounds = max(stopped.num_iteration, 1)
    return LightGBMModel.fit(
        frame, LABEL, features, merged, seed, threads, rounds=rounds, vectors=vectors
    )


def predicted_classes(probabilities: np.ndarray, classes=CLASSES) -> np.ndarray:
    """The most probable class of each row (ties: the first in `classes`)."""
    return np.asarray(classes, dtype=object)[np.asarray(probabilities).argmax(axis=1)]


__all__ = ["CLASSES", "COMPOUND", "FAMILIES", "LABEL", "fit_family", "predicted_classes"]
