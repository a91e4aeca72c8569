"""The landing-zone contract: file names, columns and types of every source.

The human-readable version is docs/data-contract.md; this module is what enforces it.
Validation uses dataframely (a polars-native validation library) for types, nullability,
ranges and key uniqueness; every problem is reported with file, row and column.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import dataframely as dy
import polars as pl

from batch_ml.config import FeatureConfig, IngestConfig

SERIES_KEYS = ("store_id", "item_id")
TARGET = "units"
MAX_REPORTED_PROBLEMS = 10
MAX_VALUE_CHARS = 80  # of a bad value quoted in a message


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


def sources(features: FeatureConfig) -> dict[str, Source]:
    """The contract of every source, with the covariates the project config declares."""
    num = pl.Float64()
    known = {c: num for c in features.known_in_advance}
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
        ),
        "plans": Source(
            name="plans",
            file_pattern=re.compile(rf"plans_{_DATE}\.parquet"),
            file_format="parquet",
            required={"date": pl.Date(), "store_id": pl.String(), "item_id": pl.String()},
            optional=known,
            primary_key=("date", *SERIES_KEYS),
            non_negative=("price",),
        ),
        "calendar": Source(
            name="calendar",
            file_pattern=re.compile(r"calendar\.parquet"),
            file_format="parquet",
            required={"date": pl.Date()},
            optional={c: num for c in features.calendar},
            primary_key=("date",),
            daily=False,
        ),
        "products": Source(
            name="products",
            file_pattern=re.compile(r"products\.json"),
            file_format="json",
            required={"item_id": pl.String()},
            optional={"launch_date": pl.Date(), **{c: None for c in features.product_attributes}},
            primary_key=("item_id",),
            daily=False,
        ),
        "stores": Source(
            name="stores",
            file_pattern=re.compile(r"stores\.json"),
            file_format="json",
            required={"store_id": pl.String()},
            optional={c: None for c in features.store_attributes},
            primary_key=("store_id",),
            daily=False,
        ),
    }


ROW = "_row"  # 1-based row of the record in its file (for CSV: data row, header excluded)


def _read_raw(path: Path, source: Source, content: bytes) -> pl.DataFrame:
    """Parse a file's bytes as-is (CSV as strings) with row numbers; structural errors name
    the file."""
    if not content:
        raise ContractViolation(path, ["the file is empty (0 bytes); expected at least a header"])
    try:
        if source.file_format == "csv":
            try:
                content.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = content[: exc.start].count(b"\n") + 1
                raise ContractViolation(path, [f"line {line}: not valid UTF-8"]) from None
            header = next(csv.reader([content.split(b"\n", 1)[0].decode("utf-8")]), [])
            names = [h.strip("\r").lstrip("\ufeff") for h in header]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ContractViolation(path, [f"duplicated column name(s) {repeated}"])
            frame = pl.read_csv(content, infer_schema=False, encoding="utf8")
        elif source.file_format == "parquet":
            frame = pl.read_parquet(io.BytesIO(content))
        else:
            records = json.loads(content.decode("utf-8"))
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ContractViolation(path, ["expected a JSON array of objects"])
            frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
    except ContractViolation:
        raise
    except (pl.exceptions.PolarsError, ValueError, OSError) as exc:
        # ValueError covers JSON syntax errors and non-UTF-8 JSON.
        raise ContractViolation(
            path, [f"cannot be parsed as {source.file_format}: {exc}"]
        ) from None
    if source.file_format == "csv" and frame.columns:
        # A UTF-8 byte-order mark would otherwise become part of the first column name.
        frame = frame.rename({frame.columns[0]: frame.columns[0].lstrip("\ufeff")})
    return frame.with_row_index(ROW, offset=1)


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
)
PROBLEM_SCHEMA = {
    ROW: pl.UInt32(),
    "column": pl.String(),
    "rule": pl.String(),
    "value": pl.String(),
    "expected": pl.String(),
}


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


def _check_columns(frame: pl.DataFrame, path: Path, source: Source) -> None:
    problems: list[str] = []
    expected = {**source.required, **source.optional}
    missing = [c for c in source.required if c not in frame.columns]
    if missing:
        problems.append(f"missing required column(s) {missing}; file has {frame.columns[1:]}")
    extra = [c for c in frame.columns if c != ROW and c not in expected]
    if extra:
        problems.append(f"unexpected column(s) {extra}; allowed: {sorted(expected)}")
    duplicated = sorted({c for c in frame.columns if frame.columns.count(c) > 1})
    if duplicated:
        problems.append(f"duplicated column name(s) {duplicated}")
    if problems:
        raise ContractViolation(path, problems)


def _text(frame: pl.DataFrame, column: str) -> pl.Series:
    """A column's values as short text for messages (also for nested types)."""
    series = frame[column]
    if series.dtype.is_nested():
        return pl.Series(column, [str(v) for v in series.to_list()], pl.String)
    return series.cast(pl.String)


def _convert(src: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr | None:
    """How a column of type `have` becomes the contract's `want`; None when it cannot."""
    if have == want or have == pl.Null():
        return src.cast(want)
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
    expected = {**source.required, **source.optional}
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
                    "a date as YYYY-MM-DD" if want == pl.Date() else f"a {want}",
                )
            )
    return cast, pl.concat([_no_problems(), *problems])


def _dataframely_schema(source: Source, columns: list[str]) -> type[dy.Schema]:
    """Build the dataframely schema of a source for the columns a file actually has."""

    def column(name: str, dtype: pl.DataType | None, required: bool) -> dy.Column:
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
        if dtype == pl.String():
            return dy.String(**kwargs)
        return dy.Any()

    attrs: dict[str, dy.Column] = {ROW: dy.UInt32(nullable=False)}
    for name in columns:
        if name == ROW:
            continue
        dtype = source.required.get(name, source.optional.get(name))
        attrs[name] = column(name, dtype, name in source.required)
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
    raw = _read_raw(path, source, content)
    _check_columns(raw, path, source)
    cast, problems = _cast(raw, source)
    parsed = cast.filter(~pl.col(ROW).is_in(problems[ROW].implode()))
    problems = pl.concat(
        [problems, _row_rule_problems(parsed, source), _date_problems(parsed, source, day, horizon)]
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
    records = raw.filter(pl.col(ROW).is_in(bad_rows.implode())).select(
        ROW, pl.struct(pl.exclude(ROW)).struct.json_encode().alias("record")
    )
    rejected = problems.join(records, on=ROW, how="left")
    rows = cast.filter(~pl.col(ROW).is_in(bad_rows.implode())).drop(ROW)
    return LoadedFile(rows=rows, rejected=rejected, rows_in_file=raw.height)


def read_landing_file(
    path: Path, source: Source, day: dt.date | None = None, horizon: int | None = None
) -> pl.DataFrame:
    """The rows of a landing file under the strict policy: any problem fails the file."""
    return load_landing_file(path, source, day, horizon).rows


def empty_frame(source: Source, columns: list[str] | None = None) -> pl.DataFrame:
    """Zero rows with the contract's columns: what a source with no file for a day stores."""
    schema = {c: t for c, t in {**source.required, **source.optional}.items() if t is not None}
    if columns is not None:
        schema = {c: t for c, t in schema.items() if c in columns or c in source.required}
    return pl.DataFrame(schema=schema)
