"""Typed resources: where data lives. Roots are configuration (a folder now, a URL later)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagster as dg
import polars as pl

from batch_ml.storage.tables import UNPARTITIONED, PartitionedTable
from batch_ml.storage.warehouse import ensure_views


class LandingZone(dg.ConfigurableResource):
    """Read-only access to the landing folder."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)


class ModelStore(dg.ConfigurableResource):
    """LightGBM model files, one per content-derived version, written atomically."""

    root: str

    def path(self, version: str) -> Path:
        if not version.isalnum():
            raise ValueError(f"invalid model version {version!r}")
        return Path(self.root) / f"{version}.txt"

    def save(self, version: str, model_text: str) -> Path:
        target = self.path(version)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            return target  # same version, same bytes
        tmp = target.with_name(f".{version}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(model_text, encoding="utf-8")
        os.replace(tmp, target)
        return target

    def load(self, version: str) -> str:
        return self.path(version).read_text(encoding="utf-8")


class ParquetTableIOManager(dg.ConfigurableIOManager):
    """Stores every tabular asset as a partitioned table (one Parquet file per partition).

    Outputs may cover many partitions (range backfills): rows are split by the asset's
    `partition_column` metadata and each partition is replaced atomically; partitions of the
    range without rows are stored empty. Inputs are Polars LazyFrames over exactly the
    upstream partitions the partition mapping asks for. A DuckDB view per table is kept in
    the warehouse file.
    """

    tables_root: str
    warehouse_path: str

    def _table(self, key: dg.AssetKey) -> PartitionedTable:
        return PartitionedTable(Path(self.tables_root), key.path[-1])

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        if obj is None:
            return
        frame = obj.collect() if isinstance(obj, pl.LazyFrame) else obj
        table = self._table(context.asset_key)
        if not context.has_asset_partitions:
            table.write(UNPARTITIONED, frame)
            keys = [UNPARTITIONED]
        else:
            keys = list(context.asset_partition_keys)
            column = context.definition_metadata["partition_column"]
            parts = {
                k[0].isoformat(): v
                for k, v in frame.partition_by(column, as_dict=True, maintain_order=True).items()
            }
            unexpected = sorted(set(parts) - set(keys))
            if unexpected:
                raise ValueError(
                    f"{table.name}: rows for partitions {unexpected[:5]} outside the run's "
                    f"partitions {keys[0]}..{keys[-1]}"
                )
            for key in keys:
                table.write(key, parts.get(key, frame.clear()))
        ensure_views(Path(self.warehouse_path), Path(self.tables_root), [table.name])
        context.add_output_metadata(
            {
                "dagster/row_count": frame.height,
                "dagster/column_schema": table_schema(frame),
                "partitions_written": len(keys),
                "table": dg.MetadataValue.path(str(table.folder)),
                "warehouse_view": table.name,
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        table = self._table(context.asset_key)
        if context.has_asset_partitions:
            return table.scan(context.asset_partition_keys)
        return table.scan([UNPARTITIONED])


def table_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
    )
