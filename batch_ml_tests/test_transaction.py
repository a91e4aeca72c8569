"""Transactions over partitioned tables: published together, or not at all."""

from __future__ import annotations

import polars as pl
import pytest

from batch_ml.platform.storage import transaction as tx
from batch_ml.platform.storage.tables import PartitionedTable


def _frame(value: int) -> pl.DataFrame:
    return pl.DataFrame({"id": [1, 2], "value": [value, value]})


def _values(root, name: str, key: str) -> list[int]:
    return PartitionedTable(root, name).read([key])["value"].to_list()


def _visible(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_partitions_of_several_tables_appear_only_on_commit(tmp_path):
    with tx.transaction(tmp_path) as txn:
        txn.write("left", {"a": _frame(1), "b": _frame(1)})
        txn.write("right", {"a": _frame(1)})
        assert _visible(tmp_path) == []  # staged: no reader sees anything yet
        txn.commit()
    assert _visible(tmp_path) == ["left/a.parquet", "left/b.parquet", "right/a.parquet"]
    assert _values(tmp_path, "right", "a") == [1, 1]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.json"))


def test_a_refusing_precondition_or_an_error_publishes_nothing(tmp_path):
    with tx.transaction(tmp_path) as txn:
        txn.write("left", {"a": _frame(1)})
        txn.commit()

    def refuse():
        raise RuntimeError("newer content exists")

    with pytest.raises(RuntimeError, match="newer content"):
        with tx.transaction(tmp_path) as txn:
            txn.write("left", {"a": _frame(2), "b": _frame(2)})
            txn.commit(precondition=refuse)
    with pytest.raises(ZeroDivisionError):
        with tx.transaction(tmp_path) as txn:
            txn.write("left", {"a": _frame(3)})
            raise ZeroDivisionError
    assert _visible(tmp_path) == ["left/a.parquet"]
    assert _values(tmp_path, "left", "a") == [1, 1]
    assert not list(tmp_path.rglob("*.tmp"))  # staged files of aborted writes are gone


def _commit_and_die_after_the_commit_point(root, monkeypatch, value: int) -> None:
    """A writer killed right after its journal was written, before any rename."""

    def killed(_root, _journal):
        raise SystemExit("killed")

    with monkeypatch.context() as m:
        m.setattr(tx, "_apply", killed)
        with pytest.raises(SystemExit):
            with tx.transaction(root) as txn:
                txn.write("left", {"a": _frame(value)})
                txn.write("right", {"a": _frame(value)})
                txn.commit()


def test_a_committed_journal_is_finished_by_the_next_reader_and_never_replayed(
    tmp_path, monkeypatch
):
    _commit_and_die_after_the_commit_point(tmp_path, monkeypatch, 1)
    assert _visible(tmp_path) == []  # killed: nothing renamed yet
    assert tx.recover(tmp_path) == 1  # what every platform read and write does first
    assert _values(tmp_path, "left", "a") == _values(tmp_path, "right", "a") == [1, 1]
    assert tx.recover(tmp_path) == 0

    # Killed again after its commit point; the next writer finishes it before its own commit,
    # so the older journal can never be applied over the newer write.
    _commit_and_die_after_the_commit_point(tmp_path, monkeypatch, 2)
    with tx.transaction(tmp_path) as txn:
        txn.write("left", {"a": _frame(3)})
        txn.commit()
    assert _values(tmp_path, "left", "a") == [3, 3]
    assert _values(tmp_path, "right", "a") == [2, 2]  # the killed commit's other table
    assert tx.recover(tmp_path) == 0
