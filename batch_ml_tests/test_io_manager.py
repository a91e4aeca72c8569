"""ParquetTableIOManager through `dg.materialize`: the two forms of a partitioned input."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from batch_ml.platform.resources import ParquetTableIOManager

DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-11")
LAST_THREE = dg.TimeWindowPartitionMapping(start_offset=-2)


@dg.asset(partitions_def=DAILY, metadata={"partition_column": "day"})
def counts(context: dg.AssetExecutionContext) -> pl.DataFrame:
    day = dt.date.fromisoformat(context.partition_key)
    return pl.DataFrame({"day": [day] * day.day, "n": list(range(day.day))})


@dg.asset(partitions_def=DAILY, ins={"counts": dg.AssetIn(partition_mapping=LAST_THREE)})
def as_one_scan(counts: pl.LazyFrame) -> None:
    # One scan over the mapped partitions: days 3, 4 and 5 for partition 5; 4 is missing.
    assert counts.collect().sort("day")["day"].unique().to_list() == [
        dt.date(2025, 1, 3),
        dt.date(2025, 1, 5),
    ]


@dg.asset(partitions_def=DAILY, ins={"counts": dg.AssetIn(partition_mapping=LAST_THREE)})
def as_one_scan_per_partition(counts: dict[str, pl.LazyFrame]) -> None:
    assert list(counts) == ["2025-01-03", "2025-01-04", "2025-01-05"]
    frames = {k: v.collect() for k, v in counts.items()}
    assert [f.height for f in frames.values()] == [3, 0, 5]
    # The missing partition reads as no rows with the table's columns.
    assert frames["2025-01-04"].schema == frames["2025-01-03"].schema


def _io_manager(root) -> ParquetTableIOManager:
    return ParquetTableIOManager(
        tables_root=str(root / "tables"), warehouse_path=str(root / "w.duckdb")
    )


@pytest.mark.parametrize("root_name", ["data", "da[ta]*?"])
def test_partitioned_input_as_one_scan_or_one_scan_per_partition(tmp_path, root_name):
    root = tmp_path / root_name
    # A folder that `da[ta]*?` matches as a glob, with other rows on every day of the run:
    # the root is taken literally, so the assets below see none of them.
    other = _io_manager(tmp_path / "dat_other")._store()
    other.write(
        "counts",
        {
            d: pl.DataFrame({"day": [dt.date.fromisoformat(d)], "n": [-1]})
            for d in ("2025-01-03", "2025-01-04", "2025-01-05")
        },
    )
    resources = {"io_manager": _io_manager(root)}
    for day in ("2025-01-03", "2025-01-05"):
        assert dg.materialize([counts], partition_key=day, resources=resources).success
    result = dg.materialize(
        [counts, as_one_scan, as_one_scan_per_partition],
        selection=[as_one_scan, as_one_scan_per_partition],
        partition_key="2025-01-05",
        resources=resources,
    )
    assert result.success


@dg.asset(partitions_def=DAILY, metadata={"partition_column": "day"})
def mislabelled(context: dg.AssetExecutionContext) -> pl.DataFrame:
    # Partition 2025-01-05 returns, besides its own rows, one row of another day.
    day = dt.date.fromisoformat(context.partition_key)
    return pl.DataFrame({"day": [day, day, dt.date(2025, 1, 9)], "n": [1, 2, 3]})


def test_rows_outside_the_runs_partition_are_refused_and_nothing_is_written(tmp_path):
    io = _io_manager(tmp_path)
    result = dg.materialize(
        [mislabelled],
        partition_key="2025-01-05",
        resources={"io_manager": io},
        raise_on_error=False,
    )
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error.cause)
    assert "['2025-01-09'] outside the run's partitions 2025-01-05..2025-01-05" in error
    assert io._store().table("mislabelled").partitions() == []

    # Every row in the run's one partition: stored as it is.
    assert dg.materialize([counts], partition_key="2025-01-05", resources={"io_manager": io})
    assert io._store().table("counts").read(["2025-01-05"])["n"].to_list() == [0, 1, 2, 3, 4]
