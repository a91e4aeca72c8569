"""Facts every benchmark records beside its figures: machine, load, package versions, git."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(dists: Iterable[str]) -> dict[str, str | None]:
    return {d: version(d) for d in dists}


def loadavg() -> list[float]:
    """Load average over 1, 5 and 15 minutes (the machine may be shared)."""
    return [round(x, 2) for x in os.getloadavg()]


def git(*args: str) -> str:
    """Output of a git command in the repository; empty when git or the repository is absent."""
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return out.stdout.strip()


def uncommitted(paths: Iterable[str]) -> bool:
    return bool(git("status", "--porcelain", "--", *paths))


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def log(text: str) -> None:
    """A progress line on stderr (stdout is the benchmark's result)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def spread(values: list[float], digits: int = 3) -> dict:
    """Median, min and max of repeated measurements (and the values themselves)."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "values": [round(v, digits) for v in values],
    }


def run_json(module: str, *args: str, env: dict | None = None) -> dict:
    """`python -m module args...` in a fresh process (so each measurement pays its own
    start-up and none inherits another's caches) from the repository: the JSON object its
    last stdout line holds. A failed child raises with the end of its stderr."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
