"""A source its suppliers deliver in several formats (one file per day, any of them), and
timestamp columns: the same records as CSV, JSON lines or XML are stored alike, two files of
one day are refused (by discovery, the landing sensor and the source's asset), and ISO-8601
timestamps become UTC."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import time

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from batch_ml.config import load_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import write_config
from batch_ml.platform.common import BuildContext
from batch_ml.platform.product import Product
from batch_ml.platform.resources import LandingZone, TableStore
from batch_ml.platform.sources.assets import source_asset
from batch_ml.platform.sources.contract import (
    TIMESTAMP_EXPECTED,
    ContractViolation,
    QuarantinePolicy,
    Source,
    load_landing_file,
    read_landing_file,
)
from batch_ml.platform.sources.landing import day_paths, discover, landing_path
from batch_ml.platform.sources.records import LOG_TABLE
from batch_ml.platform.storage.tables import PartitionedTable

DAY = dt.date(2025, 1, 3)
UTC = dt.UTC
# A product-neutral source of posts delivered in any of three formats.
POSTS = Source(
    name="posts",
    file_format=("csv", "jsonl", "xml"),
    required={"post_id": pl.String(), "posted_at": pl.Datetime("us", "UTC"), "body": pl.String()},
    optional={"title": pl.String(), "score": pl.Int64()},
    primary_key=("post_id",),
    id_columns=("post_id",),
    date_column="posted_at",
    date_offsets=(-30, 0),
    day_column="arrival_date",
    record_element="post",
)
RECORDS = [
    {"post_id": "p1", "posted_at": "2025-01-03T10:00:00Z", "body": "a, b", "score": 5},
    {"post_id": "p2", "posted_at": "2025-01-03T10:00:00+02:00", "body": "<c>", "title": "t"},
    {"post_id": "p3", "posted_at": "2024-12-20 23:30:00.25", "body": "d", "score": 0},
]
STORED = pl.DataFrame(
    {
        "post_id": ["p1", "p2", "p3"],
        "posted_at": [
            dt.datetime(2025, 1, 3, 10, tzinfo=UTC),
            dt.datetime(2025, 1, 3, 8, tzinfo=UTC),
            dt.datetime(2024, 12, 20, 23, 30, 0, 250000, tzinfo=UTC),
        ],
        "body": ["a, b", "<c>", "d"],
        "title": [None, "t", None],
        "score": [5, None, 0],
    },
    schema=POSTS.columns,
)


def _csv(records: list[dict]) -> str:
    columns = list(POSTS.columns)

    def cell(v) -> str:
        text = "" if v is None else str(v)
        return f'"{text}"' if "," in text else text

    rows = [",".join(cell(r.get(c)) for c in columns) for r in records]
    return "\n".join([",".join(columns), *rows]) + "\n"


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _xml(records: list[dict]) -> str:
    def escape(v) -> str:
        return str(v).replace("&", "&amp;").replace("<", "&lt;")

    posts = "".join(
        "<post>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in r.items()) + "</post>\n"
        for r in records
    )
    return f"<posts>\n{posts}</posts>\n"


WRITERS = {"csv": _csv, "jsonl": _jsonl, "xml": _xml}


def _write(folder, file_format: str, records: list[dict], day: dt.date = DAY):
    path = folder / POSTS.file_name(day, file_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(WRITERS[file_format](records))
    return path


@pytest.mark.parametrize("file_format", POSTS.file_formats)
def test_the_same_records_in_any_accepted_format_load_identically(tmp_path, file_format):
    rows = read_landing_file(_write(tmp_path, file_format, RECORDS), POSTS, DAY)
    assert_frame_equal(rows, STORED)


def test_names_of_a_multi_format_source():
    assert POSTS.file_pattern.pattern == r"posts_(\d{4}-\d{2}-\d{2})\.(?:csv|jsonl|xml)"
    assert POSTS.file_name(DAY) == "posts_2025-01-03.csv"  # the first format: for writers
    assert POSTS.file_name(DAY, "xml") == "posts_2025-01-03.xml"
    assert POSTS.accepted_names(DAY) == "posts_2025-01-03.{csv,jsonl,xml}"
    assert all(POSTS.partition_of(f"posts_2025-01-03.{f}") == DAY for f in POSTS.file_formats)
    with pytest.raises(ContractViolation, match="does not match"):
        POSTS.partition_of("posts_2025-01-03.parquet")
    with pytest.raises(ValueError, match="'json' not in"):
        POSTS.file_name(DAY, "json")
    single = dataclasses.replace(POSTS, file_format="jsonl")  # the single-format declaration
    assert single.file_formats == ("jsonl",) and single.accepted_names(DAY).endswith(".jsonl")


def test_the_extension_picks_the_reader_and_its_errors_name_the_format(tmp_path):
    path = tmp_path / POSTS.file_name(DAY, "xml")
    path.write_text(_csv(RECORDS))  # CSV text in a .xml file
    with pytest.raises(ContractViolation, match="cannot be parsed as xml: line 1"):
        read_landing_file(path, POSTS, DAY)


def test_two_files_of_one_day_are_a_problem_and_neither_is_listed(tmp_path):
    csv = _write(tmp_path / "posts", "csv", RECORDS)
    xml = _write(tmp_path / "posts", "xml", RECORDS)
    other = _write(tmp_path / "posts", "jsonl", RECORDS, DAY + dt.timedelta(days=1))
    assert day_paths(tmp_path, POSTS, DAY) == [csv, xml]
    assert landing_path(tmp_path, POSTS, DAY) == csv
    found, problems = discover(tmp_path, POSTS)
    assert [f.path for f in found] == [other]
    (problem,) = problems
    assert str(csv) in problem and str(xml) in problem and "2 files for one day" in problem


# -- timestamps ----------------------------------------------------------------------------


def _posted_at(tmp_path, values: list[str], file_format: str = "csv"):
    records = [{"post_id": f"p{i}", "posted_at": v, "body": "x"} for i, v in enumerate(values)]
    path = _write(tmp_path, file_format, records)
    policy = QuarantinePolicy(frozenset({"wrong_type"}), 1.0)
    return load_landing_file(path, POSTS, DAY, policy=policy)


@pytest.mark.parametrize("file_format", POSTS.file_formats)
def test_timestamps_with_z_an_offset_or_none_become_utc(tmp_path, file_format):
    loaded = _posted_at(
        tmp_path,
        ["2025-01-03T10:00:00Z", "2025-01-03T01:30:00-05:30", "2025-01-03 07:15", "2025-01-03"],
        file_format,
    )
    assert loaded.rows["posted_at"].to_list() == [
        dt.datetime(2025, 1, 3, 10, tzinfo=UTC),
        dt.datetime(2025, 1, 3, 7, tzinfo=UTC),
        dt.datetime(2025, 1, 3, 7, 15, tzinfo=UTC),  # naive: taken as UTC
    ]
    (date_only,) = loaded.rejected.iter_rows(named=True)  # a date alone has no time
    assert (date_only["_row"], date_only["column"], date_only["rule"]) == (
        4,
        "posted_at",
        "wrong_type",
    )
    assert date_only["expected"] == TIMESTAMP_EXPECTED and "YYYY-MM-DDTHH:MM" in TIMESTAMP_EXPECTED


def test_an_unparseable_timestamp_is_a_wrong_type_naming_row_and_column(tmp_path):
    values = ["2025-01-03T10:00:00Z", "yesterday", "2025-01-03T25:00:00Z"]
    with pytest.raises(ContractViolation) as err:
        read_landing_file(_write(tmp_path, "csv", [
            {"post_id": f"p{i}", "posted_at": v, "body": "x"} for i, v in enumerate(values)
        ]), POSTS, DAY)  # fmt: skip
    message = str(err.value)
    assert "row 2, column 'posted_at': not a valid value ('yesterday')" in message
    assert "row 3, column 'posted_at': not a valid value ('2025-01-03T25:00:00Z')" in message
    assert "[wrong_type]" in message and "2 of 3 row(s) rejected" in message


def test_parquet_timestamps_naive_are_utc_and_zoned_are_converted(tmp_path):
    source = dataclasses.replace(POSTS, file_format="parquet")
    at = [dt.datetime(2025, 1, 3, 10), dt.datetime(2025, 1, 3, 23, 30)]
    frame = pl.DataFrame({"post_id": ["p1", "p2"], "posted_at": at, "body": ["x", "y"]})
    path = tmp_path / source.file_name(DAY)
    frame.write_parquet(path)
    naive = read_landing_file(path, source, DAY)["posted_at"]
    assert naive.to_list() == [a.replace(tzinfo=UTC) for a in at]
    zoned = pl.col("posted_at").dt.replace_time_zone("Asia/Tokyo")  # UTC+9
    frame.with_columns(zoned.dt.cast_time_unit("ns")).write_parquet(path)
    converted = read_landing_file(path, source, DAY)["posted_at"]
    assert converted.dtype == pl.Datetime("us", "UTC")
    assert converted.to_list() == [(a - dt.timedelta(hours=9)).replace(tzinfo=UTC) for a in at]


def test_a_timestamp_date_column_is_bounded_by_its_utc_date(tmp_path):
    # The file of 2025-01-03 may hold 2024-12-04 .. 2025-01-03 (date_offsets (-30, 0)), by the
    # UTC date: 2025-01-04T01:00+02:00 is 2025-01-03T23:00Z, inside; 2025-01-03T23:00-02:00
    # is 2025-01-04T01:00Z, outside.
    values = [
        "2025-01-04T01:00:00+02:00",
        "2024-12-04T00:00:00Z",
        "2025-01-03T23:00:00-02:00",
        "2024-12-03T23:59:59Z",
    ]
    records = [{"post_id": f"p{i}", "posted_at": v, "body": "x"} for i, v in enumerate(values)]
    policy = QuarantinePolicy(frozenset({"outside_partition"}), 1.0)
    loaded = load_landing_file(_write(tmp_path, "jsonl", records), POSTS, DAY, policy=policy)
    assert loaded.rows["post_id"].to_list() == ["p0", "p1"]
    rejected = loaded.rejected
    assert rejected["_row"].to_list() == [3, 4]
    assert set(rejected["rule"]) == {"outside_partition"}
    assert (
        rejected["expected"][0]
        == "between 2024-12-04 and 2025-01-03 (posts published on 2025-01-03)"
    )


def test_a_timestamp_date_column_needs_a_day_column():
    with pytest.raises(ValueError, match="a pl.Datetime date_column needs a day_column"):
        dataclasses.replace(POSTS, day_column=None, date_offsets=(0, 0))


@pytest.mark.parametrize("file_format", POSTS.file_formats)
def test_an_integer_column_takes_integers_exactly(tmp_path, file_format):
    scores = [9007199254740993, 2.5, 3, -4]  # 2**53 + 1: exact, not rounded through a float
    records = [
        {"post_id": f"p{i}", "posted_at": "2025-01-03T10:00:00Z", "body": "x", "score": v}
        for i, v in enumerate(scores)
    ]
    policy = QuarantinePolicy(frozenset({"wrong_type"}), 1.0)
    loaded = load_landing_file(_write(tmp_path, file_format, records), POSTS, DAY, policy=policy)
    assert loaded.rows["score"].to_list() == [9007199254740993, 3, -4]
    (bad,) = loaded.rejected.iter_rows(named=True)
    assert (bad["_row"], bad["column"], bad["rule"], bad["value"]) == (
        2,
        "score",
        "wrong_type",
        "2.5",
    )


# -- the source's asset and the landing sensor ---------------------------------------------

MULTI = Product(
    name="multi",
    description="a source delivered in several formats",
    owners=(),
    sources=lambda cfg: {"posts": POSTS},
    first_week=lambda cfg: cfg.start_date,
    assets=lambda b: [source_asset(POSTS, b)],
    reference=(),
    daily=("posts",),
)


@pytest.fixture
def project(tmp_path):
    cfg = load_config(write_config(tmp_path, start=DAY, days=5))
    (cfg.paths.landing / "posts").mkdir(parents=True)
    b = BuildContext.from_config(cfg, MULTI)
    asset = source_asset(POSTS, b)
    resources = {
        "landing": LandingZone(root=str(cfg.paths.landing)),
        "tables": TableStore(
            tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse)
        ),
    }
    with dg.DagsterInstance.ephemeral() as instance:

        def run(day: dt.date) -> dg.ExecuteInJobResult:
            return dg.materialize(
                [asset],
                partition_key=day.isoformat(),
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )

        yield cfg, run, asset


def _failure(result) -> dg.Failure:
    (event,) = result.get_step_failure_events()
    return event.step_failure_data


def _log(cfg) -> pl.DataFrame:
    table = PartitionedTable(cfg.paths.tables, LOG_TABLE)
    return table.read() if table.partitions() else pl.DataFrame()


@pytest.mark.definitions
def test_the_asset_reads_whichever_file_of_the_day_exists(project):
    cfg, run, asset = project
    assert asset.specs_by_key[dg.AssetKey("posts")].kinds >= {"polars", "csv", "jsonl", "xml"}
    result = run(DAY)  # no file yet: every accepted name is listed
    assert not result.success
    assert "posts_2025-01-03.{csv,jsonl,xml}" in _failure(result).error.message
    _write(cfg.paths.landing / "posts", "xml", RECORDS)
    assert run(DAY).success
    stored = PartitionedTable(cfg.paths.tables, "posts").read([DAY.isoformat()])
    assert_frame_equal(stored, STORED.with_columns(arrival_date=pl.lit(DAY)))
    assert _log(cfg)["file"].to_list() == ["posts/posts_2025-01-03.xml"]


@pytest.mark.definitions
def test_two_files_of_one_day_fail_the_asset_and_store_nothing(project):
    cfg, run, _ = project
    csv = _write(cfg.paths.landing / "posts", "csv", RECORDS)
    jsonl = _write(cfg.paths.landing / "posts", "jsonl", RECORDS)
    result = run(DAY)
    assert not result.success
    failure = _failure(result)
    assert str(csv) in failure.error.message and str(jsonl) in failure.error.message
    assert "break the data contract" in failure.error.message
    metadata = {k: v.value for k, v in failure.user_failure_data.metadata.items()}
    assert metadata == {"files_failed": 1, "files_read": 0}
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not PartitionedTable(cfg.paths.tables, "posts").partitions()
    assert _log(cfg).is_empty()  # no file was read: no ingestion-log row
    jsonl.unlink()
    assert run(DAY).success


@pytest.mark.definitions
def test_the_landing_sensor_warns_of_two_files_of_one_day_and_launches_nothing_for_it(tmp_path):
    cfg = load_config(write_config(tmp_path, start=DAY, days=5))
    folder = cfg.paths.landing / "posts"
    paths = [
        _write(folder, "csv", RECORDS),
        _write(folder, "xml", RECORDS),
        _write(folder, "jsonl", RECORDS, DAY + dt.timedelta(days=1)),
    ]
    past = time.time() - 120  # settled
    for p in paths:
        os.utime(p, (past, past))
    sensor = build_definitions(cfg, products=[MULTI]).resolve_sensor_def(MULTI.landing_sensor)
    resources = {
        "landing": LandingZone(root=str(cfg.paths.landing)),
        "tables": TableStore(
            tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse)
        ),
    }
    logs: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logs.append(f"{record.levelname} {record.getMessage()}")

    with dg.DagsterInstance.ephemeral() as instance:
        with dg.build_sensor_context(resources=resources, instance=instance) as ctx:
            ctx.log.addHandler(Collect())
            result = sensor(ctx)
    keys = [r.partition_key for r in result.run_requests]
    assert keys == [(DAY + dt.timedelta(days=1)).isoformat()]  # only the unambiguous day
    (warning,) = [m for m in logs if "files for one day" in m]
    assert warning.startswith("WARNING") and str(paths[0]) in warning and str(paths[1]) in warning
