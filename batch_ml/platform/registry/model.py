"""Models of any flavour behind one small interface, and their cards.

A flavour fits on a Polars frame (feature columns and a target column) with parameters, a
seed and a thread count; predicts from a Polars frame to a numpy array (values or scores, or
one column of class probabilities per class for a classifier); serializes to bytes and loads
from them. The version is content-derived: the first 16 hex digits of the sha256 of the
serialized bytes, so the same data, parameters and seed give the same version, and the model
store can check that a file is the model its name says.

Flavours:
- `lightgbm`: LightGBM boosters (regression objectives, binary and multiclass classification,
  lambdarank with query groups); bytes = LightGBM's model text.
- `sklearn`: a scikit-learn estimator over numeric and sparse-vector columns; bytes = skops
  (no pickle: loading a model file never runs code from it, see `SklearnModel`).
- `rule`: a function registered by name (`register_rule`) with JSON parameters, e.g. a lexicon
  baseline; bytes = JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import io
import json
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    import lightgbm as lgb

VERSION_DIGITS = 16


def content_version(data: bytes) -> str:
    """The version of a model: a hash of its serialized bytes."""
    return hashlib.sha256(data).hexdigest()[:VERSION_DIGITS]


class ModelInputError(ValueError):
    """A frame that a model cannot fit on or predict from (missing or non-numeric columns)."""


def _check_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ModelInputError(f"{what} lacks model inputs {missing}")


class Model(ABC):
    """A fitted model of one flavour. Subclasses define `fit`, `predict`, `to_bytes`,
    `from_bytes`; the version and the card come from those."""

    flavour: ClassVar[str]
    suffix: ClassVar[str]  # file name suffix in the model store
    library: ClassVar[str]  # the package whose version the card records

    features: list[str]
    params: dict

    @abstractmethod
    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Values or scores (1-D), or class probabilities (rows x classes) for a classifier."""

    @abstractmethod
    def to_bytes(self) -> bytes: ...

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes) -> Model: ...

    @property
    def version(self) -> str:
        return content_version(self.to_bytes())

    @property
    def library_version(self) -> str:
        return importlib.import_module(self.library).__version__

    def card(
        self,
        window: tuple[dt.date, dt.date] | None = None,
        data_versions: Mapping[str, str] | None = None,
        validation: Mapping[str, float] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelCard:
        return ModelCard(
            version=self.version,
            flavour=self.flavour,
            library=self.library,
            library_version=self.library_version,
            params=dict(self.params),
            features=list(self.features),
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
            data_versions=dict(data_versions or {}),
            validation=dict(validation or {}),
            details=dict(details or {}),
        )


@dataclass(frozen=True)
class ModelCard:
    """What a model is and what it was fitted on, stored as JSON beside the model. `details`
    are a product's or flavour's extras (e.g. importance, a drift reference); they are stored
    as top-level keys, so they may not reuse a card field's name."""

    version: str
    flavour: str
    library: str
    library_version: str
    params: dict
    features: list[str]
    window_start: dt.date | None = None
    window_end: dt.date | None = None
    data_versions: dict[str, str] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[tuple[str, ...]] = (
        "version",
        "flavour",
        "library",
        "library_version",
        "params",
        "features",
        "window_start",
        "window_end",
        "data_versions",
        "validation",
    )

    def __post_init__(self) -> None:
        clash = sorted(set(self.details) & set(self.FIELDS))
        if clash:
            raise ValueError(f"model card details reuse card fields {clash}")

    def to_dict(self) -> dict:
        window = {
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
        }
        fields = {name: getattr(self, name) for name in self.FIELDS}
        return {**self.details, **fields, **window}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping) -> ModelCard:
        """A stored card. Cards written before flavours existed are LightGBM models."""

        def day(value):
            return dt.date.fromisoformat(value) if value else None

        return cls(
            version=raw["version"],
            flavour=raw.get("flavour", LightGBMModel.flavour),
            library=raw.get("library", LightGBMModel.library),
            library_version=raw.get("library_version", raw.get("lightgbm", "")),
            params=raw.get("params", {}),
            features=raw.get("features", []),
            window_start=day(raw.get("window_start")),
            window_end=day(raw.get("window_end")),
            data_versions=raw.get("data_versions", {}),
            validation=raw.get("validation", {}),
            details={k: v for k, v in raw.items() if k not in cls.FIELDS},
        )


# -- LightGBM ------------------------------------------------------------------------------

CLASSIFIER_OBJECTIVES = ("binary", "multiclass", "multiclassova")


VECTOR_SEP = "#"  # a vector feature's LightGBM name: column#index (JSON-safe, no brackets)


def _vector_names(features: Sequence[str], vectors: Mapping[str, int]) -> list[str]:
    """LightGBM's feature names: numeric columns, then each vector column's positions."""
    numeric = [c for c in features if c not in vectors]
    expanded = [f"{c}{VECTOR_SEP}{i}" for c in features if c in vectors for i in range(vectors[c])]
    return [*numeric, *expanded]


def _vectors_of_names(names: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """The features and vector widths back from LightGBM's feature names."""
    features: list[str] = []
    vectors: dict[str, int] = {}
    for name in names:
        column, sep, index = name.rpartition(VECTOR_SEP)
        if sep and index.isdigit():
            if column not in vectors:
                features.append(column)
            vectors[column] = max(vectors.get(column, 0), int(index) + 1)
        else:
            features.append(name)
    return features, vectors


def _lightgbm_matrix(frame: pl.DataFrame, features: Sequence[str], vectors: Mapping[str, int]):
    """float32 numeric columns, or a float32 CSR (numeric first, then vectors) with vectors."""
    if not vectors:
        return float_matrix(frame, features)
    return _sklearn_matrix(frame, features, vectors).astype(np.float32)


def float_matrix(frame: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    # float32: LightGBM bins the values anyway; half the memory of float64 and the same
    # matrix type in training and inference, so a split threshold sees the same values.
    return frame.select(pl.col(c).cast(pl.Float32) for c in columns).to_numpy()


def group_sizes(frame: pl.DataFrame, group: str) -> np.ndarray:
    """Sizes of the consecutive runs of `group` (a ranking query's rows must be contiguous)."""
    runs = frame.select(pl.col(group).rle()).unnest(group)
    if runs.height != frame[group].n_unique():
        raise ModelInputError(f"the rows of each {group!r} group must be contiguous (sort first)")
    return runs["len"].to_numpy()


class LightGBMModel(Model):
    """A LightGBM booster. Prediction uses `num_iteration` (the best iteration after early
    stopping); the bytes are the model text up to that iteration."""

    flavour = "lightgbm"
    suffix = ".txt"
    library = "lightgbm"

    def __init__(self, booster: lgb.Booster, num_iteration: int, params: dict):
        self.booster = booster
        self.num_iteration = num_iteration
        # Sparse-vector columns are expanded to `column#index` features in the booster; the
        # model's features are the frame's columns, and `vectors` their widths.
        self.features, self.vectors = _vectors_of_names(booster.feature_name())
        self.params = params
        self._text: str | None = None

    @classmethod
    def fit(
        cls,
        train: pl.DataFrame,
        target: str,
        features: Sequence[str],
        params: Mapping[str, Any],
        seed: int,
        threads: int,
        *,
        valid: pl.DataFrame | None = None,
        categorical: Sequence[str] = (),
        rounds: int = 100,
        early_stopping_rounds: int | None = None,
        group: str | None = None,
        vectors: Mapping[str, int] | None = None,
    ) -> LightGBMModel:
        """Boost up to `rounds` trees; with `valid`, stop once its metric has not improved for
        `early_stopping_rounds`. `group` names a ranking query's column (lambdarank).
        `vectors`: sparse-vector columns (List(Struct{index, value})) and their widths, fed
        to LightGBM as a CSR matrix (numeric columns first); their features are named
        `column#index`, so the model text says which column a split reads."""
        # Imported where used: with scikit-learn installed, `import lightgbm` costs about a
        # second, which every run worker that only ingests would otherwise pay.
        import lightgbm as lgb

        features = list(features)
        vectors = dict(vectors or {})
        _check_columns(train, [*features, target], "the training frame")
        full_params = {**params, "seed": seed, "num_threads": threads}
        names = _vector_names(features, vectors) if vectors else features

        def dataset(frame: pl.DataFrame, **kwargs) -> lgb.Dataset:
            return lgb.Dataset(
                _lightgbm_matrix(frame, features, vectors),
                label=frame[target].to_numpy(),
                group=group_sizes(frame, group) if group else None,
                **kwargs,
            )

        dtrain = dataset(
            train,
            feature_name=names,
            categorical_feature=list(categorical),
            params={"verbosity": -1},
        )
        callbacks, valid_sets = [], []
        if valid is not None:
            _check_columns(valid, [*features, target], "the validation frame")
            valid_sets = [dataset(valid, reference=dtrain)]
            if early_stopping_rounds:
                callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
        booster = lgb.train(
            full_params,
            dtrain,
            num_boost_round=rounds,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        return cls(booster, booster.best_iteration or rounds, full_params)

    @property
    def model_text(self) -> str:
        if self._text is None:
            self._text = self.booster.model_to_string(num_iteration=self.num_iteration)
        return self._text

    @property
    def objective(self) -> str:
        for line in self.model_text.splitlines():
            if line.startswith("objective="):
                return line.removeprefix("objective=").split(" ")[0]
        return ""

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        _check_columns(frame, self.features, "the frame to predict")
        if frame.is_empty():
            return np.zeros(0)
        values = self.booster.predict(
            _lightgbm_matrix(frame, self.features, self.vectors),
            num_iteration=self.num_iteration,
        )
        if self.objective == "binary":
            return np.column_stack([1.0 - values, values])
        return values

    def to_bytes(self) -> bytes:
        return self.model_text.encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> LightGBMModel:
        import lightgbm as lgb

        booster = lgb.Booster(model_str=data.decode("utf-8"))
        model = cls(booster, booster.current_iteration(), booster.params)
        model._text = data.decode("utf-8")
        return model


# -- scikit-learn --------------------------------------------------------------------------


def sparse_vectors(frame: pl.DataFrame, column: str, width: int):
    """A List(Struct{index, value}) column as a CSR matrix of `width` columns."""
    import scipy.sparse as sp

    lengths = frame[column].list.len().fill_null(0).to_numpy()
    flat = frame.select(pl.col(column).explode().struct.unnest()).drop_nulls()
    indices = flat["index"].to_numpy()
    if indices.size and (indices.min() < 0 or indices.max() >= width):
        raise ModelInputError(f"column {column!r}: an index lies outside 0..{width - 1}")
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_matrix(
        (flat["value"].cast(pl.Float64).to_numpy(), indices, indptr), shape=(frame.height, width)
    )


def _sklearn_matrix(frame: pl.DataFrame, features: Sequence[str], vectors: Mapping[str, int]):
    """Dense numeric columns, or a CSR matrix (numeric columns first, then the vectors) when
    any feature is a sparse-vector column."""
    _check_columns(frame, features, "the frame")
    numeric = [c for c in features if c not in vectors]
    not_numeric = [c for c in numeric if not frame.schema[c].is_numeric()]
    if not_numeric:
        raise ModelInputError(f"feature columns {not_numeric} are not numeric")
    dense = frame.select(pl.col(c).cast(pl.Float64) for c in numeric).to_numpy()
    if not vectors:
        return dense
    import scipy.sparse as sp

    blocks = [sparse_vectors(frame, c, vectors[c]) for c in features if c in vectors]
    # No numeric column: the dense block has no rows either (a 0 x 0 select) and is left out.
    leading = [sp.csr_matrix(dense)] if numeric else []
    return sp.hstack([*leading, *blocks], format="csr")


FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _write_zip(entries: Mapping[str, bytes]) -> bytes:
    """An archive of `entries` in name order with a fixed timestamp: the same entries always
    give the same bytes (zip files carry the time of writing)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(entries):
            archive.writestr(zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME), entries[name])
    return out.getvalue()


def _canonical_npz(data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    return _write_zip({name: src.read(name) for name in src.namelist()})


def _canonical_skops(data: bytes, extra: Mapping[str, bytes]) -> bytes:
    """skops bytes that depend only on the estimator's state. skops records object ids
    (memory addresses) as `__id__` and as the names of array files: they become 0, 1, 2, ...
    in schema order; entries are sorted and timestamps fixed (also of scipy's .npz inside)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read(SKOPS_SCHEMA))
    ids: dict[int, int] = {}

    def renamed(name: str) -> str:
        stem, dot, ext = name.partition(".")
        return f"{ids[int(stem)]}{dot}{ext}" if stem.isdigit() and int(stem) in ids else name

    def walk(node, visit) -> None:
        if isinstance(node, dict):
            visit(node)
            for value in node.values():
                walk(value, visit)
        elif isinstance(node, list):
            for value in node:
                walk(value, visit)

    def renumber(node: dict) -> None:
        if "__id__" in node:
            node["__id__"] = ids.setdefault(node["__id__"], len(ids))

    def rename_file(node: dict) -> None:
        if isinstance(node.get("file"), str):
            node["file"] = renamed(node["file"])

    walk(schema, renumber)
    walk(schema, rename_file)
    entries = {
        renamed(name): _canonical_npz(src.read(name)) if name.endswith(".npz") else src.read(name)
        for name in src.namelist()
        if name != SKOPS_SCHEMA
    }
    entries[SKOPS_SCHEMA] = json.dumps(schema, indent=2).encode("utf-8")
    return _write_zip({**entries, **extra})


SKOPS_SCHEMA = "schema.json"
MODEL_META = "batch_ml_model.json"  # features and vector widths, stored beside skops' schema


class SklearnModel(Model):
    """A scikit-learn estimator. The bytes are a skops archive (plus the features and sparse
    vector widths): loading one instantiates only types skops trusts by default (scikit-learn
    estimators, numpy and scipy arrays, builtins), never code from the file. Pickle would run
    whatever a writer of the model store put there, and the store is shared by every product's
    jobs; a model holding an untrusted type is refused on load."""

    flavour = "sklearn"
    suffix = ".skops"
    library = "sklearn"

    def __init__(self, estimator, features: Sequence[str], vectors: Mapping[str, int]):
        self.estimator = estimator
        self.features = list(features)
        self.vectors = dict(vectors)
        self.params = _jsonable(estimator.get_params(deep=False))
        self._bytes: bytes | None = None

    @classmethod
    def fit(
        cls,
        train: pl.DataFrame,
        target: str,
        features: Sequence[str],
        params: Mapping[str, Any],
        seed: int,
        threads: int,
        *,
        estimator: type,
        vectors: Mapping[str, int] | None = None,
    ) -> SklearnModel:
        """Fit `estimator(**params)` with the seed as its `random_state` (when it has one), in
        at most `threads` BLAS/OpenMP threads (an estimator's own `n_jobs` is a param).
        `vectors`: sparse-vector columns (List(Struct{index, value})) and their widths."""
        vectors = dict(vectors or {})
        _check_columns(train, [*features, target], "the training frame")
        seeded = "random_state" in estimator().get_params(deep=False)
        est = estimator(**params, **({"random_state": seed} if seeded else {}))
        with threadpool_limits(limits=threads):
            est.fit(_sklearn_matrix(train, features, vectors), train[target].to_numpy())
        return cls(est, features, vectors)

    @property
    def classes(self) -> list | None:
        classes = getattr(self.estimator, "classes_", None)
        return None if classes is None else classes.tolist()

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        matrix = _sklearn_matrix(frame, self.features, self.vectors)
        if frame.is_empty():
            return np.zeros(0)
        if hasattr(self.estimator, "predict_proba"):
            return self.estimator.predict_proba(matrix)
        return self.estimator.predict(matrix)

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            import skops.io as sio  # here: importing it costs a second, and few need it

            meta = json.dumps({"features": self.features, "vectors": self.vectors})
            self._bytes = _canonical_skops(
                sio.dumps(self.estimator), {MODEL_META: meta.encode("utf-8")}
            )
        return self._bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> SklearnModel:
        import skops.io as sio

        meta = json.loads(zipfile.ZipFile(io.BytesIO(data)).read(MODEL_META))
        untrusted = sio.get_untrusted_types(data=data)
        if untrusted:
            raise ModelInputError(f"the model holds types that are not trusted: {untrusted}")
        model = cls(sio.loads(data), meta["features"], meta["vectors"])
        model._bytes = data
        return model


def _jsonable(params: Mapping) -> dict:
    return {
        k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
        for k, v in params.items()
    }


# -- rules ---------------------------------------------------------------------------------

Rule = Callable[[pl.DataFrame, Mapping[str, Any]], np.ndarray]
RULES: dict[str, Rule] = {}


def register_rule(name: str) -> Callable[[Rule], Rule]:
    """Make a function a model: `rule(frame of its features, params) -> predictions`."""

    def register(rule: Rule) -> Rule:
        if RULES.get(name, rule) is not rule:
            raise ValueError(f"a different rule is already registered as {name!r}")
        RULES[name] = rule
        return rule

    return register


class RuleModel(Model):
    """A registered function with JSON parameters (a baseline or a lexicon): nothing is
    learnt, the bytes are the rule's name, features and parameters as JSON."""

    flavour = "rule"
    suffix = ".rule.json"
    library = "polars"

    def __init__(self, rule: str, features: Sequence[str], params: Mapping[str, Any]):
        if rule not in RULES:
            raise ModelInputError(f"no rule registered as {rule!r}; known: {sorted(RULES)}")
        self.rule = rule
        self.features = list(features)
        self.params = dict(params)

    @classmethod
    def fit(
        cls,
        train: pl.DataFrame,
        target: str,
        features: Sequence[str],
        params: Mapping[str, Any],
        seed: int,
        threads: int,
        *,
        rule: str,
    ) -> RuleModel:
        """Nothing to learn: checks the columns and binds the rule to its parameters."""
        _check_columns(train, [*features, target], "the training frame")
        return cls(rule, features, params)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        _check_columns(frame, self.features, "the frame to predict")
        return np.asarray(RULES[self.rule](frame.select(self.features), self.params))

    def to_bytes(self) -> bytes:
        body = {"rule": self.rule, "features": self.features, "params": self.params}
        return json.dumps(body, sort_keys=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> RuleModel:
        body = json.loads(data)
        return cls(body["rule"], body["features"], body["params"])


FLAVOURS: dict[str, type[Model]] = {
    flavour.flavour: flavour for flavour in (LightGBMModel, SklearnModel, RuleModel)
}


def load_model(flavour: str, data: bytes) -> Model:
    if flavour not in FLAVOURS:
        raise ModelInputError(f"unknown model flavour {flavour!r}; known: {sorted(FLAVOURS)}")
    return FLAVOURS[flavour].from_bytes(data)
