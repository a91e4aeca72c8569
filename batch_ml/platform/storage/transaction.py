"""Writes to several partitioned tables that become visible together, or not at all.

A redo journal over the tables' "write a file, rename it into place" (docs/storage.md):

1. stage: every partition of the transaction is written durably beside its place, as a
   hidden `.<key>.parquet.<txid>.tmp` that no reader sees (outside any lock: the heavy part);
2. commit, under the store's commit lock: finish the transactions a killed writer left
   (recovery), run the caller's precondition (which may still refuse, e.g. a newer delivery
   of the same file was stored meanwhile), then write the journal `_transactions/<txid>.json`
   naming every staged file and its place, atomically: **this rename is the commit point**;
3. apply: rename every staged file into place, then delete the journal.

A writer killed before the commit point leaves only hidden staged files (the old state; they
are swept once stale). Killed after it, its journal is still there and the next commit, write
or read of the store (`recover`) finishes the renames: the new state. Renames of a staged
file that is already gone are skipped, so applying a journal twice is harmless. Every commit
recovers first under the same lock, so an old journal can never be replayed over a newer
write. Readers that do not go through the platform (a consumer's DuckDB view) can see a
transaction half-applied only between a kill after the commit point and the next recovery.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from batch_ml.platform.storage.files import exclusive_lock, fsync_dir
from batch_ml.platform.storage.tables import NO_CHANGES, PartitionedTable, SchemaChanges

JOURNAL_FOLDER = "_transactions"
_LOCK_FILE = ".commit.lock"


def _journal_folder(root: Path) -> Path:
    return Path(root) / JOURNAL_FOLDER


@contextmanager
def commit_lock(root: Path) -> Iterator[None]:
    """The store-wide lock commits and recoveries hold (precondition, journal, renames)."""
    folder = _journal_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / _LOCK_FILE):
        yield


def _journals(root: Path) -> list[Path]:
    folder = _journal_folder(root)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file())


def _apply(root: Path, journal: Path) -> None:
    """Rename every staged file of a committed journal into place, then drop the journal."""
    entries = json.loads(journal.read_text(encoding="utf-8"))["writes"]
    folders = set()
    for entry in entries:
        folder = Path(root) / entry["table"]
        staged = folder / entry["staged"]
        if staged.exists():
            os.replace(staged, folder / entry["target"])
        folders.add(folder)
    for folder in sorted(folders):
        fsync_dir(folder)
    journal.unlink()
    fsync_dir(journal.parent)


def recover(root: Path) -> int:
    """Finish the transactions killed writers committed but did not apply; how many.

    Cheap when there is nothing to do (one directory listing, no lock)."""
    if not _journals(root):
        return 0
    with commit_lock(root):
        return _recover_locked(root)


def _recover_locked(root: Path) -> int:
    # A journal still being written when its writer died was never committed (no lock holder
    # writes one now): drop it.
    for unfinished in _journal_folder(root).glob(".*.json.tmp"):
        unfinished.unlink(missing_ok=True)
    pending = _journals(root)
    for journal in pending:
        _apply(root, journal)
    return len(pending)


@dataclass
class Transaction:
    """Partitions of any tables under one root, published together by `commit`."""

    root: Path
    txid: str = field(default_factory=lambda: uuid.uuid4().hex)
    _staged: list[tuple[PartitionedTable, str, Path]] = field(default_factory=list)
    committed: bool = False

    def write(
        self,
        name: str,
        frames: dict[str, pl.DataFrame | pl.LazyFrame],
        changes: SchemaChanges = NO_CHANGES,
    ) -> PartitionedTable:
        """Stage partitions of table `name` (published by `commit`)."""
        table = PartitionedTable(self.root, name)
        for key, frame in frames.items():
            self._staged.append((table, key, table.stage(key, frame, self.txid, changes)))
        return table

    @property
    def tables(self) -> dict[str, list[str]]:
        """Table name -> partition keys this transaction writes."""
        out: dict[str, list[str]] = {}
        for table, key, _ in self._staged:
            out.setdefault(table.name, []).append(key)
        return out

    def commit(self, precondition: Callable[[], None] | None = None) -> None:
        """Publish every staged partition at once. `precondition` runs under the commit lock
        after recovery; an exception from it aborts the transaction (nothing is published)."""
        if self.committed:
            raise RuntimeError(f"transaction {self.txid} is already committed")
        folder = _journal_folder(self.root)
        with commit_lock(self.root):
            _recover_locked(self.root)
            if precondition is not None:
                precondition()
            # The journal may only name staged files that are durably there: one swept as
            # stale (a staging that took hours) would otherwise be "published" as nothing.
            gone = [str(staged) for _, _, staged in self._staged if not staged.is_file()]
            if gone:
                raise FileNotFoundError(f"staged file(s) vanished before the commit: {gone}")
            for staged_folder in {staged.parent for _, _, staged in self._staged}:
                fsync_dir(staged_folder)
            writes = [
                {"table": table.name, "staged": staged.name, "target": table.path(key).name}
                for table, key, staged in self._staged
            ]
            journal = folder / f"{self.txid}.json"
            tmp = folder / f".{self.txid}.json.tmp"
            with tmp.open("w", encoding="utf-8") as f:
                json.dump({"txid": self.txid, "writes": writes}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, journal)  # the commit point
            fsync_dir(folder)
            self.committed = True
            _apply(self.root, journal)

    def abort(self) -> None:
        """Drop what was staged (the tables stay as they were)."""
        for _, _, staged in self._staged:
            staged.unlink(missing_ok=True)
        self._staged.clear()


@contextmanager
def transaction(root: Path) -> Iterator[Transaction]:
    """`with transaction(root) as txn: txn.write(...); txn.commit()`; anything not committed
    when the block ends (an exception, no commit call) is dropped."""
    txn = Transaction(Path(root))
    try:
        yield txn
    finally:
        if not txn.committed:
            txn.abort()
