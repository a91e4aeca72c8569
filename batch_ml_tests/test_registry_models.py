"""Every model flavour behind the registry's interface: fit, predict, bytes, version, card,
and the model store that keeps them."""

import json

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from batch_ml.platform.registry.model import (
    FLAVOURS,
    LightGBMModel,
    ModelCard,
    ModelInputError,
    RuleModel,
    SklearnModel,
    content_version,
    load_model,
    register_rule,
)
from batch_ml.platform.resources import ModelStore, ModelStoreError

FEATURES = ["x1", "x2", "x3"]


def _frame(rows: int = 600, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    noise = rng.normal(scale=0.3, size=rows)
    value = 2 * x[:, 0] - x[:, 1] + noise
    return pl.DataFrame(
        {
            "query": np.repeat(np.arange(rows // 10), 10),
            **{name: x[:, i] for i, name in enumerate(FEATURES)},
            "value": value,
            "label": (value > 0).astype(int),
            "grade": np.digitize(value, [-1.0, 1.0]),  # 0, 1, 2: relevance or three classes
        }
    )


LIGHTGBM = {"verbosity": -1, "deterministic": True, "force_col_wise": True, "num_leaves": 7}


def _fit_lightgbm(params: dict, target: str, seed: int = 1, **kwargs) -> LightGBMModel:
    frame = _frame()
    return LightGBMModel.fit(
        frame.head(500),
        target,
        FEATURES,
        {**LIGHTGBM, **params},
        seed=seed,
        threads=1,
        valid=frame.tail(100),
        rounds=30,
        early_stopping_rounds=5,
        **kwargs,
    )


@register_rule("test_sign_of_x1")
def _sign_of_x1(frame: pl.DataFrame, params: dict) -> np.ndarray:
    p = 1 / (1 + np.exp(-params["scale"] * frame["x1"].to_numpy()))
    return np.column_stack([1 - p, p])


def _fit_sklearn(params: dict, seed: int = 1) -> SklearnModel:
    return SklearnModel.fit(
        _frame(), "label", FEATURES, params, seed=seed, threads=1, estimator=LogisticRegression
    )


CASES = {
    "lightgbm regression": lambda params: _fit_lightgbm(
        {"objective": "regression", **params}, "value"
    ),
    "lightgbm binary": lambda params: _fit_lightgbm({"objective": "binary", **params}, "label"),
    "lightgbm multiclass": lambda params: _fit_lightgbm(
        {"objective": "multiclass", "num_class": 3, **params}, "grade"
    ),
    "lightgbm lambdarank": lambda params: _fit_lightgbm(
        {"objective": "lambdarank", **params}, "grade", group="query"
    ),
    "sklearn logistic regression": lambda params: _fit_sklearn({"C": 1.0, **params}),
    "rule": lambda params: RuleModel.fit(
        _frame(),
        "label",
        ["x1"],
        {"scale": 1.0, **params},
        seed=1,
        threads=1,
        rule="test_sign_of_x1",
    ),
}
# A parameter change per case that changes the fitted model.
CHANGED = {
    "lightgbm regression": {"num_leaves": 3},
    "lightgbm binary": {"num_leaves": 3},
    "lightgbm multiclass": {"num_leaves": 3},
    "lightgbm lambdarank": {"num_leaves": 3},
    "sklearn logistic regression": {"C": 0.01},
    "rule": {"scale": 3.0},
}
CLASSIFIERS = {"lightgbm binary": 2, "lightgbm multiclass": 3, "sklearn logistic regression": 2}


@pytest.mark.parametrize("case", CASES)
def test_a_model_round_trips_through_bytes_with_identical_predictions(case):
    model = CASES[case]({})
    data = model.to_bytes()
    loaded = load_model(model.flavour, data)
    frame = _frame(seed=5)
    assert np.array_equal(loaded.predict(frame), model.predict(frame))
    assert loaded.version == model.version == content_version(data)
    assert loaded.features == model.features


@pytest.mark.parametrize("case", CASES)
def test_the_version_is_stable_across_fits_and_changes_with_the_params(case):
    first, second = CASES[case]({}), CASES[case]({})
    assert first.to_bytes() == second.to_bytes() and first.version == second.version
    assert CASES[case](CHANGED[case]).version != first.version


@pytest.mark.parametrize("case", CLASSIFIERS)
def test_a_classifier_predicts_one_probability_per_class_summing_to_one(case):
    probabilities = CASES[case]({}).predict(_frame(seed=5))
    assert probabilities.shape == (600, CLASSIFIERS[case])
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_a_ranking_model_puts_the_relevant_rows_first():
    model = CASES["lightgbm lambdarank"]({})
    frame = _frame(seed=5).with_columns(score=model.predict(_frame(seed=5)))
    # Within a query the top-scored row has a higher grade than the bottom-scored on average.
    ends = (
        frame.sort("score")
        .group_by("query")
        .agg(pl.col("grade").last().alias("top"), pl.col("grade").first().alias("bottom"))
    )
    assert ends["top"].mean() > ends["bottom"].mean() + 0.5


def test_ranking_groups_must_be_contiguous():
    shuffled = _frame().sample(fraction=1.0, shuffle=True, seed=3)
    with pytest.raises(ModelInputError, match="contiguous"):
        LightGBMModel.fit(
            shuffled,
            "grade",
            FEATURES,
            {**LIGHTGBM, "objective": "lambdarank"},
            1,
            1,
            group="query",
        )


def test_a_seed_changes_a_randomized_model():
    params = {
        "objective": "regression",
        "feature_fraction": 0.5,
        "bagging_fraction": 0.5,
        "bagging_freq": 1,
    }
    assert (
        _fit_lightgbm(params, "value", seed=1).version
        != _fit_lightgbm(params, "value", seed=2).version
    )


def test_a_sklearn_model_learns_from_sparse_vector_columns():
    rng = np.random.default_rng(0)
    rows = 400
    label = rng.integers(0, 2, rows)
    # Token 3 appears in positive rows, token 7 in negative ones, token 0 everywhere.
    tokens = [
        [{"index": 0, "value": 1.0}, {"index": 3 if y else 7, "value": float(rng.integers(1, 3))}]
        for y in label
    ]
    frame = pl.DataFrame({"tokens": tokens, "length": rng.normal(size=rows), "label": label})
    model = SklearnModel.fit(
        frame,
        "label",
        ["length", "tokens"],
        {},
        seed=0,
        threads=1,
        estimator=LogisticRegression,
        vectors={"tokens": 10},
    )
    loaded = load_model("sklearn", model.to_bytes())
    probabilities = loaded.predict(frame)
    assert np.array_equal(probabilities, model.predict(frame))
    assert ((probabilities[:, 1] > 0.5) == (label == 1)).all()
    out_of_range = frame.with_columns(tokens=pl.lit([{"index": 10, "value": 1.0}]))
    with pytest.raises(ModelInputError, match="outside 0..9"):
        model.predict(out_of_range)
    # Vectors alone, with no numeric column (as a text model's hashed n-grams are).
    text_only = SklearnModel.fit(
        frame, "label", ["tokens"], {}, 0, 1, estimator=LogisticRegression, vectors={"tokens": 10}
    )
    assert ((text_only.predict(frame)[:, 1] > 0.5) == (label == 1)).all()


def test_a_lightgbm_model_learns_from_sparse_vector_columns():
    rng = np.random.default_rng(0)
    rows = 300
    label = rng.integers(0, 3, rows)
    # Token 10 + class marks the class; token 0 is everywhere and carries nothing.
    tokens = [
        [{"index": 0, "value": 1.0}, {"index": 10 + int(y), "value": float(rng.integers(1, 3))}]
        for y in label
    ]
    frame = pl.DataFrame({"length": rng.normal(size=rows), "tokens": tokens, "label": label})
    params = {"objective": "multiclass", "num_class": 3, "min_data_in_leaf": 5, "verbosity": -1}

    def fit() -> LightGBMModel:
        return LightGBMModel.fit(
            frame, "label", ["length", "tokens"], params, 1, 1, rounds=20, vectors={"tokens": 16}
        )

    model = fit()
    assert model.features == ["length", "tokens"] and model.vectors == {"tokens": 16}
    loaded = load_model("lightgbm", model.to_bytes())
    assert loaded.features == ["length", "tokens"] and loaded.vectors == {"tokens": 16}
    probabilities = loaded.predict(frame)
    assert np.array_equal(probabilities, model.predict(frame))
    assert (probabilities.argmax(axis=1) == label).all()
    assert fit().to_bytes() == model.to_bytes()
    with pytest.raises(ModelInputError, match="outside 0..15"):
        model.predict(frame.with_columns(tokens=pl.lit([{"index": 16, "value": 1.0}])))


def test_a_frame_without_a_model_input_is_a_clear_error():
    model = CASES["lightgbm regression"]({})
    with pytest.raises(ModelInputError, match=r"lacks model inputs \['x2'\]"):
        model.predict(_frame().drop("x2"))


def test_a_rule_model_needs_a_registered_rule():
    with pytest.raises(ModelInputError, match="no rule registered as 'nope'"):
        RuleModel.fit(_frame(), "label", ["x1"], {}, seed=1, threads=1, rule="nope")


def test_the_card_records_flavour_library_params_window_and_metrics():
    import datetime as dt

    model = _fit_sklearn({"C": 0.5})
    card = model.card(
        window=(dt.date(2025, 1, 6), dt.date(2025, 3, 2)),
        data_versions={"train": "abc"},
        validation={"macro_f1": 0.9},
        details={"train_rows": 600},
    )
    raw = json.loads(card.to_json())
    assert raw["flavour"] == "sklearn" and raw["library"] == "sklearn"
    assert raw["library_version"] and raw["params"]["C"] == 0.5
    assert raw["features"] == FEATURES and raw["window_start"] == "2025-01-06"
    assert raw["data_versions"] == {"train": "abc"} and raw["validation"] == {"macro_f1": 0.9}
    assert raw["train_rows"] == 600 and raw["version"] == model.version
    assert ModelCard.from_dict(raw) == card
    with pytest.raises(ValueError, match="reuse card fields"):
        model.card(details={"version": "x"})


def test_the_model_store_keeps_bytes_and_card_by_version_and_checks_them(tmp_path):
    store = ModelStore(root=str(tmp_path))
    for case in ("lightgbm regression", "sklearn logistic regression", "rule"):
        model = CASES[case]({})
        path = store.save(model.to_bytes(), model.card(validation={"score": 1.0}))
        assert path.name == f"{model.version}{FLAVOURS[model.flavour].suffix}"
        assert store.load_bytes(model.version) == model.to_bytes()
        assert store.load_card(model.version)["validation"] == {"score": 1.0}
        loaded = store.load(model.version)
        assert np.array_equal(loaded.predict(_frame(seed=2)), model.predict(_frame(seed=2)))
    model = CASES["rule"]({})
    with pytest.raises(ModelStoreError, match="are not the model of version"):
        store.save(b"other bytes", model.card())
    # A model file changed after it was stored is refused, naming the file.
    store.path(model.version, model.flavour).write_bytes(b'{"changed": true}')
    with pytest.raises(ModelStoreError, match=r"\.rule\.json.*does not hash to"):
        store.load(model.version)
    with pytest.raises(ModelStoreError, match="no model of version 0123456789abcdef"):
        store.load("0123456789abcdef")
