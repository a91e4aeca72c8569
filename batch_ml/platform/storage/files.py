"""File-system primitives the storage layer and the CLI share: locks and durable renames."""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(lock_file: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_file` (created if absent) for the block.

    Waits for another holder for at most `timeout_s` (forever when None), then raises
    TimeoutError. The lock dies with its holder, so a killed process never leaves it held.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Path(lock_file).open("a") as lock:
        if deadline is None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{lock_file} held for more than {timeout_s} s"
                        ) from None
                    time.sleep(0.02 * (1 + random.random()))
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a rename into it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
