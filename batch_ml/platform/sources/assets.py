"""Stage `sources`: one asset per landing source, validated against the data contract."""

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from batch_ml.platform.common import OWNERS, TRANSIENT_RETRY, BuildContext, measured
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.resources import LandingZone, TableStore, table_metadata
from batch_ml.platform.sources.contract import (
    MATCHED_IDS,
    SERIES_KEYS,
    ContractViolation,
    QuarantinePolicy,
    Source,
    empty_frame,
    load_landing_file,
    unmatched_ids_problem,
)
from batch_ml.platform.sources.landing import content_hash, file_problem, file_state, landing_path
from batch_ml.platform.sources.records import (
    LOG_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    FileFacts,
    log_row,
    quarantine_rows,
)
from batch_ml.platform.storage.tables import UNPARTITIONED, PartitionedTable

GROUP = "sources"


def _key_check(asset: str, frame: pl.DataFrame, keys: tuple[str, ...]) -> dg.AssetCheckResult:
    duplicates = frame.height - frame.select(keys).unique().height
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="unique_keys",
        passed=duplicates == 0,
        metadata={"duplicate_rows": duplicates, "keys": ", ".join(keys)},
    )


@dataclass(frozen=True)
class ReadFile:
    """A landing file as one step read it, and the log row of what came of it."""

    facts: FileFacts
    path: Path
    state: tuple[int, ...] | None  # `file_state` just before it was read
    row: pl.DataFrame  # its ingestion-log row; `ingested_at` is when it was read

    @property
    def status(self) -> str:
        return self.row["status"][0]

    @property
    def read_at(self) -> dt.datetime:
        return self.row["ingested_at"][0]


@dataclass
class Ingested:
    """What one step read and validated, not yet stored (see `commit_ingestion`)."""

    source: str
    frames: dict[dt.date | None, pl.DataFrame]  # accepted rows of each day with a valid file
    missing: list[dt.date | None]
    read: list[ReadFile]  # every file read, valid or not, in order
    quarantined: dict[str, pl.DataFrame]
    errors: list[str]

    def log(self, status: str | None = None) -> dict[str, pl.DataFrame]:
        """The log rows to store (of one status, or all), under their keys."""
        return {
            f.facts.log_key(f.status): f.row
            for f in self.read
            if status is None or f.status == status
        }

    @functools.cached_property
    def _rejected(self) -> pl.DataFrame:
        return pl.concat([pl.DataFrame(schema=QUARANTINE_SCHEMA), *self.quarantined.values()])

    @property
    def rows_quarantined(self) -> int:
        rejected = self._rejected
        return rejected.select("file", "row").n_unique() if rejected.height else 0

    @property
    def quarantined_by_rule(self) -> dict[str, int]:
        by_rule = self._rejected.group_by("rule").agg(pl.col("row").n_unique()).sort("rule")
        return dict(by_rule.iter_rows())


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


class KnownSeries:
    """The series of the stored sales, read at most once per step (not once per day of a
    range): the latest day first, every day only when a file's ids miss it."""

    def __init__(self, tables: TableStore):
        self._sales = tables.table("sales")

    @functools.cached_property
    def _days(self) -> list[str]:
        return self._sales.partitions()

    @functools.cached_property
    def _latest(self) -> pl.DataFrame:
        return self._sales.scan(self._days[-1:]).select(SERIES_KEYS).collect()

    @functools.cached_property
    def _all(self) -> pl.DataFrame:
        return self._sales.scan().select(SERIES_KEYS).unique().collect()

    def problem(self, source: Source, frame: pl.DataFrame) -> str | None:
        """`unmatched_ids_problem` for the file's rows; None (no check) for sources whose ids
        are not checked, and while sales has no partition yet."""
        if source.name not in MATCHED_IDS or frame.is_empty() or not self._days:
            return None
        # The latest day's series nearly always match; only a miss pays for every day.
        latest = self._latest
        if not latest.is_empty() and unmatched_ids_problem(frame, source, latest) is None:
            return None
        return unmatched_ids_problem(frame, source, self._all)


def ingest_files(
    landing: LandingZone,
    tables: TableStore,
    source: Source,
    days: list[dt.date | None],
    policy: QuarantinePolicy,
    horizon: int | None = None,
    *,
    run_id: str,
) -> Ingested:
    """Read and validate the source's file of each day (ids against the series `tables`
    holds), and prepare the ingestion-log row of every file read and the quarantine rows of
    every valid one. Nothing is written here: `commit_ingestion` stores the data and these
    records together."""
    frames, missing, errors, read = {}, [], [], []
    quarantined: dict[str, pl.DataFrame] = {}
    known = KnownSeries(tables)
    for day in days:
        path = landing_path(landing.path, source, day)
        # A dangling symlink does not `exist`, but a file was delivered: it must fail, not
        # read as "no file".
        if not (path.exists() or path.is_symlink()):
            missing.append(day)
            continue
        read_at = dt.datetime.now(dt.UTC)
        state = file_state(path)
        problem = file_problem(landing.path, path)
        content = b"" if problem else path.read_bytes()
        facts = FileFacts.of(source.name, path, landing.path, content, day)
        try:
            if problem:
                raise ContractViolation(path, [problem])
            loaded = load_landing_file(path, source, day, horizon, policy, content=content)
            if unmatched := known.problem(source, loaded.rows):
                raise ContractViolation(path, [unmatched])
        except ContractViolation as exc:
            errors.append(str(exc))
            row = log_row(facts, None, str(exc), run_id, read_at)
            read.append(ReadFile(facts, path, state, row))
            continue
        row = log_row(facts, loaded, None, run_id, read_at)
        read.append(ReadFile(facts, path, state, row))
        quarantined[facts.partition_key] = quarantine_rows(facts, loaded, run_id, read_at)
        frames[day] = loaded.rows
    return Ingested(source.name, frames, missing, read, quarantined, errors)


class Superseded(Exception):
    """Newer content of a file this step read was delivered or stored before it committed."""

    def __init__(self, stale: list[tuple[ReadFile, str]]):
        self.stale = stale
        super().__init__(
            "; ".join(f"{f.facts.file}@{f.facts.sha256[:12]}: {why}" for f, why in stale)
        )


def _newer_content(tables: TableStore, ingested: Ingested) -> list[tuple[ReadFile, str]]:
    """Files whose content this step read is no longer the newest for its day: the landing
    file changed since it was read, or another run stored content of that day it read later.
    Runs under the commit lock, so nothing is stored between this check and the commit; a
    file is hashed again only when its size, mtime, inode or ctime changed."""
    log = PartitionedTable(Path(tables.tables_root), LOG_TABLE)
    stored = log.partitions()
    stale = []
    for f in ingested.read:
        if f.state != file_state(f.path) and f.path.is_file():
            if content_hash(f.path) != f.facts.sha256:
                stale.append((f, "the landing file changed after this run read it"))
                continue
        prefix = f"{f.facts.partition_key}_"
        keys = [k for k in stored if k.startswith(prefix)]
        if not keys:
            continue
        newer = log.read(keys).filter(
            (pl.col("status") == "accepted")
            & (pl.col("ingested_at") > f.read_at)
            & (pl.col("sha256") != f.facts.sha256)
        )
        if newer.height:
            run = newer.sort("ingested_at")["run_id"][-1]
            stale.append((f, f"run {run} stored content of that day it read after this run"))
    return stale


def commit_ingestion(
    tables: TableStore,
    asset: str,
    partitions: dict[str, pl.DataFrame],
    ingested: Ingested,
    logger: logging.Logger | dg.DagsterLogManager,
) -> None:
    """Store the step's partitions of `asset`, the ingestion-log rows and the quarantine rows
    in one transaction: the log says `accepted` exactly for what is stored.

    - A file that breaks the contract stores nothing of the step; only the `failed` log rows
      are recorded, and the step fails without retries (the file must be fixed).
    - A file whose content is no longer the newest for its day when the step commits
      (optimistic concurrency) stores nothing of the step either; its log row says
      `superseded`, and the step fails with a retry, which reads the newest content.
    """
    if ingested.errors:
        with tables.transaction() as txn:
            txn.write(LOG_TABLE, ingested.log("failed"))
            txn.commit()
        raise dg.Failure(
            description=f"{len(ingested.errors)} {ingested.source} file(s) break the data "
            "contract; nothing of this run was stored:\n\n" + "\n\n".join(ingested.errors),
            metadata={"files_failed": len(ingested.errors), "files_read": len(ingested.read)},
            allow_retries=False,  # the file must be fixed: retrying reads the same bytes
        )

    def newest_content_only() -> None:
        stale = _newer_content(tables, ingested)
        if stale:
            raise Superseded(stale)

    try:
        with tables.transaction() as txn:
            txn.write(asset, partitions)
            txn.write(LOG_TABLE, ingested.log())
            if ingested.quarantined:
                txn.write(QUARANTINE_TABLE, ingested.quarantined)
            txn.commit(precondition=newest_content_only)
    except Superseded as exc:
        superseded = {
            f.facts.log_key("superseded"): f.row.with_columns(
                status=pl.lit("superseded"), error=pl.lit(why)
            )
            for f, why in exc.stale
        }
        with tables.transaction() as txn:
            txn.write(LOG_TABLE, superseded)
            txn.commit()
        raise dg.Failure(
            description=f"{ingested.source}: newer content arrived while this run worked; "
            f"nothing of this run was stored (the newer content wins): {exc}",
            metadata={"files_superseded": len(exc.stale)},
        ) from None
    if ingested.rows_quarantined:
        logger.warning(
            f"{ingested.source}: {ingested.rows_quarantined} row(s) sent to the quarantine "
            f"table: {ingested.quarantined_by_rule}"
        )


def build(b: BuildContext) -> list:
    horizon = b.cfg.forecast.horizon
    src = b.sources
    policy = QuarantinePolicy.from_config(b.cfg.ingest)

    def ingest(context, landing, tables, source, days, horizon=None) -> Ingested:
        """ingest_files under the project's policy, recorded with the step's run id."""
        return ingest_files(
            landing, tables, source, days, policy, horizon, run_id=run_id_of(context)
        )

    def store(context, tables: TableStore, partitions, ingested: Ingested) -> dict:
        """Commit the step's partitions with their records; the stored table's metadata."""
        commit_ingestion(tables, context.asset_key.path[-1], partitions, ingested, context.log)
        return table_metadata(tables.table(context.asset_key.path[-1]), list(partitions))

    @dg.asset(
        name="sales",
        group_name=GROUP,
        code_version="sources-v3",
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
            "A missing or invalid file fails its partition and names file, row and column; "
            "the partition and its `ingestion_log` rows are stored together."
        ),
    )
    def sales(context: dg.AssetExecutionContext, landing: LandingZone, tables: TableStore):
        with measured(len(context.partition_keys)) as cost:
            days = partition_dates(context)
            ingested = ingest(context, landing, tables, src["sales"], days)
            if ingested.missing and not ingested.errors:
                raise dg.Failure(
                    f"sales: no landing file for {len(ingested.missing)} day(s) "
                    f"{[d.isoformat() for d in ingested.missing[:5]]}; expected "
                    f"{landing_path(landing.path, src['sales'], ingested.missing[0])}",
                    allow_retries=False,  # the landing sensor starts a run when it arrives
                )
            partitions = {d.isoformat(): f for d, f in ingested.frames.items()}
            stored = store(context, tables, partitions, ingested)
        frame = pl.concat(ingested.frames.values(), how="diagonal_relaxed")
        per_day = frame.group_by("date").len()
        yield dg.MaterializeResult(
            metadata={
                **cost,
                **stored,
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
        code_version="sources-v3",
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
            empty = empty_frame(src["plans"]).with_columns(plan_date=pl.lit(None, pl.Date))
            partitions = {
                d.isoformat(): pl.concat(
                    [empty, ingested.frames[d].with_columns(plan_date=pl.lit(d))]
                    if d in ingested.frames
                    else [empty],
                    how="diagonal_relaxed",
                )
                for d in days
            }
            stored = store(context, tables, partitions, ingested)
        if ingested.missing:
            context.log.warning(
                f"no plan file for {len(ingested.missing)} day(s): {ingested.missing[:5]}"
            )
        frame = pl.concat(partitions.values(), how="diagonal_relaxed")
        yield dg.MaterializeResult(
            metadata={
                **cost,
                **stored,
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
            code_version="sources-v3",
            check_specs=[dg.AssetCheckSpec("unique_keys", asset=name), _quarantine_spec(name)],
            description=description,
        )
        def _static(context: dg.AssetExecutionContext, landing: LandingZone, tables: TableStore):
            source = src[name]
            path = landing_path(landing.path, source)
            ingested = ingest(context, landing, tables, source, [None])
            if ingested.missing:
                context.log.warning(f"{path} not found: {name} is optional, stored empty")
            frame = ingested.frames.get(None, empty_frame(source))
            stored = store(context, tables, {UNPARTITIONED: frame}, ingested)
            yield dg.MaterializeResult(
                metadata={
                    **stored,
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
