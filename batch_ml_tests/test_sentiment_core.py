"""The sentiment product's pure core: hashed text features, metrics, the VADER baseline and
the model families."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from batch_ml.platform.registry.model import load_model
from batch_ml.products.sentiment.lexicon import COMPOUND, fit_vader_band, vader_compound
from batch_ml.products.sentiment.metrics import classification_metrics, macro_f1_of_confusion
from batch_ml.products.sentiment.text import (
    VECTOR_TYPE,
    TextConfig,
    normalize,
    seen_word_indices,
    text_features,
    unknown_token_rate,
)
from batch_ml.products.sentiment.training import (
    CLASSES,
    FAMILIES,
    LABEL,
    fit_family,
    predicted_classes,
)

pytestmark = pytest.mark.unit

SMALL = TextConfig(hash_bits=10, char_ngrams=(2, 4))
WORDS = {
    "negative": ["awful", "terrible", "returned", "cheap", "ripped"],
    "neutral": ["okay", "fine", "average", "meh", "decent"],
    "positive": ["love", "perfect", "gorgeous", "great", "comfy"],
}


def _reviews(rows: int = 240, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    labels = [CLASSES[i] for i in rng.integers(0, 3, rows)]
    text = [
        " ".join(rng.choice(WORDS[y], 3)) + " the dress " + " ".join(rng.choice(["it", "was"], 2))
        for y in labels
    ]
    return pl.DataFrame(
        {
            "review_id": range(rows),
            "title": [w.split()[0] for w in text],
            "text": text,
            LABEL: labels,
        }
    )


def test_text_features_have_ids_vectors_and_counts_and_are_partition_local():
    frame = pl.DataFrame(
        {
            "review_id": [1, 2, 3],
            "title": ["Great!", None, "meh"],
            "text": ["Love it <b>so</b> much http://x.y/z", "", "Runs   small"],
        }
    )
    cfg = TextConfig(hash_bits=12)
    together = text_features(frame, cfg, id_columns=["review_id"])
    assert together.schema == pl.Schema(
        {
            "review_id": pl.Int64,
            "words": VECTOR_TYPE,
            "chars": VECTOR_TYPE,
            "text_length": pl.UInt32,
            "word_count": pl.UInt32,
        }
    )
    assert together["text_length"].to_list() == [len("love it so much"), 0, len("runs small")]
    assert together["word_count"].to_list() == [4, 0, 2]
    # The empty review has only its (empty) title: no words; l2-normalised families.
    norms = together.select(
        pl.col(c).list.eval(pl.element().struct.field("value").pow(2)).list.sum()
        for c in ("words", "chars")
    )
    assert norms.row(0) == pytest.approx((1.0, 1.0), abs=1e-6)
    assert together["words"][1].len() == 0
    apart = pl.concat(
        [
            text_features(frame[:1], cfg, id_columns=["review_id"]),
            text_features(frame[1:], cfg, id_columns=["review_id"]),
        ]
    )
    assert apart.equals(together)
    assert text_features(frame, cfg, id_columns=["review_id"]).equals(together)
    # The title's words are their own tokens: the same word in the text hashes elsewhere.
    title_only = text_features(pl.DataFrame({"title": ["love"], "text": [""]}), cfg)
    text_only = text_features(pl.DataFrame({"title": [None], "text": ["love"]}), cfg)
    assert title_only["words"][0].to_list() != text_only["words"][0].to_list()


def test_normalize_strips_urls_html_and_whitespace():
    out = pl.select(normalize(pl.lit("  See <a href='x'>HERE</a>&amp; www.shop.com/a\n\nnow ")))
    assert out.item() == "see here now"


def test_the_unknown_token_rate_is_the_share_of_unseen_word_indices():
    cfg = TextConfig(hash_bits=18, char_ngrams=None, word_ngrams=(1, 1))
    train = text_features(
        pl.DataFrame({"text": ["red dress", "blue dress"]}), cfg, title_column=None
    )
    day = text_features(pl.DataFrame({"text": ["red coat", "green coat"]}), cfg, title_column=None)
    seen = seen_word_indices(train)
    assert len(seen) == 3
    # Occurrences red, coat, green, coat: only red was seen.
    assert unknown_token_rate(day, seen) == pytest.approx(0.75)
    assert unknown_token_rate(train, seen) == 0.0
    assert np.isnan(unknown_token_rate(train[:0], seen))


def test_metrics_match_values_worked_by_hand():
    # true:  a a a b b c        pred: a a b b c c
    # confusion (rows true a,b,c; cols pred): [[2,1,0],[0,1,1],[0,0,1]], class d never occurs.
    # a: P 2/2=1, R 2/3, F1 = 2*(2/3)/(5/3) = 0.8;  b: P 1/2, R 1/2, F1 0.5
    # c: P 1/2, R 1/1, F1 = 2*(1/2)/(3/2) = 2/3;   d: no support, no predictions: F1 0
    # macro-F1 = (0.8 + 0.5 + 2/3 + 0) / 4 = 0.491666..., accuracy 4/6
    m = classification_metrics(list("aaabbc"), list("aabbcc"), ["a", "b", "c", "d"])
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["c"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 4)
    assert macro_f1_of_confusion(np.array(m["confusion"])) == pytest.approx(m["macro_f1"])
    with pytest.raises(ValueError, match="not among the classes"):
        classification_metrics(["a", "x"], ["a", "a"], ["a", "b"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_scikit_learn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    classes = ["n", "u", "p", "z"]
    true = rng.choice(classes[:3], 200)
    pred = rng.choice(classes, 200, p=[0.5, 0.1, 0.4, 0.0])
    m = classification_metrics(true, pred, classes)
    kw = {"labels": classes, "zero_division": 0}
    assert m["macro_f1"] == pytest.approx(f1_score(true, pred, average="macro", **kw))
    assert m["accuracy"] == pytest.approx(accuracy_score(true, pred))
    p, r, f, s = precision_recall_fscore_support(true, pred, **kw)
    for i, c in enumerate(classes):
        assert m["per_class"][c] == pytest.approx(
            {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
        )
    assert m["confusion"] == confusion_matrix(true, pred, labels=classes).tolist()


def test_the_vader_band_is_fitted_on_the_training_labels():
    compound = vader_compound(["I love it, perfect!", "It is okay.", "Awful, I hate it.", None])
    assert (
        compound[0] > 0.5 and compound[2] < -0.5 and compound[1] == pytest.approx(0.2263, abs=0.01)
    )
    assert compound[3] == 0.0
    scores = np.array([-0.8, -0.6, -0.1, 0.0, 0.1, 0.6, 0.9])
    labels = ["negative", "negative", "neutral", "neutral", "neutral", "positive", "positive"]
    band = fit_vader_band(scores, labels, CLASSES)
    assert band["train_macro_f1"] == 1.0
    assert -0.6 <= band["low"] <= -0.1 and 0.1 <= band["high"] < 0.6


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_fits_predicts_and_round_trips_deterministically(family):
    reviews = _reviews()
    features = text_features(reviews, SMALL, id_columns=["review_id"]).with_columns(
        pl.Series(COMPOUND, vader_compound(reviews["text"].to_list())), reviews[LABEL]
    )
    train, test = features[:180], features[180:]
    model = fit_family(family, train, SMALL, seed=3)
    again = fit_family(family, train, SMALL, seed=3)
    assert model.to_bytes() == again.to_bytes()
    probabilities = model.predict(test)
    assert probabilities.shape == (test.height, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    loaded = load_model(model.flavour, model.to_bytes())
    assert np.array_equal(loaded.predict(test), probabilities)
    predicted = predicted_classes(probabilities)
    accuracy = classification_metrics(test[LABEL].to_numpy(), predicted, CLASSES)["accuracy"]
    if family in ("tfidf_lr", "lightgbm"):
        assert accuracy > 0.9  # the class words are unambiguous
    if family == "majority":
        assert len(set(predicted)) == 1
