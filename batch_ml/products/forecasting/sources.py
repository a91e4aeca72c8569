"""The forecasting product's landing sources, declared as data for the platform.

Five sources: daily `sales` (the actuals), daily `plans` (known-in-advance covariates
published on day D for D+1 .. D+horizon), and the static `calendar`, `products` and
`stores`. Their covariates and attributes are the ones `[features]` declares. The platform
(`batch_ml.platform.sources`) validates the files, builds the assets and watches the landing
folders from these declarations alone; docs/data-contract.md is the human-readable version.
"""

from __future__ import annotations

import polars as pl

from batch_ml.config import IngestLimits, ProjectConfig
from batch_ml.platform.sources.contract import MatchesStored, Source, Summary
from batch_ml.products.forecasting.config import FeatureConfig, settings

SERIES_KEYS = ("store_id", "item_id")
TARGET = "units"
# The stored plans' column recording the day D a plan was published (its partition).
PLAN_DATE = "plan_date"


def sources(features: FeatureConfig, limits: IngestLimits, horizon: int) -> dict[str, Source]:
    """The declaration of every source, with the covariates and attributes `features`
    declares, the project's file limits (`[ingest]`) and the plans' reach (`horizon` days)."""
    num = pl.Float64()
    known = {c: num for c in features.known_in_advance}

    # The series every plan, product and store must (partly) name: those of the stored sales.
    def known_in_sales(*columns: str) -> MatchesStored:
        return MatchesStored("sales", columns)

    def attributes(names: tuple[str, ...]) -> dict[str, pl.DataType]:
        return {c: num if c in features.numeric_attributes else pl.String() for c in names}

    return {
        "sales": Source(
            name="sales",
            file_format="csv",
            required={
                "date": pl.Date(),
                "store_id": pl.String(),
                "item_id": pl.String(),
                TARGET: num,
            },
            # Observed values of the known-in-advance covariates may come with the actuals.
            optional={"price": num, "on_promo": num, **known},
            primary_key=("date", *SERIES_KEYS),
            id_columns=SERIES_KEYS,
            non_negative=(TARGET, "price"),
            date_column="date",
            file_required=True,
            summaries=(
                Summary("series", "distinct", SERIES_KEYS),
                Summary("units_total", "sum", (TARGET,)),
            ),
            description=(
                "Daily sales per store x item (units, price, promotion) from "
                "landing/sales/sales_<YYYY-MM-DD>.csv, validated against docs/data-contract.md. "
                "A missing or invalid file fails its partition and names file, row and column; "
                "the partition and its `ingestion_log` rows are stored together."
            ),
            limits=limits,
        ),
        "plans": Source(
            name="plans",
            file_format="parquet",
            required={"date": pl.Date(), "store_id": pl.String(), "item_id": pl.String()},
            optional=known,
            primary_key=("date", *SERIES_KEYS),
            id_columns=SERIES_KEYS,
            non_negative=tuple(c for c in ("price",) if c in known),
            date_column="date",
            date_offsets=(1, horizon),
            file_required=False,
            day_column=PLAN_DATE,
            known_ids=known_in_sales(*SERIES_KEYS),
            description=(
                "Known-in-advance plans published on day D for D+1..D+horizon (planned price, "
                "promotion, opening) from landing/plans/plans_<YYYY-MM-DD>.parquet. Optional: a "
                "day without a file stores an empty partition."
            ),
            limits=limits,
        ),
        "calendar": Source(
            name="calendar",
            file_format="parquet",
            required={"date": pl.Date()},
            optional={c: num for c in features.calendar},
            primary_key=("date",),
            daily=False,
            file_required=False,
            description=(
                "Per-day calendar covariates (holidays) from "
                "landing/calendar/calendar.parquet. Optional."
            ),
            limits=limits,
        ),
        "products": Source(
            name="products",
            file_format="json",
            required={"item_id": pl.String()},
            optional={"launch_date": pl.Date(), **attributes(features.product_attributes)},
            primary_key=("item_id",),
            id_columns=("item_id",),
            daily=False,
            file_required=False,
            known_ids=known_in_sales("item_id"),
            description=(
                "Product catalog (category, base price, launch date) from "
                "landing/products/products.json. Optional."
            ),
            limits=limits,
        ),
        "stores": Source(
            name="stores",
            file_format="json",
            required={"store_id": pl.String()},
            optional=attributes(features.store_attributes),
            primary_key=("store_id",),
            id_columns=("store_id",),
            daily=False,
            file_required=False,
            known_ids=known_in_sales("store_id"),
            description="Store master (region, size) from landing/stores/stores.json. Optional.",
            limits=limits,
        ),
    }


def project_sources(cfg: ProjectConfig) -> dict[str, Source]:
    """The sources of a project config: its features, `[ingest]` limits and horizon."""
    fc = settings(cfg)
    return sources(fc.features, cfg.ingest.limits, fc.forecast.horizon)
