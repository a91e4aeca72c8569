"""A seeded simulator of a shop's review feed that writes landing files following the data
contract: every day a reviews file (in CSV, JSON lines or XML, chosen per day) and, for
most days, a labels file with the labels that became known that day.

The review text is real when `[sentiment.demo] replay_reviews` names a CSV of the
clothing-reviews layout (`Clothing ID`, `Title`, `Review Text`, `Rating`): its reviews arrive
in a seeded random order over the period (at most `reviews_per_day` on average), and
their 1-5 star ratings become labels (1-2 negative, 3 neutral, 4-5 positive) 1 to
`label_lag_days` days after the review; a tenth of the reviews are never labelled.
Without that file the generator writes labelled text of its own (short sentences whose
words lean to their class, with noise). The same settings give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import polars as pl

from batch_ml.config import ConfigError
from batch_ml.products.sentiment.config import DemoSettings, SentimentSettings, settings
from batch_ml.products.sentiment.sources import ARRIVAL, ID, LABELLED, LABELS, REVIEWS

# Star ratings -> the default classes.
RATING_CLASSES = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}
FORMATS = ("csv", "jsonl", "xml")
UNLABELLED_SHARE = 0.1
RECORD_ELEMENT = {REVIEWS: "review", LABELS: "label"}

# The generator's own text: words that lean to a class, and words of every class.
_WORDS = {
    "negative": "poor cheap itchy tight broke returned disappointed awful thin ripped".split(),
    "neutral": "okay fine average decent alright ordinary expected plain standard so-so".split(),
    "positive": "love great perfect beautiful soft flattering comfortable gorgeous cute".split(),
}
_NOUNS = "dress top sweater jeans skirt blouse jacket fabric fit color size material".split()
_FILLER = "the it this was is and but very really a bit for me my".split()


def _corpus(demo: DemoSettings, n_reviews: int, rng: np.random.Generator) -> pl.DataFrame:
    """product_id, title, text, rating: the replayed reviews, or generated ones."""
    if demo.replay_reviews is not None and demo.replay_reviews.is_file():
        raw = pl.read_csv(
            demo.replay_reviews,
            columns=["Clothing ID", "Title", "Review Text", "Rating"],
            schema_overrides={"Clothing ID": pl.String, "Rating": pl.Int64},
        )
        return (
            raw.rename(
                {
                    "Clothing ID": "product_id",
                    "Title": "title",
                    "Review Text": "text",
                    "Rating": "rating",
                }
            )
            .filter(pl.col("text").str.strip_chars().str.len_chars() > 0)
            # One line ending in every format (XML parsers turn CRLF into LF).
            .with_columns(pl.col("title", "text").str.replace_all("\r\n?", "\n"))
            .with_columns(pl.format("P{}", pl.col("product_id")).alias("product_id"))
        )
    ratings = rng.choice([1, 2, 3, 4, 5], size=n_reviews, p=[0.04, 0.07, 0.12, 0.22, 0.55])
    texts, titles = [], []
    classes = list(_WORDS)
    for rating in ratings:
        label = RATING_CLASSES[int(rating)]
        sentences = []
        for _ in range(int(rng.integers(1, 4))):
            # A fifth of the sentiment words come from another class: the text is noisy.
            pool = label if rng.random() > 0.2 else classes[int(rng.integers(0, 3))]
            words = [
                *rng.choice(_FILLER, 2),
                rng.choice(_NOUNS),
                *rng.choice(_FILLER, 1),
                rng.choice(_WORDS[pool]),
            ]
            sentences.append(" ".join(str(w) for w in words).capitalize() + ".")
        texts.append(" ".join(sentences))
        titles.append(str(rng.choice(_WORDS[label])).capitalize() if rng.random() < 0.8 else None)
    products = rng.integers(1, demo.products + 1, n_reviews)
    return pl.DataFrame(
        {
            "product_id": [f"P{p:04d}" for p in products],
            "title": titles,
            "text": texts,
            "rating": ratings.astype(np.int64),
        }
    )


def simulate(demo: DemoSettings, s: SentimentSettings) -> dict[str, pl.DataFrame]:
    """The reviews (with `arrival_date`) and labels (with `labelled_on`) of the period."""
    if set(s.classes) != set(RATING_CLASSES.values()):
        raise ConfigError(
            f"the sentiment demo labels reviews {sorted(set(RATING_CLASSES.values()))}; "
            f"[sentiment] classes is {list(s.classes)}"
        )
    rng = np.random.default_rng(demo.seed)
    wanted = demo.reviews_per_day * demo.days
    corpus = _corpus(demo, wanted, rng)
    # Replayed reviews arrive in a seeded random order, at most `reviews_per_day` a day.
    order = rng.permutation(corpus.height)[:wanted]
    n = len(order)
    arrival = np.sort(rng.integers(0, demo.days, n))
    # Written up to a few days before arrival (never more than the contract allows).
    age_days = np.minimum(rng.geometric(0.6, n) - 1, s.max_review_age_days)
    seconds = rng.integers(0, 86_400, n) - age_days * 86_400
    start = dt.datetime.combine(demo.start_date, dt.time(), dt.UTC)
    arrival_dates = [demo.start_date + dt.timedelta(days=int(a)) for a in arrival]
    reviews = corpus[order].with_columns(
        pl.Series(ID, [f"R{k + 1:07d}" for k in range(n)]),
        pl.Series(ARRIVAL, arrival_dates, dtype=pl.Date),
        (
            pl.lit(start, dtype=pl.Datetime("us", "UTC"))
            + pl.duration(days=pl.Series(arrival), seconds=pl.Series(seconds))
        ).alias("created_at"),
    )
    lag = rng.integers(1, s.label_lag_days + 1, n)
    labelled = rng.random(n) >= UNLABELLED_SHARE
    last_day = demo.start_date + dt.timedelta(days=demo.days - 1)
    labels = (
        reviews.select(ID, ARRIVAL, "rating")
        .with_columns(
            pl.col("rating").replace_strict(RATING_CLASSES).alias("label"),
            (pl.col(ARRIVAL) + pl.duration(days=pl.Series(lag))).alias(LABELLED),
        )
        .filter(pl.Series(labelled), pl.col(LABELLED) <= last_day)
        .select(ID, ARRIVAL, "label", LABELLED)
        .sort(LABELLED, ID)
    )
    return {REVIEWS: reviews.drop("rating"), LABELS: labels}


def _xml(frame: pl.DataFrame, record: str) -> str:
    rows = []
    for row in frame.iter_rows(named=True):
        cells = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in row.items() if v is not None)
        rows.append(f"  <{record}>{cells}</{record}>\n")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{record}s>\n{"".join(rows)}</{record}s>\n'


def write_file(frame: pl.DataFrame, path: Path, record: str) -> None:
    """One landing file in the format of its extension, complete under its final name."""
    text = frame.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    kind = path.suffix.removeprefix(".")
    if kind == "csv":
        text.write_csv(tmp)
    elif kind == "jsonl":
        text.write_ndjson(tmp)
    elif kind == "xml":
        tmp.write_text(_xml(text, record), encoding="utf-8")
    else:
        raise ValueError(f"no writer for {path.name}")
    os.replace(tmp, path)


def write_landing(demo: DemoSettings, s: SentimentSettings, landing: Path) -> dict[str, int]:
    """Every landing file of the period; returns how many of each source."""
    frames = simulate(demo, s)
    rng = np.random.default_rng(demo.seed + 1)
    counts = {REVIEWS: 0, LABELS: 0}
    by_day = {
        REVIEWS: frames[REVIEWS].partition_by(ARRIVAL, as_dict=True, include_key=False),
        LABELS: frames[LABELS].partition_by(LABELLED, as_dict=True, include_key=False),
    }
    for k in range(demo.days):
        day = demo.start_date + dt.timedelta(days=k)
        for source, parts in by_day.items():
            part = parts.get((day,))
            if part is None and source == LABELS:
                continue  # no labels known that day: no file (the source is optional)
            kind = FORMATS[int(rng.integers(0, len(FORMATS)))]
            if part is None:
                # A day without reviews: a header-only CSV (the contract's empty day; an empty
                # JSON lines or XML file names no columns).
                part, kind = frames[source].clear().drop(ARRIVAL), "csv"
            name = f"{source}_{day.isoformat()}.{kind}"
            write_file(part, Path(landing) / source / name, RECORD_ELEMENT[source])
            counts[source] += 1
    return counts


def generate(cfg, force: bool = False) -> dict[str, int] | None:
    """Write the demo landing files unless reviews files are already there (`force`: rewrite
    them, removing the earlier files of both sources first, whatever their format)."""
    landing = cfg.paths.landing
    existing = [p for p in (landing / REVIEWS).glob(f"{REVIEWS}_*.*")]
    if existing and not force:
        return None
    for source in (REVIEWS, LABELS):
        for old in (landing / source).glob(f"{source}_*.*"):
            old.unlink()
    sc = settings(cfg)
    return write_landing(sc.demo, sc.sentiment, landing)


def summarize(cfg, instance) -> tuple[list[str], dict]:
    """Macro-F1 of the served model and the baselines (the report's metadata): console lines
    and JSON values."""
    import dagster as dg

    from batch_ml.products.sentiment.evaluation import SCORERS

    records = instance.fetch_materializations(dg.AssetKey("sentiment_report"), limit=1).records
    metadata = records[0].asset_materialization.metadata if records else {}
    report = {k: v.value for k, v in metadata.items()}
    values = {
        "champion_version": report.get("champion_version"),
        **{f"macro_f1_{s}": report.get(f"macro_f1_{s}") for s in SCORERS},
        **{f"accuracy_{s}": report.get(f"accuracy_{s}") for s in SCORERS},
        "report": report.get("report"),
    }

    def number(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "Review sentiment (macro-F1 on the labels that arrived, higher is better):",
        *(
            f"  {scorer:<16} {number(values[f'macro_f1_{scorer}'])}   "
            f"(accuracy {number(values[f'accuracy_{scorer}'])})"
            for scorer in SCORERS
        ),
        f"Scores: view `review_sentiment` in {cfg.paths.warehouse} (open it read-only)",
        f"Report: {values['report']}",
    ]
    return lines, values
