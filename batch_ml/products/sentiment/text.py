"""Review text as hashed n-gram vectors: a day is featurised alone.

Word n-grams and character n-grams (within word boundaries) are hashed into a fixed number of
features per family (scikit-learn's `HashingVectorizer`, no sign flipping), so no vocabulary is
fitted across days and featurising two days separately gives the rows of featurising them
together. Term frequencies are sublinear (1 + log tf) and each family's row is l2-normalised;
any idf-like weighting belongs to the model (a `TfidfTransformer` in a scikit-learn pipeline,
stored with it), because an idf fitted here would need every day's text at once.

Output columns: the id columns, one sparse-vector column per family (List(Struct{index: UInt32,
value: Float32}), the platform's sparse-vector type: `SklearnModel` / `LightGBMModel` with
`vectors={column: cfg.width}`), and the numeric `text_length` (characters) and `word_count`.

Drift: `seen_word_indices` of the training window's features is a model's state; the
`unknown_token_rate` of a day is the share of its word n-gram occurrences whose hashed index
the training window never held: computed from the day's features alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

WORDS = "words"
CHARS = "chars"
TEXT_LENGTH = "text_length"
WORD_COUNT = "word_count"
TITLE_PREFIX = "title_"  # title words are their own tokens: "title_love" is not "love"
VECTOR_TYPE = pl.List(pl.Struct({"index": pl.UInt32, "value": pl.Float32}))
TOKEN_PATTERN = r"(?u)\b\w+\b"  # one-letter words too ("i", "a" carry little, "5" a rating)


@dataclass(frozen=True)
class TextConfig:
    """How text becomes features. `hash_bits`: each family has 2**hash_bits features;
    `char_ngrams` None leaves the character family out."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = (2, 5)
    hash_bits: int = 18
    lowercase: bool = True
    sublinear_tf: bool = True
    l2_norm: bool = True
    use_title: bool = True

    def __post_init__(self) -> None:
        for name in ("word_ngrams", "char_ngrams"):
            span = getattr(self, name)
            if span is not None and not 1 <= span[0] <= span[1]:
                raise ValueError(f"{name} must be (low, high) with 1 <= low <= high, got {span}")
        if not 4 <= self.hash_bits <= 24:
            raise ValueError(f"hash_bits must be in 4..24, got {self.hash_bits}")

    @property
    def width(self) -> int:
        return 2**self.hash_bits

    @property
    def vectors(self) -> dict[str, int]:
        """The sparse-vector columns `text_features` gives and their widths."""
        families = [WORDS, *([CHARS] if self.char_ngrams else [])]
        return {family: self.width for family in families}

    @property
    def numeric(self) -> list[str]:
        return [TEXT_LENGTH, WORD_COUNT]

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.vectors]


def normalize(expr: pl.Expr, lowercase: bool = True) -> pl.Expr:
    """Nulls to "", urls and html tags out, html entities and whitespace runs to one space."""
    out = expr.cast(pl.String).fill_null("")
    if lowercase:
        out = out.str.to_lowercase()
    return (
        out.str.replace_all(r"(?:https?://|www\.)\S+", " ")
        .str.replace_all(r"<[^>]{0,200}>", " ")
        .str.replace_all(r"&[a-z]+;|&#\d+;", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def _vectorizer(cfg: TextConfig, analyzer: str, span: tuple[int, int]):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer=analyzer,
        ngram_range=span,
        n_features=cfg.width,
        alternate_sign=False,
        norm=None,
        lowercase=False,  # normalised in Polars already
        token_pattern=TOKEN_PATTERN if analyzer == "word" else None,
        dtype=np.float32,
    )


def _weighted(counts, cfg: TextConfig):
    """Sublinear tf and l2 norm of a CSR of counts (in place on its data)."""
    from sklearn.preprocessing import normalize as l2_rows

    counts.sum_duplicates()
    counts.sort_indices()
    if cfg.sublinear_tf:
        np.log(counts.data, out=counts.data)
        counts.data += 1.0
    return l2_rows(counts, norm="l2", copy=False) if cfg.l2_norm else counts


def csr_to_vectors(matrix, name: str) -> pl.Series:
    """A CSR matrix as a List(Struct{index: UInt32, value: Float32}) series, one row per matrix
    row (empty rows give empty lists). Vectorised: the entries are grouped by their row number
    (from the CSR offsets), no Python loop over rows."""
    rows = matrix.shape[0]
    lengths = np.diff(matrix.indptr)
    flat = pl.DataFrame(
        {
            "row": np.repeat(np.arange(rows, dtype=np.uint32), lengths),
            "index": matrix.indices.astype(np.uint32),
            "value": matrix.data.astype(np.float32),
        }
    )
    grouped = flat.group_by("row").agg(pl.struct("index", "value").alias(name))
    every = pl.DataFrame({"row": np.arange(rows, dtype=np.uint32)})
    out = every.join(grouped, on="row", how="left").sort("row")
    return out[name].fill_null(pl.lit([], dtype=VECTOR_TYPE)).cast(VECTOR_TYPE)


def prepared_text(
    frame: pl.DataFrame, cfg: TextConfig, text_column: str, title_column: str | None
) -> tuple[pl.Series, pl.Series]:
    """(word text, char text): normalised review text, the title's words prefixed with
    `title_` in front for the word family and the plain title in front for the characters."""
    body = normalize(pl.col(text_column), cfg.lowercase)
    if title_column is None or not cfg.use_title:
        out = frame.select(body.alias("w"), body.alias("c"))
    else:
        title = normalize(pl.col(title_column), cfg.lowercase)
        out = frame.select(
            pl.concat_str(
                [title.str.replace_all(r"(\w+)", f"{TITLE_PREFIX}$1"), pl.lit(" | "), body]
            ).alias("w"),
            pl.concat_str([title, pl.lit(" | "), body]).str.strip_chars(" |").alias("c"),
        )
    return out["w"], out["c"]


def text_features(
    frame: pl.DataFrame,
    cfg: TextConfig,
    text_column: str = "text",
    title_column: str | None = "title",
    id_columns: Sequence[str] = (),
) -> pl.DataFrame:
    """`id_columns`, `words` (and `chars` when `cfg.char_ngrams`) as sparse vectors,
    `text_length` (characters of the normalised review text) and `word_count` (its word tokens),
    one row per input row in input order. A title column absent from the frame is ignored."""
    if title_column is not None and title_column not in frame.columns:
        title_column = None
    words_text, chars_text = prepared_text(frame, cfg, text_column, title_column)
    body = frame.select(normalize(pl.col(text_column), cfg.lowercase).alias("b"))["b"]
    columns = [
        csr_to_vectors(
            _weighted(_vectorizer(cfg, "word", cfg.word_ngrams).transform(words_text), cfg), WORDS
        )
    ]
    if cfg.char_ngrams:
        chars = _vectorizer(cfg, "char_wb", cfg.char_ngrams).transform(chars_text)
        columns.append(csr_to_vectors(_weighted(chars, cfg), CHARS))
    numeric = pl.DataFrame({"b": body}).select(
        pl.col("b").str.len_chars().cast(pl.UInt32).alias(TEXT_LENGTH),
        pl.col("b").str.count_matches(TOKEN_PATTERN).cast(pl.UInt32).alias(WORD_COUNT),
    )
    return pl.concat([frame.select(id_columns), pl.DataFrame(columns), numeric], how="horizontal")


def seen_word_indices(features: pl.DataFrame, column: str = WORDS) -> list[int]:
    """The sorted hashed word n-gram indices a training window's features hold: a model's
    state (a list of ints, JSON-storable) for `unknown_token_rate`."""
    flat = features.select(pl.col(column).explode().struct.field("index")).drop_nulls()
    return flat[column if column in flat.columns else "index"].unique().sort().to_list()


def unknown_token_rate(features: pl.DataFrame, seen: Sequence[int], column: str = WORDS) -> float:
    """The share of a day's word n-gram occurrences (distinct per review) whose hashed index is
    not in `seen` (the training window's): 0 when the day's words were all seen, NaN for a day
    without words. Partition-local: needs the day's features and the model's state only."""
    flat = features.select(pl.col(column).explode().struct.field("index")).drop_nulls()
    if flat.is_empty():
        return float("nan")
    indices = flat.to_series().to_numpy()
    known = np.isin(indices, np.asarray(seen, dtype=indices.dtype))
    return float(1.0 - known.mean())
