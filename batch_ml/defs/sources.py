"""Stage `sources`: one asset per landing source, validated against the data contract."""

import datetime as dt
import logging
from dataclasses import dataclass

import dagster as dg
import polars as pl

from batch_ml.defs.common import OWNERS, TRANSIENT_RETRY, BuildContext, measured
from batch_ml.defs.partitions import partition_dates
from batch_ml.defs.resources import LandingZone, TableStore
from batch_ml.ingest.contract import (
    MATCHED_IDS,
    SERIES_KEYS,
    ContractViolation,
    QuarantinePolicy,
    Source,
    empty_frame,
    load_landing_file,
    unmatched_ids_problem,
)
from batch_ml.ingest.landing import file_problem, landing_path
from batch_ml.ingest.records import (
    LOG_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    FileFacts,
    log_row,
    quarantine_rows,
)

GROUP = "sources"


def _key_check(asset: str, frame: pl.DataFrame, keys: tuple[str, ...]) -> dg.AssetCheckResult:
    duplicates = frame.height - frame.select(keys).unique().height
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="unique_keys",
        passed=duplicates == 0,
        metadata={"duplicate_rows": duplicates, "keys": ", ".join(keys)},
    )


@dataclass
class Ingested:
    frames: list[pl.DataFrame]
    missing: list[dt.date | None]
    rows_quarantined: int
    quarantined_by_rule: dict[str, int]


def _quarantine_check(asset: str, ingested: Ingested) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="no_quarantined_rows",
        passed=ingested.rows_quarantined == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_quarantined": ingested.rows_quarantined,
            **{f"rule_{rule}": n for rule, n in ingested.quarantined_by_rule.items()},
        },
    )


def _quarantine_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "no_quarantined_rows",
        asset=asset,
        description="No row of the partition's files was sent to the `quarantine` table.",
    )


def run_id_of(context: dg.AssetExecutionContext) -> str:
    try:
        return context.run.run_id
    except dg.DagsterError:  # invoked directly (tests), outside any run
        return "direct"


def unmatched_ids(tables: TableStore, source: Source, frame: pl.DataFrame) -> str | None:
    """`unmatched_ids_problem` against the series of the stored sales; None (no check) while
    sales has no partition yet."""
    if source.name not in MATCHED_IDS or frame.is_empty():
        return None
    sales = tables.table("sales")
    days = sales.partitions()
    if not days:
        return None
    # The latest day's series nearly always match; only a miss pays for reading every day.
    latest = sales.scan(days[-1:]).select(SERIES_KEYS).collect()
    if not latest.is_empty() and unmatched_ids_problem(frame, source, latest) is None:
        return None
    known = sales.scan().select(SERIES_KEYS).unique().collect()
    return unmatched_ids_problem(frame, source, known)


def ingest_files(
    landing: LandingZone,
    tables: TableStore,
    source: Source,
    days: list[dt.date | None],
    policy: QuarantinePolicy,
    horizon: int | None = None,
    *,
    run_id: str,
    logger: logging.Logger | dg.DagsterLogManager,
) -> Ingested:
    """Load and validate the source's file of each day; record every file read in the
    ingestion log (with `run_id`) and the rows it drops in the quarantine table. Any file
    that breaks the contract fails the step, after all files of the step were checked and
    logged. Quarantined rows are reported to `logger` as a warning."""
    now = dt.datetime.now(dt.UTC)
    frames, missing, errors = [], [], []
    log: dict[str, pl.DataFrame] = {}
    quarantined: dict[str, pl.DataFrame] = {}
    for day in days:
        path = landing_path(landing.path, source, day)
        if not path.exists():
            missing.append(day)
            continue
        problem = file_problem(landing.path, path)
        content = b"" if problem else path.read_bytes()
        facts = FileFacts.of(source.name, path, landing.path, content, day)
        try:
            if problem:
                raise ContractViolation(path, [problem])
            loaded = load_landing_file(path, source, day, horizon, policy, content=content)
            if unmatched := unmatched_ids(tables, source, loaded.rows):
                raise ContractViolation(path, [unmatched])
        except ContractViolation as exc:
            errors.append(str(exc))
            log[facts.log_key] = log_row(facts, None, str(exc), run_id, now)
            continue
        log[facts.log_key] = log_row(facts, loaded, None, run_id, now)
        quarantined[facts.partition_key] = quarantine_rows(facts, loaded, run_id, now)
        frames.append(loaded.rows)
    tables.write(LOG_TABLE, log)
    if quarantined:
        tables.write(QUARANTINE_TABLE, quarantined)
    if errors:
        raise dg.Failure(
            description=f"{len(errors)} {source.name} file(s) break the data contract:\n\n"
            + "\n\n".join(errors),
            metadata={"files_failed": len(errors), "files_read": len(log)},
            allow_retries=False,  # the file must be fixed: retrying reads the same bytes
        )
    rejected = pl.concat([pl.DataFrame(schema=QUARANTINE_SCHEMA), *quarantined.values()])
    by_rule = dict(rejected.group_by("rule").agg(pl.col("row").n_unique()).sort("rule").iter_rows())
    rows_quarantined = rejected.select("file", "row").n_unique() if rejected.height else 0
    if rows_quarantined:
        logger.warning(
            f"{source.name}: {rows_quarantined} row(s) sent to the quarantine table: {by_rule}"
        )
    return Ingested(frames, missing, rows_quarantined, by_rule)


def build(b: BuildContext) -> list:
    horizon = b.cfg.forecast.horizon
    src = b.sources
    policy = QuarantinePolicy.from_config(b.cfg.ingest)

    def ingest(context, landing, tables, source, days, horizon=None) -> Ingested:
        """ingest_files under the project's policy, logged to the step's run."""
        return ingest_files(
            landing,
            tables,
            source,
            days,
            policy,
            horizon,
            run_id=run_id_of(context),
            logger=context.log,
        )

    @dg.asset(
        name="sales",
        group_name=GROUP,
        code_version="sources-v2",
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds={"polars", "csv"},
        owners=OWNERS,
        retry_policy=TRANSIENT_RETRY,
        metadata={"partition_column": "date"},
        check_specs=[
            dg.AssetCheckSpec(
                "unique_keys", asset="sales", description="One row per day, store and item."
            ),
            dg.AssetCheckSpec(
                "rows_every_day", asset="sales", description="Every day of the run has sales rows."
            ),
            _quarantine_spec("sales"),
        ],
        description=(
            "Daily sales per store x item (units, price, promotion) from "
            "landing/sales/sales_<YYYY-MM-DD>.csv, validated against docs/data-contract.md. "
            "A missing or invalid file fails its partition and names file, row and column."
        ),
    )
    def sales(context: dg.AssetExecutionContext, landing: LandingZone, tables: TableStore):
        with measured(len(context.partition_keys)) as cost:
            days = partition_dates(context)
            ingested = ingest(context, landing, tables, src["sales"], days)
            if ingested.missing:
                raise dg.Failure(
                    f"sales: no landing file for {len(ingested.missing)} day(s) "
                    f"{[d.isoformat() for d in ingested.missing[:5]]}; expected "
                    f"{landing_path(landing.path, src['sales'], ingested.missing[0])}",
                    allow_retries=False,  # the landing sensor starts a run when it arrives
                )
            frame = pl.concat(ingested.frames, how="diagonal_relaxed")
        per_day = frame.group_by("date").len()
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "series": frame.select(SERIES_KEYS).n_unique(),
                "units_total": float(frame["units"].sum()),
                "rows_quarantined": ingested.rows_quarantined,
            },
        )
        yield _key_check("sales", frame, ("date", *SERIES_KEYS))
        yield _quarantine_check("sales", ingested)
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
        code_version="sources-v2",
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        retry_policy=TRANSIENT_RETRY,
        metadata={"partition_column": "plan_date"},
        check_specs=[dg.AssetCheckSpec("unique_keys", asset="plans"), _quarantine_spec("plans")],
        description=(
            "Known-in-advance plans published on day D for D+1..D+horizon (planned price, "
            "promotion, opening) from landing/plans/plans_<YYYY-MM-DD>.parquet. Optional: a "
            "day without a file stores an empty partition."
        ),
    )
    def plans(context: dg.AssetExecutionContext, landing: LandingZone, tables: TableStore):
        with measured(len(context.partition_keys)) as cost:
            days = partition_dates(context)
            ingested = ingest(context, landing, tables, src["plans"], days, horizon)
            published = [d for d in days if d not in ingested.missing]
            frame = pl.concat(
                [
                    empty_frame(src["plans"]).with_columns(plan_date=pl.lit(None, pl.Date)),
                    *(
                        f.with_columns(plan_date=pl.lit(d))
                        for f, d in zip(ingested.frames, published, strict=True)
                    ),
                ],
                how="diagonal_relaxed",
            )
        if ingested.missing:
            context.log.warning(
                f"no plan file for {len(ingested.missing)} day(s): {ingested.missing[:5]}"
            )
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "days_without_file": len(ingested.missing),
                "rows_quarantined": ingested.rows_quarantined,
            },
        )
        yield _key_check("plans", frame, ("plan_date", "date", *SERIES_KEYS))
        yield _quarantine_check("plans", ingested)

    def static_source(name: str, description: str, kind: str):
        @dg.asset(
            name=name,
            group_name=GROUP,
            kinds={"polars", kind},
            owners=OWNERS,
            retry_policy=TRANSIENT_RETRY,
            code_version="sources-v2",
            check_specs=[dg.AssetCheckSpec("unique_keys", asset=name), _quarantine_spec(name)],
            description=description,
        )
        def _static(context: dg.AssetExecutionContext, landing: LandingZone, tables: TableStore):
            source = src[name]
            path = landing_path(landing.path, source)
            ingested = ingest(context, landing, tables, source, [None])
            if ingested.missing:
                context.log.warning(f"{path} not found: {name} is optional, stored empty")
                frame = empty_frame(source)
            else:
                frame = ingested.frames[0]
            yield dg.Output(
                frame,
                metadata={
                    "file": str(path),
                    "file_present": not ingested.missing,
                    "rows_quarantined": ingested.rows_quarantined,
                },
            )
            yield _key_check(name, frame, source.primary_key)
            yield _quarantine_check(name, ingested)

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
