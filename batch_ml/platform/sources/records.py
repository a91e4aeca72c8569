"""What ingestion records about every landing file: the ingestion log and the quarantine.

The pipeline never modifies or deletes a landing file. Instead each file it reads gets a log
row (path, size, content hash, partition, rows accepted and quarantined, outcome, when, run),
and rows the contract allows to drop are kept, with the reason, in the quarantine table.
Both are partitioned tables keyed so that re-running an ingestion replaces its own records
instead of duplicating them, while a re-delivered file with new content adds a new log row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from batch_ml.platform.sources.contract import ROW, LoadedFile

LOG_TABLE = "ingestion_log"
QUARANTINE_TABLE = "quarantine"

LOG_SCHEMA = {
    "source": pl.String(),
    "file": pl.String(),
    "size_bytes": pl.Int64(),
    "sha256": pl.String(),
    "partition": pl.Date(),
    # accepted (stored with its data, in one commit) | failed (breaks the contract: `error`
    # says why) | superseded (newer content of the day arrived before it could be stored)
    "status": pl.String(),
    "rows_in_file": pl.Int64(),
    "rows_accepted": pl.Int64(),
    "rows_quarantined": pl.Int64(),
    "error": pl.String(),
    "ingested_at": pl.Datetime("us", "UTC"),
    "run_id": pl.String(),
}
QUARANTINE_SCHEMA = {
    "source": pl.String(),
    "partition": pl.Date(),
    "file": pl.String(),
    "sha256": pl.String(),
    "row": pl.UInt32(),
    "column": pl.String(),
    "rule": pl.String(),
    "value": pl.String(),
    "expected": pl.String(),
    "record": pl.String(),
    "ingested_at": pl.Datetime("us", "UTC"),
    "run_id": pl.String(),
}


@dataclass(frozen=True)
class FileFacts:
    source: str
    file: str  # relative to the landing root
    size_bytes: int
    sha256: str
    partition: dt.date | None

    @staticmethod
    def of(source: str, path: Path, landing_root: Path, content: bytes, partition) -> FileFacts:
        try:
            relative = str(path.relative_to(landing_root))
        except ValueError:
            relative = str(path)
        return FileFacts(
            source, relative, len(content), hashlib.sha256(content).hexdigest(), partition
        )

    @property
    def partition_key(self) -> str:
        """Quarantine key: one per source and partition, replaced on every ingestion of it."""
        return f"{self.source}_{self.partition.isoformat() if self.partition else 'all'}"

    def log_key(self, status: str = "accepted") -> str:
        """Log key: one per distinct content of a partition's file and outcome, so history
        is kept. A re-run that stores the same content replaces its `accepted` row; a
        `failed` or `superseded` attempt is a row of its own, so it never overwrites the
        record of what is stored."""
        key = f"{self.partition_key}_{self.sha256[:16]}"
        return key if status == "accepted" else f"{key}_{status}"


def log_row(
    facts: FileFacts,
    loaded: LoadedFile | None,
    error: str | None,
    run_id: str,
    at: dt.datetime,
) -> pl.DataFrame:
    quarantined = loaded.rejected[ROW].n_unique() if loaded is not None else None
    row = {
        "source": facts.source,
        "file": facts.file,
        "size_bytes": facts.size_bytes,
        "sha256": facts.sha256,
        "partition": facts.partition,
        "status": "accepted" if loaded is not None else "failed",
        "rows_in_file": loaded.rows_in_file if loaded is not None else None,
        "rows_accepted": loaded.rows.height if loaded is not None else None,
        "rows_quarantined": quarantined,
        "error": error,
        "ingested_at": at,
        "run_id": run_id,
    }
    return pl.DataFrame([row], schema=LOG_SCHEMA)


def quarantine_rows(
    facts: FileFacts, loaded: LoadedFile, run_id: str, at: dt.datetime
) -> pl.DataFrame:
    return (
        loaded.rejected.rename({ROW: "row"})
        .with_columns(
            source=pl.lit(facts.source),
            partition=pl.lit(facts.partition, pl.Date),
            file=pl.lit(facts.file),
            sha256=pl.lit(facts.sha256),
            ingested_at=pl.lit(at, pl.Datetime("us", "UTC")),
            run_id=pl.lit(run_id),
        )
        .select(list(QUARANTINE_SCHEMA))
        .cast(QUARANTINE_SCHEMA)
    )
