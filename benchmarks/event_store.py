"""How much of a Dagster run is spent storing its events in the instance's event log.

Benchmark instrumentation only: the class method of Dagster's SQLite event log storage is
wrapped for the duration of a `with` block in a benchmark process, never in the library.
That storage opens a new engine and connection for every event, and a second one (the asset
index) for asset events; this is the per-event cost the figures attribute to Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# How the reports name the storage they time.
STORAGE = (
    "Dagster's `SqliteEventLogStorage.store_event`: a new engine and connection per event, "
    "a second for asset events; benchmarks/event_store.py"
)


@dataclass
class EventStoreCost:
    by_type: dict[str, list] = field(default_factory=dict)  # type -> [events, seconds]

    @property
    def events(self) -> int:
        return sum(n for n, _ in self.by_type.values())

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.by_type.values())

    def as_dict(self) -> dict:
        return {
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "by_type": {k: [n, round(s, 3)] for k, (n, s) in sorted(self.by_type.items())},
        }


@contextmanager
def event_store_cost() -> Iterator[EventStoreCost]:
    """Count and time every event Dagster's SQLite event log storage stores in the block."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    cost = EventStoreCost()
    original = SqliteEventLogStorage.store_event

    def store_event(self, event):
        started = time.perf_counter()
        try:
            return original(self, event)
        finally:
            seconds = time.perf_counter() - started
            kind = event.dagster_event.event_type_value if event.dagster_event else "LOG_MESSAGE"
            entry = cost.by_type.setdefault(kind, [0, 0.0])
            entry[0] += 1
            entry[1] += seconds

    SqliteEventLogStorage.store_event = store_event
    try:
        yield cost
    finally:
        SqliteEventLogStorage.store_event = original
