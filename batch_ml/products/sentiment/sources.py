"""The sentiment product's landing sources, declared as data for the platform.

- `reviews`, daily: the reviews that arrived on day D, in any one of CSV, JSON lines or XML
  (`reviews/reviews_<D>.{csv,jsonl,xml}`): review id, product id, when it was written
  (`created_at`, at most `max_review_age_days` before D), the text and optionally a title
  and a star rating. The rating is stored, never a feature: labels come from
  `review_labels`.
- `review_labels`, daily and optional: the labels that became known on day D (a rating
  mapped to a class, a person's judgement), each naming its review and the day the review
  arrived, at most `label_lag_days` before D. A day without labels has no file.

docs/data-contract.md is the human-readable version.
"""

from __future__ import annotations

import polars as pl

from batch_ml.config import IngestLimits, ProjectConfig
from batch_ml.platform.sources.contract import Source, Summary
from batch_ml.products.sentiment.config import SentimentSettings, settings

REVIEWS = "reviews"
LABELS = "review_labels"
ARRIVAL = "arrival_date"  # the stored day of a review: its reviews file's day
LABELLED = "labelled_on"  # the stored day of a label: its labels file's day
ID = "review_id"


def sources(s: SentimentSettings, limits: IngestLimits) -> dict[str, Source]:
    return {
        REVIEWS: Source(
            name=REVIEWS,
            file_format=("csv", "jsonl", "xml"),
            required={
                ID: pl.String(),
                "product_id": pl.String(),
                "created_at": pl.Datetime("us", "UTC"),
                "text": pl.String(),
            },
            optional={"title": pl.String(), "rating": pl.Int64()},
            primary_key=(ID,),
            unique_across_days=True,  # a review arrives once: scored and labelled once
            id_columns=(ID, "product_id"),
            date_column="created_at",
            date_offsets=(-s.max_review_age_days, 0),
            day_column=ARRIVAL,
            file_required=True,
            record_element="review",
            summaries=(Summary("products", "distinct", ("product_id",)),),
            description=(
                "Customer reviews that arrived on day D, from "
                "landing/reviews/reviews_<YYYY-MM-DD>.{csv,jsonl,xml} (one file a day, any of "
                "the three formats). A missing or invalid file fails its partition and names "
                "file, row and column."
            ),
            limits=limits,
        ),
        LABELS: Source(
            name=LABELS,
            file_format=("csv", "jsonl", "xml"),
            required={ID: pl.String(), ARRIVAL: pl.Date(), "label": pl.String()},
            primary_key=(ID,),
            unique_across_days=True,  # one label per review
            id_columns=(ID, "label"),
            allowed={"label": tuple(s.classes)},
            date_column=ARRIVAL,
            date_offsets=(-s.label_lag_days, 0),
            day_column=LABELLED,
            file_required=False,
            record_element="label",
            summaries=(Summary("labels", "distinct", (ID,)),),
            description=(
                "Review labels that became known on day D (one of the configured classes), "
                "each with the day its review arrived (at most label_lag_days before D), from "
                "landing/review_labels/review_labels_<YYYY-MM-DD>.{csv,jsonl,xml}. Optional: "
                "a day without labels stores an empty partition."
            ),
            limits=limits,
        ),
    }


def project_sources(cfg: ProjectConfig) -> dict[str, Source]:
    return sources(settings(cfg).sentiment, cfg.ingest.limits)
