"""Bad-input corpus: every kind of broken landing file, each with its documented outcome.

One table of cases (`CASES`) covers every source (sales CSV, plans and calendar Parquet,
products and stores JSON). Each case says what lands (file name and bytes, or a builder for
directories and symlinks), under which quarantine policy, and what must happen:

- `Accepted`: the file loads, with exactly this many rows (and these values);
- `Quarantined`: the file loads, keeping this many rows; exactly these (row, rule) pairs go
  to the quarantine table;
- `Failed`: `load_landing_file` raises `ContractViolation`; the message names the file and
  contains every expected text (row, column, what was expected);
- `NameRejected`: `discover` reports the name and does not list it (and, for a name that
  breaks the pattern, `Source.partition_of` raises); nothing outside the landing folder is
  read while discovering and loading what was listed;
- `Ignored`: a file still being written (hidden, .tmp/.part/.partial): neither listed, nor
  reported, nor read;
- `Unmatched`: a plans, products or stores file that loads, but none of whose ids is a series
  the stored sales know (`KNOWN_SERIES`): ingestion fails it with this message.

A case with `bug=` is a library bug: it is marked xfail(strict=True) so the suite stays green
and the bug stays visible until it is fixed. The table in docs/bad-input-corpus.md is
generated from `CASES` (`python -m batch_ml_tests.test_bad_input_corpus --write`) and a test
keeps it in sync. The last test replays the failing sales cases through Dagster and checks that
nothing already stored is lost or changed: every table, sorted and hashed, before and after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_ml.config import IngestLimits
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import REPO
from batch_ml.platform.sources.contract import (
    ROW,
    ROW_RULES,
    STRICT,
    ContractViolation,
    QuarantinePolicy,
    Source,
    load_landing_file,
    unmatched_ids_problem,
)
from batch_ml.platform.sources.landing import content_hash, discover
from batch_ml.platform.sources.records import LOG_TABLE
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.products.forecasting.config import FeatureConfig
from batch_ml.products.forecasting.sources import sources
from batch_ml.products.sentiment.config import SentimentSettings
from batch_ml.products.sentiment.sources import sources as sentiment_sources

DAY = dt.date(2025, 3, 1)  # a day inside the `small_project` partitions
HORIZON = 7  # `write_config`'s default horizon
# The features of `write_config` (the harness's), so the contract here is `small_project`'s.
FEATURES = FeatureConfig(
    known_in_advance=("price", "on_promo", "is_open"),
    calendar=("is_holiday",),
    product_attributes=("category", "base_price"),
    store_attributes=("region", "store_size"),
    numeric_attributes=("base_price",),
)
SRC = {
    **sources(FEATURES, IngestLimits(), HORIZON),
    # A rule only another product's source declares: a label outside the classes.
    "review_labels": sentiment_sources(SentimentSettings(), IngestLimits())["review_labels"],
}
# The series of `small_project`'s sales (2 stores x 6 items), for the `Unmatched` cases.
KNOWN_SERIES = pl.DataFrame(
    [(f"S{s:02d}", f"I{i:03d}") for s in (1, 2) for i in range(1, 7)],
    schema=["store_id", "item_id"],
    orient="row",
)
DOC = REPO / "docs" / "bad-input-corpus.md"


def _policy(*rules: str, max_fraction: float = 0.5) -> QuarantinePolicy:
    return QuarantinePolicy(frozenset(rules), max_fraction)


QUARANTINE_ALL = _policy(*ROW_RULES)


# ---------------------------------------------------------------------------------------------
# Building the bad bytes
# ---------------------------------------------------------------------------------------------

HEADER = "date,store_id,item_id,units,price,on_promo"


def _csv(*rows: str, header: str = HEADER, eol: str = "\n") -> bytes:
    return "".join(line + eol for line in (header, *rows)).encode()


def _row(units="3", date="2025-03-01", store="S01", item="I001", price="2.5", promo="0"):
    return f"{date},{store},{item},{units},{price},{promo}"


GOOD_ROW = _row()
GOOD_ROW_2 = _row(units="4", item="I002", promo="1")


def _long_sales(bad_last_units: str | None = None) -> bytes:
    """100,000 valid rows (100 stores x 1,000 items); optionally a bad `units` in the last."""
    lines = [HEADER]
    lines += [_row(units=str((s * i) % 17), store=f"S{s:03d}", item=f"I{i:04d}")
              for s in range(100) for i in range(1000)]  # fmt: skip
    if bad_last_units is not None:
        lines[-1] = _row(units=bad_last_units, store="S099", item="I0999")
    return ("\n".join(lines) + "\n").encode()


def _parquet(frame: dict | pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    (frame if isinstance(frame, pl.DataFrame) else pl.DataFrame(frame)).write_parquet(buffer)
    return buffer.getvalue()


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


GOOD_PLAN = {
    "date": [_d("2025-03-02"), _d("2025-03-03")],
    "store_id": ["S01", "S01"],
    "item_id": ["I001", "I001"],
    "price": [1.0, 2.0],
    "on_promo": [0.0, 1.0],
    "is_open": [1.0, 1.0],
}


def _plan(rename: dict[str, str] | None = None, **columns) -> bytes:
    frame = {**GOOD_PLAN, **columns}
    return _parquet({(rename or {}).get(k, k): v for k, v in frame.items()})


def _calendar(**columns) -> bytes:
    return _parquet(columns or {"date": [_d("2025-01-01")], "is_holiday": [1.0]})


def _json(value) -> bytes:
    return json.dumps(value).encode()


# Builders for what bytes cannot express: they make `path` (the file's place in the landing
# folder) into something else. `tmp` is the test's temporary folder, outside the landing root.
Builder = Callable[[Path, Path], None]


def _directory(path: Path, tmp: Path) -> None:
    path.mkdir()
    (path / "part-0.csv").write_bytes(_csv(GOOD_ROW))


def _symlink_outside(path: Path, tmp: Path) -> None:
    target = tmp / "elsewhere" / "secret.csv"  # outside the landing root
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_csv(GOOD_ROW))
    path.symlink_to(target)


def _symlink_inside(path: Path, tmp: Path) -> None:
    target = path.parent.parent / "archive" / "sales_2025-03-01.v2.csv"  # inside the landing root
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_csv(GOOD_ROW, GOOD_ROW_2))
    path.symlink_to(target)


def _symlink_dangling(path: Path, tmp: Path) -> None:
    path.symlink_to(tmp / "does-not-exist.csv")


# ---------------------------------------------------------------------------------------------
# Outcomes and cases
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    rows: int
    values: dict[str, list] = field(default_factory=dict)  # column -> exact values, in order

    def describe(self) -> str:
        shown = ", ".join(f"{c}={v!r}" for c, v in self.values.items())
        return f"accepted, {self.rows} row(s)" + (f" ({shown})" if shown else "")


@dataclass(frozen=True)
class Quarantined:
    rows: int  # rows accepted
    rejected: tuple[tuple[int, str], ...]  # (row, rule) pairs sent to quarantine

    def describe(self) -> str:
        pairs = ", ".join(f"row {r} {rule}" for r, rule in self.rejected)
        return f"quarantined: {self.rows} row(s) kept; {pairs}"


@dataclass(frozen=True)
class Failed:
    texts: tuple[str, ...]  # each must be in the message (which must also name the file)

    def describe(self) -> str:
        return "failed: " + "; ".join(f"`{t}`" for t in self.texts)


@dataclass(frozen=True)
class NameRejected:
    text: str  # in discover's problem (and partition_of's error when `by_name`)
    by_name: bool = True  # the name itself breaks the pattern

    def describe(self) -> str:
        return f"name rejected: `{self.text}`"


@dataclass(frozen=True)
class Ignored:
    def describe(self) -> str:
        return "ignored (still being written): not listed, not reported, not read"


@dataclass(frozen=True)
class Unmatched:
    texts: tuple[str, ...]  # each must be in the problem `unmatched_ids_problem` reports

    def describe(self) -> str:
        return "loads, then fails as matching no known series: " + "; ".join(
            f"`{t}`" for t in self.texts
        )


Outcome = Accepted | Quarantined | Failed | NameRejected | Ignored | Unmatched


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    what: str  # the bad input, for the docs table
    content: bytes | Builder
    outcome: Outcome
    name: str | None = None  # default: the source's file name for DAY
    policy: QuarantinePolicy = STRICT
    bug: str | None = None  # a library bug: the case is xfail(strict=True) until it is fixed
    limits: IngestLimits | None = None  # tighter `[ingest]` limits than the defaults

    @property
    def contract(self) -> Source:
        if self.limits is None:
            return SRC[self.source]
        return {**SRC, **sources(FEATURES, self.limits, HORIZON)}[self.source]

    @property
    def file_name(self) -> str:
        src = SRC[self.source]
        return self.name if self.name is not None else src.file_name(DAY if src.daily else None)

    def make(self, path: Path, tmp: Path) -> None:
        if isinstance(self.content, bytes):
            path.write_bytes(self.content)
        else:
            self.content(path, tmp)


def fail(*texts: str) -> Failed:
    return Failed(texts)


def ok(rows: int, **values: list) -> Accepted:
    return Accepted(rows, values)


def quarantined(rows: int, *rejected: tuple[int, str]) -> Quarantined:
    return Quarantined(rows, rejected)


def bad_name(text: str = "file name does not match", by_name: bool = True) -> NameRejected:
    return NameRejected(text, by_name)


def unmatched(*texts: str) -> Unmatched:
    return Unmatched(texts)


S, P, C, PR, ST, L = "sales", "plans", "calendar", "products", "stores", "review_labels"
F = "sales_2025-03-01.csv"
CSV_ROW = _csv(GOOD_ROW)
PARTITION = "expected 2025-03-01 (the file's partition)"
PLAN_WINDOW = "expected between 2025-03-02 and 2025-03-08 (plans published on 2025-03-01)"
A_NUMBER = "expected a Float64"
A_DATE = "expected a date as YYYY-MM-DD"
REQUIRED = "missing value; expected a value (the column is required)"
NOT_A_FILE = "not a regular file"
NO_DATE = "file name holds no valid date"
NOT_JSON_ARRAY = "expected a JSON array of objects"
KEY3 = "column 'date, store_id, item_id': duplicate key"
JSON_ID = 'expected a JSON string (ids are text: write 1 as "1") [wrong_type]'
TEXT = "expected a string (text; numbers are not converted to ids or text) [wrong_type]"
NO_CONTROL = "expected an id without control characters (tab, newline, NUL, ...)"
BOUND = "expected a magnitude of at most 1e+12 ([ingest] max_abs_value) [out_of_range]"
PARSE_CSV, PARSE_PARQUET, PARSE_JSON = (
    f"cannot be parsed as {f}" for f in ("csv", "parquet", "json")
)
NO_SERIES = "of the file matches the stored sales"
DATE_ROW = "2025-03-01,S01,I001,3"  # a sales row with the required columns only


# fmt: off
CASES: list[Case] = [
    # --- sales: CSV structure and columns -------------------------------------------------------
    Case("sales_unbalanced_quote", S, "a quote opened and never closed",
         _csv(_row(store='"S01'), GOOD_ROW_2),
         fail("cannot be parsed as csv: row 1 (from line 2): unexpected end of data")),
    Case("sales_ragged_row", S, "a row with more fields than the header",
         _csv(GOOD_ROW, GOOD_ROW_2 + ",9"),
         fail("cannot be parsed as csv: row 2 (line 3) has 7 fields, the header 6",
              "more fields")),
    Case("sales_semicolon_delimiter", S, "`;` instead of `,` as delimiter",
         _csv(GOOD_ROW.replace(",", ";"), header=HEADER.replace(",", ";")),
         fail("missing required column(s) ['date', 'store_id', 'item_id', 'units']")),
    Case("sales_missing_units_column", S, "required column `units` missing",
         _csv("2025-03-01,S01,I001", header="date,store_id,item_id"),
         fail("missing required column(s) ['units']")),
    Case("sales_extra_column", S, "a column the contract does not know",
         _csv(GOOD_ROW + ",red", header=HEADER + ",colour"),
         fail("unexpected column(s) ['colour']")),
    Case("sales_reordered_columns", S, "all columns, in another order",
         _csv("4,I002,S01,2025-03-01", header="units,item_id,store_id,date"),
         ok(1, item_id=["I002"], units=[4.0])),
    Case("sales_optional_columns", S, "no price/on_promo; a known covariate (is_open) instead",
         _csv("2025-03-01,S01,I001,3,1", header="date,store_id,item_id,units,is_open"),
         ok(1, is_open=[1.0])),
    Case("sales_column_name_case", S, "`Units` instead of `units`",
         _csv("2025-03-01,S01,I001,3", header="date,store_id,item_id,Units"),
         fail("missing required column(s) ['units']", "unexpected column(s) ['Units']")),
    Case("sales_column_name_space", S, "` store_id` (leading space) in the header",
         _csv("2025-03-01,S01,I001,3", header="date, store_id,item_id,units"),
         fail("missing required column(s) ['store_id']", "unexpected column(s) [' store_id']")),
    Case("sales_duplicate_column_names", S, "the header names `units` twice",
         _csv("2025-03-01,S01,I001,3,4", header="date,store_id,item_id,units,units"),
         fail("duplicated column name(s) ['units']")),
    # --- sales: values --------------------------------------------------------------------------
    Case("sales_units_text", S, "`units` is a word",
         _csv(GOOD_ROW, _row(units="three", item="I002")),
         fail("row 2, column 'units': not a valid value ('three')", A_NUMBER)),
    Case("sales_thousands_separator", S, 'units `"1,234"` (thousands separator)',
         _csv(_row(units='"1,234"')),
         fail("row 1, column 'units': not a valid value ('1,234')", A_NUMBER)),
    Case("sales_negative_units", S, "negative target",
         _csv(GOOD_ROW, _row(units="-3", item="I002")),
         fail("row 2, column 'units': below the minimum ('-3.0'); expected >= 0")),
    Case("sales_nan_units", S, "`NaN` target", _csv(_row(units="NaN")),
         fail("row 1, column 'units': not a finite number ('NaN'); expected a finite number")),
    Case("sales_inf_units", S, "`inf` target", _csv(_row(units="inf")),
         fail("row 1, column 'units': not a finite number ('inf')")),
    Case("sales_negative_inf_price", S, "price `-inf`", _csv(_row(price="-inf")),
         fail("row 1, column 'price': below the minimum",
              "row 1, column 'price': not a finite number")),
    Case("sales_empty_units", S, "`units` left empty",
         _csv(GOOD_ROW, _row(units="", item="I002")), fail(f"row 2, column 'units': {REQUIRED}")),
    Case("sales_blank_units", S, "`units` is only spaces", _csv(_row(units="   ")),
         fail("row 1, column 'units': not a valid value ('   ')", A_NUMBER)),
    Case("sales_empty_item_id", S, "`item_id` left empty", _csv(_row(item="")),
         fail(f"row 1, column 'item_id': {REQUIRED}")),
    Case("sales_quoted_empty_store_id", S, 'store_id `""` (empty string, quoted)',
         _csv(_row(store='""')), fail("row 1, column 'store_id'")),
    Case("sales_duplicate_key", S, "two rows for one day, store and item",
         _csv(GOOD_ROW, _row(units="5")),
         fail(f"row 1, {KEY3} ('2025-03-01, S01, I001')", f"row 2, {KEY3}",
              "expected one row per key")),
    Case("sales_exact_duplicate_row", S, "a row repeated verbatim", _csv(GOOD_ROW, GOOD_ROW),
         fail("row 2, column 'date, store_id, item_id, units, price, on_promo': an exact copy "
              "of an earlier row; expected no repeated rows")),
    Case("sales_date_outside_partition", S, "a row dated the next day",
         _csv(GOOD_ROW, _row(date="2025-03-02", item="I002")),
         fail(f"row 2, column 'date': date outside the partition ('2025-03-02'); {PARTITION}")),
    Case("sales_date_dd_mm_yyyy", S, "date `01/03/2025`", _csv(_row(date="01/03/2025")),
         fail(f"row 1, column 'date': not a valid value ('01/03/2025'); {A_DATE}")),
    Case("sales_date_impossible", S, "date `2025-02-30`", _csv(_row(date="2025-02-30")),
         fail(f"row 1, column 'date': not a valid value ('2025-02-30'); {A_DATE}")),
    Case("sales_date_with_time", S, "date `2025-03-01T00:00:00`",
         _csv(_row(date="2025-03-01T00:00:00")),
         fail(f"row 1, column 'date': not a valid value ('2025-03-01T00:00:00'); {A_DATE}")),
    Case("sales_date_unpadded", S, "date `2025-3-1` (no zero padding)",
         _csv(_row(date="2025-3-1")), ok(1, date=[DAY])),
    Case("sales_scientific_notation", S, "units `1e3`", _csv(_row(units="1e3")),
         ok(1, units=[1000.0])),
    Case("sales_trailing_whitespace", S, "spaces around values (ids are kept as they are)",
         _csv(_row(date="2025-03-01 ", store="S01 ", units=" 3 ")),
         ok(1, date=[DAY], units=[3.0], store_id=["S01 "])),
    Case("sales_quoted_comma", S, "quoted item_id holding a comma",
         _csv(_row(item='"I,001"'), GOOD_ROW_2), ok(2, item_id=["I,001", "I002"])),
    Case("sales_quoted_newline_row_number", S, "bad value in the record after a 2-line record",
         _csv(_row(price='"2.5\n"'), _row(units="x", item="I002")),
         fail("row 2, column 'units': not a valid value ('x')")),
    # --- sales: emptiness, encoding, size, truncation -------------------------------------------
    Case("sales_empty_file", S, "0 bytes", b"", fail("the file is empty (0 bytes)")),
    Case("sales_blank_line", S, "a single newline", b"\n", fail("cannot be parsed as csv")),
    Case("sales_header_only", S, "header, no rows (nothing sold)", _csv(), ok(0)),
    Case("sales_header_only_no_eol", S, "header only, no final newline", HEADER.encode(), ok(0)),
    Case("sales_truncated_mid_row", S, "file cut in the middle of the last row",
         CSV_ROW + b"2025-03-01,S01,I0", fail(f"row 2, column 'units': {REQUIRED}")),
    Case("sales_truncated_in_quotes", S, "file cut inside a quoted field",
         CSV_ROW + b'2025-03-01,"S0', fail("cannot be parsed as csv")),
    Case("sales_latin1", S, "Latin-1 bytes (`Caf\\xe9`)", CSV_ROW.replace(b"I001", b"Caf\xe9"),
         fail("line 2: not valid UTF-8")),
    Case("sales_utf16", S, "UTF-16 with its BOM", CSV_ROW.decode().encode("utf-16"),
         fail("line 1: not valid UTF-8")),
    Case("sales_bom", S, "UTF-8 byte-order mark", b"\xef\xbb\xbf" + CSV_ROW, ok(1, date=[DAY])),
    Case("sales_crlf", S, "CRLF line endings", _csv(GOOD_ROW, GOOD_ROW_2, eol="\r\n"),
         ok(2, on_promo=[0.0, 1.0])),
    Case("sales_huge_line", S, "one 2 MB line without a delimiter",
         _csv(GOOD_ROW, "x" * 2_000_000),
         fail("line 3 is 2,000,000 bytes long; at most 1,048,576 allowed "
              "([ingest] max_line_bytes)")),
    Case("sales_huge_number", S, "units with a million digits (overflows to inf)",
         _csv(_row(units="9" * 1_000_000)),
         fail("row 1, column 'units': not a finite number ('inf')")),
    Case("sales_very_long_file", S, "100,000 valid rows (3 MB)", _long_sales(), ok(100_000)),
    Case("sales_very_long_file_bad_last_row", S, "100,000 rows, the last one negative",
         _long_sales("-1"), fail("row 100000, column 'units': below the minimum ('-1.0')")),
    # --- sales: quarantine policies -------------------------------------------------------------
    Case("sales_q_negative", S, "one negative row of 3",
         _csv(GOOD_ROW, _row(units="-1", item="I002"), _row(item="I003")),
         quarantined(2, (2, "negative")), policy=_policy("negative")),
    Case("sales_q_outside_partition", S, "one row of 3 dated the next day",
         _csv(GOOD_ROW, GOOD_ROW_2, _row(date="2025-03-02", item="I003")),
         quarantined(2, (3, "outside_partition")), policy=_policy("outside_partition")),
    Case("sales_q_duplicate_key", S, "two conflicting rows for one key, and 1 other row",
         _csv(GOOD_ROW, _row(units="5"), GOOD_ROW_2),
         quarantined(1, (1, "duplicate_key"), (2, "duplicate_key")),
         policy=_policy("duplicate_key", max_fraction=0.7)),
    Case("sales_q_exact_duplicate", S, "a verbatim copy of a row: only the copy goes",
         _csv(GOOD_ROW, GOOD_ROW, GOOD_ROW_2),
         quarantined(2, (2, "duplicate_row")), policy=_policy("duplicate_row")),
    Case("sales_q_mixed", S, "a text, a NaN and a blank target among 6 rows",
         _csv(_row(units="x"), _row(units="NaN", item="I002"), _row(units="", item="I003"),
              _row(item="I004"), _row(item="I005"), _row(item="I006")),
         quarantined(3, (1, "wrong_type"), (2, "not_finite"), (3, "missing_value")),
         policy=QUARANTINE_ALL),
    Case("sales_q_over_fraction", S, "2 bad rows of 3: more than the 50% allowed",
         _csv(_row(units="-1"), _row(units="-2", item="I002"), _row(item="I003")),
         fail("row 1, column 'units': below the minimum",
              "2 of 3 row(s) rejected by rule: {'negative': 2}",
              "more than the 50.0% the project may quarantine"),
         policy=_policy("negative")),
    Case("sales_q_rule_not_allowed", S, "a text target when only `negative` may be quarantined",
         _csv(_row(units="x"), _row(units="-1", item="I002"), _row(item="I003"),
              _row(item="I004")),
         fail("row 1, column 'units': not a valid value ('x')"), policy=_policy("negative")),
    # --- sales: what sits in the landing folder, and its name -----------------------------------
    Case("sales_directory", S, "a directory named like the day's file", _directory,
         bad_name(NOT_A_FILE, by_name=False)),
    Case("sales_directory_loaded", S, "the day's run reads that directory", _directory,
         fail(NOT_A_FILE)),
    Case("sales_symlink_inside_landing", S, "symlink to a file elsewhere in the landing root",
         _symlink_inside, ok(2)),
    Case("sales_symlink_outside_landing", S, "symlink to a file outside the landing root",
         _symlink_outside, bad_name("outside the landing folder", by_name=False)),
    Case("sales_symlink_dangling", S, "symlink to nothing", _symlink_dangling,
         bad_name(NOT_A_FILE, by_name=False)),
    Case("sales_name_parent_dir", S, "`../` before the name", CSV_ROW, bad_name(),
         name="../" + F),
    Case("sales_name_path_traversal", S, "a name climbing out of the landing root", CSV_ROW,
         bad_name(), name="../../outside/" + F),
    Case("sales_name_absolute", S, "an absolute path as name", CSV_ROW, bad_name(),
         name="/etc/" + F),
    Case("sales_name_shell_semicolon", S, "name with `;rm -rf ~`", CSV_ROW, bad_name(),
         name=F + ";rm -rf ~"),
    Case("sales_name_shell_substitution", S, "name with `$(reboot)`", CSV_ROW, bad_name(),
         name="sales_$(reboot).csv"),
    Case("sales_name_backticks", S, "name with backticks", CSV_ROW, bad_name(),
         name="sales_`id`.csv"),
    Case("sales_name_trailing_newline", S, "name ending in a newline", CSV_ROW, bad_name(),
         name=F + "\n"),
    Case("sales_name_space", S, "a space before the extension", CSV_ROW, bad_name(),
         name="sales_2025-03-01 .csv"),
    Case("sales_name_txt", S, "wrong extension `.txt`", CSV_ROW, bad_name(),
         name="sales_2025-03-01.txt"),
    Case("sales_name_upper_ext", S, "extension `.CSV`", CSV_ROW, bad_name(),
         name="sales_2025-03-01.CSV"),
    Case("sales_name_gz", S, "compressed `.csv.gz`", CSV_ROW, bad_name(), name=F + ".gz"),
    Case("sales_name_parquet", S, "a Parquet file in the sales folder", _plan(), bad_name(),
         name="sales_2025-03-01.parquet"),
    Case("sales_name_compact_date", S, "date `20250301` in the name", CSV_ROW, bad_name(),
         name="sales_20250301.csv"),
    Case("sales_name_impossible_date", S, "`sales_2025-02-30.csv`", CSV_ROW, bad_name(NO_DATE),
         name="sales_2025-02-30.csv"),
    Case("sales_name_arabic_digits", S, "date in Arabic-Indic digits", CSV_ROW,
         bad_name(NO_DATE), name="sales_٢٠٢٥-٠٣-٠١.csv"),
    Case("sales_in_progress_tmp", S, "`.tmp` file still being written", b"date,sto", Ignored(),
         name=F + ".tmp"),
    Case("sales_in_progress_hidden", S, "hidden file still being written", b"date,sto",
         Ignored(), name="." + F),
    # --- plans (Parquet) ------------------------------------------------------------------------
    Case("plans_before_publication", P, "a plan for a day before it was published",
         _plan(date=[_d("2025-02-27"), _d("2025-03-02")]),
         fail(f"row 1, column 'date': date outside the partition ('2025-02-27'); {PLAN_WINDOW}")),
    Case("plans_publication_day", P, "a plan for its own publication day",
         _plan(date=[_d("2025-03-01"), _d("2025-03-02")]),
         fail(f"row 1, column 'date': date outside the partition ('2025-03-01'); {PLAN_WINDOW}")),
    Case("plans_beyond_horizon", P, "a plan for day D + horizon + 1",
         _plan(date=[_d("2025-03-02"), _d("2025-03-09")]),
         fail(f"row 2, column 'date': date outside the partition ('2025-03-09'); {PLAN_WINDOW}")),
    Case("plans_q_before_publication", P, "same, with `outside_partition` quarantined",
         _plan(date=[_d("2025-02-27"), _d("2025-03-02")]),
         quarantined(1, (1, "outside_partition")), policy=_policy("outside_partition")),
    Case("plans_other_schema", P, "Parquet with `day` instead of `date`",
         _plan(rename={"date": "day"}),
         fail("missing required column(s) ['date']", "unexpected column(s) ['day']")),
    Case("plans_extra_column", P, "Parquet with an extra `discount` column",
         _parquet({**GOOD_PLAN, "discount": [0.1, 0.2]}),
         fail("unexpected column(s) ['discount']")),
    Case("plans_text_dates", P, "dates stored as text `YYYY-MM-DD`",
         _plan(date=["2025-03-02", "2025-03-03"]),
         ok(2, date=[_d("2025-03-02"), _d("2025-03-03")])),
    Case("plans_text_dates_other_format", P, "dates stored as text `03/02/2025`",
         _plan(date=["03/02/2025", "2025-03-03"]),
         fail(f"row 1, column 'date': not a valid value ('03/02/2025'); {A_DATE}")),
    Case("plans_text_price", P, "price stored as text, one not a number",
         _plan(price=["1.5", "abc"]),
         fail("row 2, column 'price': not a valid value ('abc')", A_NUMBER)),
    Case("plans_struct_price", P, "price of a nested (struct) type",
         _plan(price=[{"a": 1.0}, {"a": 2.0}]), fail("column 'price'")),
    Case("plans_list_price", P, "price of a list type", _plan(price=[[1.0], [2.0]]),
         fail("column 'price'")),
    Case("plans_nan_price", P, "planned price NaN", _plan(price=[float("nan"), 1.0]),
         fail("row 1, column 'price': not a finite number ('NaN')")),
    Case("plans_negative_price", P, "planned price -1", _plan(price=[-1.0, 1.0]),
         fail("row 1, column 'price': below the minimum ('-1.0'); expected >= 0")),
    Case("plans_duplicate_key", P, "two plans for one target day, store and item",
         _plan(date=[_d("2025-03-02")] * 2), fail(f"row 1, {KEY3} ('2025-03-02, S01, I001')")),
    Case("plans_null_store", P, "store_id null", _plan(store_id=[None, "S01"]),
         fail(f"row 1, column 'store_id': {REQUIRED}")),
    Case("plans_truncated", P, "Parquet cut in half", _plan()[: len(_plan()) // 2],
         fail("cannot be parsed as parquet")),
    Case("plans_csv_bytes", P, "CSV text saved as .parquet", CSV_ROW,
         fail("cannot be parsed as parquet")),
    Case("plans_empty_file", P, "0 bytes", b"", fail("the file is empty (0 bytes)")),
    Case("plans_zero_rows", P, "the right schema, no rows",
         _parquet(pl.DataFrame(GOOD_PLAN).clear()), ok(0)),
    Case("plans_wrong_extension", P, "`plans_2025-03-01.csv`", CSV_ROW, bad_name(),
         name="plans_2025-03-01.csv"),
    # --- calendar (Parquet) ---------------------------------------------------------------------
    Case("calendar_duplicate_date", C, "one day twice",
         _calendar(date=[_d("2025-01-01")] * 2, is_holiday=[1.0, 0.0]),
         fail("row 1, column 'date': duplicate key ('2025-01-01')",
              "row 2, column 'date': duplicate key")),
    Case("calendar_column_case", C, "`Date` instead of `date`",
         _calendar(Date=[_d("2025-01-01")], is_holiday=[1.0]),
         fail("missing required column(s) ['date']", "unexpected column(s) ['Date']")),
    Case("calendar_text_flag", C, "is_holiday `yes`",
         _calendar(date=[_d("2025-01-01")], is_holiday=["yes"]),
         fail("row 1, column 'is_holiday': not a valid value ('yes')", A_NUMBER)),
    Case("calendar_null_date", C, "a null date",
         _calendar(date=[None, _d("2025-01-01")], is_holiday=[1.0, 0.0]),
         fail(f"row 1, column 'date': {REQUIRED}")),
    Case("calendar_integer_dates", C, "dates stored as integers 20250101",
         _calendar(date=[20250101, 20250102], is_holiday=[1.0, 0.0]),
         fail("row 1, column 'date'", "expected a date")),
    Case("calendar_midnight_timestamps", C, "dates stored as midnight timestamps (pandas)",
         _calendar(date=[dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 2)], is_holiday=[1.0, 0.0]),
         ok(2, date=[dt.date(2025, 1, 1), dt.date(2025, 1, 2)])),
    Case("calendar_timestamps_with_time", C, "timestamps at 13:30 where dates are expected",
         _calendar(date=[dt.datetime(2025, 1, 1, 13, 30)], is_holiday=[1.0]),
         fail("row 1, column 'date': not a valid value ('2025-01-01 13:30:00.000000')",
              "expected a date")),
    Case("calendar_no_columns", C, "a Parquet file without columns", _parquet(pl.DataFrame()),
         fail("missing required column(s) ['date']; file has []")),
    Case("calendar_q_nan", C, "a NaN flag, `not_finite` quarantined",
         _calendar(date=[_d("2025-01-01"), _d("2025-01-02")], is_holiday=[float("nan"), 0.0]),
         quarantined(1, (1, "not_finite")), policy=_policy("not_finite")),
    Case("calendar_json_bytes", C, "JSON saved as .parquet", _json([{"date": "2025-01-01"}]),
         fail("cannot be parsed as parquet")),
    Case("calendar_dated_name", C, "`calendar_2025.parquet`", _calendar(), bad_name(),
         name="calendar_2025.parquet"),
    # --- products (JSON) ------------------------------------------------------------------------
    Case("products_object", PR, "one object, not an array", _json({"item_id": "I001"}),
         fail(NOT_JSON_ARRAY)),
    Case("products_array_of_strings", PR, "an array of ids", _json(["I001", "I002"]),
         fail(NOT_JSON_ARRAY)),
    Case("products_null", PR, "`null`", b"null", fail(NOT_JSON_ARRAY)),
    Case("products_empty_array", PR, "`[]` (no columns to check)", b"[]",
         fail("missing required column(s) ['item_id']")),
    Case("products_ndjson", PR, "one object per line (NDJSON)",
         b'{"item_id": "I001"}\n{"item_id": "I002"}\n',
         fail("cannot be parsed as json: Extra data")),
    Case("products_truncated", PR, "JSON cut in the middle", b'[{"item_id": "I001"}, {"item_',
         fail("cannot be parsed as json")),
    Case("products_bom", PR, "UTF-8 BOM before the JSON",
         b"\xef\xbb\xbf" + _json([{"item_id": "I001"}]),
         fail("cannot be parsed as json: Unexpected UTF-8 BOM")),
    Case("products_latin1", PR, "Latin-1 bytes",
         '[{"item_id": "I001", "category": "caf\xe9"}]'.encode("latin-1"),
         fail("cannot be parsed as json", "can't decode byte 0xe9")),
    Case("products_duplicate_id", PR, "one item_id twice",
         _json([{"item_id": "I001"}, {"item_id": "I001", "category": "x"}]),
         fail("row 1, column 'item_id': duplicate key ('I001')",
              "row 2, column 'item_id': duplicate key")),
    Case("products_missing_id", PR, "an object without item_id",
         _json([{"item_id": "I001"}, {"category": "x"}]),
         fail(f"row 2, column 'item_id': {REQUIRED}")),
    Case("products_extra_attribute", PR, "an attribute the config does not declare",
         _json([{"item_id": "I001", "colour": "red"}]), fail("unexpected column(s) ['colour']")),
    Case("products_launch_date_format", PR, "launch_date `01/03/2025`",
         _json([{"item_id": "I001", "launch_date": "01/03/2025"}]),
         fail(f"row 1, column 'launch_date': not a valid value ('01/03/2025'); {A_DATE}")),
    Case("products_numeric_id", PR, "item_id as a JSON number", _json([{"item_id": 1}]),
         fail(f"row 1, column 'item_id': not a valid value ('1'); {JSON_ID}")),
    Case("products_mixed_attribute", PR, "base_price a number in one object, text in another",
         _json([{"item_id": "I001", "base_price": 3.5}, {"item_id": "I002", "base_price": "x"}]),
         fail("row 2, column 'base_price': not a valid value ('\"x\"'); "
              "expected a JSON number [wrong_type]")),
    Case("products_empty_id", PR, 'item_id `""`', _json([{"item_id": ""}]),
         fail("row 1, column 'item_id'")),
    Case("products_q_missing_id", PR, "an object without item_id, `missing_value` quarantined",
         _json([{"item_id": "I001"}, {"category": "x"}]),
         quarantined(1, (2, "missing_value")), policy=_policy("missing_value")),
    Case("products_jsonl_name", PR, "`products.jsonl`", _json([{"item_id": "I001"}]),
         bad_name(), name="products.jsonl"),
    # --- stores (JSON) --------------------------------------------------------------------------
    Case("stores_wrapped", ST, '`{"stores": [...]}`', _json({"stores": [{"store_id": "S01"}]}),
         fail(NOT_JSON_ARRAY)),
    Case("stores_exact_duplicate", ST, "one store listed twice", _json([{"store_id": "S01"}] * 2),
         fail("row 2, column 'store_id': an exact copy of an earlier row")),
    Case("stores_repeated_json_key", ST, "`store_id` twice in one object (JSON keeps the last)",
         b'[{"store_id": "S01", "store_id": "S02"}]', ok(1, store_id=["S02"])),
    Case("stores_null_attribute", ST, "store_size null (attributes are optional)",
         _json([{"store_id": "S01", "region": "north", "store_size": None}]),
         ok(1, store_size=[None])),
    Case("stores_empty_file", ST, "0 bytes", b"", fail("the file is empty (0 bytes)")),
    Case("stores_upper_ext", ST, "`stores.JSON`", _json([{"store_id": "S01"}]), bad_name(),
         name="stores.JSON"),
    # === issue 14: what the contract allows, parser errors, limits, numbers, identity ========
    # --- schema: optional columns may be absent, whole numbers are numbers, typed attributes --
    Case("sales_required_columns_only", S, "only date, store_id, item_id, units",
         _csv(DATE_ROW, header="date,store_id,item_id,units"),
         ok(1, units=[3.0], price=[None], on_promo=[None], is_open=[None])),
    Case("plans_required_columns_only", P, "a plan without any covariate column",
         _parquet({k: GOOD_PLAN[k] for k in ("date", "store_id", "item_id")}),
         ok(2, price=[None, None], is_open=[None, None])),
    Case("plans_integer_covariates", P, "whole-number prices and flags stored as Int64",
         _plan(price=[1, 2], on_promo=[0, 1], is_open=[1, 1]),
         ok(2, price=[1.0, 2.0], on_promo=[0.0, 1.0])),
    Case("plans_small_number_types", P, "price Float32, is_open UInt8, on_promo Boolean",
         _parquet(pl.DataFrame(GOOD_PLAN).with_columns(
             pl.col("price").cast(pl.Float32), pl.col("is_open").cast(pl.UInt8),
             pl.col("on_promo").cast(pl.Boolean))),
         ok(2, price=[1.0, 2.0], on_promo=[0.0, 1.0], is_open=[1.0, 1.0])),
    Case("plans_categorical_ids", P, "ids stored as a Parquet dictionary (Categorical)",
         _parquet(pl.DataFrame(GOOD_PLAN).with_columns(pl.col("store_id").cast(pl.Categorical))),
         ok(2, store_id=["S01", "S01"])),
    Case("calendar_integer_flag", C, "is_holiday stored as Int64",
         _calendar(date=[_d("2025-01-01")], is_holiday=[1]), ok(1, is_holiday=[1.0])),
    Case("calendar_date_only", C, "a calendar without the is_holiday column",
         _calendar(date=[_d("2025-01-01")]), ok(1, is_holiday=[None])),
    Case("products_integer_base_price", PR, "a whole-number base_price (JSON 3)",
         _json([{"item_id": "I001", "base_price": 3}, {"item_id": "I002", "base_price": 2.5}]),
         ok(2, base_price=[3.0, 2.5])),
    Case("products_ids_only", PR, "no attribute at all",
         _json([{"item_id": "I001"}]), ok(1, category=[None], base_price=[None])),
    Case("stores_ids_only", ST, "no attribute at all",
         _json([{"store_id": "S01"}]), ok(1, region=[None], store_size=[None])),
    Case("products_base_price_text", PR, 'base_price as a JSON string `"3.5"`',
         _json([{"item_id": "I001", "base_price": "3.5"}]),
         fail("row 1, column 'base_price': not a valid value ('\"3.5\"'); expected a JSON number")),
    Case("stores_numeric_text_attribute", ST, "region (a text attribute) as a JSON number",
         _json([{"store_id": "S01", "region": 3}]),
         fail("row 1, column 'region': not a valid value ('3'); expected a JSON string")),
    Case("products_nested_attribute", PR, "category an object",
         _json([{"item_id": "I001", "category": {"name": ["snacks"]}}]),
         fail("row 1, column 'category': not a valid value ('{\"name\": [\"snacks\"]}')")),
    # --- every parser error is a ContractViolation naming line, row or column ------------------
    Case("sales_cr_only_line_endings", S, "lines ending in CR only (old Mac)",
         _csv(GOOD_ROW, GOOD_ROW_2, eol="\r"),
         fail("line 1: lines end in CR only (old Mac style); expected LF or CRLF endings")),
    Case("sales_cr_inside_header", S, "a CR-only break after the header, LF after the rows",
         (HEADER + "\r" + GOOD_ROW + "\n").encode(),
         fail(f"{PARSE_CSV}: line 1 (the header): new-line character seen in unquoted field")),
    Case("sales_ragged_row_far_down", S, "row 4 of 4 has an extra field",
         _csv(GOOD_ROW, GOOD_ROW_2, _row(item="I003"), _row(item="I004") + ",x"),
         fail(f"{PARSE_CSV}: row 4 (line 5) has 7 fields, the header 6")),
    Case("sales_quote_in_last_row", S, "a quote opened in the last row",
         _csv(GOOD_ROW, GOOD_ROW_2, _row(item='"I003')),
         fail(f"{PARSE_CSV}: row 3 (from line 4): unexpected end of data")),
    Case("sales_nul_in_number", S, "a NUL byte inside units",
         _csv(_row(units="3\x00")), fail("row 1, column 'units': not a valid value ('3\\x00')")),
    Case("products_deeply_nested", PR, "100,000 nested arrays (RecursionError in json)",
         b"[" * 100_000 + b"]" * 100_000,
         fail("line 1: JSON nested more than 32 levels deep (100000 levels); at most 32 "
              "allowed ([ingest] max_json_depth)")),
    Case("products_deep_inside_value", PR, "a value nested 40 levels deep on line 3",
         b'[\n{"item_id": "I001"},\n{"item_id": "I002", "category": ' + b"[" * 40 + b"]" * 40
         + b"}\n]", fail("line 3: JSON nested more than 32 levels deep (42 levels)")),
    Case("products_brackets_in_strings", PR, "many brackets inside strings (not nesting)",
         _json([{"item_id": "I001", "category": "[" * 100 + "{" * 100}]),
         ok(1, category=["[" * 100 + "{" * 100])),
    Case("products_number", PR, "a JSON number", b"42",
         fail(f"{NOT_JSON_ARRAY}; the file holds a number")),
    Case("products_array_with_a_number", PR, "an array of objects with a number in it",
         _json([{"item_id": "I001"}, 5]),
         fail(f"row 2: {NOT_JSON_ARRAY}; element is a number")),
    Case("products_syntax_error_line", PR, "a missing `:` on line 3",
         b'[\n{"item_id": "I001"},\n{"item_id" "I002"}\n]',
         fail(f"{PARSE_JSON}: Expecting ':' delimiter: line 3 column 12")),
    Case("products_nan_literal", PR, "base_price `NaN` (not JSON, Python reads it)",
         b'[{"item_id": "I001", "base_price": NaN}]',
         fail("row 1, column 'base_price': not a finite number ('NaN')")),
    Case("products_integer_beyond_float", PR, "base_price a 400-digit integer",
         b'[{"item_id": "I001", "base_price": 1' + b"0" * 400 + b"}]",
         fail("row 1, column 'base_price': not a finite number ('inf')")),
    Case("products_integer_too_many_digits", PR, "base_price a 5,000-digit integer",
         b'[{"item_id": "I001", "base_price": 1' + b"0" * 5_000 + b"}]",
         fail(f"{PARSE_JSON}: Exceeds the limit (4300 digits)")),
    Case("stores_latin1", ST, "Latin-1 bytes on line 2",
         '[\n{"store_id": "S01", "region": "\xeele"}]'.encode("latin-1"),
         fail(f"{PARSE_JSON}: line 2: not valid UTF-8")),
    Case("plans_truncated_footer", P, "Parquet without its last 10 bytes", _plan()[:-10],
         fail(f"{PARSE_PARQUET}: parquet: File out of specification")),
    Case("plans_garbage_between_magic", P, "`PAR1`, garbage, `PAR1`",
         b"PAR1" + b"\x00\x01" * 64 + b"PAR1", fail(PARSE_PARQUET)),
    # --- size and shape limits ------------------------------------------------------------------
    Case("sales_50000_columns", S, "a header of 50,000 columns (a quadratic check took minutes)",
         _csv(",".join(["1"] * 50_000), header=",".join(f"c{i}" for i in range(50_000))),
         fail("50,000 columns; at most 1,000 allowed ([ingest] max_columns)")),
    Case("sales_1001_columns", S, "1,001 columns, 1 more than the default limit",
         _csv(",".join(["1"] * 1_001), header=",".join(f"c{i}" for i in range(1_001))),
         fail("1,001 columns; at most 1,000 allowed")),
    Case("sales_many_unknown_columns", S, "500 unknown columns (listed 10 at a time)",
         _csv(GOOD_ROW + ",1" * 500, header=HEADER + "".join(f",x{i}" for i in range(500))),
         fail("unexpected column(s) ['x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', "
              "'x9'] and 490 more")),
    Case("sales_too_many_rows", S, "3 rows where `max_rows = 2`",
         _csv(GOOD_ROW, GOOD_ROW_2, _row(item="I003")),
         fail("3 rows; at most 2 allowed ([ingest] max_rows)"), limits=IngestLimits(max_rows=2)),
    Case("sales_line_over_limit", S, "a 101-byte line where `max_line_bytes = 100`",
         _csv(_row(item="I" + "0" * 77)), fail("line 2 is 101 bytes long; at most 100"),
         limits=IngestLimits(max_line_bytes=100)),
    Case("plans_too_many_rows", P, "2 rows where `max_rows = 1` (checked from the footer)",
         _plan(), fail("2 rows; at most 1 allowed ([ingest] max_rows)"),
         limits=IngestLimits(max_rows=1)),
    Case("plans_too_many_columns", P, "6 columns where `max_columns = 5`",
         _plan(), fail("6 columns; at most 5 allowed ([ingest] max_columns)"),
         limits=IngestLimits(max_columns=5)),
    Case("products_too_many_rows", PR, "2 objects where `max_rows = 1`",
         _json([{"item_id": "I001"}, {"item_id": "I002"}]), fail("2 rows; at most 1 allowed"),
         limits=IngestLimits(max_rows=1)),
    Case("stores_too_deep", ST, "a value 3 levels deep where `max_json_depth = 2`",
         _json([{"store_id": "S01", "region": ["north"]}]),
         fail("line 1: JSON nested more than 2 levels deep (3 levels)"),
         limits=IngestLimits(max_json_depth=2)),
    Case("products_one_long_line", PR, "60,006 products on one 1.3 MB line (no limit for JSON)",
         _json([{"item_id": f"I{i:03d}"} for i in range(1, 7)]
               + [{"item_id": f"N{i:05d}"} for i in range(60_000)]), ok(60_006)),
    # --- finite, plausible numbers --------------------------------------------------------------
    Case("sales_units_1e308", S, "units `1e308` (finite, overflows sums to inf)",
         _csv(_row(units="1e308")),
         fail(f"row 1, column 'units': number out of range ('1e+308'); {BOUND}")),
    Case("sales_price_at_the_bound", S, "price exactly 1e12 (the bound is inclusive)",
         _csv(_row(price="1000000000000")), ok(1, price=[1e12])),
    Case("sales_on_promo_minus_1e13", S, "on_promo `-1e13` (may be negative, not that large)",
         _csv(_row(promo="-1e13")),
         fail(f"row 1, column 'on_promo': number out of range ('-10000000000000.0'); {BOUND}")),
    Case("sales_q_out_of_range", S, "one units `1e20` of 3, `out_of_range` quarantined",
         _csv(GOOD_ROW, _row(units="1e20", item="I002"), _row(item="I003")),
         quarantined(2, (2, "out_of_range")), policy=_policy("out_of_range")),
    Case("plans_price_1e13", P, "a planned price of 1e13", _plan(price=[1.0, 1e13]),
         fail(f"row 2, column 'price': number out of range ('10000000000000.0'); {BOUND}")),
    Case("calendar_flag_minus_1e300", C, "is_holiday `-1e300`",
         _calendar(date=[_d("2025-01-01")], is_holiday=[-1e300]),
         fail("row 1, column 'is_holiday': number out of range ('-1e+300')")),
    Case("products_base_price_1e15", PR, "base_price 1e15",
         _json([{"item_id": "I001", "base_price": 1e15}]),
         fail("row 1, column 'base_price': number out of range ('1000000000000000.0')")),
    # --- identity: ids are text, without control characters, and name known series -----------
    Case("plans_integer_ids", P, "store_id stored as Parquet integers",
         _plan(store_id=[1, 1]), fail(f"row 1, column 'store_id': not a valid value ('1'); {TEXT}",
                                      "row 2, column 'store_id'")),
    Case("products_mixed_ids", PR, 'item_id `"I001"` in one object, `2` in the next',
         _json([{"item_id": "I001"}, {"item_id": 2}]),
         fail(f"row 2, column 'item_id': not a valid value ('2'); {JSON_ID}")),
    Case("stores_float_id", ST, "store_id `1.0`", _json([{"store_id": 1.0}]),
         fail(f"row 1, column 'store_id': not a valid value ('1.0'); {JSON_ID}")),
    Case("sales_numeric_looking_id", S, "store_id `01` in a CSV (text: kept as `01`)",
         _csv(_row(store="01")), ok(1, store_id=["01"])),
    Case("sales_id_tab", S, "a tab inside store_id", _csv(_row(store="S\t01")),
         fail(f"row 1, column 'store_id': control character in an id ('S\\t01'); {NO_CONTROL}")),
    Case("sales_id_nul", S, "a NUL byte inside item_id", _csv(_row(item="I\x00001")),
         fail("row 1, column 'item_id': control character in an id ('I\\x00001')")),
    Case("sales_id_quoted_newline", S, "a quoted newline inside item_id",
         _csv(_row(item='"I0\n01"'), GOOD_ROW_2),
         fail("row 1, column 'item_id': control character in an id ('I0\\n01')")),
    Case("sales_id_escape_sequence", S, "an ANSI escape (ESC[31m) in item_id",
         _csv(_row(item="\x1b[31mI001")),
         fail("row 1, column 'item_id': control character in an id ('\\x1b[31mI001')")),
    Case("plans_id_newline", P, "a newline inside a Parquet item_id",
         _plan(item_id=["I001", "I0\n01"]),
         fail("row 2, column 'item_id': control character in an id ('I0\\n01')")),
    Case("products_id_bell", PR, "item_id with a BEL (`\\u0007`)",
         _json([{"item_id": "I001\u0007"}]),
         fail("row 1, column 'item_id': control character in an id ('I001\\x07')")),
    Case("stores_id_next_line", ST, "store_id with a C1 NEL (`\\u0085`)",
         _json([{"store_id": "S01\u0085"}]),
         fail("row 1, column 'store_id': control character in an id ('S01\\x85')")),
    Case("sales_q_control_character", S, "one id of 3 with a tab, `control_character` quarantined",
         _csv(GOOD_ROW, _row(item="I\t002"), _row(item="I003")),
         quarantined(2, (2, "control_character")), policy=_policy("control_character")),
    Case("labels_not_a_class", L, "a review label that is not one of the classes",
         b"review_id,arrival_date,label\nR1,2025-02-27,positive\nR2,2025-02-28,positve\n",
         fail("row 2, column 'label': not one of the allowed values ('positve'); expected one of "
              "'negative', 'neutral', 'positive' [not_allowed]")),
    Case("labels_q_not_allowed", L, "one label of 3 not a class, `not_allowed` quarantined",
         b"review_id,arrival_date,label\nR1,2025-02-27,positive\nR2,2025-02-28,good\n"
         b"R3,2025-03-01,neutral\n",
         quarantined(2, (2, "not_allowed")), policy=_policy("not_allowed")),
    Case("plans_unknown_series", P, "a plan for a store and item sales never had",
         _plan(store_id=["S99", "S99"], item_id=["I999", "I999"]),
         unmatched(f"none of the 1 distinct (store_id, item_id) {NO_SERIES} (12 known)",
                   "the file has e.g. ('S99', 'I999')", "sales have e.g. ('S01', 'I001')")),
    Case("plans_ids_as_numbers_text", P, "ids `1`/`1` where sales say `S01`/`I001`",
         _plan(store_id=["1", "1"], item_id=["1", "1"]), unmatched("('1', '1')")),
    Case("plans_store_and_item_swapped", P, "store_id and item_id swapped",
         _plan(store_id=["I001", "I001"], item_id=["S01", "S01"]), unmatched(NO_SERIES)),
    Case("plans_one_known_series", P, "one known series and one new (a launch): accepted",
         _plan(item_id=["I001", "I777"]), ok(2, item_id=["I001", "I777"])),
    Case("products_ids_lower_case", PR, "item ids `i001` where sales say `I001`",
         _json([{"item_id": "i001"}, {"item_id": "i002"}]),
         unmatched(f"none of the 2 distinct (item_id) {NO_SERIES} (6 known)", "'i001', 'i002'")),
    Case("stores_ids_unpadded", ST, "store ids `S1`, `S2` where sales say `S01`, `S02`",
         _json([{"store_id": "S1"}, {"store_id": "S2"}]),
         unmatched("the file has e.g. 'S1', 'S2', sales have e.g. 'S01', 'S02'")),
]
# fmt: on


# A valid file of each source for the day after DAY (static sources: their one valid name).
NEIGHBOURS = {
    "sales": _csv(_row(date="2025-03-02")),
    "plans": _plan(date=[_d("2025-03-03"), _d("2025-03-04")]),
    "calendar": _calendar(),
    "products": _json([{"item_id": "I001", "category": "snacks"}]),
    "stores": _json([{"store_id": "S01", "region": "north"}]),
}


def _params(cases: list[Case]) -> list:
    return [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.bug)] if c.bug else []
        )
        for c in cases
    ]


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------


def test_corpus_is_large_and_covers_every_source_and_outcome():
    assert len(CASES) >= 158  # 128 cases, and issue 14's 30 more
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.source for c in CASES} == set(SRC)
    kinds = {type(c.outcome) for c in CASES}
    assert kinds == {Accepted, Quarantined, Failed, NameRejected, Ignored, Unmatched}
    # Every row rule has a case that quarantines it and one that fails on it.
    quarantined_rules = {
        r for c in CASES if isinstance(c.outcome, Quarantined) for _, r in c.outcome.rejected
    }
    assert quarantined_rules == set(ROW_RULES)


def _load(path: Path, source: Source, policy: QuarantinePolicy):
    return load_landing_file(path, source, DAY if source.daily else None, policy=policy)


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    landing = tmp_path / "landing"
    source = case.contract
    folder = landing / source.name
    folder.mkdir(parents=True)
    if isinstance(case.outcome, NameRejected | Ignored):
        _check_discovery(case, landing, folder, source, tmp_path, monkeypatch)
        return
    path = folder / case.file_name
    case.make(path, tmp_path)
    before = path.read_bytes() if path.is_file() else None
    outcome = case.outcome
    if isinstance(outcome, Failed):
        with pytest.raises(ContractViolation) as err:
            _load(path, source, case.policy)
        message = str(err.value)
        assert str(path) in message, "the message must name the file"
        for text in outcome.texts:
            assert text in message, f"{text!r} not in:\n{message[:2000]}"
    elif isinstance(outcome, Unmatched):
        loaded = _load(path, source, case.policy)
        problem = unmatched_ids_problem(loaded.rows, source, KNOWN_SERIES)
        assert problem is not None, "ids that match no known series must be reported"
        for text in outcome.texts:
            assert text in problem, f"{text!r} not in:\n{problem}"
    else:
        loaded = _load(path, source, case.policy)
        rejected = sorted(set(loaded.rejected.select(ROW, "rule").iter_rows()))
        # Every file loads with every contract column, in the contract's types.
        assert loaded.rows.schema == pl.Schema(source.columns)
        # Rows that load name known series (the corpus uses the ids of `small_project`).
        assert unmatched_ids_problem(loaded.rows, source, KNOWN_SERIES) is None
        if isinstance(outcome, Accepted):
            assert (loaded.rows.height, rejected) == (outcome.rows, [])
            for column, values in outcome.values.items():
                assert loaded.rows[column].to_list() == values
        else:
            assert (loaded.rows.height, rejected) == (outcome.rows, sorted(outcome.rejected))
            assert loaded.rejected["record"].null_count() == 0  # the row as found is kept
            assert loaded.rows_in_file == outcome.rows + len({r for r, _ in outcome.rejected})
    if before is not None:
        assert path.read_bytes() == before  # loading never modifies a landing file


def _check_discovery(case, landing, folder, source, tmp_path, monkeypatch) -> None:
    """Discovery reports (or ignores) the name, and nothing outside the landing folder is read
    while discovering and then hashing and loading what discovery listed (as the sensor and
    the assets do)."""
    name = case.file_name
    outcome = case.outcome
    if isinstance(outcome, NameRejected) and outcome.by_name:
        with pytest.raises(ContractViolation) as err:
            source.partition_of(name)
        assert name in str(err.value) and outcome.text in str(err.value)
    # Put the file where its name points: a traversing name lands outside the source folder.
    target = Path(os.path.normpath(folder / name))
    if not target.is_relative_to(tmp_path):
        target = None  # an absolute name elsewhere: only the name check applies
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        case.make(target, tmp_path)

    # A good file of another day (or the valid name of a static source) next to it: discovery
    # must list exactly that one, and reading it shows the read spy below is live.
    neighbour = folder / source.file_name(DAY + dt.timedelta(days=1) if source.daily else None)
    neighbour.write_bytes(NEIGHBOURS[source.name])

    reads: list[Path] = []
    read_bytes, open_ = Path.read_bytes, Path.open
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or read_bytes(self))
    monkeypatch.setattr(
        Path, "open", lambda self, *a, **k: reads.append(self) or open_(self, *a, **k)
    )
    files, problems = discover(landing, source)
    for found in files:
        content_hash(found.path)
        load_landing_file(found.path, source, found.partition)
    monkeypatch.undo()

    assert neighbour in reads and target not in reads
    root = landing.resolve()
    assert [p for p in reads if not p.resolve().is_relative_to(root)] == []
    assert [f.path for f in files] == [neighbour]
    ours = [p for p in problems if name in p]
    if isinstance(outcome, Ignored):
        assert ours == []
    elif target is not None and target.parent == folder:
        assert ours and all(outcome.text in p for p in ours), problems


def test_docs_table_matches_the_corpus():
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    assert text[start + len(TABLE_START) : end].strip() == markdown_table().strip(), (
        "docs/bad-input-corpus.md is out of date: "
        "python -m batch_ml_tests.test_bad_input_corpus --write"
    )


# ---------------------------------------------------------------------------------------------
# Through Dagster: a bad delivery never loses a good partition already stored
# ---------------------------------------------------------------------------------------------

FAILING_SALES = [
    c
    for c in CASES
    if c.source == "sales"
    and isinstance(c.outcome, Failed)
    and isinstance(c.content, bytes)
    and c.bug is None
    and c.limits is None  # the project runs with the default limits
]


def _digest(frame: pl.DataFrame) -> str:
    """sha256 of a frame's schema and of its rows sorted by all columns."""
    rows = frame.sort(frame.columns, nulls_last=True).write_csv()
    return hashlib.sha256(f"{frame.schema}\n{rows}".encode()).hexdigest()


def _stored_tables(root: Path) -> dict[str, pl.DataFrame]:
    """Every table under the tables root, all its partitions, as Polars reads them."""
    return {
        folder.name: PartitionedTable(root, folder.name).read()
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith((".", "_"))
    }


@pytest.mark.definitions
def test_bad_sales_delivery_changes_nothing_stored(small_project):
    """Every failing sales case, delivered as the landing file of a day already stored, fails
    its run, and every table stored (sales, plans, the static sources, the ingestion log, the
    quarantine) is unchanged, but for the one `failed` log row of that content."""
    cfg = small_project
    assert len(FAILING_SALES) >= 10
    shas = [hashlib.sha256(c.content).hexdigest() for c in FAILING_SALES]
    assert len(set(shas)) == len(shas), "each case must add its own log row"
    key, before_key = DAY.isoformat(), (DAY - dt.timedelta(days=1)).isoformat()
    defs = build_definitions(cfg)  # the assets with their resources bound
    sales, plans = defs.resolve_assets_def("sales"), defs.resolve_assets_def("plans")
    static = [defs.resolve_assets_def(n) for n in ("calendar", "products", "stores")]
    landing_file = cfg.paths.landing / "sales" / f"sales_{key}.csv"
    stored = cfg.paths.tables / "sales" / f"{key}.parquet"
    good = landing_file.read_bytes()
    with dg.DagsterInstance.ephemeral() as instance:
        for partition in (before_key, key):
            result = dg.materialize([sales, plans], partition_key=partition, instance=instance)
            assert result.success
        assert dg.materialize(static, instance=instance).success  # ids checked against sales
        tables = _stored_tables(cfg.paths.tables)
        assert {"sales", "plans", "calendar", "products", "stores", LOG_TABLE} <= set(tables)
        assert tables["sales"].height == 24  # 2 days x 2 stores x 6 items
        digests = {name: _digest(frame) for name, frame in tables.items()}
        stored_bytes = stored.read_bytes()

        for case, sha in zip(FAILING_SALES, shas, strict=True):
            landing_file.write_bytes(case.content)
            result = dg.materialize(
                [sales], partition_key=key, instance=instance, raise_on_error=False
            )
            assert not result.success, case.id
            (failure,) = result.get_step_failure_events()
            assert str(landing_file) in failure.step_failure_data.error.message, case.id
            assert stored.read_bytes() == stored_bytes, case.id
            after = _stored_tables(cfg.paths.tables)
            log = after[LOG_TABLE]
            added = log.filter(pl.col("sha256") == sha)
            assert added.select("file", "status", "partition").rows() == [
                (f"sales/sales_{key}.csv", "failed", DAY)
            ], case.id
            after[LOG_TABLE] = log.filter(pl.col("sha256") != sha)
            assert {n: _digest(f) for n, f in after.items()} == digests, case.id
            digests[LOG_TABLE] = _digest(log)  # the next case adds to this log
            assert landing_file.read_bytes() == case.content, case.id  # landing never modified

        landing_file.write_bytes(good)  # the corrected re-delivery loads again
        assert dg.materialize([sales], partition_key=key, instance=instance).success
        assert _digest(_stored_tables(cfg.paths.tables)["sales"]) == digests["sales"]
    log = PartitionedTable(cfg.paths.tables, LOG_TABLE).read()
    assert log.filter(pl.col("status") == "failed")["sha256"].sort().to_list() == sorted(shas)


# ---------------------------------------------------------------------------------------------
# The docs table
# ---------------------------------------------------------------------------------------------

TABLE_START = "<!-- corpus table: generated from CASES, do not edit by hand -->"
TABLE_END = "<!-- end of corpus table -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _policy_text(case: Case) -> str:
    policy = case.policy
    if policy == STRICT:
        text = "strict"
    else:
        rules = (
            "all rules" if policy.rules == frozenset(ROW_RULES) else ", ".join(sorted(policy.rules))
        )
        text = f"quarantine {rules} (max {policy.max_fraction:.0%})"
    if case.limits is not None:
        default = IngestLimits()
        tighter = {
            f.name: getattr(case.limits, f.name)
            for f in fields(IngestLimits)
            if getattr(case.limits, f.name) != getattr(default, f.name)
        }
        text += "; " + ", ".join(f"`{k} = {v}`" for k, v in tighter.items())
    return text


def markdown_table() -> str:
    lines = [
        "| # | case | source | file | bad input | policy | expected outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(CASES, 1):
        name = repr(c.file_name)[1:-1]
        outcome = c.outcome.describe()
        if c.bug:
            outcome = f"**BUG (xfail)**: expected {outcome}; {c.bug}"
        code = f"`` {name} ``" if "`" in name else f"`{name}`"
        cells = [str(i), f"`{c.id}`", c.source, code, c.what, _policy_text(c)]
        lines.append("| " + " | ".join(_cell(x) for x in [*cells, outcome]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        text = DOC.read_text(encoding="utf-8")
        head, rest = text.split(TABLE_START)
        _, tail = rest.split(TABLE_END)
        DOC.write_text(f"{head}{TABLE_START}\n{markdown_table()}{TABLE_END}{tail}", "utf-8")
    else:
        print(markdown_table(), end="")
