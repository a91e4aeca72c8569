"""The landing-zone contract engine: a source declared as data (`Source`), and the
validation of its files (CSV, JSON, JSON lines, Parquet, XML) against that declaration.

A product declares its sources in its own package (`batch_ml/products/<product>/`); the
human-readable contract is docs/data-contract.md. Validation uses dataframely (a
polars-native validation library) for types, nullability, ranges and key uniqueness; every
problem is reported with file, row and column. Types come from the declaration, never from
the file; size limits and the magnitude bound of numbers are `[ingest]` configuration
(`IngestLimits`).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import dataframely as dy
import numpy as np
import polars as pl

from batch_ml.config import IngestConfig, IngestLimits

MAX_REPORTED_PROBLEMS = 10
MAX_VALUE_CHARS = 80  # of a bad value quoted in a message
MAX_LISTED_NAMES = 10  # column names quoted in one message
DEFAULT_LIMITS = IngestLimits()
FILE_FORMATS = ("csv", "json", "jsonl", "parquet", "xml")
# Source names become folder and file names: lower-case snake_case only.
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]*")


class ContractViolation(ValueError):
    """A landing file breaks the data contract. The message names file, row and column."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        lines = "\n".join(f"  - {p}" for p in shown)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{self.path} breaks the data contract:\n{lines}{tail}")


@dataclass(frozen=True)
class MatchesStored:
    """A file's `columns` must match those of the stored `source` in at least one row (ids are
    compared as exact text): a file keyed `1` where the stored source says `S01` would join
    nothing. E.g. a catalogue's `sku` against the `sku` of the stored daily orders."""

    source: str
    columns: tuple[str, ...]


SUMMARY_KINDS = ("distinct", "sum")


@dataclass(frozen=True)
class Summary:
    """A number of the rows a step stored, shown as the asset's metadata `name`: the count of
    distinct value combinations of `columns` ("distinct"), or the sum of one column ("sum")."""

    name: str
    kind: str
    columns: tuple[str, ...]

    def __post_init__(self):
        if self.kind not in SUMMARY_KINDS:
            raise ValueError(f"summary {self.name}: kind {self.kind!r} not in {SUMMARY_KINDS}")
        if not self.columns or (self.kind == "sum" and len(self.columns) != 1):
            needs = "one column" if self.kind == "sum" else "columns"
            raise ValueError(f"summary {self.name}: {self.kind} needs {needs}")

    def of(self, frame: pl.DataFrame) -> int | float:
        if self.kind == "sum":
            return float(frame[self.columns[0]].sum())
        return frame.select(self.columns).n_unique()


@dataclass(frozen=True)
class Source:
    """One landing source, declared as data: its files, their columns and the rules its rows
    follow. The platform builds the source's asset, the landing sensor's view of it and the
    validation of its files from this declaration alone.

    - `file_format`: one of FILE_FORMATS, or a tuple of them (a source its suppliers deliver
      in several formats). Files are `<name>/<name>_<YYYY-MM-DD>.<format>` for a daily source
      (one file per day D, its partition, in any one of the formats) and
      `<name>/<name>.<format>` for a static one. The file's extension picks its reader.
    - `required` / `optional`: the columns and their types (`pl.String`, `pl.Float64`,
      `pl.Int64`, `pl.Date`, `pl.Datetime("us", "UTC")`); the file's own types never decide.
    - `primary_key`: unique per file; `id_columns`: text keys, compared as exact text (no
      control characters; a JSON number there is `wrong_type` with a hint).
    - `date_column`, `date_offsets`: for a daily source, the column holding each row's date
      (a `pl.Date`, or a `pl.Datetime` whose UTC date counts; it then needs a `day_column`)
      and the dates the file of day D may hold, (first, last) in days from D; last None: no
      upper bound. E.g. (0, 0): only D; (1, 7): the week after D.
    - `file_required`: a daily source's missing file fails its partition; else the day is
      stored as an empty partition (a static source: stored empty).
    - `day_column`: a stored column recording the file's day D, added to every row (needed
      when the rows' own dates are not D).
    - `known_ids`: the rows' ids must (partly) match a stored source (`MatchesStored`).
    - `unique_across_days`: a daily source's `primary_key` is unique over all its days, not
      only within a file (e.g. a review arrives once): a file holding a key another day
      stored fails (a correction of a day re-delivers that day's file).
    - `allowed`: text columns whose values must be among the listed ones (`not_allowed`),
      e.g. a label column and its classes.
    - `summaries`: numbers of the stored rows shown as metadata (`Summary`).
    - `record_element`: XML only, the element of one record (see `_read_xml`).
    """

    name: str
    file_format: str | tuple[str, ...]
    required: dict[str, pl.DataType]
    optional: dict[str, pl.DataType] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    id_columns: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()
    daily: bool = True
    date_column: str | None = None
    date_offsets: tuple[int, int | None] = (0, 0)
    file_required: bool = True
    day_column: str | None = None
    known_ids: MatchesStored | None = None
    unique_across_days: bool = False
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    summaries: tuple[Summary, ...] = ()
    description: str = ""
    record_element: str = "record"
    limits: IngestLimits = DEFAULT_LIMITS

    def __post_init__(self):
        """A declaration that cannot work fails when it is made, not on the first file."""
        problems = []
        columns = self.columns
        if not _SOURCE_NAME.fullmatch(self.name):
            problems.append("name must be lower-case snake_case (it names folders and files)")
        formats = self.file_formats
        if not formats or any(f not in FILE_FORMATS for f in formats):
            problems.append(f"file_format {self.file_format!r} not in {FILE_FORMATS}")
        if twice := sorted(f for f, n in Counter(formats).items() if n > 1):
            problems.append(f"file_format names {twice} twice")
        if unknown := {c: t for c, t in self.columns.items() if not isinstance(t, _CONTRACT_TYPES)}:
            problems.append(f"column type(s) not supported: {unknown}; use {_TYPE_NAMES}")
        if naive := [
            c
            for c, t in self.columns.items()
            if isinstance(t, pl.Datetime) and t.time_zone != "UTC"
        ]:
            problems.append(f'timestamps are UTC: declare {naive} as pl.Datetime("us", "UTC")')
        if both := sorted(set(self.required) & set(self.optional)):
            problems.append(f"columns both required and optional: {both}")
        for what in ("primary_key", "id_columns", "non_negative", "allowed"):
            unknown = [c for c in getattr(self, what) if c not in columns]
            if unknown:
                problems.append(f"{what} names unknown column(s) {unknown}")
        for what in ("id_columns", "allowed"):
            not_text = [
                c for c in getattr(self, what) if columns.get(c, pl.String()) != pl.String()
            ]
            if not_text:
                problems.append(f"{what} must be text (pl.String): {not_text}")
        if self.daily:
            if self.date_column not in self.required or not isinstance(
                self.required[self.date_column], pl.Date | pl.Datetime
            ):
                problems.append(
                    "a daily source needs a required pl.Date or pl.Datetime date_column"
                )
            first, last = self.date_offsets
            if last is not None and last < first:
                problems.append(f"date_offsets {self.date_offsets}: the last is before the first")
            if self.day_column is None and self.date_offsets != (0, 0):
                problems.append("rows dated other than their file's day need a day_column")
            if self.day_column is None and isinstance(
                self.columns.get(self.date_column), pl.Datetime
            ):
                problems.append(
                    "a pl.Datetime date_column needs a day_column (partitions are days)"
                )
        if not self.daily and self.day_column is not None:
            problems.append("a static source has no day: day_column must be None")
        if self.day_column is not None and self.day_column in columns:
            problems.append(f"day_column {self.day_column!r} is also a file column")
        if self.unique_across_days and not (self.daily and self.primary_key):
            problems.append("unique_across_days needs a daily source with a primary_key")
        if self.known_ids is not None:
            unknown = [c for c in self.known_ids.columns if c not in columns]
            if unknown or not self.known_ids.columns:
                problems.append(f"known_ids names unknown column(s) {unknown}")
        stored = {*columns, *([self.day_column] if self.day_column else [])}
        for summary in self.summaries:
            if unknown := [c for c in summary.columns if c not in stored]:
                problems.append(f"summary {summary.name} names unknown column(s) {unknown}")
        if problems:
            raise ValueError(f"source {self.name!r}: " + "; ".join(problems))

    @property
    def file_formats(self) -> tuple[str, ...]:
        """The accepted formats, the first one the format writers use."""
        return (self.file_format,) if isinstance(self.file_format, str) else tuple(self.file_format)

    @property
    def columns(self) -> dict[str, pl.DataType]:
        """Every contract column with its type, required ones first."""
        return {**self.required, **self.optional}

    @property
    def partition_column(self) -> str | None:
        """The stored column that holds a daily source's partition day."""
        return (self.day_column or self.date_column) if self.daily else None

    @functools.cached_property
    def file_pattern(self) -> re.Pattern[str]:
        """The valid file names; group 1, for a daily source, is the partition date."""
        stem = re.escape(self.name)
        ext = "|".join(re.escape(f) for f in self.file_formats)
        if len(self.file_formats) > 1:
            ext = f"(?:{ext})"
        return re.compile(rf"{stem}_{_DATE}\.{ext}" if self.daily else rf"{stem}\.{ext}")

    def file_name(self, day: dt.date | None = None, file_format: str | None = None) -> str:
        """The name of the file of `day` in `file_format` (default: the first format)."""
        ext = file_format or self.file_formats[0]
        if ext not in self.file_formats:
            raise ValueError(f"source {self.name!r}: {ext!r} not in {self.file_formats}")
        return f"{self.name}_{day.isoformat()}.{ext}" if self.daily else f"{self.name}.{ext}"

    def accepted_names(self, day: dt.date | None = None) -> str:
        """Every accepted name of the file of `day`: `orders_2025-01-03.{csv,jsonl}`."""
        stem = self.file_name(day).rsplit(".", 1)[0]
        formats = self.file_formats
        return f"{stem}.{formats[0]}" if len(formats) == 1 else f"{stem}.{{{','.join(formats)}}}"

    def date_window(self, day: dt.date) -> tuple[dt.date, dt.date | None]:
        """The dates the file of day `day` may hold (the last None: no upper bound)."""
        first, last = self.date_offsets
        hi = None if last is None else day + dt.timedelta(days=last)
        return day + dt.timedelta(days=first), hi

    def partition_of(self, file_name: str) -> dt.date | None:
        """Partition date of a valid file name; raises on a name that breaks the contract."""
        match = self.file_pattern.fullmatch(file_name)
        if not match:
            raise ContractViolation(
                file_name,
                [f"file name does not match {self.file_pattern.pattern!r} for source {self.name}"],
            )
        if not self.daily:
            return None
        try:
            return dt.date.fromisoformat(match.group(1))
        except ValueError:
            raise ContractViolation(file_name, ["file name holds no valid date"]) from None


_DATE = r"(\d{4}-\d{2}-\d{2})"
# The column types a contract may declare (their parsing: `_convert`, their rules:
# `_dataframely_schema`).
_CONTRACT_TYPES = (pl.String, pl.Float64, pl.Int64, pl.Date, pl.Datetime)
_TYPE_NAMES = "pl.String, pl.Float64, pl.Int64, pl.Date or pl.Datetime"


ROW = "_row"  # 1-based row of the record in its file (for CSV: data row, header excluded)

PROBLEM_SCHEMA = {
    ROW: pl.UInt32(),
    "column": pl.String(),
    "rule": pl.String(),
    "value": pl.String(),
    "expected": pl.String(),
}


@dataclass(frozen=True)
class _Raw:
    """A file as parsed, with ROW; values of a JSON type the contract does not allow are null
    in `frame` and listed in `problems`; `json_records` keeps JSON rows as found."""

    frame: pl.DataFrame
    problems: pl.DataFrame
    json_records: list[dict] | None = None


def _names_text(names: list[str]) -> str:
    """At most MAX_LISTED_NAMES names: a 50,000-column header must not make the message."""
    if len(names) <= MAX_LISTED_NAMES:
        return repr(names)
    return f"{names[:MAX_LISTED_NAMES]!r} and {len(names) - MAX_LISTED_NAMES:,} more"


def _check_columns(names: list[str], path: Path, source: Source) -> None:
    """The column names of a file against the contract; linear in the number of names."""
    limit = source.limits.max_columns
    if len(names) > limit:
        raise ContractViolation(
            path, [f"{len(names):,} columns; at most {limit:,} allowed ([ingest] max_columns)"]
        )
    problems: list[str] = []
    expected = source.columns
    present = set(names)
    missing = [c for c in source.required if c not in present]
    if missing:
        problems.append(f"missing required column(s) {missing}; file has {_names_text(names)}")
    extra = [c for c in names if c not in expected]
    if extra:
        problems.append(f"unexpected column(s) {_names_text(extra)}; allowed: {sorted(expected)}")
    duplicated = sorted(c for c, n in Counter(names).items() if n > 1)
    if duplicated:
        problems.append(f"duplicated column name(s) {_names_text(duplicated)}")
    if problems:
        raise ContractViolation(path, problems)


def _check_rows(rows: int, path: Path, source: Source) -> None:
    limit = source.limits.max_rows
    if rows > limit:
        raise ContractViolation(
            path, [f"{rows:,} rows; at most {limit:,} allowed ([ingest] max_rows)"]
        )


def _parser_message(exc: BaseException) -> str:
    """A parser's own message, first line only: Polars appends advice on its reader options
    (`truncate_ragged_lines`, `infer_schema_length`) that a data supplier cannot act on."""
    first = str(exc).strip().split("\n", 1)[0]
    return first if len(first) <= 2 * MAX_VALUE_CHARS else f"{first[: 2 * MAX_VALUE_CHARS]}..."


def _line_of(content: bytes, offset: int) -> int:
    return content.count(b"\n", 0, offset) + 1


def _utf8(path: Path, content: bytes, what: str = "") -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_of(content, exc.start)
        raise ContractViolation(path, [f"{what}line {line}: not valid UTF-8 ({exc})"]) from None


def _csv_error_location(text: str, width: int) -> str:
    """Where Python's csv module finds the first record Polars cannot read: one with more
    fields than the header, or a quote never closed. Only run on the error path."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    row, start = 0, 1
    try:
        next(reader, None)  # the header
        start = reader.line_num + 1
        for row, record in enumerate(reader, 1):
            if len(record) > width:
                return f"row {row} (line {start}) has {len(record)} fields, the header {width}: "
            start = reader.line_num + 1
    except csv.Error as exc:
        return f"row {row + 1} (from line {start}): {exc}: "
    return ""


def _read_csv(path: Path, content: bytes, source: Source) -> pl.DataFrame:
    text = _utf8(path, content)
    ends = np.flatnonzero(np.frombuffer(content, np.uint8) == ord("\n"))
    if ends.size == 0 and b"\r" in content:
        raise ContractViolation(
            path, ["line 1: lines end in CR only (old Mac style); expected LF or CRLF endings"]
        )
    lengths = np.diff(np.concatenate(([-1], ends, [len(content)]))) - 1
    longest = int(lengths.argmax())
    limit = source.limits.max_line_bytes
    if lengths[longest] > limit:
        raise ContractViolation(
            path,
            [
                f"line {longest + 1} is {int(lengths[longest]):,} bytes long; at most "
                f"{limit:,} allowed ([ingest] max_line_bytes)"
            ],
        )
    header = text[: text.find("\n")] if ends.size else text
    try:
        names = next(csv.reader([header.removesuffix("\r")]), [])
    except csv.Error as exc:
        raise ContractViolation(
            path, [f"cannot be parsed as csv: line 1 (the header): {exc}"]
        ) from None
    if not names:
        raise ContractViolation(
            path, ["cannot be parsed as csv: line 1 (the header) is empty; expected column names"]
        )
    # A UTF-8 byte-order mark would otherwise become part of the first column name.
    names[0] = names[0].removeprefix("\ufeff")
    # Checked before the body is parsed: a header of 50,000 names fails at once.
    _check_columns(names, path, source)
    try:
        frame = pl.read_csv(content, infer_schema=False, encoding="utf8")
    except pl.exceptions.PolarsError as exc:
        where = _csv_error_location(text.removeprefix("\ufeff"), len(names))
        raise ContractViolation(
            path, [f"cannot be parsed as csv: {where}{_parser_message(exc)}"]
        ) from None
    if frame.columns:
        frame = frame.rename({frame.columns[0]: frame.columns[0].removeprefix("\ufeff")})
    _check_rows(frame.height, path, source)
    return frame


def _read_parquet(path: Path, content: bytes, source: Source) -> pl.DataFrame:
    # The footer first: columns and rows are checked before any data is decoded.
    _check_columns(list(pl.read_parquet_schema(io.BytesIO(content))), path, source)
    _check_rows(
        pl.scan_parquet(io.BytesIO(content)).select(pl.len()).collect().item(), path, source
    )
    return pl.read_parquet(io.BytesIO(content))


# A JSON string (its escapes included); JSON strings hold no raw newline, so removing them
# keeps line numbers.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET_STEP = np.zeros(256, np.int8)  # byte -> change of nesting depth
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


def _check_json_depth(path: Path, content: bytes, source: Source) -> None:
    """Nesting depth by counting brackets outside strings, before `json.loads` (which would
    recurse, and raise RecursionError on deep input)."""
    limit = source.limits.max_json_depth
    if content.count(b"[") + content.count(b"{") <= limit:
        return
    bare = np.frombuffer(_JSON_STRING.sub(b'""', content), np.uint8)
    depth = np.cumsum(_BRACKET_STEP[bare], dtype=np.int64)
    too_deep = np.flatnonzero(depth > limit)
    if too_deep.size:
        line = int(np.count_nonzero(bare[: too_deep[0]] == ord("\n"))) + 1
        raise ContractViolation(
            path,
            [
                f"line {line}: JSON nested more than {limit} levels deep "
                f"({int(depth.max())} levels); at most {limit} allowed ([ingest] max_json_depth)"
            ],
        )


_JSON_TYPE = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _json_number(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf if value > 0 else -math.inf


def _json_column(
    name: str, values: list, want: pl.DataType, is_id: bool
) -> tuple[pl.Series, list[tuple[int, str]], str]:
    """A JSON column typed by the contract: numbers for number columns, strings for text and
    dates, integers (exactly, not via a float) for integer columns. Other JSON types become
    null and are returned as (row, value as JSON)."""
    number, integer = want.is_numeric(), want.is_integer()
    kept, bad = [], []
    for row, value in enumerate(values, 1):
        kind = type(value)
        if value is None:
            kept.append(None)
        elif integer and kind is int and _INT64_MIN <= value <= _INT64_MAX:
            kept.append(value)
        elif integer and kind is float and value.is_integer() and abs(value) < 2**63:
            kept.append(int(value))
        elif number and not integer and kind in (int, float):
            kept.append(_json_number(value))
        elif not number and kind is str:
            kept.append(value)
        else:
            kept.append(None)
            bad.append((row, json.dumps(value)))
    expected = "a JSON integer" if integer else "a JSON number" if number else "a JSON string"
    if is_id:
        expected += ' (ids are text: write 1 as "1")'
    dtype = pl.Int64() if integer else pl.Float64() if number else pl.String()
    return pl.Series(name, kept, dtype), bad, expected


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _json_raw(path: Path, records: list[dict], source: Source) -> _Raw:
    """JSON objects (one per row) as a frame typed by the contract; see `_json_column`."""
    _check_rows(len(records), path, source)
    names = list(dict.fromkeys(k for r in records for k in r))
    _check_columns(names, path, source)
    columns, problems = [], []
    for name in names:
        series, bad, expected = _json_column(
            name, [r.get(name) for r in records], source.columns[name], name in source.id_columns
        )
        columns.append(series)
        if bad:
            rows, values = zip(*bad, strict=True)
            problems.append(
                pl.DataFrame(
                    {ROW: rows, "column": name, "rule": "wrong_type", "value": values},
                    schema_overrides={ROW: pl.UInt32()},
                ).with_columns(expected=pl.lit(expected))
            )
    frame = pl.DataFrame(columns).with_row_index(ROW, offset=1)
    return _Raw(frame, pl.concat([_no_problems(), *problems]), records)


def _read_json(path: Path, content: bytes, source: Source) -> _Raw:
    """A JSON array of objects, one object per row."""
    text = _utf8(path, content, "cannot be parsed as json: ")
    _check_json_depth(path, content, source)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractViolation(path, [f"cannot be parsed as json: {exc}"]) from None
    except RecursionError:
        raise ContractViolation(path, ["cannot be parsed as json: nested too deeply"]) from None
    if not isinstance(records, list):
        found = _JSON_TYPE.get(type(records), "null")
        raise ContractViolation(path, [f"expected a JSON array of objects; the file holds {found}"])
    not_object = next((i for i, r in enumerate(records, 1) if not isinstance(r, dict)), None)
    if not_object is not None:
        found = _JSON_TYPE.get(type(records[not_object - 1]), "null")
        raise ContractViolation(
            path, [f"row {not_object}: expected a JSON array of objects; element is {found}"]
        )
    return _json_raw(path, records, source)


def _read_jsonl(path: Path, content: bytes, source: Source) -> _Raw:
    """JSON lines: one object per line, so row N is line N. A final newline ends the last
    line; an empty line elsewhere is an error (it would shift rows against lines)."""
    text = _utf8(path, content, "cannot be parsed as jsonl: ")
    _check_json_depth(path, content, source)
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    _check_rows(len(lines), path, source)
    limit = source.limits.max_line_bytes
    records = []
    for number, line in enumerate(lines, 1):
        if 4 * len(line) > limit and len(line.encode()) > limit:  # UTF-8: <= 4 bytes a character
            raise ContractViolation(
                path,
                [
                    f"line {number} is {len(line.encode()):,} bytes long; at most {limit:,} "
                    "allowed ([ingest] max_line_bytes)"
                ],
            )
        if not line.strip():
            raise ContractViolation(
                path, [f"line {number} is empty; expected one JSON object per line"]
            )
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ContractViolation(
                path, [f"cannot be parsed as jsonl: line {number}: {exc.msg} (column {exc.colno})"]
            ) from None
        except RecursionError:
            raise ContractViolation(
                path, [f"cannot be parsed as jsonl: line {number}: nested too deeply"]
            ) from None
        if not isinstance(record, dict):
            found = _JSON_TYPE.get(type(record), "null")
            raise ContractViolation(
                path, [f"line {number}: expected one JSON object per line; the line holds {found}"]
            )
        records.append(record)
    return _json_raw(path, records, source)


class _XmlStop(Exception):
    """Raised inside the XML parser's handlers: parsing stops at once, with this problem."""


def _read_xml(path: Path, content: bytes, source: Source) -> pl.DataFrame:
    """XML records: `<any-root><record><column>value</column>...</record>...</any-root>`.

    Each `record_element` child of the root is a row; each of its child elements is a column,
    named by its tag, whose text is the value (typed by the contract, like CSV text; an empty
    element is a missing value). Attributes, other elements, nesting below a column and text
    between columns are errors naming the line. The document may not have a DOCTYPE: entity
    declarations (billion laughs, external entities) are refused before any is expanded.

    Parsed by expat as a stream of events (no tree is built), so the row and column limits
    stop a huge file as soon as it passes them.
    """
    _utf8(path, content, "cannot be parsed as xml: ")
    # The contract's encoding is UTF-8, whatever the XML declaration says.
    parser = expat.ParserCreate(encoding="utf-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    record_tag = source.record_element
    max_rows, max_columns = source.limits.max_rows, source.limits.max_columns
    rows: list[dict[str, str | None]] = []
    names: dict[str, None] = {}  # every column name seen, in order
    depth = 0
    column: str | None = None
    text: list[str] = []

    def stop(problem: str) -> None:
        raise _XmlStop(f"line {parser.CurrentLineNumber}: {problem}")

    def start(tag: str, attributes: dict) -> None:
        nonlocal depth, column
        depth += 1
        if depth == 1:
            return  # the root: any name, its attributes (e.g. xmlns) are not data
        if attributes:
            stop(f"<{tag}> has attribute(s) {sorted(attributes)}; columns are child elements")
        if depth == 2:
            if tag != record_tag:
                stop(f"<{tag}> where a <{record_tag}> record was expected")
            if len(rows) >= max_rows:
                stop(f"more than {max_rows:,} rows ([ingest] max_rows)")
            rows.append({})
        elif depth == 3:
            if tag in rows[-1]:
                stop(f"record {len(rows)} has column <{tag}> twice")
            if tag not in names and len(names) >= max_columns:
                stop(f"more than {max_columns:,} columns ([ingest] max_columns)")
            names.setdefault(tag)
            column = tag
            text.clear()
        else:
            stop(f"<{tag}> inside column <{column}>; a column holds text only")

    def end(tag: str) -> None:
        nonlocal depth, column
        if depth == 3:
            rows[-1][column] = "".join(text) if text else None
            column = None
        depth -= 1

    def characters(data: str) -> None:
        if depth == 3:
            text.append(data)
        elif data.strip():
            where = f"record {len(rows)}" if depth == 2 else "the root"
            stop(f"text {data.strip()[:MAX_VALUE_CHARS]!r} in {where} outside any column")

    def no_doctype(*_args) -> None:
        stop("a DOCTYPE is not allowed (no DTD, no entity declarations)")

    def no_entities(*_args) -> None:
        stop("entity declarations and references are not allowed")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = no_doctype
    parser.EntityDeclHandler = no_entities
    parser.ExternalEntityRefHandler = no_entities
    parser.SkippedEntityHandler = no_entities
    parser.buffer_text = True
    try:
        parser.Parse(content, True)
    except _XmlStop as exc:
        raise ContractViolation(path, [f"cannot be parsed as xml: {exc}"]) from None
    except expat.ExpatError as exc:
        raise ContractViolation(
            path,
            [
                f"cannot be parsed as xml: line {exc.lineno}, column {exc.offset + 1}: "
                f"{expat.ErrorString(exc.code)}"
            ],
        ) from None
    _check_columns(list(names), path, source)
    return pl.DataFrame(
        {name: [r.get(name) for r in rows] for name in names},
        schema={name: pl.String() for name in names},
    )


# JSON keeps its own types (a number is not a string), so its readers type the values; the
# others give text (CSV, XML) or typed columns (Parquet) that `_cast` converts.
_JSON_READERS = {"json": _read_json, "jsonl": _read_jsonl}
_FRAME_READERS = {"csv": _read_csv, "parquet": _read_parquet, "xml": _read_xml}


def _read_raw(path: Path, source: Source, content: bytes) -> _Raw:
    """Parse a file's bytes as-is (CSV as strings) with row numbers. Structural problems,
    limits and every parser error become a ContractViolation naming the file (and the line,
    row or column when known)."""
    if not content:
        raise ContractViolation(path, ["the file is empty (0 bytes); expected at least a header"])
    # The file's own extension picks the reader: a source may accept several formats.
    file_format = Path(path).suffix.removeprefix(".")
    if file_format not in source.file_formats:
        raise ContractViolation(
            path, [f"format {file_format!r} is not one of {source.name}'s {source.file_formats}"]
        )
    try:
        if file_format in _JSON_READERS:
            return _JSON_READERS[file_format](path, content, source)
        frame = _FRAME_READERS[file_format](path, content, source)
    except ContractViolation:
        raise
    # Whatever else a parser raises on bad bytes (Polars panics derive from BaseException).
    except (
        pl.exceptions.PolarsError,
        pl.exceptions.PanicException,
        ValueError,
        OSError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise ContractViolation(
            path, [f"cannot be parsed as {file_format}: {_parser_message(exc)}"]
        ) from None
    # Columns (and Parquet's rows) were checked by the readers before the body was parsed.
    return _Raw(frame.with_row_index(ROW, offset=1), _no_problems())


# Row-level problems. Which of them drop the row into quarantine instead of failing the
# whole file is project configuration (`[ingest] quarantine`); anything else fails the file.
ROW_RULES = (
    "wrong_type",
    "missing_value",
    "negative",
    "not_finite",
    "duplicate_row",
    "duplicate_key",
    "outside_partition",
    "out_of_range",
    "control_character",
    "not_allowed",
)


@dataclass(frozen=True)
class QuarantinePolicy:
    """Row problems that may drop a row (to quarantine), up to a fraction of the file's rows."""

    rules: frozenset[str] = frozenset()
    max_fraction: float = 0.0

    def __post_init__(self):
        unknown = sorted(set(self.rules) - set(ROW_RULES))
        if unknown:
            raise ValueError(f"unknown quarantine rule(s) {unknown}; known: {list(ROW_RULES)}")
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be within [0, 1], got {self.max_fraction}")

    @staticmethod
    def from_config(ingest: IngestConfig) -> QuarantinePolicy:
        """The project's policy (`[ingest] quarantine`, `max_quarantined_fraction`)."""
        return QuarantinePolicy(frozenset(ingest.quarantine), ingest.max_quarantined_fraction)


STRICT = QuarantinePolicy()


@dataclass(frozen=True)
class LoadedFile:
    """A validated landing file: rows accepted, and rows quarantined with the reason."""

    rows: pl.DataFrame
    rejected: pl.DataFrame  # PROBLEM_SCHEMA plus `record`: the row as found, in JSON
    rows_in_file: int


def _problems(frame: pl.DataFrame, rule: str, column: str, expected: str) -> pl.DataFrame:
    """Problem rows of `frame` (which holds ROW and, when it exists, `column`)."""
    value = pl.col(column).cast(pl.String) if column in frame.columns else pl.lit(None, pl.String)
    return frame.select(
        pl.col(ROW),
        pl.lit(column).alias("column"),
        pl.lit(rule).alias("rule"),
        value.alias("value"),
        pl.lit(expected).alias("expected"),
    )


def _no_problems() -> pl.DataFrame:
    return pl.DataFrame(schema=PROBLEM_SCHEMA)


def _text(frame: pl.DataFrame, column: str) -> pl.Series:
    """A column's values as short text for messages (also for nested types)."""
    series = frame[column]
    if series.dtype.is_nested():
        return pl.Series(column, [str(v) for v in series.to_list()], pl.String)
    return series.cast(pl.String)


# A text column takes text only: a number (an integer id in Parquet) is never turned into
# text, since `1` and `"1"`, `1.0` or `"01"` would then silently be different ids.
TEXT_EXPECTED = "a string (text; numbers are not converted to ids or text)"


TIMESTAMP_EXPECTED = (
    "an ISO 8601 timestamp YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z|+hh:mm] (no offset: UTC; a date "
    "alone is no timestamp)"
)


def _expected(want: pl.DataType) -> str:
    if want == pl.Date():
        return "a date as YYYY-MM-DD"
    if isinstance(want, pl.Datetime):
        return TIMESTAMP_EXPECTED
    if want == pl.Int64():
        return "an integer"
    if want == pl.String():
        return TEXT_EXPECTED
    return f"a {want}"


def _timestamp(text: pl.Expr, want: pl.Datetime) -> pl.Expr:
    """ISO-8601 text as a UTC timestamp: an offset (`Z`, `+02:00`) is converted, none means
    UTC; a date alone, or anything else, is null (a `wrong_type`)."""
    text = text.str.strip_chars().str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
    text = pl.when(text.str.contains(_OFFSET)).then(text).otherwise(text + "Z")
    return pl.coalesce(
        text.str.to_datetime(
            fmt, time_unit=want.time_unit, time_zone="UTC", strict=False, exact=True
        )
        for fmt in ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
    )


_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _convert(src: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr | None:
    """How a column of type `have` becomes the contract's `want`; None when it cannot."""
    if have == want or have == pl.Null():
        return src.cast(want)
    if isinstance(want, pl.Datetime):
        if have == pl.String():
            return _timestamp(src, want)
        if isinstance(have, pl.Datetime):  # Parquet: a naive timestamp is UTC
            utc = (
                src.dt.replace_time_zone("UTC")
                if have.time_zone is None
                else src.dt.convert_time_zone("UTC")
            )
            return utc.cast(want)
        return None  # a date has no time; numbers are not timestamps
    if want == pl.Int64() and have.is_float():  # 2.5 is no integer
        return pl.when(src == src.round()).then(src.cast(want, strict=False))
    if want == pl.String():
        return src.cast(want) if isinstance(have, pl.Categorical | pl.Enum) else None
    if want == pl.Date():
        if have == pl.String():
            return src.str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        if isinstance(have, pl.Datetime):  # e.g. pandas writes dates as midnight timestamps
            return pl.when(src.dt.time() == dt.time(0)).then(src.dt.date())
        return None  # numbers are not dates (20250101 would read as days since 1970)
    if have.is_nested() or want.is_nested():
        return None
    if have == pl.String() and want.is_numeric():
        return src.str.strip_chars().cast(want, strict=False)
    if want.is_numeric() and not (have.is_numeric() or have == pl.Boolean()):
        return None
    return src.cast(want, strict=False)


def _cast(frame: pl.DataFrame, source: Source) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast to the contract's types; values that do not parse are `wrong_type` problems.

    Empty strings in required text columns (ids) count as missing values.
    """
    expected = source.columns
    required_text = {
        c for c in (*source.required, *source.primary_key) if expected.get(c) == pl.String()
    }
    blank = {
        c: pl.col(c).str.strip_chars() == ""
        for c in required_text
        if c in frame.columns and frame.schema[c] == pl.String()
    }
    frame = frame.with_columns(
        pl.when(is_blank).then(None).otherwise(pl.col(c)).alias(c) for c, is_blank in blank.items()
    )
    casts = {}
    for col, have in frame.schema.items():
        want = expected.get(col)
        if col == ROW or want is None:
            continue
        casts[col] = _convert(pl.col(col), have, want)
        if casts[col] is None:
            casts[col] = pl.lit(None, want)  # every value of the column is of the wrong type
    cast = frame.with_columns(expr.alias(col) for col, expr in casts.items())
    problems = []
    for col in casts:
        bad = frame.filter(pl.col(col).is_not_null() & cast[col].is_null())
        if bad.height:
            want = expected[col]
            problems.append(
                _problems(
                    pl.DataFrame({ROW: bad[ROW], col: _text(bad, col)}),
                    "wrong_type",
                    col,
                    _expected(want),
                )
            )
    return cast, pl.concat([_no_problems(), *problems])


def _dataframely_schema(source: Source, columns: list[str]) -> type[dy.Schema]:
    """Build the dataframely schema of a source for the columns a file actually has."""

    def column(name: str, dtype: pl.DataType, required: bool) -> dy.Column:
        key = name in source.primary_key
        kwargs = {"nullable": not (required or key)}
        if key:
            kwargs["primary_key"] = True
        if dtype == pl.Float64():
            if name in source.non_negative:
                kwargs["min"] = 0.0
            return dy.Float64(allow_nan=False, allow_inf=False, **kwargs)
        if dtype == pl.Int64():
            if name in source.non_negative:
                kwargs["min"] = 0
            return dy.Int64(**kwargs)
        if dtype == pl.Date():
            return dy.Date(**kwargs)
        if isinstance(dtype, pl.Datetime):
            return dy.Datetime(time_zone=dtype.time_zone, time_unit=dtype.time_unit, **kwargs)
        return dy.String(**kwargs)

    attrs: dict[str, dy.Column] = {ROW: dy.UInt32(nullable=False)}
    for name in columns:
        if name == ROW:
            continue
        attrs[name] = column(name, source.columns[name], name in source.required)
    return type(f"{source.name.title()}Contract", (dy.Schema,), attrs)


# dataframely rule suffix -> (our rule, what was expected)
_DATAFRAMELY_RULES = {
    "nullability": ("missing_value", "a value (the column is required)"),
    "min": ("negative", ">= 0"),
    "nan": ("not_finite", "a finite number"),
    "inf": ("not_finite", "a finite number"),
}


def _row_rule_problems(frame: pl.DataFrame, source: Source) -> pl.DataFrame:
    """Nullability, ranges, finiteness (dataframely), exact duplicates and duplicate keys."""
    data = [c for c in frame.columns if c != ROW]
    # An exact copy of an earlier row carries no new information: only the copy is a problem.
    copies = frame.filter(pl.struct(data).is_duplicated() & ~pl.struct(data).is_first_distinct())
    problems = [_problems(copies.select(ROW), "duplicate_row", ", ".join(data), "no repeated rows")]
    unique = frame.filter(~pl.col(ROW).is_in(copies[ROW].implode()))
    _, failures = _dataframely_schema(source, frame.columns).filter(unique)
    if failures.counts():
        details = failures.details()
        for rule in (c for c in details.columns if c not in frame.columns):
            invalid = details.filter(pl.col(rule) == "invalid")
            if rule == "primary_key":
                keys = ", ".join(source.primary_key)
                values = invalid.select(
                    ROW,
                    pl.concat_str(
                        [pl.col(k).cast(pl.String) for k in source.primary_key],
                        separator=", ",
                        ignore_nulls=True,
                    ).alias(keys),
                )
                problems.append(
                    _problems(values, "duplicate_key", keys, "one row per key (conflicting rows)")
                )
                continue
            column, _, kind = rule.partition("|")
            if column == ROW:
                continue
            ours, expected = _DATAFRAMELY_RULES.get(kind, ("wrong_type", kind))
            problems.append(_problems(invalid.select(ROW, column), ours, column, expected))
    return pl.concat([_no_problems(), *problems])


def _allowed_problems(frame: pl.DataFrame, source: Source) -> pl.DataFrame:
    """Values outside a column's declared `allowed` values (nulls are `missing_value`'s)."""
    problems = [_no_problems()]
    for column, values in source.allowed.items():
        if column in frame.columns:
            bad = frame.filter(pl.col(column).is_not_null() & ~pl.col(column).is_in(values))
            expected = "one of " + ", ".join(repr(v) for v in values)
            problems.append(_problems(bad.select(ROW, column), "not_allowed", column, expected))
    return pl.concat(problems)


def _range_problems(frame: pl.DataFrame, source: Source) -> pl.DataFrame:
    """Finite numbers beyond the magnitude bound (`[ingest] max_abs_value`): a 1e308 would
    overflow the features' sums and squares to inf. Non-finite values are `not_finite`."""
    bound = source.limits.max_abs_value
    numbers = [c for c in frame.columns if source.columns.get(c) == pl.Float64()]
    if not numbers or frame.is_empty():
        return _no_problems()
    beyond = {c: pl.col(c).is_finite() & (pl.col(c).abs() > bound) for c in numbers}
    # One pass counts them; only a column that has some is filtered.
    counts = frame.select(e.sum().alias(c) for c, e in beyond.items()).row(0, named=True)
    expected = f"a magnitude of at most {bound:g} ([ingest] max_abs_value)"
    return pl.concat(
        [
            _no_problems(),
            *(
                _problems(frame.filter(beyond[c]).select(ROW, c), "out_of_range", c, expected)
                for c, n in counts.items()
                if n
            ),
        ]
    )


# Unicode control characters (C0, DEL, C1): invisible in reports, and a newline or NUL in an
# id breaks every CSV or log line it is written to.
_CONTROL = r"\p{Cc}"


def _control_problems(frame: pl.DataFrame, source: Source) -> pl.DataFrame:
    problems = [_no_problems()]
    for column in (c for c in source.id_columns if c in frame.columns):
        # Distinct ids first: a file may repeat each id on many rows (one per day, say).
        ids = frame.get_column(column).unique()
        bad = ids.filter(ids.str.contains(_CONTROL))
        if bad.len():
            problems.append(
                _problems(
                    frame.filter(pl.col(column).is_in(bad.implode())).select(ROW, column),
                    "control_character",
                    column,
                    "an id without control characters (tab, newline, NUL, ...)",
                )
            )
    return pl.concat(problems)


def _date_problems(frame: pl.DataFrame, source: Source, day: dt.date | None) -> pl.DataFrame:
    """Rows dated outside what the file of day `day` may hold (`Source.date_offsets`)."""
    column = source.date_column
    if day is None or column is None or column not in frame.columns:
        return _no_problems()
    lo, hi = source.date_window(day)
    if lo == hi == day:
        expected = f"{day} (the file's partition)"
    elif hi is None:
        expected = f"on or after {lo} ({source.name} published on {day})"
    else:
        expected = f"between {lo} and {hi} ({source.name} published on {day})"
    date = pl.col(column)
    if isinstance(source.columns[column], pl.Datetime):
        date = date.dt.date()  # a UTC timestamp's day
    outside = date < lo
    if hi is not None:
        outside |= date > hi
    bad = frame.filter(outside).select(ROW, column)
    return _problems(bad, "outside_partition", column, expected)


_RULE_TEXT = {
    "wrong_type": "not a valid value",
    "missing_value": "missing value",
    "negative": "below the minimum",
    "not_finite": "not a finite number",
    "duplicate_row": "an exact copy of an earlier row",
    "duplicate_key": "duplicate key",
    "outside_partition": "date outside the partition",
    "out_of_range": "number out of range",
    "control_character": "control character in an id",
    "not_allowed": "not one of the allowed values",
}


def problem_text(problem: dict) -> str:
    """`row 3, column 'amount': below the minimum (-2.0); expected >= 0 [negative]`."""
    text = problem["value"]
    if text is not None and len(text) > MAX_VALUE_CHARS:
        text = f"{text[:MAX_VALUE_CHARS]}... ({len(text)} characters)"
    value = "" if text is None else f" ({text!r})"
    return (
        f"row {problem[ROW]}, column {problem['column']!r}: {_RULE_TEXT[problem['rule']]}"
        f"{value}; expected {problem['expected']} [{problem['rule']}]"
    )


def load_landing_file(
    path: Path,
    source: Source,
    day: dt.date | None = None,
    *,
    policy: QuarantinePolicy = STRICT,
    content: bytes | None = None,
) -> LoadedFile:
    """Read and validate one landing file against the contract.

    Structural problems (name, encoding, parse errors, columns) always fail the file. Row
    problems fail it too unless the policy quarantines that rule and the file's share of
    quarantined rows stays within `policy.max_fraction`. For daily sources the rows' dates
    must lie in what the file of `day` may hold (`Source.date_offsets`). `content`, when
    given, is the file's bytes already read (so what is validated is exactly what was hashed
    for the ingestion log).
    """
    source.partition_of(path.name)
    if content is None:
        if not path.is_file():
            raise ContractViolation(path, ["not a regular file"])
        content = path.read_bytes()
    read = _read_raw(path, source, content)
    raw = read.frame
    cast, problems = _cast(raw, source)
    problems = pl.concat([read.problems, problems])
    parsed = cast.filter(~pl.col(ROW).is_in(problems[ROW].implode()))
    problems = pl.concat(
        [
            problems,
            _row_rule_problems(parsed, source),
            _range_problems(parsed, source),
            _allowed_problems(parsed, source),
            _control_problems(parsed, source),
            _date_problems(parsed, source, day),
        ]
    ).sort(ROW, "column", maintain_order=True)
    bad_rows = problems[ROW].unique()
    fatal = problems.filter(~pl.col("rule").is_in(sorted(policy.rules)))
    if fatal.height or (raw.height and bad_rows.len() / raw.height > policy.max_fraction):
        shown = fatal if fatal.height else problems
        messages = [
            problem_text(p) for p in shown.head(MAX_REPORTED_PROBLEMS).iter_rows(named=True)
        ]
        counts = dict(problems.group_by("rule").len().sort("rule").iter_rows())
        summary = f"{bad_rows.len()} of {raw.height} row(s) rejected by rule: {counts}"
        if not fatal.height:
            summary += f"; more than the {policy.max_fraction:.1%} the project may quarantine"
        raise ContractViolation(path, [*messages, summary])
    # Only the rejected rows' records are kept: encoding every row cost more than the checks.
    if read.json_records is not None:  # as found, also the values of a wrong JSON type
        records = pl.DataFrame(
            {
                ROW: bad_rows,
                "record": [json.dumps(read.json_records[r - 1]) for r in bad_rows],
            },
            schema={ROW: pl.UInt32(), "record": pl.String()},
        )
    else:
        records = raw.filter(pl.col(ROW).is_in(bad_rows.implode())).select(
            ROW, pl.struct(pl.exclude(ROW)).struct.json_encode().alias("record")
        )
    rejected = problems.join(records, on=ROW, how="left")
    rows = cast.filter(~pl.col(ROW).is_in(bad_rows.implode())).drop(ROW)
    return LoadedFile(
        rows=with_contract_columns(rows, source), rejected=rejected, rows_in_file=raw.height
    )


def with_contract_columns(frame: pl.DataFrame, source: Source) -> pl.DataFrame:
    """Every contract column in contract order, an absent optional one as nulls of its type:
    every partition of a source then has the same schema, whichever columns its file had."""
    return frame.select(
        pl.col(c) if c in frame.columns else pl.lit(None, t).alias(c)
        for c, t in source.columns.items()
    )


def read_landing_file(path: Path, source: Source, day: dt.date | None = None) -> pl.DataFrame:
    """The rows of a landing file under the strict policy: any problem fails the file."""
    return load_landing_file(path, source, day).rows


def empty_frame(source: Source, columns: list[str] | None = None) -> pl.DataFrame:
    """Zero rows with the contract's columns: what a source with no file for a day stores."""
    schema = source.columns
    if columns is not None:
        schema = {c: t for c, t in schema.items() if c in columns or c in source.required}
    return pl.DataFrame(schema=schema)


_SHOWN_IDS = 3
STORED_DAY = "_day"  # the day a stored key arrived on (`keys_stored_elsewhere_problem`)


def keys_stored_elsewhere_problem(
    frame: pl.DataFrame, source: Source, stored: pl.DataFrame, day: dt.date
) -> str | None:
    """The problem of a file of `day` holding primary keys `stored` (the keys and their
    STORED_DAY) has on other days, else None."""
    keys = list(source.primary_key)
    clash = (
        frame.select(keys)
        .join(stored.filter(pl.col(STORED_DAY) != day), on=keys, how="inner", nulls_equal=False)
        .sort(keys)
    )
    if clash.is_empty():
        return None
    what = ", ".join(keys)
    examples = ", ".join(
        f"{r[0] if len(keys) == 1 else tuple(r[:-1])!r} (on {r[-1]})"
        for r in clash.select(*keys, STORED_DAY).unique(maintain_order=True).head(_SHOWN_IDS).rows()
    )
    return (
        f"column {what!r}: {clash.height:,} key(s) already stored on another day, e.g. "
        f"{examples}; a key arrives on one day only (a correction re-delivers that day's file) "
        "[duplicate_key]"
    )


def unmatched_ids_problem(frame: pl.DataFrame, source: Source, known: pl.DataFrame) -> str | None:
    """The problem of a file none of whose ids matches the stored ones, else None.

    `known` holds the `source.known_ids.columns` of the stored `source.known_ids.source`.
    Ids are compared as exact text: a file keyed `1` where the stored source says `S01`, or
    `s01`, would otherwise join nothing and everything joined from it would silently be
    null. One matching id is enough (e.g. new products may be listed before they sell). No
    rule, no file rows or nothing known: no problem.
    """
    rule = source.known_ids
    if rule is None or frame.is_empty() or known.is_empty():
        return None
    keys = list(rule.columns)
    ids = frame.select(keys).unique()
    known = known.select(keys).unique()
    if not ids.join(known, on=keys, how="semi", nulls_equal=False).is_empty():
        return None

    def sample(ids: pl.DataFrame) -> str:
        rows = ids.sort(keys).head(_SHOWN_IDS).rows()
        return ", ".join(repr(r[0] if len(keys) == 1 else r) for r in rows)

    what = ", ".join(keys)
    return (
        f"none of the {ids.height:,} distinct ({what}) of the file matches the stored "
        f"{rule.source} ({known.height:,} known); the file has e.g. {sample(ids)}, "
        f"{rule.source} have e.g. {sample(known)} (ids are compared as exact text)"
    )
