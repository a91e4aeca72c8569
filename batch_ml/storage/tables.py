"""Partitioned tables: one Parquet file per partition, replaced atomically.

Design (docs/storage.md): a partition is written to a temporary file in the table's folder,
flushed to disk, then renamed over the old file. A reader (Polars or DuckDB) therefore sees
the old partition or the new one, never a mix, and writers of different partitions never
share a file, so any number of processes can write at once without locks. DuckDB views in
the warehouse file read the Parquet files; the warehouse holds no data of its own.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

import polars as pl

UNPARTITIONED = "all"
_KEY = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class MissingTableError(LookupError):
    """A table has no partition at all yet, so not even its schema is known."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartitionedTable:
    def __init__(self, root: Path, name: str):
        if not _NAME.match(name):
            raise ValueError(f"invalid table name {name!r}")
        self.name = name
        self.folder = Path(root) / name

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"invalid partition key {key!r} for table {self.name}")
        return self.folder / f"{key}.parquet"

    def write(self, key: str, frame: pl.DataFrame) -> Path:
        """Replace one partition atomically (also for an empty frame: zero rows, same schema)."""
        target = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.{uuid.uuid4().hex}.tmp"
        try:
            frame.write_parquet(tmp, compression="zstd", statistics=True)
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.folder)
        return target

    def partitions(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.parquet"))

    def schema(self) -> pl.Schema:
        keys = self.partitions()
        if not keys:
            raise MissingTableError(f"table {self.name} has no partitions in {self.folder}")
        return pl.read_parquet_schema(self.path(keys[-1]))

    def scan(self, keys: Iterable[str] | None = None) -> pl.LazyFrame:
        """Lazily scan the given partitions (all when None); missing ones are skipped."""
        wanted = self.partitions() if keys is None else list(keys)
        files = [self.path(k) for k in wanted]
        files = [f for f in files if f.exists()]
        if not files:
            return pl.LazyFrame(schema=self.schema())
        # Columns are matched by name against the newest partition's schema: a column
        # added later reads as null from older files.
        return pl.scan_parquet(
            files,
            schema=pl.read_parquet_schema(files[-1]),
            missing_columns="insert",
            extra_columns="ignore",
        )

    def read(self, keys: Iterable[str] | None = None) -> pl.DataFrame:
        return self.scan(keys).collect()
