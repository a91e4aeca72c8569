"""Which landing files need a run: new or changed content, once their writer is done.

Pure logic behind the landing sensor (no Dagster here). Files are tracked by content hash,
never by timestamps alone: size and mtime only decide whether a file must be hashed again
and whether it is still being written. What was already ingested comes from the ingestion
log, so a lost or fresh sensor cursor does not re-request days already loaded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from batch_ml.ingest.landing import LandingFile


@dataclass(frozen=True)
class Seen:
    size: int
    mtime_ns: int
    sha256: str

    def to_json(self) -> list:
        return [self.size, self.mtime_ns, self.sha256]

    @staticmethod
    def from_json(value: list) -> Seen:
        return Seen(int(value[0]), int(value[1]), str(value[2]))


@dataclass(frozen=True)
class Arrival:
    file: str  # source/name, relative to the landing root
    sha256: str
    seen: Seen
    reason: str  # new | changed
    partition: dt.date | None


@dataclass
class Arrivals:
    daily: dict[dt.date, list[Arrival]] = field(default_factory=dict)
    static: list[Arrival] = field(default_factory=list)
    settling: list[str] = field(default_factory=list)  # still being written: next tick
    unchanged: dict[str, Seen] = field(default_factory=dict)  # known content, no run needed


def find_arrivals(
    files: list[LandingFile],
    cursor: dict[str, Seen],
    ingested: Callable[[], dict[str, set[str]]],
    hasher: Callable[[Path], str],
    now_ns: int,
    settle_seconds: float,
) -> Arrivals:
    """Sort landing files into new/changed arrivals, files still settling, and unchanged ones.

    `cursor` holds what the sensor saw last; `ingested()` (called only when needed) maps a
    file to the content hashes the ingestion log accepted for it.
    """
    out = Arrivals()
    log: dict[str, set[str]] | None = None
    for f in files:
        rel = f"{f.source}/{f.path.name}"
        if now_ns - f.mtime_ns < settle_seconds * 1e9:
            out.settling.append(rel)  # modified moments ago: its writer may not be done
            continue
        before = cursor.get(rel)
        if before and (before.size, before.mtime_ns) == (f.size, f.mtime_ns):
            out.unchanged[rel] = before  # same size and mtime: not rehashed
            continue
        digest = hasher(f.path)
        seen = Seen(f.size, f.mtime_ns, digest)
        if before and before.sha256 == digest:
            out.unchanged[rel] = seen  # touched, same content
            continue
        if before is None:
            log = ingested() if log is None else log
            if digest in log.get(rel, set()):
                out.unchanged[rel] = seen  # loaded before this cursor existed
                continue
        reason = "new" if before is None and rel not in (log or {}) else "changed"
        arrival = Arrival(rel, digest, seen, reason, f.partition)
        if f.partition is None:
            out.static.append(arrival)
        else:
            out.daily.setdefault(f.partition, []).append(arrival)
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
