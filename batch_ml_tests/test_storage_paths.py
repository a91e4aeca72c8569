"""Data roots are taken literally and views follow their data folder: a root with glob
characters reads only its own files, a copied data folder reads its own files."""

import shutil

import duckdb
import polars as pl
import pytest

from batch_ml.cli import main
from batch_ml.config import DATA_ROOT_ENV, load_config
from batch_ml.definitions import defs
from batch_ml.harness.project import write_config
from batch_ml.platform.resources import TableStore
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.platform.storage.warehouse import refresh_views, sync_views

# Every glob character DuckDB and Polars expand, and a `key=value` folder (hive partitioning).
GLOB_ROOT = "year=2025/da[ta]*?"
# A folder the root, read as a pattern, matches: `da` `[ta]`->t `*`->`_othe` `?`->`r`.
SIBLING = "year=2025/dat_other"


def _store(root) -> TableStore:
    return TableStore(tables_root=str(root / "tables"), warehouse_path=str(root / "w.duckdb"))


def _view_rows(root, sql="select * from sales order by x") -> list[tuple]:
    with duckdb.connect(str(root / "w.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_root_with_glob_characters_reads_only_its_own_partitions(tmp_path):
    root, sibling = tmp_path / GLOB_ROOT, tmp_path / SIBLING
    # The sibling would be what a glob finds: other rows, another column, another type.
    _store(sibling).write("sales", {"2025-01-01": pl.DataFrame({"x": ["s"], "y": [1.0]})})
    _store(root).write("sales", {"2025-01-01": pl.DataFrame({"x": [1, 2]})})

    table = PartitionedTable(root / "tables", "sales")
    assert table.schema() == pl.Schema({"x": pl.Int64})
    assert table.read().to_dicts() == [{"x": 1}, {"x": 2}]  # no `year` column either
    assert _view_rows(root, "select * from sales order by x") == [(1,), (2,)]
    with duckdb.connect(str(root / "w.duckdb"), read_only=True) as con:
        columns = [c[0] for c in con.execute("select * from sales").description]
    assert columns == ["x"]

    # A partition added later is read through the view without touching the warehouse.
    table.write("2025-01-02", pl.DataFrame({"x": [3]}))
    before = (root / "w.duckdb").stat().st_mtime_ns
    assert sync_views(root / "w.duckdb", root / "tables", ["sales"]) == []
    assert (root / "w.duckdb").stat().st_mtime_ns == before
    assert _view_rows(root) == [(1,), (2,), (3,)]
    assert table.read(["2025-01-02"])["x"].to_list() == [3]


def test_a_copied_data_folder_reads_its_own_files(tmp_path):
    original, copy = tmp_path / "data", tmp_path / "data2"
    _store(original).write("sales", {"2025-01-01": pl.DataFrame({"x": [1]})})
    _store(original).write("stock", {"all": pl.DataFrame({"x": [10]})})
    shutil.copytree(original, copy)  # cp -r data data2
    _store(original).write("sales", {"2025-01-01": pl.DataFrame({"x": [2]})})
    assert _view_rows(original) == [(2,)]

    # Before batch_ml opens the copy, its views refuse to read the original's files.
    with pytest.raises(duckdb.Error, match="copied or moved"):
        _view_rows(copy)

    # The platform opening the copy (here: a write of another table) rebuilds every view.
    _store(copy).write("orders", {"all": pl.DataFrame({"x": [5]})})
    assert _view_rows(copy) == [(1,)]
    assert _view_rows(copy, "select * from stock") == [(10,)]
    assert _view_rows(original) == [(2,)]  # the original's views are untouched
    assert PartitionedTable(copy / "tables", "sales").read()["x"].to_list() == [1]


def test_a_moved_data_folder_gets_its_views_back_on_refresh(tmp_path):
    old, new = tmp_path / "data", tmp_path / "moved"
    _store(old).write("sales", {"2025-01-01": pl.DataFrame({"x": [1]})})
    old.rename(new)
    # The old folder is gone: DuckDB finds no files there (or, were it back, the guard).
    with pytest.raises(duckdb.Error, match="No files found|copied or moved"):
        _view_rows(new)
    assert refresh_views(new / "w.duckdb", new / "tables") == ["sales"]
    assert _view_rows(new) == [(1,)]
    assert refresh_views(new / "w.duckdb", new / "tables") == []  # nothing left to do


@pytest.mark.definitions
def test_the_platform_opening_a_copied_project_rebuilds_its_views(tmp_path, monkeypatch):
    config = write_config(tmp_path)
    original = load_config(config)
    _store_of(original).write("sales", {"2025-01-01": pl.DataFrame({"x": [1]})})
    shutil.copytree(original.paths.root, tmp_path / "copy")
    _store_of(original).write("sales", {"2025-01-01": pl.DataFrame({"x": [2]})})
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "copy"))
    copy = load_config(config)

    # The code location starting on the copy (what `dagster dev` and every run worker load).
    monkeypatch.setenv("BATCH_ML_CONFIG", str(config))
    defs()
    with duckdb.connect(str(copy.paths.warehouse), read_only=True) as con:
        assert con.execute("select x from sales").fetchall() == [(1,)]

    # `batch-ml views` after another move: the views follow again.
    (tmp_path / "copy").rename(tmp_path / "moved")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "moved"))
    assert main(["views"]) == 0
    with duckdb.connect(str(tmp_path / "moved" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select x from sales").fetchall() == [(1,)]


def _store_of(cfg) -> TableStore:
    return TableStore(tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse))


def test_a_consumer_reads_the_views_by_a_relative_or_a_linked_path(tmp_path, monkeypatch):
    """What the README's consumer line does: a relative path from the project folder (and a
    symlink to the data folder) is the same warehouse, not a copied one."""
    root = tmp_path / "project" / "data"
    _store(root).write("sales", {"2025-01-01": pl.DataFrame({"x": [1, 2]})})
    (tmp_path / "linked").symlink_to(root)
    monkeypatch.chdir(tmp_path / "project")
    for path in ("data/w.duckdb", "./data/../data/w.duckdb", str(tmp_path / "linked/w.duckdb")):
        with duckdb.connect(path, read_only=True) as con:
            assert con.execute("select x from sales order by x").fetchall() == [(1,), (2,)]
