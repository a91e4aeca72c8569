"""The DuckDB warehouse: one view per table over its Parquet partitions.

The warehouse file holds only view definitions, so writers of data never open it. It is never
opened for writing in place either: a change of views is made on a copy in a temporary folder
and the copy is renamed over the file (`_rewrite`), so readers (read-only connections) never
block it and see the old views or the new ones. That also keeps DuckDB's write-ahead log out
of the data folder: DuckDB names the log by inserting `.wal` before the first `?` of the
database's path, so it cannot write a database whose path has a `?`.

A view reads `<tables>/<name>/*.parquet` by the absolute path of the tables folder, its glob
characters escaped, so a partition added later is read without touching the warehouse. DuckDB
has no path relative to the database file (a relative path is resolved against the reader's
working directory), so each view records, as its comment, the tables folder and warehouse
file it was built for, and the platform rebuilds views built for another place whenever it
opens the warehouse (`sync_views`: every table write, and the code location's start). Until
then a view in a copied or moved warehouse refuses to read (it checks the path of the
database it is read from) instead of reading the original folder's files.

Each partitioned table also has a view `latest_<name>`: the rows of its latest partition (the
greatest partition key; keys are ISO dates), e.g. the latest day's predictions for a
consumer. Like a partition, it changes from one whole partition to the next.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb

from batch_ml.platform.storage.files import exclusive_lock, fsync_dir
from batch_ml.platform.storage.tables import _NAME, UNPARTITIONED

# How long to wait for another process's lock on the warehouse file.
LOCK_TIMEOUT_S = 30.0
# Part of every view's comment: a view without it, or of another version, is rebuilt.
VIEW_FORMAT = 3  # 3: latest_<name> views
# The view of a table's latest partition is this prefix and the table's name.
LATEST_PREFIX = "latest_"
# DuckDB expands these anywhere in a path it is given, also in a single file's path.
_GLOB_CHARACTERS = frozenset("*?[")


class WarehousePathError(ValueError):
    """A path DuckDB cannot read literally."""


def _is_lock_error(exc: Exception) -> bool:
    return "lock" in str(exc).lower()


def connect(
    path: Path, read_only: bool, timeout_s: float = LOCK_TIMEOUT_S
) -> duckdb.DuckDBPyConnection:
    """Connect, retrying while another process holds the file's lock (DuckDB allows one writer)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)


def _literal(text: str) -> str:
    # DDL cannot take bound parameters; the text comes from configuration and is quoted.
    return "'" + text.replace("'", "''") + "'"


def literal_glob(path: Path) -> str:
    """`path` as a DuckDB glob pattern that matches only itself: each glob character becomes a
    one-character class (`[` -> `[[]`), which DuckDB's matcher reads literally."""
    text = str(path)
    if "\\" in text:
        # DuckDB's glob splits a pattern at `\` as well as `/`: no escape reaches the file.
        raise WarehousePathError(
            f"{text}: DuckDB cannot read a folder whose path contains a backslash through a "
            "view; use a data root without one"
        )
    return "".join(f"[{c}]" if c in _GLOB_CHARACTERS else c for c in text)


def _placement(path: Path, tables_root: Path) -> dict:
    return {
        "batch_ml_views": VIEW_FORMAT,
        "tables": str(Path(tables_root).resolve()),
        "warehouse": str(Path(path).resolve()),
    }


def view_comment(path: Path, tables_root: Path) -> str:
    return json.dumps(_placement(path, tables_root), sort_keys=True)


def view_sql(name: str, tables_root: Path, path: Path, latest: bool = False) -> str:
    """The view of table `name`: its partitions (`latest`: its latest partition), read only
    from the warehouse file at `path`.

    DuckDB reports a database's real path (symlinks resolved), as `Path.resolve` gives it.
    """
    if not _NAME.match(name):
        raise ValueError(f"invalid view name {name!r}")
    placement = _placement(path, tables_root)
    pattern = literal_glob(Path(placement["tables"]) / name) + "/*.parquet"
    view, files, latest_only = name, "", ""
    if latest:
        # The partition key is the file's stem, so the greatest file name is the latest key.
        view, files = LATEST_PREFIX + name, ", filename = true"
        latest_only = f"p.filename = (SELECT max(file) FROM glob({_literal(pattern)})) AND "  # noqa: S608 - quoted
    moved = (
        f"view {view} reads {placement['tables']}/{name} and belongs to the warehouse "
        f"{placement['warehouse']}; this warehouse file was copied or moved: its views are "
        "rebuilt for the folder it is in when batch_ml next opens it (any materialization or "
        "`batch-ml views`)"
    )
    return (
        f'CREATE OR REPLACE VIEW "{view}" AS '  # noqa: S608 - name validated above
        f"SELECT p.*{' EXCLUDE (filename)' if latest else ''} "
        f"FROM read_parquet({_literal(pattern)}, union_by_name = true, "
        f"hive_partitioning = false{files}) AS p "
        f"WHERE {latest_only}CASE WHEN EXISTS (SELECT 1 FROM duckdb_databases() "
        f"WHERE path = {_literal(placement['warehouse'])}) "
        f"THEN true ELSE error({_literal(moved)}) END"
    )


def existing_views(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> dict[str, str | None]:
    """View name -> its comment (the placement it was built for), read-only."""
    if not Path(path).exists():
        return {}
    with connect(path, read_only=True, timeout_s=timeout_s) as con:
        rows = con.execute(
            "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    return dict(rows)


def _partition_keys(tables_root: Path, name: str) -> set[str]:
    return {p.stem for p in (Path(tables_root) / name).glob("*.parquet")}


def _is_ours(comment: str | None) -> bool:
    try:
        return "batch_ml_views" in json.loads(comment or "")
    except (ValueError, TypeError):
        return False


def _changes(
    present: dict[str, str | None], path: Path, tables_root: Path, names: Sequence[str]
) -> tuple[dict[str, bool], list[str]]:
    """(views to build, each with whether its table is partitioned (then it gets a latest
    view too), views to drop): missing views of `names` and stale views of tables with a
    partition here are built; stale views of ours without one are dropped."""
    expected = view_comment(path, tables_root)
    # A table's latest view is built and dropped with the table's own view.
    present = {n: c for n, c in present.items() if not _is_latest_view(n, present)}
    stale = [n for n, comment in present.items() if _NAME.match(n) and comment != expected]
    missing = [n for n in names if n not in present]
    keys = {n: _partition_keys(tables_root, n) for n in sorted({*stale, *missing})}
    build = {n: bool(k - {UNPARTITIONED}) for n, k in keys.items() if k}
    # Only views this module made (its comment) are dropped, never a view someone else added.
    drop = sorted(n for n in stale if n not in build and _is_ours(present[n]))
    return build, drop


def _is_latest_view(name: str, present: dict[str, str | None]) -> bool:
    return name.startswith(LATEST_PREFIX) and name.removeprefix(LATEST_PREFIX) in present


def _remove_left_copies(path: Path) -> None:
    # Called under the rewrite lock: a copy beside the file is a killed rewriter's.
    prefix = f".{path.name}."
    for left in path.parent.iterdir():
        if left.name.startswith(prefix) and left.name.endswith(".tmp"):
            left.unlink(missing_ok=True)


def _rewrite(path: Path, tables_root: Path, build: dict[str, bool], drop: list[str]) -> None:
    """Apply the view changes to a copy of the warehouse and rename it over the file."""
    with tempfile.TemporaryDirectory(prefix="batch_ml_warehouse_") as work:
        copy = Path(work) / "warehouse.duckdb"
        if path.exists():
            shutil.copyfile(path, copy)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():  # left by a writer of an earlier version that was killed
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        comment = view_comment(path, tables_root)
        with duckdb.connect(str(copy)) as con:
            con.execute("BEGIN TRANSACTION")
            for name, partitioned in build.items():
                con.execute(view_sql(name, tables_root, path))
                con.execute(f'COMMENT ON VIEW "{name}" IS {_literal(comment)}')
                latest = LATEST_PREFIX + name
                if partitioned:
                    con.execute(view_sql(name, tables_root, path, latest=True))
                    con.execute(f'COMMENT ON VIEW "{latest}" IS {_literal(comment)}')
                else:
                    con.execute(f'DROP VIEW IF EXISTS "{latest}"')
            for name in drop:
                con.execute(f'DROP VIEW IF EXISTS "{name}"')
                con.execute(f'DROP VIEW IF EXISTS "{LATEST_PREFIX + name}"')
            con.execute("COMMIT")
            con.execute("CHECKPOINT")  # everything in the file itself, no log beside it
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(copy, tmp)
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    # Merged into the new file above: left beside it, DuckDB would replay it into that file.
    wal.unlink(missing_ok=True)


def sync_views(
    path: Path, tables_root: Path, names: Sequence[str] = (), timeout_s: float = LOCK_TIMEOUT_S
) -> list[str]:
    """Create the views of `names` that are missing (tables with at least one partition) and
    rebuild every view built for another place or version; returns the views written.

    A stale view whose table has no partition here is dropped. Costs one read-only
    connection when nothing is to do.
    """
    path, tables_root = Path(path), Path(tables_root)
    build, drop = _changes(existing_views(path, timeout_s), path, tables_root, names)
    if not build and not drop:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    # One rewriter of the warehouse at a time (readers are not affected).
    with exclusive_lock(path.with_name(f".{path.name}.lock"), timeout_s):
        # Again under the lock: another process may have made these changes meanwhile.
        build, drop = _changes(existing_views(path, timeout_s), path, tables_root, names)
        if build or drop:
            _remove_left_copies(path)
            _rewrite(path, tables_root, build, drop)
    return list(build)


def refresh_views(path: Path, tables_root: Path, timeout_s: float = LOCK_TIMEOUT_S) -> list[str]:
    """Views for every table under `tables_root`, rebuilt where stale (e.g. after the root
    was copied or moved); returns the views written."""
    root = Path(tables_root)
    names = (
        sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))
        if root.is_dir()
        else []
    )
    return sync_views(path, tables_root, names, timeout_s)
