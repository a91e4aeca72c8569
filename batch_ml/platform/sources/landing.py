"""Find landing files. The pipeline only ever reads the landing zone: nothing here writes."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from batch_ml.platform.sources.contract import ContractViolation, Source


@dataclass(frozen=True)
class LandingFile:
    source: str
    path: Path
    partition: dt.date | None
    size: int
    mtime_ns: int
    # A replacement by rename has a new inode; a rewrite in place, even one that restores
    # the mtime (`cp -p`, `touch -r`), changes the ctime.
    inode: int
    ctime_ns: int

    @property
    def state(self) -> tuple[int, int, int, int]:
        """What changes whenever the file's content may have (see `file_state`)."""
        return (self.size, self.mtime_ns, self.inode, self.ctime_ns)


def file_state(path: Path) -> tuple[int, int, int, int] | None:
    """(size, mtime, inode, ctime) of a file, or None if it cannot be read: a rewrite in place
    changes the ctime, which no writer can set back; a replacement by rename the inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def landing_path(landing_root: Path, source: Source, day: dt.date | None = None) -> Path:
    """Where a writer puts the file of `day` (in the source's first format)."""
    return landing_root / source.name / source.file_name(day)


def day_paths(landing_root: Path, source: Source, day: dt.date | None = None) -> list[Path]:
    """The files delivered for `day`, in any declared format (more than one is an error the
    reader reports). A dangling symlink counts: a file was delivered, and must fail."""
    folder = landing_root / source.name
    paths = (folder / source.file_name(day, f) for f in source.file_formats)
    return [p for p in paths if p.exists() or p.is_symlink()]


def ambiguous_problem(paths: list[Path]) -> str:
    """Two files of one day: which to read is not the pipeline's guess."""
    return (
        f"{len(paths)} files for one day, {', '.join(str(p) for p in paths)}; deliver exactly "
        "one (remove all but one)"
    )


def file_problem(landing_root: Path, path: Path) -> str | None:
    """Why a path in the landing zone cannot be read as a landing file, or None."""
    if not path.is_file():
        return "not a regular file"
    if not path.resolve().is_relative_to(Path(landing_root).resolve()):
        return "a link that points outside the landing folder"
    return None


def discover(landing_root: Path, source: Source) -> tuple[list[LandingFile], list[str]]:
    """Valid files of a source, and the problems with the names that break the contract.

    Hidden files and names ending in .tmp/.part/.partial are files still being written
    and are neither listed nor reported. Two or more files of one day (in different formats)
    are a problem, and none of them is listed: an ambiguous delivery is not silently picked.
    """
    folder = landing_root / source.name
    found: list[LandingFile] = []
    problems: list[str] = []
    if not folder.is_dir():
        return found, problems
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(".") or name.endswith((".tmp", ".part", ".partial")):
            continue
        problem = file_problem(landing_root, path)
        if problem:
            problems.append(f"{path}: {problem}")
            continue
        try:
            partition = source.partition_of(name)
        except ContractViolation as exc:
            problems.append(str(exc))
            continue
        stat = path.stat()
        found.append(
            LandingFile(
                source.name,
                path,
                partition,
                stat.st_size,
                stat.st_mtime_ns,
                stat.st_ino,
                stat.st_ctime_ns,
            )
        )
    by_day: dict[dt.date | None, list[LandingFile]] = {}
    for f in found:
        by_day.setdefault(f.partition, []).append(f)
    for files in by_day.values():
        if len(files) > 1:
            problems.append(ambiguous_problem([f.path for f in files]))
    return [f for f in found if len(by_day[f.partition]) == 1], problems


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
