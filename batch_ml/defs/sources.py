"""Stage `sources`: one asset per landing source, validated against the data contract."""

import dagster as dg
import polars as pl

from batch_ml.defs.common import OWNERS, BuildContext, measured
from batch_ml.defs.partitions import partition_dates
from batch_ml.defs.resources import LandingZone
from batch_ml.ingest.contract import SERIES_KEYS, empty_frame, read_landing_file
from batch_ml.ingest.landing import landing_path

GROUP = "sources"
# Up to a month of days per run in a backfill: one bad file fails only its own chunk.
DAILY_BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=31)


def _key_check(asset: str, frame: pl.DataFrame, keys: tuple[str, ...]) -> dg.AssetCheckResult:
    duplicates = frame.height - frame.select(keys).unique().height
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="unique_keys",
        passed=duplicates == 0,
        metadata={"duplicate_rows": duplicates, "keys": ", ".join(keys)},
    )


def build(b: BuildContext) -> list:
    horizon = b.cfg.forecast.horizon
    src = b.sources

    @dg.asset(
        name="sales",
        group_name=GROUP,
        partitions_def=b.parts.daily,
        backfill_policy=DAILY_BACKFILL,
        kinds={"polars", "csv"},
        owners=OWNERS,
        metadata={"partition_column": "date"},
        check_specs=[
            dg.AssetCheckSpec(
                "unique_keys", asset="sales", description="One row per day, store and item."
            ),
            dg.AssetCheckSpec(
                "rows_every_day", asset="sales", description="Every day of the run has sales rows."
            ),
        ],
        description=(
            "Daily sales per store x item (units, price, promotion) from "
            "landing/sales/sales_<YYYY-MM-DD>.csv, validated against docs/data-contract.md. "
            "A missing or invalid file fails its partition and names file, row and column."
        ),
    )
    def sales(context: dg.AssetExecutionContext, landing: LandingZone):
        with measured() as cost:
            frames = []
            for day in partition_dates(context):
                path = landing_path(landing.path, src["sales"], day)
                if not path.exists():
                    raise dg.Failure(f"sales for {day}: landing file {path} is missing")
                frames.append(read_landing_file(path, src["sales"], day))
            frame = pl.concat(frames, how="diagonal_relaxed")
        per_day = frame.group_by("date").len()
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "series": frame.select(SERIES_KEYS).n_unique(),
                "units_total": float(frame["units"].sum()),
            },
        )
        yield _key_check("sales", frame, ("date", *SERIES_KEYS))
        yield dg.AssetCheckResult(
            asset_key="sales",
            check_name="rows_every_day",
            passed=per_day.height == len(context.partition_keys),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"days_with_rows": per_day.height, "days": len(context.partition_keys)},
        )

    @dg.asset(
        name="plans",
        group_name=GROUP,
        partitions_def=b.parts.daily,
        backfill_policy=DAILY_BACKFILL,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        metadata={"partition_column": "plan_date"},
        check_specs=[dg.AssetCheckSpec("unique_keys", asset="plans")],
        description=(
            "Known-in-advance plans published on day D for D+1..D+horizon (planned price, "
            "promotion, opening) from landing/plans/plans_<YYYY-MM-DD>.parquet. Optional: a "
            "day without a file stores an empty partition."
        ),
    )
    def plans(context: dg.AssetExecutionContext, landing: LandingZone):
        with measured() as cost:
            frames, missing = [], []
            for day in partition_dates(context):
                path = landing_path(landing.path, src["plans"], day)
                if not path.exists():
                    missing.append(day.isoformat())
                    continue
                frames.append(
                    read_landing_file(path, src["plans"], day, horizon).with_columns(
                        plan_date=pl.lit(day)
                    )
                )
            frame = pl.concat(
                [empty_frame(src["plans"]).with_columns(plan_date=pl.lit(None, pl.Date)), *frames],
                how="diagonal_relaxed",
            )
        if missing:
            context.log.warning(f"no plan file for {len(missing)} day(s): {missing[:5]}")
        yield dg.Output(frame, metadata={**cost, "days_without_file": len(missing)})
        yield _key_check("plans", frame, ("plan_date", "date", *SERIES_KEYS))

    def static_source(name: str, description: str, kind: str):
        @dg.asset(
            name=name,
            group_name=GROUP,
            kinds={"polars", kind},
            owners=OWNERS,
            check_specs=[dg.AssetCheckSpec("unique_keys", asset=name)],
            description=description,
        )
        def _static(context: dg.AssetExecutionContext, landing: LandingZone):
            source = src[name]
            path = landing_path(landing.path, source)
            if path.exists():
                frame = read_landing_file(path, source)
            else:
                context.log.warning(f"{path} not found: {name} is optional, stored empty")
                frame = empty_frame(source)
            yield dg.Output(frame, metadata={"file": str(path), "file_present": path.exists()})
            yield _key_check(name, frame, source.primary_key)

        return _static

    return [
        sales,
        plans,
        static_source(
            "calendar",
            "Per-day calendar covariates (holidays) from "
            "landing/calendar/calendar.parquet. Optional.",
            "parquet",
        ),
        static_source(
            "products",
            "Product catalog (category, base price, launch date) from "
            "landing/products/products.json. Optional.",
            "json",
        ),
        static_source(
            "stores",
            "Store master (region, size) from landing/stores/stores.json. Optional.",
            "json",
        ),
    ]
