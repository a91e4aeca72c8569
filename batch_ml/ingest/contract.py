"""The landing-zone contract: file names, columns and types of every source.

The human-readable version is docs/data-contract.md; this module is what enforces it.
Validation uses dataframely (a polars-native validation library) for types, nullability,
ranges and key uniqueness; every problem is reported with file, row and column.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import dataframely as dy
import polars as pl

from batch_ml.config import FeatureConfig

SERIES_KEYS = ("store_id", "item_id")
TARGET = "units"
MAX_REPORTED_PROBLEMS = 10


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


def _read_raw(path: Path, source: Source) -> pl.DataFrame:
    """Read a file as-is (CSV as strings) with its row numbers; structural errors name the file."""
    try:
        if source.file_format == "csv":
            raw = path.read_bytes()
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                raise ContractViolation(path, [f"line {line}: not valid UTF-8"]) from None
            frame = pl.read_csv(raw, infer_schema=False, encoding="utf8")
        elif source.file_format == "parquet":
            frame = pl.read_parquet(path)
        else:
            records = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ContractViolation(path, ["expected a JSON array of objects"])
            frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
    except ContractViolation:
        raise
    except (pl.exceptions.PolarsError, json.JSONDecodeError, OSError) as exc:
        raise ContractViolation(
            path, [f"cannot be parsed as {source.file_format}: {exc}"]
        ) from None
    if source.file_format == "csv" and frame.columns:
        # A UTF-8 byte-order mark would otherwise become part of the first column name.
        frame = frame.rename({frame.columns[0]: frame.columns[0].lstrip("\ufeff")})
    return frame.with_row_index(ROW, offset=1)


def _cast(frame: pl.DataFrame, path: Path, source: Source) -> pl.DataFrame:
    problems: list[str] = []
    expected = {**source.required, **source.optional}
    missing = [c for c in source.required if c not in frame.columns]
    if missing:
        problems.append(f"missing required column(s) {missing}; file has {frame.columns[1:]}")
    extra = [c for c in frame.columns if c != ROW and c not in expected]
    if extra:
        problems.append(f"unexpected column(s) {extra}; allowed: {sorted(expected)}")
    if problems:
        raise ContractViolation(path, problems)
    casts = []
    for col in frame.columns:
        dtype = expected.get(col)
        if col == ROW or dtype is None:
            continue
        src = pl.col(col)
        if frame.schema[col] == pl.String() and dtype == pl.Date():
            casts.append(src.str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias(col))
            continue
        if frame.schema[col] == pl.String() and dtype == pl.Float64():
            src = src.str.strip_chars()
        casts.append(src.cast(dtype, strict=False).alias(col))
    cast = frame.with_columns(casts)
    for expr in casts:
        col = expr.meta.output_name()
        bad = frame.filter(pl.col(col).is_not_null() & cast[col].is_null())
        for row, value in bad.select(ROW, col).head(MAX_REPORTED_PROBLEMS).iter_rows():
            problems.append(f"row {row}, column {col!r}: {value!r} is not a valid {expected[col]}")
    if problems:
        raise ContractViolation(path, problems)
    return cast


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


def _rule_message(rule: str) -> tuple[str, str]:
    column, _, kind = rule.partition("|")
    if column == "primary_key":
        return "key", "duplicate key"
    text = {
        "nullability": "missing value",
        "min": "value below the allowed minimum",
        "nan": "NaN is not allowed",
        "inf": "infinite value is not allowed",
        "dtype": "wrong type",
    }.get(kind, kind)
    return column, text


def validate(frame: pl.DataFrame, path: Path, source: Source) -> pl.DataFrame:
    schema = _dataframely_schema(source, frame.columns)
    good, failures = schema.filter(frame)
    if failures.counts():
        details = failures.details()
        rules = [c for c in details.columns if c not in frame.columns]
        problems = []
        for record in details.head(MAX_REPORTED_PROBLEMS).iter_rows(named=True):
            for rule in rules:
                if record[rule] == "invalid":
                    column, text = _rule_message(rule)
                    if column == "key":
                        keys = {k: str(record[k]) for k in source.primary_key}
                        problems.append(f"row {record[ROW]}: {text} {keys}")
                    else:
                        problems.append(
                            f"row {record[ROW]}, column {column!r}: {text} ({record[column]!r})"
                        )
        total = len(details)
        problems.append(f"{total} row(s) rejected; rule counts {failures.counts()}")
        raise ContractViolation(path, problems)
    return good


def read_landing_file(
    path: Path, source: Source, day: dt.date | None = None, horizon: int | None = None
) -> pl.DataFrame:
    """Read and validate one landing file; return its rows typed as the contract says.

    For daily sources the rows must belong to the file's partition: sales rows carry the
    partition date, plan rows target dates in (day, day + horizon].
    """
    source.partition_of(path.name)
    frame = _validate_dates(
        validate(_cast(_read_raw(path, source), path, source), path, source),
        path,
        source,
        day,
        horizon,
    )
    return frame.drop(ROW)


def _validate_dates(frame, path, source, day, horizon) -> pl.DataFrame:
    if day is None or "date" not in frame.columns:
        return frame
    if source.name == "plans":
        lo, hi = day + dt.timedelta(days=1), day + dt.timedelta(days=horizon or 10_000)
        expected = f"between {lo} and {hi} (plans published on {day})"
    else:
        lo = hi = day
        expected = f"{day} (the file's partition)"
    bad = frame.filter((pl.col("date") < lo) | (pl.col("date") > hi))
    if len(bad):
        problems = [
            f"row {r}, column 'date': {d} is outside the partition; expected {expected}"
            for r, d in bad.select(ROW, "date").head(MAX_REPORTED_PROBLEMS).iter_rows()
        ]
        raise ContractViolation(path, problems)
    return frame


def empty_frame(source: Source, columns: list[str] | None = None) -> pl.DataFrame:
    """Zero rows with the contract's columns: what a source with no file for a day stores."""
    schema = {c: t for c, t in {**source.required, **source.optional}.items() if t is not None}
    if columns is not None:
        schema = {c: t for c, t in schema.items() if c in columns or c in source.required}
    return pl.DataFrame(schema=schema)
