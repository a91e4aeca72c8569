"""Typed resources: where data lives. Roots are configuration (a folder now, a URL later)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import get_origin

import dagster as dg
import polars as pl

from batch_ml.platform.registry.model import (
    FLAVOURS,
    LightGBMModel,
    Model,
    ModelCard,
    content_version,
    load_model,
)
from batch_ml.platform.storage.tables import (
    NO_CHANGES,
    UNPARTITIONED,
    PartitionedTable,
    SchemaChangeError,
    SchemaChanges,
)
from batch_ml.platform.storage.transaction import Transaction, recover, transaction
from batch_ml.platform.storage.warehouse import sync_views


class LandingZone(dg.ConfigurableResource):
    """Read-only access to the landing folder."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)


class ModelStoreError(ValueError):
    """A model that is not in the store, or whose bytes are not its version's."""


class ModelStore(dg.ConfigurableResource):
    """Models of any flavour (platform/registry/model.py), one file per content-derived
    version (`<version><flavour suffix>`), each with its card `<version>.json`; written
    atomically, and checked against their version when read."""

    root: str

    def _folder(self, version: str) -> Path:
        if not version.isalnum():
            raise ValueError(f"invalid model version {version!r}")
        return Path(self.root)

    def path(self, version: str, flavour: str | None = None) -> Path:
        """The model file (`flavour` defaults to the one its card names)."""
        folder = self._folder(version)
        flavour = flavour or self.load_card(version).get("flavour", LightGBMModel.flavour)
        if flavour not in FLAVOURS:
            raise ModelStoreError(f"model {version}: unknown flavour {flavour!r}")
        return folder / f"{version}{FLAVOURS[flavour].suffix}"

    def card_path(self, version: str) -> Path:
        return self._folder(version) / f"{version}.json"

    def save(self, data: bytes, card: ModelCard) -> Path:
        """Store a model's bytes (kept if already there: same version, same bytes) and its
        card (rewritten: the card of the latest fit wins)."""
        if content_version(data) != card.version:
            raise ModelStoreError(f"the bytes given are not the model of version {card.version}")
        target = self.path(card.version, card.flavour)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            _write_atomically(target, data)
        _write_atomically(self.card_path(card.version), card.to_json().encode("utf-8"))
        return target

    def load_bytes(self, version: str) -> bytes:
        if not self.card_path(version).exists():
            raise ModelStoreError(f"no model of version {version} in {self.root}")
        path = self.path(version)
        data = path.read_bytes()
        if content_version(data) != version:
            raise ModelStoreError(f"{path} does not hash to its version {version}: changed")
        return data

    def load(self, version: str) -> Model:
        data = self.load_bytes(version)
        return load_model(self.load_card(version).get("flavour", LightGBMModel.flavour), data)

    def load_card(self, version: str) -> dict:
        """The card as stored (a product's details are top-level keys)."""
        path = self.card_path(version)
        if not path.exists():
            raise ModelStoreError(f"no model of version {version} in {self.root}")
        return json.loads(path.read_text(encoding="utf-8"))


def _write_atomically(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


class TableStore(dg.ConfigurableResource):
    """Partitioned tables written by assets themselves (ingestion log, quarantine), stored
    like every asset: one Parquet file per partition, a DuckDB view per table."""

    tables_root: str
    warehouse_path: str

    def table(self, name: str) -> PartitionedTable:
        """A table to read, after finishing any transaction a killed writer committed."""
        recover(Path(self.tables_root))
        return PartitionedTable(Path(self.tables_root), name)

    def recover(self) -> int:
        """Finish the transactions killed writers committed but did not apply; how many."""
        return recover(Path(self.tables_root))

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Writes to several tables that become visible together on `commit()` (or not at
        all); each table gets its warehouse view once committed."""
        root = Path(self.tables_root)
        recover(root)  # before sweeping: a committed journal's staged files are not stale
        try:
            with transaction(root) as txn:
                yield txn
        except SchemaChangeError as exc:
            # The same frame would fail again: a code or contract change is needed.
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        for name in txn.tables:
            PartitionedTable(root, name).sweep_stale_tmp()
        if txn.committed:
            sync_views(Path(self.warehouse_path), root, list(txn.tables))

    def write(
        self,
        name: str,
        frames: dict[str, pl.DataFrame | pl.LazyFrame],
        changes: SchemaChanges = NO_CHANGES,
    ) -> PartitionedTable:
        """Replace partitions of one table, all of them at once."""
        with self.transaction() as txn:
            table = txn.write(name, frames, changes)
            txn.commit()
        return table


class ParquetTableIOManager(dg.ConfigurableIOManager):
    """Stores every tabular asset as a partitioned table (one Parquet file per partition).

    Outputs may cover many partitions (range backfills): rows are split by the asset's
    `partition_column` metadata and each partition is replaced atomically; partitions of the
    range without rows are stored empty. A single-partition LazyFrame is streamed to disk.
    Declared schema changes come from the asset's `schema_changes` metadata. Inputs are
    Polars LazyFrames over exactly the upstream partitions the partition mapping asks for.
    A DuckDB view per table is kept in the warehouse file.
    """

    tables_root: str
    warehouse_path: str

    def _store(self) -> TableStore:
        return TableStore(tables_root=self.tables_root, warehouse_path=self.warehouse_path)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        if obj is None:
            return
        name = context.asset_key.path[-1]
        metadata = context.definition_metadata or {}
        changes = SchemaChanges.from_metadata(metadata.get("schema_changes"))
        if not context.has_asset_partitions:
            frames = {UNPARTITIONED: obj}
        else:
            keys = list(context.asset_partition_keys)
            if len(keys) == 1 and isinstance(obj, pl.LazyFrame):
                frames = {keys[0]: obj}  # streamed to disk, never held in memory whole
            else:
                frames = _split_by_partition(name, obj, metadata["partition_column"], keys)
        table = self._store().write(name, frames, changes)
        context.add_output_metadata(table_metadata(table, list(frames)))

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame | dict[str, pl.LazyFrame]:
        """One LazyFrame over the upstream partitions; or, for an input annotated
        `dict[str, pl.LazyFrame]`, one LazyFrame per upstream partition key the mapping gives
        (a missing one reads as no rows with the table's columns), so that a step looping
        over its days reads one file a day instead of filtering a scan of them all."""
        table = self._store().table(context.asset_key.path[-1])
        per_partition = get_origin(context.dagster_type.typing_type) is dict
        if not context.has_asset_partitions:
            scan = table.scan([UNPARTITIONED])
            return {UNPARTITIONED: scan} if per_partition else scan
        keys = list(context.asset_partition_keys)
        stored = set(table.partitions())
        if not stored:
            # Nothing written yet (e.g. a self-dependency's first run over its own range): no
            # schema to give, only no rows.
            if keys:
                context.log.warning(f"{table.name}: no partition written yet, read as no rows")
            return {} if per_partition else pl.LazyFrame()
        missing = [k for k in keys if k not in stored]
        if missing:
            context.log.warning(
                f"{table.name}: {len(missing)} of {len(keys)} upstream partition(s) not "
                f"materialized, read as no rows: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        if per_partition:
            return {k: table.scan([k]) for k in keys}  # a missing one: no rows, same schema
        return table.scan(keys)


def _split_by_partition(
    name: str, obj: pl.DataFrame | pl.LazyFrame, column: str, keys: list[str]
) -> dict[str, pl.DataFrame]:
    frame = obj.collect() if isinstance(obj, pl.LazyFrame) else obj
    if len(keys) == 1 and frame[column].null_count() == 0:
        # One partition (every daily run): no copy when every row is in it.
        days = frame[column].unique()
        if days.is_empty() or (len(days) == 1 and days[0].isoformat() == keys[0]):
            return {keys[0]: frame}
    parts = {
        k[0].isoformat(): v
        for k, v in frame.partition_by(column, as_dict=True, maintain_order=True).items()
    }
    unexpected = sorted(set(parts) - set(keys))
    if unexpected:
        raise ValueError(
            f"{name}: rows for partitions {unexpected[:5]} outside the run's partitions "
            f"{keys[0]}..{keys[-1]}"
        )
    return {key: parts.get(key, frame.clear()) for key in keys}


def table_metadata(table: PartitionedTable, keys: list[str]) -> dict:
    """What the UI shows of a stored output: rows of the written partitions, the schema, the
    table's folder and its warehouse view."""
    return {
        "dagster/row_count": table.scan(keys).select(pl.len()).collect().item(),
        "dagster/column_schema": table_schema(table.schema()),
        "partitions_written": len(keys),
        "table": dg.MetadataValue.path(str(table.folder)),
        "warehouse_view": table.name,
    }


def table_schema(schema: pl.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    )
