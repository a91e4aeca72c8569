"""Partitioned Parquet tables and the DuckDB warehouse views over them."""

import duckdb
import polars as pl
import pytest

from batch_ml.platform.storage.tables import (
    MissingTableError,
    PartitionedTable,
    SchemaChangeError,
    SchemaChanges,
)
from batch_ml.platform.storage.warehouse import sync_views


def test_partition_replace_is_whole_and_columns_match_by_name(tmp_path):
    table = PartitionedTable(tmp_path, "t")
    table.write("2025-01-01", pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    table.write("2025-01-01", pl.DataFrame({"b": ["z"], "a": [3]}))  # reordered columns
    assert table.read().to_dicts() == [{"b": "z", "a": 3}]
    assert not list(table.folder.glob("*.tmp"))  # no temp files left


def test_empty_partition_reads_as_zero_rows_and_new_columns_read_null_in_old_files(tmp_path):
    table = PartitionedTable(tmp_path, "t")
    with pytest.raises(MissingTableError):
        table.scan(["2025-01-01"])
    table.write("2025-01-01", pl.DataFrame({"a": [1]}))
    table.write("2025-01-02", pl.DataFrame(schema={"a": pl.Int64, "c": pl.Float64}))
    table.write("2025-01-03", pl.DataFrame({"a": [3], "c": [0.5]}))
    assert table.scan(["2025-01-02"]).collect().height == 0
    assert table.read().sort("a")["c"].to_list() == [None, 0.5]
    assert table.scan(["2024-12-31"]).collect().height == 0  # missing partition: no rows


def test_invalid_partition_keys_and_names_are_refused(tmp_path):
    with pytest.raises(ValueError):
        PartitionedTable(tmp_path, "../etc")
    with pytest.raises(ValueError):
        PartitionedTable(tmp_path, "t").path("../../x")


def test_warehouse_views_read_partitions_read_only(tmp_path):
    tables, db = tmp_path / "tables", tmp_path / "warehouse.duckdb"
    table = PartitionedTable(tables, "predictions")
    table.write("2025-01-01", pl.DataFrame({"x": [1, 2]}))
    assert sync_views(db, tables, ["predictions", "absent"]) == ["predictions"]
    table.write("2025-01-02", pl.DataFrame({"x": [3]}))  # no view change needed
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*), sum(x) from predictions").fetchone() == (3, 6)
    assert sync_views(db, tables, ["predictions"]) == []


def test_dropped_or_retyped_columns_fail_unless_declared(tmp_path):
    table = PartitionedTable(tmp_path, "t")
    table.write(
        "2025-01-01", pl.DataFrame({"a": [1], "b": ["x"], "n": pl.Series([7], dtype=pl.Int32)})
    )
    with pytest.raises(SchemaChangeError, match=r"column\(s\) \['b'\] missing"):
        table.write("2025-01-02", pl.DataFrame({"a": [2], "n": pl.Series([1], dtype=pl.Int32)}))
    with pytest.raises(SchemaChangeError, match="a: Int64 -> String"):
        table.write("2025-01-02", pl.DataFrame({"a": ["2"], "b": ["y"], "n": [1]}))
    assert table.partitions() == ["2025-01-01"]  # nothing written by the refused writes

    # Declared: b is dropped, n widens from Int32 to Float64; older partitions follow on read.
    declared = SchemaChanges(dropped=frozenset({"b"}), retyped=frozenset({"n"}))
    table.write("2025-01-02", pl.DataFrame({"a": [2], "n": [0.5]}), declared)
    assert table.read().sort("a").to_dicts() == [{"a": 1, "n": 7.0}, {"a": 2, "n": 0.5}]
    with pytest.raises(SchemaChangeError, match="only widening"):
        table.write("2025-01-03", pl.DataFrame({"a": [3], "n": ["x"]}), declared)


def test_null_typed_columns_take_the_table_type_and_lazy_frames_are_streamed(tmp_path):
    table = PartitionedTable(tmp_path, "t")
    table.write("2025-01-01", pl.DataFrame({"a": [1], "c": [1.5]}))
    table.write("2025-01-02", pl.DataFrame({"a": [2], "c": [None]}))  # all-null column
    table.write("2025-01-03", pl.LazyFrame({"a": [3], "c": [2.5]}))
    assert table.schema() == pl.Schema({"a": pl.Int64, "c": pl.Float64})
    assert table.read().sort("a")["c"].to_list() == [1.5, None, 2.5]


def test_latest_view_holds_the_latest_partition_whole_and_follows_new_ones(tmp_path):
    tables, db = tmp_path / "tables", tmp_path / "warehouse.duckdb"
    table = PartitionedTable(tables, "scores")
    table.write("2025-01-02", pl.DataFrame({"day": ["2025-01-02"] * 2, "x": [1, 2]}))
    table.write("2025-01-01", pl.DataFrame({"day": ["2025-01-01"], "x": [9]}))
    static = PartitionedTable(tables, "catalog")
    static.write("all", pl.DataFrame({"y": [1]}))
    sync_views(db, tables, ["scores", "catalog"])

    def latest():
        with duckdb.connect(str(db), read_only=True) as con:
            views = {r[0] for r in con.execute("select view_name from duckdb_views()").fetchall()}
            rows = con.execute("select day, x from latest_scores order by x").fetchall()
        return views, rows

    views, rows = latest()
    assert rows == [("2025-01-02", 1), ("2025-01-02", 2)]  # no filename column, one day
    assert "latest_catalog" not in views and {"scores", "catalog"} <= views  # no days: no latest
    # A later day is the latest as soon as it is published; no view is rewritten for it.
    table.write("2025-01-03", pl.DataFrame({"day": ["2025-01-03"], "x": [5]}))
    assert sync_views(db, tables, ["scores"]) == []
    assert latest()[1] == [("2025-01-03", 5)]
