"""Storage under faults and concurrency, with real processes:

- writers SIGKILLed at random points never leave a partial, empty, mixed or duplicated
  partition visible, and a re-run gives identical content;
- several processes write different partitions of one table at once while another reads
  through DuckDB: no lock errors, no lost rows.
"""

import multiprocessing as mp
import random
import sys
import time

import duckdb
import polars as pl
import pytest

from batch_ml.platform.storage.tables import PartitionedTable

from . import storage_workers as w

# Dagster's own modules only: importing Polars or DuckDB starts native threads, and forking a
# process that has threads can deadlock its children. Each child imports those itself.
PRELOADED_PACKAGES = {"dagster", "dagster_shared", "sqlalchemy", "alembic"}
# Killed materializations: the 50 the storage contract asks for (each costs about 4 s here).
ATTEMPTS = 50


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A forkserver preloaded with the Dagster modules a materialization imports (about 480,
    imported lazily on the first run: 1.6 s that would otherwise dominate every short-lived
    writer). Nothing runs in the forkserver itself."""
    w.materialize(tmp_path_factory.mktemp("warm"), _keys(0, 1), generation=1)
    preload = [m for m in list(sys.modules) if m.split(".")[0] in PRELOADED_PACKAGES]
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(preload)
    starter = context.Process(target=time.sleep, args=(0,))  # start the forkserver now
    starter.start()
    starter.join()
    return context


def _keys(start: int, n: int) -> list[str]:
    return w.PARTITIONS.get_partition_keys()[start : start + n]


def _assert_every_visible_partition_is_whole(root, keys: list[str]) -> dict[str, int]:
    """Each stored partition is exactly one generation's content; returns key -> generation."""
    table = PartitionedTable(root / "tables", w.TABLE)
    seen = {}
    for key in keys:
        if not table.path(key).exists():
            continue
        frame = table.read([key])
        generations = frame["generation"].unique().to_list()
        assert len(generations) == 1, f"{key}: mixed generations {generations}"
        assert frame.height == w.ROWS and frame["id"].n_unique() == w.ROWS, key
        assert w.sorted_digest(frame) == w.sorted_digest(w.partition_frame(key, generations[0]))
        seen[key] = generations[0]
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            f"select day::varchar, count(*), count(distinct id), min(generation), "  # noqa: S608
            f"max(generation) from {w.TABLE} group by all"
        ).fetchall()
    assert {r[0]: r[3] for r in rows} == seen
    assert all(r[1] == r[2] == w.ROWS and r[3] == r[4] for r in rows), rows
    return seen


@pytest.mark.integration
def test_sigkilled_writers_never_leave_a_partial_partition_and_reruns_are_identical(ctx, tmp_path):
    keys = _keys(0, 6)
    w.materialize(tmp_path, keys, generation=1)  # a complete first version of every partition
    # How long a fresh writer takes to rewrite a 3-partition range, to aim the kills inside it.
    started = time.perf_counter()
    probe = ctx.Process(target=w.materialize, args=(tmp_path, keys[:3], 1))
    probe.start()
    probe.join()
    duration = time.perf_counter() - started

    rng = random.Random(20261122)
    kills = 0
    for attempt in range(ATTEMPTS):
        start = rng.randrange(0, len(keys) - 2)
        chosen = keys[start : start + rng.choice([1, 2, 3])]
        generation = rng.choice([1, 2])
        if attempt % 2:  # at a random moment of a running writer
            writer = ctx.Process(target=w.write_forever, args=(tmp_path, chosen, generation))
            writer.start()
            time.sleep(rng.uniform(0.3, 2.5) * duration)
            writer.kill()  # SIGKILL: no cleanup, no finally blocks
        else:  # right before the commit point, or before or after a partition's rename
            # The first one is always before the commit point: it leaves staged files behind.
            points = ["before_commit", "before_rename", "after_rename"]
            point = points[0] if attempt == 0 else rng.choice(points)
            nth = rng.randint(1, len(chosen))
            writer = ctx.Process(target=w.die_at, args=(tmp_path, chosen, generation, point, nth))
            writer.start()
        writer.join(timeout=60)
        if writer.is_alive():  # hung instead of dying: fail the test, do not hang it
            writer.kill()
            writer.join()
            pytest.fail(f"writer {attempt} hung")
        kills += writer.exitcode == -9
        _assert_every_visible_partition_is_whole(tmp_path, keys)
    assert kills == ATTEMPTS
    # Writers killed before their commit point left staged files (those killed after it had
    # their renames finished by the next writer): never visible to any reader (checked above
    # after every kill), and swept once stale without touching a stored partition.
    table = PartitionedTable(tmp_path / "tables", w.TABLE)
    assert table.sweep_stale_tmp() == []  # none is an hour old yet
    assert table.sweep_stale_tmp(older_than_s=0)
    assert not list(table.folder.glob(".*.tmp"))
    _assert_every_visible_partition_is_whole(tmp_path, keys)
    # A re-run replaces everything.
    w.materialize(tmp_path, keys, generation=1)
    seen = _assert_every_visible_partition_is_whole(tmp_path, keys)
    assert seen == dict.fromkeys(keys, 1)
    stored = PartitionedTable(tmp_path / "tables", w.TABLE).read()
    expected = pl.concat(w.partition_frame(k, 1) for k in keys)
    assert w.sorted_digest(stored) == w.sorted_digest(expected)


@pytest.mark.integration
def test_parallel_writers_and_a_duckdb_reader_see_no_lock_errors_and_lose_no_rows(ctx, tmp_path):
    writers, per_writer = 4, 26
    keys = _keys(0, writers * per_writer)
    w.materialize(tmp_path, keys[:1], generation=1)  # the table and its view exist
    errors, summary, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=w.read_until, args=(tmp_path, stop, summary))
    reader.start()
    procs = [
        ctx.Process(target=w.write_each, args=(tmp_path, keys[i::writers], errors))
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    stop.set()
    reads = summary.get(timeout=60)  # drained before joining: a full pipe would block the exit
    reader.join(timeout=60)

    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == [], failures[0]
    assert all(p.exitcode == 0 for p in procs) and reader.exitcode == 0
    assert reads["errors"] == [], reads["errors"][0]
    assert reads["reads"] >= 10  # the reader really ran alongside the writers
    assert reads["partial"] == []  # every partition a reader saw was whole, never partial
    stored = PartitionedTable(tmp_path / "tables", w.TABLE).read()
    assert stored.height == len(keys) * w.ROWS
    assert stored.select("day", "id").n_unique() == stored.height
