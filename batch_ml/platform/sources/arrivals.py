"""Which landing files need a run: new or changed content once its writer is done, and content
whose run died before it recorded the file.

Pure logic behind the landing sensor (no Dagster here). Files are tracked by content hash,
never by timestamps alone: size, mtime, inode and ctime only decide whether a file must be
hashed now and whether it is still being written, and every file is hashed again at least
once every `rehash_seconds` in case its file system does not keep them (docs/operations.md).
What was already ingested comes from the ingestion log, so a lost or fresh sensor cursor does
not re-request days already loaded.

A requested content stays pending until the ingestion log records it (`accepted`, `failed`:
a contract violation, never retried; `superseded`: newer content won) or its run ends. A run
that failed without recording it (a killed worker, a transient error that exhausted its
retries) is requested again, at most `MAX_RUN_ATTEMPTS` runs per content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from batch_ml.platform.sources.landing import LandingFile

# Runs requested for one content of a file before the sensor gives up on it (until it changes).
MAX_RUN_ATTEMPTS = 3
# A request whose run the instance does not know after this long was lost (or its run was
# deleted): requested again, as a failed run would be.
LOST_REQUEST_SECONDS = 600
# Log statuses that settle a requested content: stored, a contract violation, or replaced.
RECORDED = ("accepted", "failed", "superseded")
RETRY = "retry"
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Seen:
    """What the sensor last saw of a file. None: unknown (a cursor from before the field was
    kept), which forces one hash."""

    size: int
    mtime_ns: int
    sha256: str
    inode: int | None = None
    ctime_ns: int | None = None
    hashed_ns: int | None = None  # when the content was last hashed

    def to_json(self) -> list:
        return [self.size, self.mtime_ns, self.sha256, self.inode, self.ctime_ns, self.hashed_ns]

    @staticmethod
    def from_json(value: list) -> Seen:
        """Also reads the cursor's first format, [size, mtime_ns, sha256]."""
        size, mtime_ns, sha256, *rest = value
        known = [None if v is None else int(v) for v in rest] + [None] * (3 - len(rest))
        return Seen(int(size), int(mtime_ns), str(sha256), *known[:3])

    def same_file_state(self, f: LandingFile) -> bool:
        return (self.size, self.mtime_ns, self.inode, self.ctime_ns) == f.state


@dataclass(frozen=True)
class Pending:
    """A content the sensor requested a run for and that the ingestion log has not settled."""

    sha256: str
    request: str  # the `batch_ml/request` tag of its run(s)
    attempt: int  # runs requested for this content so far
    requested_ns: int

    def to_json(self) -> list:
        return [self.sha256, self.request, self.attempt, self.requested_ns]

    @staticmethod
    def from_json(value: list) -> Pending:
        sha256, request, attempt, requested_ns = value
        return Pending(str(sha256), str(request), int(attempt), int(requested_ns))


@dataclass(frozen=True)
class Arrival:
    file: str  # source/name, relative to the landing root
    sha256: str
    seen: Seen
    reason: str  # new | changed | retry
    partition: dt.date | None
    attempt: int = 1  # which run for this content the request will be


@dataclass
class Arrivals:
    daily: dict[dt.date, list[Arrival]] = field(default_factory=dict)
    static: list[Arrival] = field(default_factory=list)
    settling: list[str] = field(default_factory=list)  # still being written: next tick
    unchanged: dict[str, Seen] = field(default_factory=dict)  # known content, no run needed
    hashed: int = 0  # files hashed this tick
    rehashed: int = 0  # of which only because their periodic rehash was due

    def add(self, arrival: Arrival) -> None:
        if arrival.partition is None:
            self.static.append(arrival)
        else:
            self.daily.setdefault(arrival.partition, []).append(arrival)

    @property
    def files(self) -> set[str]:
        return {a.file for a in self.static} | {a.file for x in self.daily.values() for a in x}


@dataclass(frozen=True)
class Record:
    """One ingestion log row, as far as the sensor needs it."""

    sha256: str
    status: str
    ingested_at: dt.datetime
    run_id: str


class IngestionRecords:
    """The ingestion log by file: what each run recorded about each content."""

    def __init__(self, rows: Iterable[tuple[str, str, str, dt.datetime, str]]):
        self._by_file: dict[str, list[Record]] = {}
        for file, sha256, status, ingested_at, run_id in rows:
            self._by_file.setdefault(file, []).append(Record(sha256, status, ingested_at, run_id))
        for records in self._by_file.values():
            records.sort(key=lambda r: r.ingested_at or _NEVER)

    def __contains__(self, file: str) -> bool:
        return file in self._by_file

    def settled(self, file: str, sha256: str) -> bool:
        """Whether what the tables hold for the file is known to be this content, stored or
        failed, so no run is needed: its newest record that is not `superseded` (a run that
        lost to newer content stored nothing) is of this content. An older record of the same
        bytes does not count: a later content may have replaced them since."""
        for record in reversed(self._by_file.get(file, [])):
            if record.status != "superseded":
                return record.sha256 == sha256
        return False

    def recorded_by(self, file: str, sha256: str, run_ids: set[str]) -> str | None:
        """The status one of these runs recorded for this content, or None."""
        for record in reversed(self._by_file.get(file, [])):
            if record.sha256 == sha256 and record.run_id in run_ids and record.status in RECORDED:
                return record.status
        return None


def rehash_due(file: str, hashed_ns: int | None, now_ns: int, rehash_seconds: float) -> bool:
    """Whether the file's own moment in a `rehash_seconds` window (a fixed fraction of the
    window, from its name) came since it was last hashed. At most `rehash_seconds` pass
    between two hashes of a file, and the files' moments are spread evenly over the window,
    whenever they were hashed first: no tick rehashes them all."""
    if hashed_ns is None:
        return True
    period = int(rehash_seconds * 1e9)
    offset = int(hashlib.sha256(file.encode()).hexdigest()[:12], 16) * period // 16**12
    return (now_ns - offset) // period > (hashed_ns - offset) // period


def find_arrivals(
    files: list[LandingFile],
    cursor: dict[str, Seen],
    recorded: Callable[[], IngestionRecords],
    hasher: Callable[[Path], str],
    now_ns: int,
    settle_seconds: float,
    rehash_seconds: float,
) -> Arrivals:
    """Sort landing files into new/changed arrivals, files still settling, and unchanged ones.

    `cursor` holds what the sensor saw last; `recorded()` (called only when needed) reads the
    ingestion log. A file is hashed when its size, mtime, inode or ctime differ from the
    cursor's, or when its periodic rehash is due.
    """
    out = Arrivals()
    log: IngestionRecords | None = None
    for f in files:
        rel = f"{f.source}/{f.path.name}"
        if now_ns - f.mtime_ns < settle_seconds * 1e9:
            out.settling.append(rel)  # modified moments ago: its writer may not be done
            continue
        before = cursor.get(rel)
        same_state = before is not None and before.same_file_state(f)
        if same_state and not rehash_due(rel, before.hashed_ns, now_ns, rehash_seconds):
            out.unchanged[rel] = before  # nothing says it changed: not rehashed
            continue
        digest = hasher(f.path)
        out.hashed += 1
        out.rehashed += same_state
        seen = Seen(f.size, f.mtime_ns, digest, f.inode, f.ctime_ns, now_ns)
        if before and before.sha256 == digest:
            out.unchanged[rel] = seen  # touched, moved or copied back: same content
            continue
        if before is None:
            log = recorded() if log is None else log
            if log.settled(rel, digest):
                out.unchanged[rel] = seen  # loaded before this cursor existed
                continue
        reason = "new" if before is None and rel not in (log or ()) else "changed"
        out.add(Arrival(rel, digest, seen, reason, f.partition))
    return out


@dataclass(frozen=True)
class RunOutcome:
    """A run the instance holds for a request (newest first when several: re-executions
    started from the UI carry the request's tags too)."""

    run_id: str
    status: str  # DagsterRunStatus value: QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...


@dataclass
class Retries:
    arrivals: list[Arrival] = field(default_factory=list)  # to request again (reason `retry`)
    pending: dict[str, Pending] = field(default_factory=dict)  # still waiting for their run
    notes: list[str] = field(default_factory=list)  # why a file is requested again, or not
    gave_up: list[str] = field(default_factory=list)  # contents that used all their attempts


def _grouped(notes: dict[str, list[str]]) -> list[str]:
    """One line per reason (a range run fails for all its files at once), files abridged."""
    lines = []
    for text, files in notes.items():
        shown = ", ".join(files) if len(files) <= 4 else f"{files[0]}, {files[1]} ... {files[-1]}"
        lines.append(f"{len(files)} file(s) {text}: {shown}")
    return lines


def plan_retries(
    pending: dict[str, Pending],
    files: list[LandingFile],
    arrivals: Arrivals,
    runs_of: Callable[[list[str]], dict[str, list[RunOutcome]]],
    recorded: Callable[[], IngestionRecords],
    now_ns: int,
    max_attempts: int = MAX_RUN_ATTEMPTS,
) -> Retries:
    """Decide for each pending content: keep waiting, request it again, or let it go.

    `runs_of(requests)` returns the instance's runs of each request id; `recorded()` (called
    only when a run failed) reads the ingestion log. A content is let go when the log recorded
    it, when its run succeeded or was canceled (a person's decision), when the file now holds
    other content (that content has its own arrival) or is gone, and after `max_attempts`
    failed runs.
    """
    out = Retries()
    notes: dict[str, list[str]] = {}
    gave_up: dict[str, list[str]] = {}
    present = {f"{f.source}/{f.path.name}": f for f in files}
    arrived = arrivals.files
    waiting: dict[str, Pending] = {}
    for rel, p in pending.items():
        if rel in arrived:
            continue  # new content replaces the pending one
        if rel in arrivals.settling:
            out.pending[rel] = p  # being rewritten: decide once it settles
        elif rel not in present:
            notes.setdefault("removed from the landing folder, not requested again", []).append(rel)
        elif rel in arrivals.unchanged and arrivals.unchanged[rel].sha256 == p.sha256:
            waiting[rel] = p
    runs = runs_of(sorted({p.request for p in waiting.values()})) if waiting else {}
    log: IngestionRecords | None = None
    for rel, p in waiting.items():
        found = runs.get(p.request, [])
        if not found:
            if now_ns - p.requested_ns < LOST_REQUEST_SECONDS * 1e9:
                out.pending[rel] = p  # the daemon has not created the run yet
                continue
            why = f"have no run of their request {p.request}"
        else:
            newest = found[0]
            if newest.status == "SUCCESS":
                continue
            if newest.status == "CANCELED":
                text = f"not requested again: run {newest.run_id} was canceled"
                notes.setdefault(text, []).append(rel)
                continue
            if newest.status != "FAILURE":
                out.pending[rel] = p  # queued or in progress
                continue
            log = recorded() if log is None else log
            status = log.recorded_by(rel, p.sha256, {r.run_id for r in found})
            if status == "failed":
                text = f"break the data contract (run {newest.run_id}), not retried"
                notes.setdefault(text, []).append(rel)
            if status is not None:
                continue
            why = f"were not recorded: run {newest.run_id} failed before"
        if p.attempt >= max_attempts:
            text = (
                f"{why}; gave up after {p.attempt} run(s) for this content (at most "
                f"{max_attempts}): fix the cause, then re-execute or deliver them again"
            )
            gave_up.setdefault(text, []).append(rel)
            continue
        out.arrivals.append(
            Arrival(
                rel, p.sha256, arrivals.unchanged[rel], RETRY, present[rel].partition, p.attempt + 1
            )
        )
        text = f"{why}; requested again (run {p.attempt + 1} of {max_attempts})"
        notes.setdefault(text, []).append(rel)
    out.notes, out.gave_up = _grouped(notes), _grouped(gave_up)
    return out


def contiguous_ranges(days: list[dt.date], max_days: int) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days as (first, last) ranges of at most `max_days` days."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if ranges:
            first, last = ranges[-1]
            if day == last + dt.timedelta(days=1) and (day - first).days < max_days:
                ranges[-1] = (first, day)
                continue
        ranges.append((day, day))
    return ranges
