"""Partitioned tables: one Parquet file per partition, replaced atomically.

Design (docs/storage.md): a partition is written to a temporary file in the table's folder,
flushed to disk, then renamed over the old file. A reader (Polars or DuckDB) therefore sees
the old partition or the new one, never a mix, and writers of different partitions never
share a file, so any number of processes can write at once without locks. DuckDB views in
the warehouse file read the Parquet files; the warehouse holds no data of its own.

Each table keeps its schema in `_schema` (a zero-row Parquet file). Columns are matched by
name; a new column is added to the schema (older partitions read it as null); a column that
disappears or changes type is an error unless the writer declares it (`SchemaChanges`).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from batch_ml.platform.storage.files import exclusive_lock, fsync_dir

UNPARTITIONED = "all"
SCHEMA_FILE = "_schema"
_KEY = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# A temporary file older than this is what a killed writer left behind.
STALE_TMP_S = 3600
# Readers apply declared widenings (see `_is_widening`) to older partitions on the fly.
_WIDENING_CAST = pl.ScanCastOptions(integer_cast=["upcast", "allow-float"], float_cast="upcast")
# Paths are taken literally: Polars would expand `*`, `?` and `[` anywhere in a path (a data
# root `da[ta]` reads the sibling folder `data`) and add columns for `key=value` folders.
_LITERAL_PATHS = {"glob": False, "hive_partitioning": False}


class MissingTableError(LookupError):
    """A table has no partition at all yet, so not even its schema is known."""


class SchemaChangeError(ValueError):
    """A write would drop or retype a column the table has, and the change was not declared."""


@dataclass(frozen=True)
class SchemaChanges:
    """Schema changes a writer declares on purpose (asset metadata `schema_changes`)."""

    dropped: frozenset[str] = frozenset()
    retyped: frozenset[str] = frozenset()

    @staticmethod
    def from_metadata(value: dict | None) -> SchemaChanges:
        value = value or {}
        return SchemaChanges(
            frozenset(value.get("dropped", ())), frozenset(value.get("retyped", ()))
        )


NO_CHANGES = SchemaChanges()


_BITS = {
    pl.Int8(): 8,
    pl.Int16(): 16,
    pl.Int32(): 32,
    pl.Int64(): 64,
    pl.UInt8(): 8,
    pl.UInt16(): 16,
    pl.UInt32(): 32,
    pl.UInt64(): 64,
}


def _is_widening(old: pl.DataType, new: pl.DataType) -> bool:
    """Lossless type changes a reader can apply to older partitions."""
    if old.is_integer() and new.is_float():
        return True
    if old.is_integer() and new.is_integer():
        same_sign = old.is_signed_integer() == new.is_signed_integer()
        return (same_sign or new.is_signed_integer()) and _BITS[new] > _BITS[old]
    return old == pl.Float32() and new == pl.Float64()


def staged_path(target: Path, tag: str) -> Path:
    """Where a write of `target` waits to be published: hidden and not `*.parquet`, so no
    reader sees it, and `*.tmp`, so `sweep_stale_tmp` removes it if its writer died."""
    return target.with_name(f".{target.name}.{tag}.tmp")


def _write_durably(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Write `frame` to `path` and flush it to disk (a file nobody reads yet)."""
    if isinstance(frame, pl.LazyFrame):
        frame.sink_parquet(path, compression="zstd", statistics=True)
    else:
        frame.write_parquet(path, compression="zstd", statistics=True)
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def _write_atomically(frame: pl.DataFrame | pl.LazyFrame, target: Path) -> None:
    tmp = staged_path(target, uuid.uuid4().hex)
    try:
        _write_durably(frame, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


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

    # -- schema ------------------------------------------------------------------------------

    def schema(self) -> pl.Schema:
        path = self.folder / SCHEMA_FILE
        if path.exists():
            return _file_schema(path)
        keys = self.partitions()  # a table written before schema files existed
        if not keys:
            raise MissingTableError(f"table {self.name} has no partitions in {self.folder}")
        return _file_schema(self.path(keys[-1]))

    def _evolve_schema(self, incoming: pl.Schema, changes: SchemaChanges) -> pl.Schema:
        """Check `incoming` against the table's schema and record additions; return the frame's
        target schema (columns typed Null, e.g. from an empty concat, take the table's type)."""
        try:
            current = self.schema()
        except MissingTableError:
            current = None
        if current == incoming:
            return incoming
        target = pl.Schema(
            {
                c: current[c] if current and c in current and t == pl.Null() else t
                for c, t in incoming.items()
            }
        )
        if current is not None:
            dropped = [c for c in current if c not in target and c not in changes.dropped]
            retyped = [
                f"{c}: {current[c]} -> {t}"
                for c, t in target.items()
                if c in current and current[c] != t and c not in changes.retyped
            ]
            unsupported = [
                f"{c}: {current[c]} -> {t}"
                for c, t in target.items()
                if c in current and current[c] != t and not _is_widening(current[c], t)
            ]
            problems = []
            if dropped:
                problems.append(f"column(s) {dropped} missing from the new partition")
            if retyped:
                problems.append(f"column type(s) changed: {retyped}")
            if unsupported:
                problems.append(f"only widening type changes can be declared: {unsupported}")
            if problems:
                raise SchemaChangeError(
                    f"table {self.name}: " + "; ".join(problems) + ". Declare intended changes "
                    "in the asset's `schema_changes` metadata ({'dropped': [...], "
                    "'retyped': [...]})."
                )
        merged = {c: t for c, t in (current or {}).items() if c not in changes.dropped}
        merged.update(target)
        if current is None or pl.Schema(merged) != current:
            with exclusive_lock(self.folder / ".schema.lock"):
                # Re-read under the lock: another writer may have added a column meanwhile.
                latest = self.schema() if (self.folder / SCHEMA_FILE).exists() else pl.Schema()
                final = {c: t for c, t in latest.items() if c not in changes.dropped}
                final.update(merged)
                _write_atomically(pl.DataFrame(schema=final), self.folder / SCHEMA_FILE)
        return target

    # -- writes ------------------------------------------------------------------------------

    def _conform(
        self, frame: pl.DataFrame | pl.LazyFrame, changes: SchemaChanges
    ) -> pl.DataFrame | pl.LazyFrame:
        """Check the frame against the table's schema (recording additions) and cast it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        incoming = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
        schema = self._evolve_schema(incoming, changes)
        return frame.cast(dict(schema)) if schema != incoming else frame

    def write(
        self, key: str, frame: pl.DataFrame | pl.LazyFrame, changes: SchemaChanges = NO_CHANGES
    ) -> Path:
        """Replace one partition atomically (also for an empty frame: zero rows, same schema)."""
        target = self.path(key)
        _write_atomically(self._conform(frame, changes), target)
        return target

    def stage(
        self,
        key: str,
        frame: pl.DataFrame | pl.LazyFrame,
        tag: str,
        changes: SchemaChanges = NO_CHANGES,
    ) -> Path:
        """Write a partition durably beside its place, unpublished (see `transaction.py`).

        A column the frame adds is recorded in the table's schema now, before the publish:
        partitions without it read it as null, so an aborted write leaves the data as it was.
        """
        target = self.path(key)
        staged = staged_path(target, tag)
        try:
            _write_durably(self._conform(frame, changes), staged)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return staged

    def sweep_stale_tmp(self, older_than_s: float = STALE_TMP_S) -> list[Path]:
        """Remove temporary files that killed writers left behind (never a live writer's)."""
        if not self.folder.is_dir():
            return []
        cutoff = time.time() - older_than_s
        removed = []
        for tmp in self.folder.glob(".*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed.append(tmp)
            except FileNotFoundError:
                pass
        return removed

    # -- reads -------------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.parquet"))

    def scan(self, keys: Iterable[str] | None = None) -> pl.LazyFrame:
        """Lazily scan the given partitions (all when None); missing ones are skipped."""
        wanted = self.partitions() if keys is None else list(keys)
        files = [f for f in (self.path(k) for k in wanted) if f.exists()]
        schema = self.schema()
        if not files:
            return pl.LazyFrame(schema=schema)
        # Columns are matched by name against the table's schema: a column added later
        # reads as null from older files, a declared widening is applied on the fly.
        return pl.scan_parquet(
            files,
            **_LITERAL_PATHS,
            schema=schema,
            missing_columns="insert",
            extra_columns="ignore",
            cast_options=_WIDENING_CAST,
        )

    def read(self, keys: Iterable[str] | None = None) -> pl.DataFrame:
        return self.scan(keys).collect()


def _file_schema(path: Path) -> pl.Schema:
    # Not `pl.read_parquet_schema`: it expands glob characters in the path.
    return pl.scan_parquet(path, **_LITERAL_PATHS).collect_schema()
