"""Writer and reader processes for the storage fault-injection and concurrency tests.

They run in child processes of a `forkserver` that preloads Dagster and Polars once, so a
test can start and SIGKILL dozens of real writers without paying the import each time.
Every write goes through the project's I/O manager inside a real `dg.materialize` run.
"""

import hashlib
import os
import signal
import time
import traceback
import zlib
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from batch_ml.platform.partitions import RANGE_END, RANGE_START
from batch_ml.platform.resources import ParquetTableIOManager
from batch_ml.platform.storage.transaction import JOURNAL_FOLDER

TABLE = "fault_table"
ROWS = 40_000
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-12-31")


def partition_frame(key: str, generation: int) -> pl.DataFrame:
    """The exact content of one partition for one generation of writes."""
    ids = pl.int_range(0, ROWS, eager=True)
    return pl.DataFrame(
        {
            "day": pl.Series([key] * ROWS).str.to_date(),
            "id": ids,
            "generation": generation,
            "value": (ids * 31 + zlib.crc32(key.encode()) % 1000 * generation) % 997 / 7.0,
        }
    )


class GenerationConfig(dg.Config):
    generation: int


@dg.asset(
    name=TABLE,
    partitions_def=PARTITIONS,
    metadata={"partition_column": "day"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def fault_table(context: dg.AssetExecutionContext, config: GenerationConfig) -> pl.DataFrame:
    return pl.concat(partition_frame(k, config.generation) for k in context.partition_keys)


def materialize(root: Path, keys: list[str], generation: int) -> None:
    io = ParquetTableIOManager(
        tables_root=str(root / "tables"), warehouse_path=str(root / "warehouse.duckdb")
    )
    run_config = {"ops": {TABLE: {"config": {"generation": generation}}}}
    if len(keys) == 1:
        result = dg.materialize(
            [fault_table],
            partition_key=keys[0],
            resources={"io_manager": io},
            run_config=run_config,
        )
    else:
        result = dg.materialize(
            [fault_table],
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
            resources={"io_manager": io},
            run_config=run_config,
        )
    assert result.success


def write_forever(root: Path, keys: list[str], generation: int) -> None:
    """Rewrite the same partitions in a loop until killed (fault-injection target)."""
    while True:
        materialize(root, keys, generation)


def die_at(root: Path, keys: list[str], generation: int, point: str, nth: int) -> None:
    """Rewrite partitions and SIGKILL this process at one of the exact moments an atomic
    write must survive: right before its commit point (every partition staged, the journal
    not yet renamed into place), or right before or after the `nth` partition file is
    renamed into place."""
    real_replace = os.replace
    renames = 0

    def replace(src, dst):
        nonlocal renames
        if point == "before_commit" and Path(dst).parent.name == JOURNAL_FOLDER:
            os.kill(os.getpid(), signal.SIGKILL)
        if str(dst).endswith(".parquet"):
            renames += 1
        if renames == nth and point == "before_rename":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if renames == nth and point == "after_rename":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # this child only; it dies before it could matter to anyone else
    write_forever(root, keys, generation)


def write_each(root: Path, keys: list[str], errors) -> None:
    """One single-partition run per key (concurrency test); errors are reported, not raised."""
    for key in keys:
        try:
            materialize(root, [key], generation=1)
        except Exception:  # noqa: BLE001 - the test counts and shows every failure
            errors.put(traceback.format_exc())


def read_until(root: Path, stop, summary) -> None:
    """A consumer reading through the DuckDB warehouse while writers run; sends one summary
    (reads, lock or other errors, partitions seen partial) when told to stop."""
    database = str(root / "warehouse.duckdb")
    reads, errors, partial = 0, [], []
    while not stop.is_set():
        try:
            with duckdb.connect(database, read_only=True) as con:
                rows = con.execute(
                    f"select day, count(*), count(distinct id), min(generation), "  # noqa: S608
                    f"max(generation) from {TABLE} group by day"
                ).fetchall()
            reads += 1
            partial += [r for r in rows if not (r[1] == r[2] == ROWS and r[3] == r[4] == 1)]
        except Exception:  # noqa: BLE001 - the test counts and shows every failure
            errors.append(traceback.format_exc())
        time.sleep(0.01)
    summary.put({"reads": reads, "errors": errors[:5], "partial": partial[:5]})


def sorted_digest(frame: pl.DataFrame) -> str:
    ordered = frame.select(sorted(frame.columns)).sort(["day", "id"])
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()
