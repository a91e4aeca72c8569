"""Stage `sources`: one asset per declared landing source, validated against its declaration.

`source_asset` builds a source's asset from its `Source` declaration alone (daily or
static); a product gets its source assets by declaring its sources (`BuildContext.sources`).
"""

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from batch_ml.platform.common import TRANSIENT_RETRY, BuildContext, measured
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.resources import LandingZone, TableStore, table_metadata
from batch_ml.platform.sources.contract import (
    STORED_DAY,
    ContractViolation,
    MatchesStored,
    QuarantinePolicy,
    Source,
    empty_frame,
    keys_stored_elsewhere_problem,
    load_landing_file,
    unmatched_ids_problem,
)
from batch_ml.platform.sources.landing import (
    ambiguous_problem,
    content_hash,
    day_paths,
    file_problem,
    file_state,
)
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


class KnownIds:
    """The ids of the stored source a rule names (`MatchesStored`), read at most once per
    step (not once per day of a range): the latest partition first, every partition only
    when a file's ids miss it."""

    def __init__(self, tables: TableStore, rule: MatchesStored):
        self._stored = tables.table(rule.source)
        self._columns = list(rule.columns)

    @functools.cached_property
    def _partitions(self) -> list[str]:
        return self._stored.partitions()

    @functools.cached_property
    def _latest(self) -> pl.DataFrame:
        return self._stored.scan(self._partitions[-1:]).select(self._columns).collect()

    @functools.cached_property
    def _all(self) -> pl.DataFrame:
        return self._stored.scan().select(self._columns).unique().collect()

    def problem(self, source: Source, frame: pl.DataFrame) -> str | None:
        """`unmatched_ids_problem` for the file's rows; None (no check) while the stored
        source has no partition yet."""
        if frame.is_empty() or not self._partitions:
            return None
        # The latest partition's ids nearly always match; only a miss pays for every one.
        latest = self._latest
        if not latest.is_empty() and unmatched_ids_problem(frame, source, latest) is None:
            return None
        return unmatched_ids_problem(frame, source, self._all)


class StoredKeys:
    """The primary keys of a `unique_across_days` source on other days than a file's, with
    their day (STORED_DAY): the stored ones that match the file's keys (a lazy semi join, so
    only matches are read, whatever the history) and those this step loaded already."""

    def __init__(self, tables: TableStore, source: Source):
        self._keys = list(source.primary_key)
        table = tables.table(source.name)
        day = pl.col(source.day_column or source.date_column).cast(pl.Date).alias(STORED_DAY)
        # Listed once per step: nothing is stored before the step commits.
        self._stored = table.scan().select(*self._keys, day) if table.partitions() else None
        self._loaded: dict[dt.date, pl.DataFrame] = {}

    def matching(self, frame: pl.DataFrame, day: dt.date) -> pl.DataFrame:
        ids = frame.select(self._keys)
        found = [
            f.select(self._keys).with_columns(pl.lit(d).alias(STORED_DAY))
            for d, f in self._loaded.items()
            if d != day
        ]
        if self._stored is not None:
            found.append(self._stored.join(ids.lazy(), on=self._keys, how="semi").collect())
        schema = {**ids.schema, STORED_DAY: pl.Date()}
        return pl.concat([pl.DataFrame(schema=schema), *found], how="vertical_relaxed")

    def add(self, frame: pl.DataFrame, day: dt.date) -> None:
        self._loaded[day] = frame


def ingest_files(
    landing: LandingZone,
    tables: TableStore,
    source: Source,
    days: list[dt.date | None],
    policy: QuarantinePolicy,
    *,
    run_id: str,
) -> Ingested:
    """Read and validate the source's file of each day (ids against the stored source its
    `known_ids` names, in `tables`), and prepare the ingestion-log row of every file read
    and the quarantine rows of every valid one. Nothing is written here: `commit_ingestion`
    stores the data and these records together. A day with files in two formats is an error
    (none of them is read: which one is meant is not the pipeline's guess)."""
    frames, missing, errors, read = {}, [], [], []
    quarantined: dict[str, pl.DataFrame] = {}
    known = KnownIds(tables, source.known_ids) if source.known_ids else None
    stored_keys = StoredKeys(tables, source) if source.unique_across_days else None
    for day in days:
        # A dangling symlink does not `exist`, but a file was delivered: it must fail, not
        # read as "no file" (`day_paths` lists it).
        paths = day_paths(landing.path, source, day)
        if not paths:
            missing.append(day)
            continue
        if len(paths) > 1:
            errors.append(str(ContractViolation(paths[0].parent, [ambiguous_problem(paths)])))
            continue
        (path,) = paths
        read_at = dt.datetime.now(dt.UTC)
        state = file_state(path)
        problem = file_problem(landing.path, path)
        content = b"" if problem else path.read_bytes()
        facts = FileFacts.of(source.name, path, landing.path, content, day)
        try:
            if problem:
                raise ContractViolation(path, [problem])
            loaded = load_landing_file(path, source, day, policy=policy, content=content)
            if known and (unmatched := known.problem(source, loaded.rows)):
                raise ContractViolation(path, [unmatched])
            if stored_keys is not None:
                stored = stored_keys.matching(loaded.rows, day)
                if clash := keys_stored_elsewhere_problem(loaded.rows, source, stored, day):
                    raise ContractViolation(path, [clash])
                stored_keys.add(loaded.rows, day)
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
        if failed := ingested.log("failed"):  # none when no file was read (two of one day)
            with tables.transaction() as txn:
                txn.write(LOG_TABLE, failed)
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


def _stored_partitions(
    source: Source, days: list[dt.date], ingested: Ingested
) -> dict[str, pl.DataFrame]:
    """The partition of each day with a valid file and, when files are optional, an empty one
    for each day without; with the file's day in `day_column` when declared. (A day whose
    file failed has none: nothing of the step is stored then.)"""
    partitions = {}
    for day in days:
        if day in ingested.frames:
            frame = ingested.frames[day]
        elif day in ingested.missing and not source.file_required:
            frame = empty_frame(source)
        else:
            continue
        if source.day_column:
            frame = frame.with_columns(pl.lit(day, pl.Date).alias(source.day_column))
        partitions[day.isoformat()] = frame
    return partitions


def _summaries(source: Source, frame: pl.DataFrame) -> dict:
    return {s.name: s.of(frame) for s in source.summaries}


def source_asset(source: Source, b: BuildContext) -> dg.AssetsDefinition:
    """The asset of one declared source: its file of each partition day (daily) or its one
    file (static), validated and stored with its ingestion records (`commit_ingestion`).

    Checks: `unique_keys` (the primary key, with the day column when declared),
    `no_quarantined_rows`, and for a daily source whose file is required `rows_every_day`.
    Metadata: cost, the stored table's metadata, `rows_quarantined`, the declared summaries,
    and days without a file (daily, optional file) or the file's path and presence (static).
    """
    name = source.name
    policy = QuarantinePolicy.from_config(b.cfg.ingest)
    keys = (source.day_column, *source.primary_key) if source.day_column else source.primary_key
    check_specs = [
        dg.AssetCheckSpec("unique_keys", asset=name, description=f"One row per {', '.join(keys)}.")
    ]
    if source.daily and source.file_required:
        check_specs.append(
            dg.AssetCheckSpec(
                "rows_every_day", asset=name, description=f"Every day of the run has {name} rows."
            )
        )
    check_specs.append(_quarantine_spec(name))
    common = {
        "name": name,
        "group_name": GROUP,
        "code_version": "sources-v3",
        "kinds": {"polars", *source.file_formats},
        "retry_policy": TRANSIENT_RETRY,
        "check_specs": check_specs,
        "description": source.description or None,
    }

    def ingest(context, landing: LandingZone, tables: TableStore, days) -> Ingested:
        """ingest_files under the project's policy, recorded with the step's run id."""
        return ingest_files(landing, tables, source, days, policy, run_id=run_id_of(context))

    def store(context, tables: TableStore, partitions, ingested: Ingested) -> dict:
        """Commit the step's partitions with their records; the stored table's metadata."""
        commit_ingestion(tables, name, partitions, ingested, context.log)
        return table_metadata(tables.table(name), list(partitions))

    if not source.daily:

        @dg.asset(**common)
        def _static(context: dg.AssetExecutionContext, landing: LandingZone, tables: TableStore):
            expected = landing.path / name / source.accepted_names()
            with measured() as cost:
                ingested = ingest(context, landing, tables, [None])
                if ingested.missing and source.file_required:
                    raise dg.Failure(
                        f"{name}: no landing file; expected {expected}",
                        allow_retries=False,  # the landing sensor starts a run when it arrives
                    )
                if ingested.missing:
                    context.log.warning(f"{expected} not found: {name} is optional, stored empty")
                frame = ingested.frames.get(None, empty_frame(source))
                stored = store(context, tables, {UNPARTITIONED: frame}, ingested)
            yield dg.MaterializeResult(
                metadata={
                    **cost,
                    **stored,
                    **_summaries(source, frame),
                    "file": str(ingested.read[0].path if ingested.read else expected),
                    "file_present": not ingested.missing,
                    "rows_quarantined": ingested.rows_quarantined,
                },
            )
            yield _key_check(name, frame, keys)
            yield _quarantine_check(name, ingested)

        return _static

    @dg.asset(
        **common,
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        metadata={"partition_column": source.partition_column},
    )
    def _daily(context: dg.AssetExecutionContext, landing: LandingZone, tables: TableStore):
        with measured(len(context.partition_keys)) as cost:
            days = partition_dates(context)
            ingested = ingest(context, landing, tables, days)
            if ingested.missing and source.file_required and not ingested.errors:
                raise dg.Failure(
                    f"{name}: no landing file for {len(ingested.missing)} day(s) "
                    f"{[d.isoformat() for d in ingested.missing[:5]]}; expected "
                    f"{landing.path / name / source.accepted_names(ingested.missing[0])}",
                    allow_retries=False,  # the landing sensor starts a run when it arrives
                )
            partitions = _stored_partitions(source, days, ingested)
            stored = store(context, tables, partitions, ingested)
        if ingested.missing:
            context.log.warning(
                f"no {name} file for {len(ingested.missing)} day(s): {ingested.missing[:5]}"
            )
        frame = pl.concat(partitions.values(), how="diagonal_relaxed")
        without_file = {} if source.file_required else {"days_without_file": len(ingested.missing)}
        yield dg.MaterializeResult(
            metadata={
                **cost,
                **stored,
                **without_file,
                **_summaries(source, frame),
                "rows_quarantined": ingested.rows_quarantined,
            },
        )
        yield _key_check(name, frame, keys)
        yield _quarantine_check(name, ingested)
        if source.file_required:
            per_day = frame.group_by(source.partition_column).len()
            yield dg.AssetCheckResult(
                asset_key=name,
                check_name="rows_every_day",
                passed=per_day.height == len(context.partition_keys),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"days_with_rows": per_day.height, "days": len(context.partition_keys)},
            )

    return _daily


def build(b: BuildContext) -> list[dg.AssetsDefinition]:
    """The asset of every source the product declares (`b.sources`), in declaration order."""
    return [source_asset(source, b) for source in b.sources.values()]
