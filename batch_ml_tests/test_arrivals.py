"""The landing sensor's decisions without Dagster: when a file is hashed, what is a change,
and which requested contents are requested again after their run failed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import time
from pathlib import Path

import pytest

from batch_ml.platform.sources.arrivals import (
    LOST_REQUEST_SECONDS,
    MAX_RUN_ATTEMPTS,
    Arrival,
    Arrivals,
    IngestionRecords,
    Pending,
    RunOutcome,
    Seen,
    find_arrivals,
    plan_retries,
    rehash_due,
)
from batch_ml.platform.sources.landing import LandingFile

HOUR = 3600
SETTLE = 10
T0 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


class CountingHasher:
    def __init__(self):
        self.hashed: list[str] = []

    def __call__(self, path: Path) -> str:
        self.hashed.append(path.name)
        return hashlib.sha256(path.read_bytes()).hexdigest()


def landing_file(path: Path) -> LandingFile:
    st = path.stat()
    return LandingFile(
        "sales",
        path,
        dt.date.fromisoformat(path.stem.removeprefix("sales_")),
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_ctime_ns,
    )


def empty_log() -> IngestionRecords:
    return IngestionRecords([])


def no_log() -> IngestionRecords:
    raise AssertionError("the ingestion log must not be read here")


def tick(files, cursor, now_ns, hasher, rehash_seconds=HOUR, recorded=no_log) -> Arrivals:
    return find_arrivals(
        files,
        cursor,
        recorded=recorded,
        hasher=hasher,
        now_ns=now_ns,
        settle_seconds=SETTLE,
        rehash_seconds=rehash_seconds,
    )


def seen_after(arrivals: Arrivals) -> dict[str, Seen]:
    """The cursor after a tick that requested every arrival."""
    every = [a for items in arrivals.daily.values() for a in items] + arrivals.static
    return {**arrivals.unchanged, **{a.file: a.seen for a in every}}


@pytest.fixture
def sales_file(tmp_path) -> Path:
    path = tmp_path / "sales_2025-02-10.csv"
    path.write_text("date,store_id,item_id,units\n2025-02-10,S1,I1,3\n")
    past = (T0.timestamp() - HOUR, T0.timestamp() - HOUR)
    os.utime(path, past)
    return path


def now_ns(seconds_after_t0: float = 0) -> int:
    return int((T0.timestamp() + seconds_after_t0) * 1e9)


def changed(arrivals: Arrivals) -> list[str]:
    return [a.file for items in arrivals.daily.values() for a in items if a.reason == "changed"]


def test_a_rewrite_that_keeps_size_and_mtime_is_seen_by_its_ctime(sales_file):
    hasher = CountingHasher()
    cursor = seen_after(tick([landing_file(sales_file)], {}, now_ns(), hasher, recorded=empty_log))
    assert hasher.hashed == [sales_file.name]
    assert not tick([landing_file(sales_file)], cursor, now_ns(60), hasher).daily
    assert hasher.hashed == [sales_file.name], "nothing changed: not hashed again"

    # A correction of the same length written in place, the mtime put back (cp -p, touch -r).
    before = sales_file.stat()
    time.sleep(0.05)  # past the kernel's timestamp granularity (one jiffy)
    sales_file.write_text(sales_file.read_text().replace(",3\n", ",4\n"))
    os.utime(sales_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = sales_file.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert after.st_ctime_ns != before.st_ctime_ns
    arrivals = tick([landing_file(sales_file)], cursor, now_ns(120), hasher)
    assert changed(arrivals) == [f"sales/{sales_file.name}"]


def test_a_replacement_by_rename_that_keeps_size_and_mtime_is_seen_by_its_inode(sales_file):
    hasher = CountingHasher()
    cursor = seen_after(tick([landing_file(sales_file)], {}, now_ns(), hasher, recorded=empty_log))
    before = sales_file.stat()
    staged = sales_file.with_name(".incoming.tmp")  # rsync's way: write aside, then rename
    staged.write_text(sales_file.read_text().replace(",3\n", ",5\n"))
    os.utime(staged, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(staged, sales_file)
    after = sales_file.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ino != before.st_ino
    # Simulate a file system whose ctime says nothing (the inode alone must tell).
    moved = landing_file(sales_file)
    cursor = {k: dataclasses.replace(v, ctime_ns=moved.ctime_ns) for k, v in cursor.items()}
    assert changed(tick([moved], cursor, now_ns(60), hasher)) == [f"sales/{sales_file.name}"]


def test_periodic_rehash_finds_a_change_no_file_attribute_shows(sales_file):
    """A file system that keeps none of size, mtime, inode, ctime honest (some network and FUSE
    mounts): the periodic rehash is the only way to see the new content."""
    hasher = CountingHasher()
    rel = f"sales/{sales_file.name}"
    cursor = seen_after(tick([landing_file(sales_file)], {}, now_ns(), hasher, recorded=empty_log))
    stale = landing_file(sales_file)  # what the file system reports, before and after
    sales_file.write_text(sales_file.read_text().replace(",3\n", ",6\n"))
    hasher.hashed.clear()
    assert not tick([stale], cursor, now_ns(1), hasher).daily
    assert hasher.hashed == [], "not due a moment after its hash"
    arrivals = tick([stale], cursor, now_ns(HOUR), hasher)
    assert hasher.hashed == [sales_file.name] and arrivals.rehashed == 1
    assert changed(arrivals) == [rel]


def test_periodic_rehash_is_spread_and_every_file_is_rehashed_within_the_period():
    """Six hours of 30-s ticks over a year of sales and plans files, all first hashed at once."""
    names = [
        f"{source}/{source}_{dt.date(2025, 1, 1) + dt.timedelta(days=i)}.{ext}"
        for source, ext in (("sales", "csv"), ("plans", "parquet"))
        for i in range(365)
    ]
    tick_ns = int(30e9)
    hashed = dict.fromkeys(names, 0)
    longest_gap = 0
    per_tick = []
    hours = 6
    for k in range(1, hours * 3600 // 30 + 1):
        now = k * tick_ns
        due = [n for n in names if rehash_due(n, hashed[n], now, HOUR)]
        per_tick.append(len(due))
        for n in due:
            longest_gap = max(longest_gap, now - hashed[n])
            hashed[n] = now
    assert longest_gap <= HOUR * 1e9, "every file is rehashed within rehash_seconds"
    assert min(hashed.values()) > (hours - 1) * HOUR * 1e9
    expected = len(names) * 30 / HOUR  # 6 files a tick
    assert sum(per_tick) == pytest.approx(hours * len(names), rel=0.01)
    assert max(per_tick) <= 3 * expected, max(per_tick)  # no tick rehashes a crowd
    assert rehash_due(names[0], None, 0, HOUR), "never hashed: due at once"


def test_a_cursor_of_the_first_format_loads_and_hashes_each_file_once(sales_file):
    """The first cursor format held [size, mtime_ns, sha256]: inode, ctime and the hash time
    are unknown, so each file is hashed once and its content compared."""
    rel = f"sales/{sales_file.name}"
    digest = hashlib.sha256(sales_file.read_bytes()).hexdigest()
    st = sales_file.stat()
    old = {rel: Seen.from_json([st.st_size, st.st_mtime_ns, digest])}
    assert old[rel] == Seen(st.st_size, st.st_mtime_ns, digest)
    hasher = CountingHasher()
    arrivals = tick([landing_file(sales_file)], old, now_ns(), hasher)
    assert hasher.hashed == [sales_file.name] and not arrivals.daily
    assert arrivals.unchanged[rel].inode == st.st_ino
    assert Seen.from_json(arrivals.unchanged[rel].to_json()) == arrivals.unchanged[rel]
    assert not tick([landing_file(sales_file)], arrivals.unchanged, now_ns(60), hasher).daily
    assert hasher.hashed == [sales_file.name]


def records(*rows) -> IngestionRecords:
    """rows of (file, sha256, status, minutes after T0, run_id)."""
    return IngestionRecords(
        (f, sha, status, T0 + dt.timedelta(minutes=m), run) for f, sha, status, m, run in rows
    )


def test_a_fresh_cursor_trusts_only_the_newest_record_of_a_file():
    log = records(
        ("sales/a.csv", "x", "accepted", 1, "r1"),
        ("sales/a.csv", "y", "accepted", 2, "r2"),
        ("sales/b.csv", "z", "failed", 1, "r3"),
        ("sales/c.csv", "w", "superseded", 1, "r4"),
        ("sales/d.csv", "v", "accepted", 1, "r5"),
        ("sales/d.csv", "u", "superseded", 2, "r6"),  # lost to v, which committed first
    )
    assert log.settled("sales/a.csv", "y")
    assert not log.settled("sales/a.csv", "x"), "y replaced x: x is not what is stored"
    assert log.settled("sales/b.csv", "z"), "a contract violation is not retried"
    assert not log.settled("sales/c.csv", "w"), "superseded content was never stored"
    assert log.settled("sales/d.csv", "v") and not log.settled("sales/d.csv", "u")
    assert log.recorded_by("sales/a.csv", "x", {"r1"}) == "accepted"
    assert log.recorded_by("sales/a.csv", "x", {"r2", "r9"}) is None


REL = "sales/sales_2025-02-10.csv"


@pytest.fixture
def pending_case(sales_file):
    """A requested content of `sales_file`, unchanged since: (files, arrivals, pending)."""
    f = landing_file(sales_file)
    digest = hashlib.sha256(sales_file.read_bytes()).hexdigest()
    arrivals = Arrivals(unchanged={REL: Seen(f.size, f.mtime_ns, digest, f.inode, f.ctime_ns, 0)})
    return [f], arrivals, Pending(digest, "req1", 1, now_ns())


def plan(case, runs, log=no_log, attempt=1, later=60):
    files, arrivals, p = case
    p = Pending(p.sha256, p.request, attempt, p.requested_ns)
    asked: list[list[str]] = []

    def runs_of(requests):
        asked.append(requests)
        return {"req1": [RunOutcome(*r) for r in runs]} if runs else {}

    out = plan_retries({REL: p}, files, arrivals, runs_of, log, now_ns(later))
    assert asked == [["req1"]]
    return out


def test_a_failed_run_that_recorded_nothing_is_requested_again(pending_case):
    out = plan(pending_case, [("run1", "FAILURE")], log=lambda: records())
    (retry,) = out.arrivals
    assert (retry.file, retry.reason, retry.attempt) == (REL, "retry", 2)
    assert retry.sha256 == pending_case[2].sha256 and retry.partition == dt.date(2025, 2, 10)
    assert not out.pending
    assert out.notes == [
        f"1 file(s) were not recorded: run run1 failed before; requested again (run 2 of 3): {REL}"
    ]


def test_an_older_record_of_the_same_bytes_does_not_stop_the_retry(pending_case):
    sha = pending_case[2].sha256
    log = lambda: records((REL, sha, "accepted", -60, "long-ago"))  # noqa: E731
    assert [a.reason for a in plan(pending_case, [("run1", "FAILURE")], log).arrivals] == ["retry"]


@pytest.mark.parametrize("status", ["failed", "accepted", "superseded"])
def test_a_failed_run_that_recorded_the_content_is_not_retried(pending_case, status):
    sha = pending_case[2].sha256
    log = lambda: records((REL, sha, status, 1, "run1"))  # noqa: E731
    out = plan(pending_case, [("run1", "FAILURE")], log)
    assert not out.arrivals and not out.pending and not out.gave_up
    assert ("data contract" in " ".join(out.notes)) == (status == "failed")


def test_a_request_waits_for_its_run_and_a_reexecution_counts(pending_case):
    for status in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"):
        out = plan(pending_case, [("run1", status)])
        assert list(out.pending) == [REL] and not out.arrivals, status
    # A re-execution started from the UI carries the request's tags: the newest run decides.
    assert list(plan(pending_case, [("run2", "STARTED"), ("run1", "FAILURE")]).pending) == [REL]
    done = plan(pending_case, [("run2", "SUCCESS"), ("run1", "FAILURE")])
    assert not done.pending and not done.arrivals


def test_success_and_cancel_end_the_wait(pending_case):
    ok = plan(pending_case, [("run1", "SUCCESS")])
    assert not ok.pending and not ok.arrivals and not ok.notes
    canceled = plan(pending_case, [("run1", "CANCELED")])
    assert not canceled.pending and not canceled.arrivals
    assert "canceled" in canceled.notes[0]


def test_a_request_without_a_run_is_lost_only_after_a_while(pending_case):
    assert list(plan(pending_case, [], later=60).pending) == [REL]
    lost = plan(pending_case, [], log=lambda: records(), later=LOST_REQUEST_SECONDS + 1)
    assert [a.reason for a in lost.arrivals] == ["retry"]
    assert "have no run of their request req1" in lost.notes[0]


def test_attempts_are_bounded_per_content(pending_case):
    out = plan(pending_case, [("run3", "FAILURE")], lambda: records(), attempt=MAX_RUN_ATTEMPTS)
    assert not out.arrivals and not out.pending
    assert f"gave up after {MAX_RUN_ATTEMPTS} run(s)" in out.gave_up[0]


def test_new_content_removed_or_settling_files_are_not_retried(pending_case, sales_file):
    files, arrivals, p = pending_case
    never = lambda requests: pytest.fail("no run to look up")  # noqa: E731
    replaced = Arrivals()
    seen = arrivals.unchanged[REL]
    replaced.add(Arrival(REL, "other", seen, "changed", dt.date(2025, 2, 10)))
    out = plan_retries({REL: p}, files, replaced, never, no_log, now_ns(60))
    assert not out.arrivals and not out.pending  # the new content has its own request
    out = plan_retries({REL: p}, [], Arrivals(), never, no_log, now_ns(60))
    assert not out.arrivals and not out.pending and "removed" in out.notes[0]
    out = plan_retries({REL: p}, files, Arrivals(settling=[REL]), never, no_log, now_ns(60))
    assert out.pending == {REL: p}
