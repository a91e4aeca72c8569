"""The landing-zone contract: file names, columns and types of every source.

The human-readable version is docs/data-contract.md; this module is what enforces it.
Validation uses dataframely (a polars-native validation library) for types, nullability,
ranges and key uniqueness; every problem is reported with file, row and column. Types come
from the contract (the project config), never from the file; size limits and the magnitude
bound of numbers are `[ingest]` configuration (`IngestLimits`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dataframely as dy
import numpy as np
import polars as pl

from batch_ml.config import IngestConfig, IngestLimits
from batch_ml.products.forecasting.config import FeatureConfig

SERIES_KEYS = ("store_id", "item_id")
TARGET = "units"
MAX_REPORTED_PROBLEMS = 10
MAX_VALUE_CHARS = 80  # of a bad value quoted in a message
MAX_LISTED_NAMES = 10  # column names quoted in one message
DEFAULT_LIMITS = IngestLimits()


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
class Source:
    """One landing source: where its files live and what they contain."""

    name: str
    file_pattern: re.Pattern[str]  # group 1, when present, is the partition date
    file_format: str  # csv | parquet | json
    required: dict[str, pl.DataType]
    optional: dict[str, pl.DataType]
    primary_key: tuple[str, ...]
    non_negative: tuple[str, ...] = ()
    daily: bool = True
    limits: IngestLimits = DEFAULT_LIMITS

    @property
    def columns(self) -> dict[str, pl.DataType]:
        """Every contract column with its type, required ones first."""
        return {**self.required, **self.optional}

    @property
    def id_columns(self) -> tuple[str, ...]:
        """The text key columns: ids, compared as exact text."""
        keys = {*SERIES_KEYS, *self.primary_key}
        return tuple(c for c, t in self.columns.items() if c in keys and t == pl.String())

    def file_name(self, day: dt.date | None = None) -> str:
        ext = self.file_format
        return f"{self.name}_{day.isoformat()}.{ext}" if self.daily else f"{self.name}.{ext}"

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


def sources(features: FeatureConfig, limits: IngestLimits = DEFAULT_LIMITS) -> dict[str, Source]:
    """The contract of every source, with the covariates and attributes the project config
    declares, and its limits (`[ingest]`)."""
    num = pl.Float64()
    known = {c: num for c in features.known_in_advance}

    def attributes(names: tuple[str, ...]) -> dict[str, pl.DataType]:
        return {c: num if c in features.numeric_attributes else pl.String() for c in names}

    return {
        "sales": Source(
            name="sales",
            file_pattern=re.compile(rf"sales_{_DATE}\.csv"),
            file_format="csv",
            required={
                "date": pl.Date(),
                "store_id": pl.String(),
                "item_id": pl.String(),
                TARGET: num,
            },
            # Observed values of the known-in-advance covariates may come with the actuals.
            optional={"price": num, "on_promo": num, **known},
            primary_key=("date", *SERIES_KEYS),
            non_negative=(TARGET, "price"),
            limits=limits,
        ),
        "plans": Source(
            name="plans",
            file_pattern=re.compile(rf"plans_{_DATE}\.parquet"),
            file_format="parquet",
            required={"date": pl.Date(), "store_id": pl.String(), "item_id": pl.String()},
            optional=known,
            primary_key=("date", *SERIES_KEYS),
            non_negative=("price",),
            limits=limits,
        ),
        "calendar": Source(
            name="calendar",
            file_pattern=re.compile(r"calendar\.parquet"),
            file_format="parquet",
            required={"date": pl.Date()},
            optional={c: num for c in features.calendar},
            primary_key=("date",),
            daily=False,
            limits=limits,
        ),
        "products": Source(
            name="products",
            file_pattern=re.compile(r"products\.json"),
            file_format="json",
            required={"item_id": pl.String()},
            optional={"launch_date": pl.Date(), **attributes(features.product_attributes)},
            primary_key=("item_id",),
            daily=False,
            limits=limits,
        ),
        "stores": Source(
            name="stores",
            file_pattern=re.compile(r"stores\.json"),
            file_format="json",
            required={"store_id": pl.String()},
            optional=attributes(features.store_attributes),
            primary_key=("store_id",),
            daily=False,
            limits=limits,
        ),
    }


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
    name: str, values: list, want: pl.DataType
) -> tuple[pl.Series, list[tuple[int, str]], str]:
    """A JSON column typed by the contract: numbers for number columns, strings for text and
    dates. Other JSON types become null and are returned as (row, value as JSON)."""
    number = want.is_numeric()
    kept, bad = [], []
    for row, value in enumerate(values, 1):
        kind = type(value)
        if value is None:
            kept.append(None)
        elif number and kind in (int, float):
            kept.append(_json_number(value))
        elif not number and kind is str:
            kept.append(value)
        else:
            kept.append(None)
            bad.append((row, json.dumps(value)))
    expected = "a JSON number" if number else "a JSON string"
    if name in SERIES_KEYS:
        expected += ' (ids are text: write 1 as "1")'
    dtype = pl.Float64() if number else pl.String()
    return pl.Series(name, kept, dtype), bad, expected


def _read_json(path: Path, content: bytes, source: Source) -> _Raw:
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
    _check_rows(len(records), path, source)
    names = list(dict.fromkeys(k for r in records for k in r))
    _check_columns(names, path, source)
    columns, problems = [], []
    for name in names:
        series, bad, expected = _json_column(
            name, [r.get(name) for r in records], source.columns[name]
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


def _read_raw(path: Path, source: Source, content: bytes) -> _Raw:
    """Parse a file's bytes as-is (CSV as strings) with row numbers. Structural problems,
    limits and every parser error become a ContractViolation naming the file (and the line,
    row or column when known)."""
    if not content:
        raise ContractViolation(path, ["the file is empty (0 bytes); expected at least a header"])
    try:
        if source.file_format == "json":
            return _read_json(path, content, source)
        if source.file_format == "csv":
            frame = _read_csv(path, content, source)
        else:
            frame = _read_parquet(path, content, source)
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
            path, [f"cannot be parsed as {source.file_format}: {_parser_message(exc)}"]
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


def _expected(want: pl.DataType) -> str:
    if want == pl.Date():
        return "a date as YYYY-MM-DD"
    if want == pl.String():
        return TEXT_EXPECTED
    return f"a {want}"


def _convert(src: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr | None:
    """How a column of type `have` becomes the contract's `want`; None when it cannot."""
    if have == want or have == pl.Null():
        return src.cast(want)
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
        if dtype == pl.Date():
            return dy.Date(**kwargs)
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
        # Distinct ids first: a plans file repeats each id once per day of its horizon.
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


def _date_problems(frame, source, day, horizon) -> pl.DataFrame:
    if day is None or "date" not in frame.columns:
        return _no_problems()
    if source.name == "plans":
        lo, hi = day + dt.timedelta(days=1), day + dt.timedelta(days=horizon or 10_000)
        expected = f"between {lo} and {hi} (plans published on {day})"
    else:
        lo = hi = day
        expected = f"{day} (the file's partition)"
    bad = frame.filter((pl.col("date") < lo) | (pl.col("date") > hi)).select(ROW, "date")
    return _problems(bad, "outside_partition", "date", expected)


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
}


def problem_text(problem: dict) -> str:
    """`row 3, column 'units': below the minimum (-2.0); expected >= 0 [negative]`."""
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
    horizon: int | None = None,
    policy: QuarantinePolicy = STRICT,
    content: bytes | None = None,
) -> LoadedFile:
    """Read and validate one landing file against the contract.

    Structural problems (name, encoding, parse errors, columns) always fail the file. Row
    problems fail it too unless the policy quarantines that rule and the file's share of
    quarantined rows stays within `policy.max_fraction`. For daily sources the rows must
    belong to the file's partition: sales rows carry the partition date, plan rows target
    dates in (day, day + horizon]. `content`, when given, is the file's bytes already read
    (so what is validated is exactly what was hashed for the ingestion log).
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
            _control_problems(parsed, source),
            _date_problems(parsed, source, day, horizon),
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


def read_landing_file(
    path: Path, source: Source, day: dt.date | None = None, horizon: int | None = None
) -> pl.DataFrame:
    """The rows of a landing file under the strict policy: any problem fails the file."""
    return load_landing_file(path, source, day, horizon).rows


def empty_frame(source: Source, columns: list[str] | None = None) -> pl.DataFrame:
    """Zero rows with the contract's columns: what a source with no file for a day stores."""
    schema = source.columns
    if columns is not None:
        schema = {c: t for c, t in schema.items() if c in columns or c in source.required}
    return pl.DataFrame(schema=schema)


# Sources whose ids must name series that sales already know, and the id columns compared.
MATCHED_IDS = {"plans": SERIES_KEYS, "products": ("item_id",), "stores": ("store_id",)}
_SHOWN_IDS = 3


def unmatched_ids_problem(
    frame: pl.DataFrame, source: Source, known_series: pl.DataFrame
) -> str | None:
    """The problem of a plans, products or stores file none of whose ids is one of the known
    series (the distinct `store_id, item_id` of the stored sales), else None.

    Ids are compared as exact text: a file keyed `1` where sales say `S01`, or `s01`, would
    otherwise join nothing and every feature from it would silently be null. One matching id
    is enough (new products may be listed before they sell). No file rows, no known series
    or another source: no problem.
    """
    keys = list(MATCHED_IDS.get(source.name, ()))
    if not keys or frame.is_empty() or known_series.is_empty():
        return None
    ids = frame.select(keys).unique()
    known = known_series.select(keys).unique()
    if not ids.join(known, on=keys, how="semi", nulls_equal=False).is_empty():
        return None

    def sample(ids: pl.DataFrame) -> str:
        rows = ids.sort(keys).head(_SHOWN_IDS).rows()
        return ", ".join(repr(r[0] if len(keys) == 1 else r) for r in rows)

    what = ", ".join(keys)
    return (
        f"none of the {ids.height:,} distinct ({what}) of the file matches a series of the "
        f"stored sales ({known.height:,} known); the file has e.g. {sample(ids)}, sales have "
        f"e.g. {sample(known)} (ids are compared as exact text)"
    )
