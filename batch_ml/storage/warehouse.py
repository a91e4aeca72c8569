"""The DuckDB warehouse: one view per table over its Parquet partitions.

The warehouse file holds only view definitions, so writers of data never open it; it is
opened for writing only briefly, when a view is first created. Consumers open it read-only.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import duckdb

from batch_ml.storage.tables import _NAME


def _is_lock_error(exc: Exception) -> bool:
    return "lock" in str(exc).lower()


def connect(path: Path, read_only: bool, timeout_s: float = 30.0) -> duckdb.DuckDBPyConnection:
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
    # DDL cannot take bound parameters; the path comes from configuration and is quoted.
    return "'" + text.replace("'", "''") + "'"


def view_sql(name: str, tables_root: Path) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid view name {name!r}")
    pattern = str(Path(tables_root).resolve() / name / "*.parquet")
    return (
        f'CREATE OR REPLACE VIEW "{name}" AS '  # noqa: S608 - name validated above
        f"SELECT * FROM read_parquet({_literal(pattern)}, union_by_name = true)"
    )


def existing_views(path: Path) -> set[str]:
    if not Path(path).exists():
        return set()
    with connect(path, read_only=True) as con:
        rows = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    return {r[0] for r in rows}


def ensure_views(path: Path, tables_root: Path, names: list[str]) -> list[str]:
    """Create the views that are missing (only for tables with at least one partition)."""
    present = existing_views(path)
    missing = [
        n for n in names if n not in present and any((Path(tables_root) / n).glob("*.parquet"))
    ]
    if missing:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with connect(path, read_only=False) as con:
            for name in missing:
                con.execute(view_sql(name, tables_root))
    return missing


def refresh_views(path: Path, tables_root: Path) -> list[str]:
    """(Re)create a view for every table under `tables_root`, e.g. after the root moved."""
    names = (
        sorted(p.name for p in Path(tables_root).iterdir() if p.is_dir() and _NAME.match(p.name))
        if Path(tables_root).is_dir()
        else []
    )
    names = [n for n in names if any((Path(tables_root) / n).glob("*.parquet"))]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with connect(path, read_only=False) as con:
        for name in names:
            con.execute(view_sql(name, tables_root))
    return names
